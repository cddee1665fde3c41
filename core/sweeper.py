"""The sweeper: the database is the truth about jobs, so jobs the broker lost are sent again.

A queued job untouched for `stuck_after_s`, or a running job whose lease ran out (its worker died),
is re-enqueued (core/lifecycle.py, `sweep_expired`). Duplicates are harmless: the job's claim is a
conditional UPDATE. The API runs the sweep every `sweep_interval_s` (10 s by default), so a killed
worker's job is sent again at most lease_s + sweep_interval_s after the kill (40 s at the defaults).
"""

from __future__ import annotations

import logging
import threading

from celery import Celery

from core.db import session_scope
from core.lifecycle import sweep_expired
from core.liveness import prune
from core.settings import Settings

log = logging.getLogger(__name__)


def sweep(settings: Settings, app: Celery) -> list[int]:
    """One pass: send the lost jobs again; returns their ids."""
    ids = sweep_expired(settings, app)
    if ids:
        log.warning("sweeper re-enqueued jobs %s", ids)
    return ids


def start_sweeper(settings: Settings, app: Celery) -> threading.Event:
    """Run `sweep` every `sweep_interval_s` in a daemon thread; set the returned event to stop it."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(settings.sweep_interval_s):
            try:
                sweep(settings, app)
                with session_scope(settings) as s:
                    prune(s)
            except Exception:  # noqa: BLE001 - a failed sweep is retried at the next interval
                log.exception("sweep failed")

    threading.Thread(target=loop, name="dgm-sweeper", daemon=True).start()
    log.info("sweeper: every %s s, re-sends jobs whose lease (%s s) ran out", settings.sweep_interval_s,
             settings.lease_s)  # fmt: skip
    return stop
