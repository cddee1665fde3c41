"""Task upload: validate everything, store the data atomically, commit, then enqueue the job."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.datasets import check_counts, read_upload, split_holdout, to_npz_bytes
from core.errors import Conflict, InvalidInput, InvalidParameter
from core.lifecycle import UNFINISHED_TASK, TaskState, new_job
from core.orm import Job, Learner, ModelVersion, Task
from core.queue import enqueue_train
from core.schemas import JobRead, TaskRead, UploadAccepted
from core.settings import Settings
from core.storage import ArtifactStore
from service.deps import (
    AnyKey,
    CeleryDep,
    RateLimiterDep,
    SessionDep,
    SessionsDep,
    SettingsDep,
    StoreDep,
    TrainKey,
)
from service.limits import identity
from service.uploads import UploadedFile, receive_form
from service.views import get_learner, learner_named, task_read, tasks_of

router = APIRouter(prefix="/v1/learners", tags=["tasks"])

UPLOAD_DOC = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": ".npz (x, y) or .zip"},
                        "holdout": {"type": "number", "description": "fraction kept for evaluation, 0..0.5"},
                    },
                }
            }
        }
    }
}


@router.post(
    "/{name}/tasks",
    status_code=202,
    response_model=UploadAccepted,
    dependencies=[TrainKey],
    openapi_extra=UPLOAD_DOC,
)
async def upload_task(
    name: str,
    request: Request,
    settings: SettingsDep,
    sessions: SessionsDep,
    store: StoreDep,
    limiter: RateLimiterDep,
    celery: CeleryDep,
) -> UploadAccepted:
    folder = Path(tempfile.mkdtemp(prefix="dgm-upload-"))
    try:
        await run_in_threadpool(learner_named, sessions, name)  # 404 before reading the body
        await limiter.charge_async(identity(request), "upload", 1)  # 429 before it, too
        form = await receive_form(request, settings.max_upload_bytes, folder)
        upload = _the_file(form.files)
        holdout = _holdout(form.fields.get("holdout", request.query_params.get("holdout", "0")), settings)
        accepted = await run_in_threadpool(accept_upload, settings, store, sessions, name, upload, holdout)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    enqueue_train(celery, settings, accepted.job.id)  # after the commit
    return accepted


def _the_file(files: list[UploadedFile]) -> UploadedFile:
    if len(files) != 1:
        raise InvalidInput(f"send exactly one file in a multipart field named 'file'; got {len(files)} files")
    return files[0]


def _holdout(raw: str, settings: Settings) -> float:
    try:
        value = float(raw)
    except ValueError as exc:
        raise InvalidParameter(
            f"holdout must be a number in [0, {settings.max_holdout}], got {raw!r}"
        ) from exc
    if not 0 <= value <= settings.max_holdout:
        raise InvalidParameter(f"holdout must be in [0, {settings.max_holdout}], got {value}")
    return value


def accept_upload(
    settings: Settings,
    store: ArtifactStore,
    sessions: sessionmaker[Session],
    name: str,
    upload: UploadedFile,
    holdout: float,
) -> UploadAccepted:
    with sessions() as s:
        learner = get_learner(s, name)
        shape = tuple(learner.image_shape)
        x, labels = read_upload(
            upload.path, upload.filename, shape, settings.max_uncompressed_bytes, settings.max_zip_entries
        )
        train, hold = split_holdout(labels, holdout)
        minimum = max(settings.min_samples_per_class, int(learner.config.get("min_samples_per_class", 1)))
        counts = check_counts([labels[i] for i in train], minimum, upload.filename)
        # One upload per learner at a time from here to the commit (row lock on PostgreSQL), so two
        # simultaneous uploads get consecutive ordinals and the class check sees the other's task.
        s.execute(select(Learner.id).where(Learner.id == learner.id).with_for_update())
        check_new_classes(s, learner, list(counts))
        folder = f"learners/{learner.id}/tasks/{uuid.uuid4().hex}"
        try:
            data_uri = f"{folder}/train.npz"
            store.write_bytes(data_uri, to_npz_bytes(x[train], [labels[i] for i in train]))
            holdout_uri = None
            if len(hold):
                holdout_uri = f"{folder}/holdout.npz"
                store.write_bytes(holdout_uri, to_npz_bytes(x[hold], [labels[i] for i in hold]))
            task, job = insert_task(s, learner, upload.filename, counts, len(hold), data_uri, holdout_uri)
            s.commit()
        except IntegrityError as exc:  # a concurrent upload won the race where row locks do not exist
            s.rollback()
            store.delete_tree(folder)
            raise Conflict(
                f"another upload to learner {name!r} was accepted at the same moment; retry"
            ) from exc
        except BaseException:
            s.rollback()
            store.delete_tree(folder)
            raise
        return UploadAccepted(
            task=task_read(task),
            job=JobRead.model_validate(job),
            urls={
                "job": f"/v1/jobs/{job.id}",
                "tasks": f"/v1/learners/{name}/tasks",
                "versions": f"/v1/learners/{name}/versions",
                "history": f"/v1/learners/{name}/history",
            },
        )


def check_new_classes(s: Session, learner: Learner, new: list[str]) -> None:
    """Refuse classes the active version knows or an earlier unfinished task brings; respect max_classes."""
    known: list[str] = []
    if learner.active_version_id:
        version = s.get(ModelVersion, learner.active_version_id)
        known = list(version.classes) if version else []
    clash = sorted(set(new) & set(known))
    if clash:
        raise InvalidInput(
            f"classes already learned by learner {learner.name!r}: {clash[:10]}; "
            "a task must bring only new classes"
        )
    pending = s.scalars(select(Task).where(Task.learner_id == learner.id, Task.state.in_(UNFINISHED_TASK)))
    for task in pending:
        clash = sorted(set(new) & set(task.classes))
        if clash:
            raise InvalidInput(
                f"classes {clash[:10]} are already in task #{task.ordinal}, which is {task.state}; "
                "wait for it or cancel it"
            )
        known += task.classes
    limit = int(learner.config.get("max_classes", 0))
    if limit and len(known) + len(new) > limit:
        raise InvalidInput(
            f"learner {learner.name!r} holds at most {limit} classes (max_classes); "
            f"it has {len(known)} learned or pending and this task adds {len(new)}"
        )


def insert_task(
    s: Session,
    learner: Learner,
    source: str,
    counts: dict[str, int],
    n_holdout: int,
    data_uri: str,
    holdout_uri: str | None,
) -> tuple[Task, Job]:
    ordinal = (s.scalar(select(func.max(Task.ordinal)).where(Task.learner_id == learner.id)) or 0) + 1
    task = Task(
        learner_id=learner.id,
        ordinal=ordinal,
        state=TaskState.QUEUED,
        classes=list(counts),
        class_counts=counts,
        n_train=sum(counts.values()),
        n_holdout=n_holdout,
        source=source[:255],
        data_uri=data_uri,
        holdout_uri=holdout_uri,
    )
    s.add(task)
    s.flush()
    job = new_job(task)
    s.add(job)
    s.flush()
    return task, job


@router.get("/{name}/tasks", response_model=list[TaskRead], dependencies=[AnyKey])
def list_tasks(name: str, session: SessionDep) -> list[TaskRead]:
    return [task_read(t) for t in tasks_of(session, get_learner(session, name))]
