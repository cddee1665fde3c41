"""The HTTP API (FastAPI). Uses dgm only through dgm.inference (and Learner.load for sample grids)."""
