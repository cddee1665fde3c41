"""Lookups and read models shared by the routes (404s in one place, not in every route)."""

from __future__ import annotations

from typing import Any

from celery import Celery
from sqlalchemy import or_, select, text
from sqlalchemy.orm import Session, sessionmaker

from core.errors import UnknownJob, UnknownLearner, UnknownVersion
from core.fidelity import rounded
from core.keys import Principal
from core.lifecycle import JobState
from core.liveness import state_detail, workers
from core.orm import Evaluation, Job, Learner, ModelVersion, Task
from core.schemas import JobRead, LearnerRead, RolloutRead, TaskRead, VersionRead
from core.settings import Settings
from core.storage import ArtifactStore


def unknown_learner(name: str) -> UnknownLearner:
    """The 404 of a learner that does not exist, also answered for one out of the key's reach."""
    return UnknownLearner(f"no learner named {name!r}; list them with GET /v1/learners or create it first")


def unknown_job(job_id: int) -> UnknownJob:
    return UnknownJob(f"no job {job_id}; the upload response names its job")


def get_learner(session: Session, name: str) -> Learner:
    # A NUL byte cannot reach PostgreSQL (psycopg2 raises); no learner name holds one, so it is unknown.
    learner = None if "\x00" in name else session.scalar(select(Learner).where(Learner.name == name))
    if learner is None:
        raise unknown_learner(name)
    return learner


def learner_named(sessions: sessionmaker[Session], name: str) -> Learner:
    """`get_learner` in a short session of its own, for routes that work in the thread pool."""
    with sessions() as s:
        return get_learner(s, name)


def reachable(session: Session, who: Principal) -> list[Learner]:
    """The learners `who` reaches, oldest first."""
    query = select(Learner).order_by(Learner.id)
    if who.learners is not None:
        exact = [e for e in who.learners if not e.endswith("*")]
        prefixes = [e[:-1] for e in who.learners if e.endswith("*")]
        query = query.where(
            or_(Learner.name.in_(exact), *(Learner.name.startswith(p, autoescape=True) for p in prefixes))
        )
    return list(session.scalars(query))


def get_version(session: Session, learner: Learner, number: int | None) -> ModelVersion:
    """Version `number`, or the active one when None."""
    if number is None:
        if learner.active_version_id is None:
            from core.errors import NotReady

            raise NotReady(
                f"learner {learner.name!r} has no model version yet; upload a task and wait for its job"
            )
        version = session.get(ModelVersion, learner.active_version_id)
    else:
        version = session.scalar(
            select(ModelVersion).where(ModelVersion.learner_id == learner.id, ModelVersion.number == number)
        )
    if version is None:
        known = session.scalars(
            select(ModelVersion.number).where(ModelVersion.learner_id == learner.id)
        ).all()
        raise UnknownVersion(
            f"learner {learner.name!r} has no version {number}; its versions are {list(known)}"
        )
    return version


def learner_read(session: Session, learner: Learner) -> LearnerRead:
    active = session.get(ModelVersion, learner.active_version_id) if learner.active_version_id else None
    states = set(session.scalars(select(Job.state).where(Job.learner_id == learner.id)))
    status = "training" if JobState.RUNNING in states else "queued" if JobState.QUEUED in states else None
    out = LearnerRead.model_validate(learner)
    out.classes = list(active.classes) if active else []
    out.active_version = active.number if active else None
    out.status = status or ("ready" if active else "empty")
    out.held_versions = list(
        session.scalars(
            select(ModelVersion.number)
            .where(ModelVersion.learner_id == learner.id, ModelVersion.status == "held")
            .order_by(ModelVersion.number)
        )
    )
    out.rollout = rollout_read(session, learner)
    return out


def rollout_read(session: Session, learner: Learner) -> RolloutRead | None:
    if learner.rollout is None or learner.candidate_version_id is None:
        return None
    candidate = session.get(ModelVersion, learner.candidate_version_id)
    percent = learner.canary_percent if learner.rollout == "canary" else None
    return RolloutRead(
        mode=learner.rollout,
        candidate_version=candidate.number,
        percent=None if percent is None else round(percent),
    )


def job_read(settings: Settings, session: Session, job: Job) -> JobRead:
    """The job with its state detail: why it waits (no live worker, an earlier task) or who runs it."""
    detail = state_detail(session, settings, job)
    return JobRead.model_validate(job).model_copy(update={"state_detail": detail})


def task_read(task: Task) -> TaskRead:
    out = TaskRead.model_validate(task)
    out.training_data_kept = task.data_uri is not None
    out.job_id = task.job.id if task.job else None
    return out


def tasks_of(session: Session, learner: Learner) -> list[Task]:
    return list(session.scalars(select(Task).where(Task.learner_id == learner.id).order_by(Task.ordinal)))


def versions_read(session: Session, learner: Learner) -> list[VersionRead]:
    versions = session.scalars(
        select(ModelVersion).where(ModelVersion.learner_id == learner.id).order_by(ModelVersion.number)
    ).all()
    ordinals = dict(session.execute(select(Task.id, Task.ordinal).where(Task.learner_id == learner.id)).all())
    numbers = {v.id: v.number for v in versions}
    evals = session.scalars(select(Evaluation).where(Evaluation.version_id.in_(list(numbers)))).all()
    out = []
    for v in versions:
        r = VersionRead.model_validate(v)
        r.task_ordinal = ordinals.get(v.task_id)
        r.trained_from = numbers.get(v.parent_id) if v.parent_id else None
        r.accuracy = {str(ordinals[e.task_id]): round(e.accuracy, 4) for e in evals if e.version_id == v.id}
        r.fidelity = rounded(v.fidelity)
        out.append(r)
    return out


def history(session: Session, learner: Learner) -> dict[str, Any]:
    tasks = tasks_of(session, learner)
    versions = versions_read(session, learner)
    jobs = session.scalars(select(Job).where(Job.learner_id == learner.id).order_by(Job.id)).all()
    ordinals = [t.ordinal for t in tasks if t.n_holdout]
    return {
        "learner": learner_read(session, learner),
        "tasks": [task_read(t) for t in tasks],
        "jobs": [JobRead.model_validate(j) for j in jobs],
        "versions": versions,
        "expansions": [
            {
                "version": v.number,
                "task": v.task_ordinal,
                "units_added": v.units_added,
                "widths": v.widths,
                "parameters": v.parameters,
                "mask_usage": v.mask_usage,
            }
            for v in versions
        ],
        "accuracy_matrix": {
            "tasks": ordinals,
            "rows": [
                {"version": v.number, "accuracy": [v.accuracy.get(str(o)) for o in ordinals]}
                for v in versions
            ],
        },
    }


def readiness(
    settings: Settings, sessions: sessionmaker[Session], celery: Celery, store: ArtifactStore
) -> tuple[dict[str, Any], bool]:
    """The readiness report of /readyz and v2's /health/ready: database, broker and artifact store, and
    (for people and monitors, not readiness) how many workers are alive. Returns (report, ready)."""
    checks: dict[str, str] = {}
    probes = (
        ("database", lambda: _probe_database(sessions)),
        ("broker", lambda: _probe_broker(celery)),
        ("artifact_store", store.ready),
    )
    for name, probe in probes:
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready; say which and why
            checks[name] = f"{type(exc).__name__}: {exc}"
    ok = all(v == "ok" for v in checks.values())
    body: dict = {"ready": ok, "checks": checks, "workers_alive": None, "training": "unknown: no database"}
    if checks["database"] == "ok":
        with sessions() as s:
            live = workers(s, settings, settings.queue)
        body.update(workers_alive=live.alive, training=live.training())
    return body, ok


def _probe_database(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        s.execute(text("SELECT 1"))


def _probe_broker(celery: Celery) -> None:
    with celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
