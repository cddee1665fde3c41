"""ORM tables. "model" means the network here, so the tables live in orm.py.

The database is the truth about jobs and versions; the broker only carries "look at job N".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every database (SQLite hands back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class Base(DeclarativeBase):
    pass


class Learner(Base):
    __tablename__ = "learners"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    image_shape: Mapped[list[int]] = mapped_column(JSON)  # [channels, height, width]
    variant: Mapped[str] = mapped_column(String(8))
    preset: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)  # the full LearnerConfig.to_dict()
    active_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", use_alter=True, name="fk_learners_active_version")
    )
    # regression gate (issue 11): what happens to a newly published version. gate: activate it only
    # if, on earlier tasks' holdouts and among the active version's classes, their mean accuracy drops
    # by at most gate_max_drop and no one task's by more than gate_max_task_drop against the active
    # version, no earlier task's holdout is answered with new classes for more than gate_max_to_new of
    # it, and every class's memory fidelity is at least gate_min_fidelity (core/gate.py); always; never.
    auto_activate: Mapped[str] = mapped_column(String(8), default="gate", server_default="gate")
    gate_max_drop: Mapped[float] = mapped_column(Float, default=0.05, server_default="0.05")
    gate_min_fidelity: Mapped[float] = mapped_column(Float, default=0.8, server_default="0.8")
    gate_max_task_drop: Mapped[float] = mapped_column(Float, default=0.4, server_default="0.4")
    gate_max_to_new: Mapped[float] = mapped_column(Float, default=0.5, server_default="0.5")
    # rollout (issue 11): a candidate version beside the active one. rollout "canary" answers
    # canary_percent of predict traffic from the candidate; "shadow" answers from the active version
    # and scores the candidate on the same images. NULL: no rollout.
    candidate_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", use_alter=True, name="fk_learners_candidate_version")
    )
    rollout: Mapped[str | None] = mapped_column(String(8))
    canary_percent: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LearnedClass(Base):
    """A class name the learner took in with a task, and its output index in that task's version.

    forgotten_by_task_id: the forget task that removed it (issue 11); the row stays for the history.
    """

    __tablename__ = "classes"
    __table_args__ = (UniqueConstraint("learner_id", "task_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    learner_id: Mapped[int] = mapped_column(ForeignKey("learners.id"), index=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    index: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    forgotten_by_task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"))


class Task(Base):
    """An uploaded batch of new classes. state: queued, training, trained, failed, cancelled (TaskState in
    core/lifecycle.py, which also holds every transition).

    kind "learn": an upload of new classes. kind "forget": a request to remove the classes in
    `classes` (issue 11), trained like any task into a new version, with no data and no holdout.
    """

    __tablename__ = "tasks"
    __table_args__ = (UniqueConstraint("learner_id", "ordinal"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    learner_id: Mapped[int] = mapped_column(ForeignKey("learners.id"), index=True)
    ordinal: Mapped[int] = mapped_column(Integer)  # upload order within the learner, from 1
    kind: Mapped[str] = mapped_column(String(16), default="learn", server_default="learn")
    state: Mapped[str] = mapped_column(String(16), default="queued")  # TaskState.QUEUED (core/lifecycle.py)
    classes: Mapped[list[str]] = mapped_column(JSON)
    class_counts: Mapped[dict[str, int]] = mapped_column(JSON)  # training samples per class
    n_train: Mapped[int] = mapped_column(Integer)
    n_holdout: Mapped[int] = mapped_column(Integer, default=0)
    source: Mapped[str] = mapped_column(String(255))  # uploaded file name
    data_uri: Mapped[str | None] = mapped_column(String(512))  # training data; cleared once trained
    holdout_uri: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    learner: Mapped[Learner] = relationship()
    job: Mapped[Job] = relationship(back_populates="task", uselist=False)


class Job(Base):
    """One training job per task. state: queued, running, succeeded, failed, cancelled (JobState in
    core/lifecycle.py, which also holds every transition)."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), unique=True)
    learner_id: Mapped[int] = mapped_column(ForeignKey("learners.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)  # JobState.QUEUED
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(255))
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    # set when the job succeeds: what the user should know about the result (core/fidelity.py)
    warnings: Mapped[list[str] | None] = mapped_column(JSON)
    # set when the job succeeds: structured outcome, e.g. {"gate": {...}} or {"removed": [...]}
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    task: Mapped[Task] = relationship(back_populates="job")


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("learner_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    learner_id: Mapped[int] = mapped_column(ForeignKey("learners.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))  # trained from
    classes: Mapped[list[str]] = mapped_column(JSON)  # class map: output index -> name
    checkpoint_uri: Mapped[str] = mapped_column(String(512))
    checkpoint_sha256: Mapped[str] = mapped_column(String(64))
    checkpoint_bytes: Mapped[int] = mapped_column(Integer)
    classifier_uri: Mapped[str] = mapped_column(String(512))
    classifier_sha256: Mapped[str] = mapped_column(String(64))
    classifier_bytes: Mapped[int] = mapped_column(Integer)
    parameters: Mapped[int] = mapped_column(Integer)
    widths: Mapped[dict[str, int]] = mapped_column(JSON)
    mask_usage: Mapped[dict[str, float]] = mapped_column(JSON)
    units_added: Mapped[dict[str, int]] = mapped_column(JSON)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)  # the full TaskReport
    # every known class -> memory fidelity (core/fidelity.py); NULL on versions older than the column
    fidelity: Mapped[dict[str, float | None] | None] = mapped_column(JSON)
    train_seconds: Mapped[float] = mapped_column(Float)
    # published: servable; held: the regression gate kept it from activation (hold_reasons says why);
    # purged: its files are deleted (a forgotten class), predicting with it answers 410
    status: Mapped[str] = mapped_column(String(16), default="published", server_default="published")
    hold_reasons: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    # when it last became the active version (publish or an admin's activation): a held version newer
    # than this is work the next task continues from; an older one was passed over (core/gate.py)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    removed_classes: Mapped[list[str] | None] = mapped_column(JSON)  # set on a forget task's version
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    # loaded with the version (one inner join), so reading `active` costs no query of its own
    learner: Mapped[Learner] = relationship(foreign_keys=[learner_id], lazy="joined", innerjoin=True)

    @property
    def active(self) -> bool:
        """Whether the learner serves this version. Derived: Learner.active_version_id is the one record
        of it, written only by core/activation.py."""
        return self.learner.active_version_id == self.id


class Evaluation(Base):
    """Accuracy of a version on one task's holdout: a cell of the accuracy matrix."""

    __tablename__ = "evaluations"
    __table_args__ = (UniqueConstraint("version_id", "task_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    accuracy: Mapped[float] = mapped_column(Float)
    samples: Mapped[int] = mapped_column(Integer)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), index=True)  # first characters, to find the row
    key_hash: Mapped[str] = mapped_column(String(64))  # sha256 hex of the whole key
    scopes: Mapped[list[str]] = mapped_column(JSON)
    # learner scope (issue 12): names the key reaches, an entry ending in "*" is a name prefix;
    # NULL: every learner
    learners: Mapped[list[str] | None] = mapped_column(JSON)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DashboardSession(Base):
    """A dashboard login (issue 12): the cookie carries a random id; only its sha256 is stored."""

    __tablename__ = "dashboard_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class WorkerHeartbeat(Base):
    """A training worker's liveness (issue 12): written every few seconds by the worker."""

    __tablename__ = "worker_heartbeats"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)  # hostname:pid, as in Job.worker
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    info: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # device, queues, current job
