"""Forgetting (issue 11, admin): forget a class, purge older versions that hold it, delete a learner.

- DELETE /v1/learners/{name}/classes/{label}: queue a task of kind "forget" (202, like an upload); its
  job trains a version without the class (worker/forget.py), ordered with the learner's other tasks.
- POST /v1/learners/{name}/classes/{label}/purge: delete the files of every version that still holds the
  class and mark them purged (predict, samples and activation then answer 410). Never the active version
  nor a rollout's candidate (409).
- DELETE /v1/learners/{name}: every row and file of the learner. 409 while one of its jobs runs, unless
  ?force=true (the worker finds its job gone at its next lease renewal and publishes nothing).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from core.errors import Conflict, NotFound
from core.lifecycle import UNFINISHED_TASK, JobState, TaskState, new_job
from core.orm import Evaluation, Job, LearnedClass, Learner, ModelVersion, Task, utcnow
from core.queue import enqueue_train
from core.schemas import JobRead, UploadAccepted
from service.classifiers import ClassifierCache
from service.deps import (
    AdminKey,
    CeleryDep,
    ClassifiersDep,
    SampleGridsDep,
    SessionsDep,
    SettingsDep,
    StoreDep,
)
from service.versions import SampleGrids
from service.views import get_learner, task_read

router = APIRouter(prefix="/v1/learners", tags=["forget"])


class UnknownClass(NotFound):
    pass


@router.delete(
    "/{name}/classes/{label:path}", status_code=202, response_model=UploadAccepted, dependencies=[AdminKey]
)
def forget_class(
    name: str, label: str, sessions: SessionsDep, celery: CeleryDep, settings: SettingsDep
) -> UploadAccepted:
    """Train a new version without class `label`: 404 unknown, 409 the only class left or already
    forgotten (or being forgotten). The job's result says what was removed."""
    with sessions() as s:
        learner = get_learner(s, name)
        s.execute(select(Learner.id).where(Learner.id == learner.id).with_for_update())  # one at a time
        check_forgettable(s, learner, label)
        ordinal = (s.scalar(select(func.max(Task.ordinal)).where(Task.learner_id == learner.id)) or 0) + 1
        task = Task(
            learner_id=learner.id, ordinal=ordinal, kind="forget", state=TaskState.QUEUED, classes=[label],
            class_counts={}, n_train=0, n_holdout=0, source=f"forget {label}"[:255],
        )  # fmt: skip
        s.add(task)
        s.flush()
        job = new_job(task)
        s.add(job)
        s.commit()
        accepted = UploadAccepted(
            task=task_read(task),
            job=JobRead.model_validate(job),
            urls={
                "job": f"/v1/jobs/{job.id}",
                "versions": f"/v1/learners/{name}/versions",
                "history": f"/v1/learners/{name}/history",
            },
        )
    enqueue_train(celery, settings, accepted.job.id)  # after the commit
    return accepted


def check_forgettable(s: Session, learner: Learner, label: str) -> None:
    """The classes the learner will know once its queued tasks ran must hold `label` and one more."""
    active = s.get(ModelVersion, learner.active_version_id) if learner.active_version_id else None
    known = list(active.classes) if active else []
    pending = s.scalars(
        select(Task)
        .where(Task.learner_id == learner.id, Task.state.in_(UNFINISHED_TASK))
        .order_by(Task.ordinal)
    )
    for task in pending:
        if task.kind == "forget":
            if label in task.classes:
                raise Conflict(f"class {label!r} is already being forgotten by task #{task.ordinal}")
            known = [c for c in known if c not in task.classes]
        else:
            known += task.classes
    if label not in known:
        forgotten = forgotten_by(s, learner, label)
        if forgotten is not None:
            raise Conflict(f"class {label!r} was already forgotten by task #{forgotten}")
        raise UnknownClass(
            f"learner {learner.name!r} has no class {label!r}; its classes are {sorted(known)[:20]}"
        )
    if known == [label]:
        raise Conflict(
            f"{label!r} is the only class learner {learner.name!r} knows; a learner keeps at least one "
            "class (delete the learner instead: DELETE /v1/learners/{name})"
        )


def forgotten_by(s: Session, learner: Learner, label: str) -> int | None:
    """The ordinal of the forget task that removed `label`, if one did."""
    if "\x00" in label:  # a NUL byte cannot reach PostgreSQL and no label holds one
        return None
    return s.scalar(
        select(Task.ordinal)
        .join(LearnedClass, LearnedClass.forgotten_by_task_id == Task.id)
        .where(LearnedClass.learner_id == learner.id, LearnedClass.name == label)
    )


@router.post("/{name}/classes/{label:path}/purge", dependencies=[AdminKey])
def purge_class(
    name: str,
    label: str,
    sessions: SessionsDep,
    store: StoreDep,
    classifiers: ClassifiersDep,
    grids: SampleGridsDep,
) -> dict[str, Any]:
    """Delete the files of every version that still holds `label` and mark it purged."""
    with sessions() as s:
        learner = get_learner(s, name)
        s.execute(select(Learner.id).where(Learner.id == learner.id).with_for_update())
        versions = s.scalars(
            select(ModelVersion).where(ModelVersion.learner_id == learner.id).order_by(ModelVersion.number)
        ).all()
        holding = [v for v in versions if label in v.classes]
        if not holding:
            raise UnknownClass(f"no version of learner {learner.name!r} holds a class {label!r}")
        for v, role in ((learner.active_version_id, "active"), (learner.candidate_version_id, "candidate")):
            blocking = next((h for h in holding if h.id == v), None)
            if blocking is not None:
                raise Conflict(
                    f"version {blocking.number} is the {role} version and holds class {label!r}; it can "
                    f"never be purged. Forget the class first (DELETE /v1/learners/{name}/classes/{label})"
                    + (" and end the rollout" if role == "candidate" else "")
                )
        todo = [v for v in holding if v.status != "purged"]
        now = utcnow()
        for v in todo:
            v.status, v.purged_at = "purged", now
        folders = [(v.id, v.number, v.checkpoint_uri.rsplit("/", 1)[0]) for v in todo]
        s.commit()  # rows first: a purged row whose files linger is harmless, the reverse is not
    for _, _, folder in folders:
        store.delete_tree(folder)
    forget_cached(classifiers, grids, [vid for vid, _, _ in folders])
    return {
        "learner": name,
        "label": label,
        "purged": [number for _, number, _ in folders],
        "already_purged": [v.number for v in holding if v not in todo],
    }


def forget_cached(classifiers: ClassifierCache, grids: SampleGrids, version_ids: list[int]) -> None:
    classifiers.evict(version_ids)
    grids.evict(version_ids)


@router.delete("/{name}", dependencies=[AdminKey])
def delete_learner(
    name: str,
    sessions: SessionsDep,
    store: StoreDep,
    classifiers: ClassifiersDep,
    grids: SampleGridsDep,
    force: bool = False,
) -> dict[str, Any]:
    """Every row (classes, tasks, jobs, versions, evaluations, the learner) and file of the learner."""
    with sessions() as s:
        learner = get_learner(s, name)
        # jobs before the learner: a publish holds its job's row while it inserts a version (which
        # needs the learner's row), so locking in this order waits for it instead of deadlocking
        jobs = s.scalars(select(Job).where(Job.learner_id == learner.id).with_for_update()).all()
        s.execute(select(Learner.id).where(Learner.id == learner.id).with_for_update())
        running = [j.id for j in jobs if j.state == JobState.RUNNING]
        if running and not force:
            raise Conflict(
                f"job {running[0]} of learner {name!r} is running; cancel it (POST /v1/jobs/{running[0]}/"
                "cancel) and wait for it to stop, or delete with ?force=true"
            )
        learner_id = learner.id
        counts, version_ids = delete_rows(s, learner)
        s.commit()
    store.delete_tree(f"learners/{learner_id}")
    forget_cached(classifiers, grids, version_ids)
    return {"learner": name, "deleted": counts, "force": force and bool(running)}


def delete_rows(s: Session, learner: Learner) -> tuple[dict[str, int], list[int]]:
    """Delete in foreign-key order; returns rows deleted per table and the version ids."""
    lid = learner.id
    version_ids = list(s.scalars(select(ModelVersion.id).where(ModelVersion.learner_id == lid)))
    s.execute(
        update(Learner).where(Learner.id == lid).values(active_version_id=None, candidate_version_id=None)
    )
    s.execute(update(ModelVersion).where(ModelVersion.learner_id == lid).values(parent_id=None))
    counts = {}
    for table, where in (
        (Evaluation, Evaluation.version_id.in_(version_ids)),
        (LearnedClass, LearnedClass.learner_id == lid),
        (ModelVersion, ModelVersion.learner_id == lid),
        (Job, Job.learner_id == lid),
        (Task, Task.learner_id == lid),
        (Learner, Learner.id == lid),
    ):
        stmt = delete(table).where(where).execution_options(synchronize_session=False)
        counts[table.__tablename__] = s.execute(stmt).rowcount
    return counts, version_ids
