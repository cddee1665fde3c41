"""Celery jobs: thin. Load by id, call dgm, persist, report progress."""
