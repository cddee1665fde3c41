"""The sweeper: the database is the truth about jobs, so jobs the broker lost are sent again.

A queued job untouched for `stuck_after_s`, or a running job whose lease ran out (its worker died),
is re-enqueued. Duplicates are harmless: the job's claim is a conditional UPDATE. The API runs the
sweep every `sweep_interval_s` (10 s by default), so a killed worker's job is sent again at most
lease_s + sweep_interval_s after the kill (40 s at the defaults).
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from celery import Celery
from sqlalchemy import or_, select, update

from core.db import session_scope
from core.liveness import prune
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


def waiting_countdown(settings: Settings, job_id: int) -> float:
    """Seconds until a job that is not its learner's turn looks again: as long as it has waited so far.

    So the looks come at about 1, 2, 4, 8... times `requeue_countdown_s` (exponential backoff without a
    counter, whatever the number of duplicate messages), at most `requeue_max_s` and half of
    `stuck_after_s` (a waiting job is never taken for a lost one). The earlier job's end sends it at once.
    """
    with session_scope(settings) as s:
        created = s.scalar(select(Job.created_at).where(Job.id == job_id))
    waited = (utcnow() - created).total_seconds() if created else 0.0
    cap = min(settings.requeue_max_s, settings.stuck_after_s / 2)
    return max(min(waited, cap), min(settings.requeue_countdown_s, cap))


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
