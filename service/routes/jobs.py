"""Jobs: state and progress; cancel a queued or running job; retry a failed or cancelled one.

The transitions and their rules are in core/lifecycle.py; these routes commit, then enqueue.
"""

from __future__ import annotations

from fastapi import APIRouter

from core import lifecycle
from core.orm import Job
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
    lifecycle.cancel(session, job)
    session.commit()
    session.refresh(job)
    return job


@router.post("/{job_id}/retry", response_model=JobRead, dependencies=[TrainKey])
def retry_job(job_id: int, session: SessionDep, celery: CeleryDep, settings: SettingsDep) -> Job:
    job = get_job(session, job_id)
    lifecycle.retry(session, job)
    session.commit()
    enqueue_train(celery, settings, job_id)
    session.refresh(job)
    return job
