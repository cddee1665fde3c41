"""The sweeper: the database is the truth about jobs, so jobs the broker lost are sent again.

A queued job untouched for `stuck_after_s`, or a running job whose lease ran out (its worker died),
is re-enqueued. Duplicates are harmless: the job's claim is a conditional UPDATE.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from celery import Celery
from sqlalchemy import or_, select, update

from core.db import session_scope
from core.orm import Job, utcnow
from core.queue import enqueue_train
from core.settings import Settings

log = logging.getLogger(__name__)


def sweep(settings: Settings, app: Celery) -> list[int]:
    now = utcnow()
    stale = now - timedelta(seconds=settings.stuck_after_s)
    with session_scope(settings) as s:
        lost = or_(
            (Job.state == "queued") & (or_(Job.enqueued_at.is_(None), Job.enqueued_at < stale)),
            (Job.state == "running") & (Job.lease_until < now),
        )
        ids = list(s.scalars(select(Job.id).where(lost)))
        if ids:
            s.execute(update(Job).where(Job.id.in_(ids)).values(enqueued_at=now))
    for job_id in ids:
        enqueue_train(app, settings, job_id)
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
            except Exception:  # noqa: BLE001 - a failed sweep is retried at the next interval
                log.exception("sweep failed")

    threading.Thread(target=loop, name="dgm-sweeper", daemon=True).start()
    return stop
