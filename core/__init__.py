"""Shared plumbing for the service and the worker: settings, database, ORM, errors, queue, artifacts.

Imports no torch: the API process stays light and `dgm --help` stays fast.
"""
