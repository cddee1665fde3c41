"""Worker liveness: each worker writes a heartbeat row every `heartbeat_s`; the API counts the live ones.

A worker is alive while its row was written within `worker_alive_s`. A clean shutdown marks the row
stopped (alive drops at once) rather than deleting it, so "no live worker since <its last beat>" can
still be said; a killed worker's row ages out of the window. The sweeper deletes rows a day old.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from core.db import session_scope
from core.lifecycle import UNFINISHED_TASK, JobState
from core.orm import Job, Task, WorkerHeartbeat, utcnow
from core.settings import Settings

log = logging.getLogger(__name__)
FORGET_AFTER = timedelta(days=1)  # rows of workers gone this long are deleted by the sweeper


def worker_name() -> str:
    """hostname:pid, the prefix of Job.worker for jobs this process trains."""
    return f"{socket.gethostname()}:{os.getpid()}"


def beat(settings: Settings, name: str, info: dict[str, Any]) -> None:
    """Insert or refresh this worker's row (the name is this process's own, so no other writer races)."""
    now = utcnow()
    with session_scope(settings) as s:
        done = s.execute(
            update(WorkerHeartbeat).where(WorkerHeartbeat.name == name).values(last_seen=now, info=info)
        )
        if done.rowcount == 0:  # type: ignore[attr-defined]  # an UPDATE's result is a CursorResult
            s.add(WorkerHeartbeat(name=name, started_at=now, last_seen=now, info=info))


def stopped(settings: Settings, name: str, info: dict[str, Any]) -> None:
    """A clean shutdown: the row says so at once (no longer alive) and keeps its time for the record."""
    with session_scope(settings) as s:
        s.execute(
            update(WorkerHeartbeat)
            .where(WorkerHeartbeat.name == name)
            .values(last_seen=utcnow(), info={**info, "stopped": True})
        )


class Heartbeat:
    """A daemon thread that beats every `heartbeat_s` until `stop()`, which marks the row stopped."""

    def __init__(self, settings: Settings, info: dict[str, Any], name: str | None = None) -> None:
        self.settings, self.info, self.name = settings, info, name or worker_name()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dgm-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def _loop(self) -> None:
        failing = False
        while True:
            try:
                beat(self.settings, self.name, self.info)
                if failing:
                    log.info("heartbeat of %s written again", self.name)
                failing = False
            except Exception as exc:  # noqa: BLE001 - a database outage: keep trying at the next beat
                if not failing:
                    log.warning("heartbeat of %s failed: %s; retrying every %s s", self.name, exc,
                                self.settings.heartbeat_s)  # fmt: skip
                failing = True
            if self._stop.wait(self.settings.heartbeat_s):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            stopped(self.settings, self.name, self.info)
        except Exception as exc:  # noqa: BLE001 - the row then ages out of the window instead
            log.warning("could not mark the heartbeat of %s stopped: %s", self.name, exc)


@dataclass
class Workers:
    alive: int
    last_seen: datetime | None  # the newest heartbeat of any worker, alive or not; None: never seen

    def training(self) -> str:
        """One line for /readyz: can uploaded tasks train now?"""
        if self.alive:
            return "ok"
        return f"no live worker {since(self.last_seen)}; uploaded tasks wait in the queue"


def since(last_seen: datetime | None) -> str:
    return f"since {last_seen.isoformat(timespec='seconds')}" if last_seen else "has ever reported"


def workers(s: Session, settings: Settings, queue: str | None = None) -> Workers:
    """Live workers (of `queue` when given: a worker on another queue cannot take the job)."""
    cutoff = utcnow() - timedelta(seconds=settings.worker_alive_s)
    rows = s.execute(select(WorkerHeartbeat.last_seen, WorkerHeartbeat.info)).all()
    mine = [r for r in rows if queue is None or (r.info or {}).get("queue", queue) == queue]
    alive = sum(1 for r in mine if r.last_seen >= cutoff and not (r.info or {}).get("stopped"))
    return Workers(alive=alive, last_seen=max((r.last_seen for r in mine), default=None))


def prune(s: Session) -> int:
    """Delete the rows of workers not seen for FORGET_AFTER; returns how many."""
    return s.execute(
        delete(WorkerHeartbeat).where(WorkerHeartbeat.last_seen < utcnow() - FORGET_AFTER)
    ).rowcount  # type: ignore[attr-defined]  # a DELETE's result is a CursorResult


def state_detail(s: Session, settings: Settings, job: Job) -> str | None:
    """Why a queued job has not started, or who runs a running one; None for finished jobs."""
    if job.state == JobState.RUNNING:
        until = job.lease_until.isoformat(timespec="seconds") if job.lease_until else "?"
        return f"running on {job.worker} (lease until {until})"
    if job.state != JobState.QUEUED:
        return None
    live = workers(s, settings, settings.queue)
    if not live.alive:
        return f"waiting: no live worker {since(live.last_seen)}"
    earlier = s.execute(
        select(Task.ordinal, Job.id, Job.state)
        .join(Job, Job.task_id == Task.id)
        .where(Task.learner_id == job.learner_id, Task.state.in_(UNFINISHED_TASK))
        .where(Task.ordinal < select(Task.ordinal).where(Task.id == job.task_id).scalar_subquery())
        .order_by(Task.ordinal)
        .limit(1)
    ).first()
    if earlier is not None:
        return f"waiting for task #{earlier.ordinal} of the learner (job {earlier.id}, {earlier.state})"
    busy = s.scalar(select(func.count()).select_from(Job).where(Job.state == JobState.RUNNING)) or 0
    return f"waiting for a free worker ({live.alive} alive, {busy} jobs running)"
