"""Jobs: state and progress; cancel a queued or running job; retry a failed or cancelled one."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import update

from core.errors import JobStateConflict
from core.orm import Job, Task, utcnow
from core.queue import enqueue_train
from core.schemas import JobRead
from service.deps import AnyKey, CeleryDep, SessionDep, SettingsDep, TrainKey
from service.views import job_read, unknown_job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def get_job(session: SessionDep, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise unknown_job(job_id)
    return job


@router.get("/{job_id}", response_model=JobRead, dependencies=[AnyKey])
def read_job(job_id: int, session: SessionDep, settings: SettingsDep) -> JobRead:
    return job_read(settings, session, get_job(session, job_id))


@router.post("/{job_id}/cancel", response_model=JobRead, dependencies=[TrainKey])
def cancel_job(job_id: int, session: SessionDep) -> Job:
    """A queued job is cancelled at once; a running one stops at its next check (a second or so)."""
    job = get_job(session, job_id)
    queued = (Job.id == job_id) & (Job.state == "queued")
    if session.execute(update(Job).where(queued).values(state="cancelled", finished_at=utcnow())).rowcount:
        session.execute(update(Task).where(Task.id == job.task_id).values(state="cancelled"))
    elif job.state == "running":
        session.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
    else:
        raise JobStateConflict(f"job {job_id} is {job.state}; only queued or running jobs can be cancelled")
    session.commit()
    session.refresh(job)
    return job


@router.post("/{job_id}/retry", response_model=JobRead, dependencies=[TrainKey])
def retry_job(job_id: int, session: SessionDep, celery: CeleryDep, settings: SettingsDep) -> Job:
    job = get_job(session, job_id)
    if job.state not in ("failed", "cancelled"):
        raise JobStateConflict(f"job {job_id} is {job.state}; only failed or cancelled jobs can be retried")
    if job.task.data_uri is None and job.task.kind != "forget":  # a forget task has no data
        raise JobStateConflict(f"the training data of job {job_id} was deleted; upload the task again")
    values = {
        "state": "queued",
        "error": None,
        "progress": None,
        "cancel_requested": False,
        "enqueued_at": utcnow(),
    }
    session.execute(update(Job).where(Job.id == job_id).values(**values, finished_at=None))
    session.execute(update(Task).where(Task.id == job.task_id).values(state="queued"))
    session.commit()
    enqueue_train(celery, settings, job_id)
    session.refresh(job)
    return job
