"""The job lifecycle in one place: the states of jobs and tasks, every transition, and the policy.

The database is the truth about a job; the broker only says "look at job N". Each function below is
one transition, guarded so that a duplicate delivery, a second worker or a late API call does nothing:

    new_job        a new task's job, queued (the upload and forget routes)
    claim          queued (or running with its lease run out) -> running;  task queued -> training
    renew_lease    running -> running, lease extended (and progress stored); says whether cancel was asked
    succeed        running -> succeeded;  task -> trained      (inside the publish transaction)
    fail           running -> failed;     task -> failed
    stop_cancelled running -> cancelled;  task -> cancelled    (the worker saw the cancel request)
    cancel         queued -> cancelled at once; running -> cancel requested (the API)
    retry          failed or cancelled -> queued;  task -> queued (the API)
    requeue        "look again in N s": not the learner's turn yet, or another worker holds the lease
    start_next     the learner's next queued job is sent now that this one ended
    sweep_expired  jobs the broker lost (queued and untouched, or running with a dead lease) sent again

Worker-side transitions take the lease token, so only the worker that holds the lease can end a job;
API-side ones (cancel, retry) work inside the request's session, which commits, then enqueues.
States are str enums: the database columns and the JSON keep the same strings.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import asdict, dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from celery import Celery
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from core.db import session_scope
from core.errors import JobStateConflict
from core.orm import Job, Task, utcnow
from core.queue import enqueue_train
from core.settings import Settings


class JobState(StrEnum):
    """Job.state (core/orm.py), also JobRead.state in the API."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TaskState(StrEnum):
    """Task.state (core/orm.py), also TaskRead.state in the API."""

    QUEUED = "queued"
    TRAINING = "training"
    TRAINED = "trained"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
CANCELLABLE = (JobState.QUEUED, JobState.RUNNING)
RETRYABLE = (JobState.FAILED, JobState.CANCELLED)  # a failure never retries by itself: the API does
UNFINISHED_TASK = (TaskState.QUEUED, TaskState.TRAINING)  # tasks that still hold their learner's turn
WAIT = "wait"  # claim's answer when an earlier task of the learner comes first


@dataclass(frozen=True)
class Delivery:
    """How the broker delivers the train job; the Celery app (core/queue.py) and the task decorator
    (worker/app.py) both read these. A killed worker's message is redelivered (acks_late,
    reject_on_worker_lost); the claim's lease makes the duplicate harmless."""

    acks_late: bool = True
    reject_on_worker_lost: bool = True
    ignore_result: bool = True

    def task_options(self) -> dict[str, bool]:
        return asdict(self)


DELIVERY = Delivery()


@dataclass(frozen=True)
class RequeuePolicy:
    """When a job is sent again, from the deployment settings (DGM_LEASE_S, DGM_REQUEUE_*_S, ...)."""

    lease_s: float  # a running job's lease; renewed every lease_s / 3 while it trains
    countdown_s: float  # the first look again of a job that is not its learner's turn
    max_s: float  # the longest wait between two looks
    stuck_after_s: float  # a queued job untouched this long is taken for lost and sent again

    @classmethod
    def of(cls, settings: Settings) -> RequeuePolicy:
        return cls(settings.lease_s, settings.requeue_countdown_s, settings.requeue_max_s,
                   settings.stuck_after_s)  # fmt: skip

    def waiting(self, waited_s: float) -> float:
        """Seconds until a job that is not its learner's turn looks again: as long as it has waited.

        So the looks come at about 1, 2, 4, 8... times `countdown_s` (exponential backoff without a
        counter, whatever the number of duplicate messages), at most `max_s` and half of `stuck_after_s`
        (a waiting job is never taken for a lost one). The earlier job's end sends it at once.
        """
        cap = min(self.max_s, self.stuck_after_s / 2)
        return max(min(waited_s, cap), min(self.countdown_s, cap))

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.lease_s)

    @property
    def renew_every_s(self) -> float:
        """How often a training worker renews its lease: three tries before it runs out."""
        return self.lease_s / 3

    @staticmethod
    def leased(left_s: float) -> float:
        """A duplicate delivery of a leased job looks again just after the lease could have run out."""
        return left_s + 1


class LeaseLost(RuntimeError):
    """Another worker owns the job now; this one must not publish."""


def rows(result: Any) -> int:
    """Rows an UPDATE matched: SQLAlchemy types execute() as Result, but an UPDATE's is a CursorResult."""
    return int(result.rowcount)


def mine(job_id: int, token: str) -> Any:
    """The guard of every worker-side transition: the job is running under this worker's lease."""
    return (Job.id == job_id) & (Job.lease_token == token) & (Job.state == JobState.RUNNING)


def new_job(task: Task) -> Job:
    """The job of a task just inserted (flushed, so it has an id): queued. Enqueue it after the commit."""
    return Job(task_id=task.id, learner_id=task.learner_id, state=JobState.QUEUED, enqueued_at=utcnow(),
               attempts=0)  # fmt: skip


def claim(settings: Settings, job_id: int) -> str | None:
    """A lease token when this job may train now; WAIT when an earlier task comes first; else None
    (finished, or another worker holds a live lease). Only the oldest unfinished task of a learner
    may run; a conditional UPDATE takes the lease, so of two claims at most one wins."""
    now = utcnow()
    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        if job is None or job.state in FINISHED:
            return None
        oldest = s.scalar(
            select(Task.id)
            .where(Task.learner_id == job.learner_id, Task.state.in_(UNFINISHED_TASK))
            .order_by(Task.ordinal)
            .limit(1)
        )
        if oldest != job.task_id:
            job.enqueued_at = now
            return WAIT
        token = uuid.uuid4().hex
        free = or_(Job.state == JobState.QUEUED, (Job.state == JobState.RUNNING) & (Job.lease_until < now))
        taken = s.execute(
            update(Job)
            .where(Job.id == job_id, free)
            .values(
                state=JobState.RUNNING,
                lease_token=token,
                lease_until=now + RequeuePolicy.of(settings).lease,
                attempts=Job.attempts + 1,
                worker=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}",  # host:pid:attempt
                started_at=now,
                error=None,
            )
        )
        if rows(taken) != 1:
            return None
        s.execute(update(Task).where(Task.id == job.task_id).values(state=TaskState.TRAINING))
        return token


def lease_left(settings: Settings, job_id: int) -> float | None:
    """Seconds until a running job's lease runs out; None when the job is not running."""
    with session_scope(settings) as s:
        row = s.execute(select(Job.state, Job.lease_until).where(Job.id == job_id)).first()
    if row is None or row.state != JobState.RUNNING or row.lease_until is None:
        return None
    return max((row.lease_until - utcnow()).total_seconds(), 0.0)


def renew_lease(settings: Settings, job_id: int, token: str, progress: dict | None = None) -> bool | None:
    """Extend the lease by lease_s (and store progress). None: the lease is lost (another worker owns
    the job, or it ended); else whether a cancel was requested."""
    values: dict[str, Any] = {"lease_until": utcnow() + RequeuePolicy.of(settings).lease}
    if progress is not None:
        values["progress"] = progress
    with session_scope(settings) as s:
        if rows(s.execute(update(Job).where(mine(job_id, token)).values(**values))) != 1:
            return None
        return bool(s.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def succeed(s: Session, job_id: int, token: str, task_values: dict[str, Any] | None = None,
            **job_values: Any) -> None:  # fmt: skip
    """The publish guard, inside the publish transaction: the job succeeds and its task is trained
    (with `task_values`, e.g. data_uri=None), or LeaseLost is raised and the transaction rolls back.
    `job_values`: what the job records of its result (warnings, result)."""
    done = s.execute(
        update(Job)
        .where(mine(job_id, token))
        .values(state=JobState.SUCCEEDED, finished_at=utcnow(), lease_until=None, **job_values)
    )
    if rows(done) != 1:
        raise LeaseLost(f"job {job_id} is no longer leased to this worker")
    task_id = s.scalar(select(Job.task_id).where(Job.id == job_id))
    s.execute(update(Task).where(Task.id == task_id).values(state=TaskState.TRAINED, **(task_values or {})))


def fail(settings: Settings, job_id: int, token: str, error: str) -> bool:
    """The job failed with `error`; it stays retryable. False when the lease was not held."""
    return _end(settings, job_id, token, JobState.FAILED, TaskState.FAILED, error)


def stop_cancelled(settings: Settings, job_id: int, token: str) -> bool:
    """The worker stopped on a cancel request. False when the lease was not held."""
    return _end(settings, job_id, token, JobState.CANCELLED, TaskState.CANCELLED, "cancelled on request")


def _end(settings: Settings, job_id: int, token: str, state: JobState, task_state: TaskState,
         error: str) -> bool:  # fmt: skip
    with session_scope(settings) as s:
        done = s.execute(
            update(Job)
            .where(mine(job_id, token))
            .values(state=state, error=error, finished_at=utcnow(), lease_until=None)
        )
        if rows(done) != 1:
            return False
        task_id = s.scalar(select(Job.task_id).where(Job.id == job_id))
        s.execute(update(Task).where(Task.id == task_id).values(state=task_state))
        return True


def cancel(s: Session, job: Job) -> None:
    """A queued job is cancelled at once; a running one is asked to stop (its worker sees the request
    at its next check, a second or so). Anything else: JobStateConflict. The caller commits."""
    queued = (Job.id == job.id) & (Job.state == JobState.QUEUED)
    if rows(s.execute(update(Job).where(queued).values(state=JobState.CANCELLED, finished_at=utcnow()))):
        s.execute(update(Task).where(Task.id == job.task_id).values(state=TaskState.CANCELLED))
    elif job.state == JobState.RUNNING:
        s.execute(update(Job).where(Job.id == job.id).values(cancel_requested=True))
    else:
        raise JobStateConflict(f"job {job.id} is {job.state}; only queued or running jobs can be cancelled")


def retry(s: Session, job: Job) -> None:
    """A failed or cancelled job is queued again from scratch. The caller commits, then enqueues."""
    if job.state not in RETRYABLE:
        raise JobStateConflict(f"job {job.id} is {job.state}; only failed or cancelled jobs can be retried")
    if job.task.data_uri is None and job.task.kind != "forget":  # a forget task has no data
        raise JobStateConflict(f"the training data of job {job.id} was deleted; upload the task again")
    values = {
        "state": JobState.QUEUED,
        "error": None,
        "progress": None,
        "cancel_requested": False,
        "enqueued_at": utcnow(),
        "finished_at": None,
    }
    s.execute(update(Job).where(Job.id == job.id).values(**values))
    s.execute(update(Task).where(Task.id == job.task_id).values(state=TaskState.QUEUED))


def waiting_countdown(settings: Settings, job_id: int) -> float:
    """Seconds until a job that is not its learner's turn looks again (RequeuePolicy.waiting)."""
    with session_scope(settings) as s:
        created = s.scalar(select(Job.created_at).where(Job.id == job_id))
    waited = (utcnow() - created).total_seconds() if created else 0.0
    return RequeuePolicy.of(settings).waiting(waited)


def requeue(settings: Settings, app: Celery, job_id: int, countdown: float) -> None:
    """Send "look at job N" again in `countdown` seconds; the job's row is unchanged."""
    enqueue_train(app, settings, job_id, countdown=countdown)


def start_next(settings: Settings, app: Celery, job_id: int) -> int | None:
    """Send the learner's next queued job now instead of waiting for its countdown; returns its id."""
    with session_scope(settings) as s:
        learner_id = s.scalar(select(Job.learner_id).where(Job.id == job_id))
        nxt = s.scalar(
            select(Job.id)
            .join(Task, Task.id == Job.task_id)
            .where(Job.learner_id == learner_id, Job.state == JobState.QUEUED)
            .order_by(Task.ordinal)
            .limit(1)
        )
        if nxt is not None:
            s.execute(update(Job).where(Job.id == nxt).values(enqueued_at=utcnow()))
    if nxt is not None:
        enqueue_train(app, settings, nxt)
    return nxt


def sweep_expired(settings: Settings, app: Celery) -> list[int]:
    """Send again every job the broker lost: queued and untouched for stuck_after_s, or running with
    its lease run out (its worker died). Duplicates are harmless: the claim is a conditional UPDATE."""
    now = utcnow()
    stale = now - timedelta(seconds=RequeuePolicy.of(settings).stuck_after_s)
    with session_scope(settings) as s:
        lost = or_(
            (Job.state == JobState.QUEUED) & (or_(Job.enqueued_at.is_(None), Job.enqueued_at < stale)),
            (Job.state == JobState.RUNNING) & (Job.lease_until < now),
        )
        ids = list(s.scalars(select(Job.id).where(lost)))
        if ids:
            s.execute(update(Job).where(Job.id.in_(ids)).values(enqueued_at=now))
    for job_id in ids:
        enqueue_train(app, settings, job_id)
    return ids
