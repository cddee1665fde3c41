"""Pydantic schemas shared by the API and the CLI: `XCreate` in, `XRead` out."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.fidelity import WARN_BELOW


class ORMRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)


AUTO_ACTIVATE = (
    "what happens to a newly published version: gate (activate it only if, on earlier tasks' holdouts "
    "and among the active version's classes, their mean accuracy drops by at most gate_max_drop and no "
    "one task's by more than gate_max_task_drop against the active version, no earlier task's holdout "
    "is answered with new classes for more than gate_max_to_new of it, and no class's memory fidelity "
    "falls below gate_min_fidelity; otherwise it is held), always, or never (an admin activates it)"
)
GATE_MAX_DROP = (
    "the largest absolute drop of the earlier tasks' mean holdout accuracy, among the active version's "
    "classes, that the gate lets through"
)
GATE_MAX_TASK_DROP = (
    "the largest absolute accuracy drop on any one earlier task's holdout, among the active version's "
    "classes, that the gate lets through (one task moves more than the mean where its classes border "
    "others')"
)
GATE_MAX_TO_NEW = (
    "the largest share of an earlier task's holdout that the new version may answer with classes the "
    "active version does not know (a classifier that forgot answers nearly all of it so)"
)
GATE_MIN_FIDELITY = "the lowest memory fidelity of a class that the gate lets through"


class LearnerCreate(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", examples=["fashion"])
    image_shape: tuple[int, int, int] = Field(examples=[[1, 28, 28]], description="(channels, height, width)")
    variant: Literal["dgmw", "dgma"] = "dgmw"
    preset: Literal["tiny", "small", "paper"] = "small"
    hyperparameters: dict[str, Any] = Field(default_factory=dict, examples=[{"epochs": 3}])
    auto_activate: Literal["gate", "always", "never"] = Field(default="gate", description=AUTO_ACTIVATE)
    gate_max_drop: float = Field(default=0.05, ge=0, le=1, description=GATE_MAX_DROP)
    gate_min_fidelity: float = Field(default=0.8, ge=0, le=1, description=GATE_MIN_FIDELITY)
    gate_max_task_drop: float = Field(default=0.4, ge=0, le=1, description=GATE_MAX_TASK_DROP)
    gate_max_to_new: float = Field(default=0.5, ge=0, le=1, description=GATE_MAX_TO_NEW)


class LearnerUpdate(BaseModel):
    """PATCH /v1/learners/{name}: the activation policy and the gate's thresholds; omitted fields stay."""

    model_config = ConfigDict(extra="forbid")

    auto_activate: Literal["gate", "always", "never"] | None = Field(default=None, description=AUTO_ACTIVATE)
    gate_max_drop: float | None = Field(default=None, ge=0, le=1, description=GATE_MAX_DROP)
    gate_min_fidelity: float | None = Field(default=None, ge=0, le=1, description=GATE_MIN_FIDELITY)
    gate_max_task_drop: float | None = Field(default=None, ge=0, le=1, description=GATE_MAX_TASK_DROP)
    gate_max_to_new: float | None = Field(default=None, ge=0, le=1, description=GATE_MAX_TO_NEW)


class RolloutCreate(BaseModel):
    version: int = Field(description="the candidate: a published or held version other than the active one")
    mode: Literal["canary", "shadow"] = Field(
        description="canary: `percent` of predict requests are answered by the candidate; shadow: the "
        "active version answers and the candidate is scored on the same images"
    )
    percent: int | None = Field(
        default=None, ge=0, le=100, description="canary only: the candidate's share of requests, 0..100"
    )


class RolloutRead(BaseModel):
    mode: str
    candidate_version: int
    percent: int | None = None  # canary only


class LearnerRead(ORMRead):
    id: int
    name: str
    image_shape: list[int]
    variant: str
    preset: str
    config: dict[str, Any]
    classes: list[str] = []
    active_version: int | None = None
    status: str = "empty"  # empty (nothing learned), training, ready
    auto_activate: str = "gate"
    gate_max_drop: float = 0.05
    gate_min_fidelity: float = 0.8
    gate_max_task_drop: float = 0.4
    gate_max_to_new: float = 0.5
    held_versions: list[int] = []  # versions the gate (or the policy never) kept from activation
    rollout: RolloutRead | None = None  # a candidate version beside the active one (service/rollout.py)
    created_at: datetime

    @field_validator("rollout", mode="before")
    @classmethod
    def _not_the_column(cls, v: Any) -> Any:
        return None if isinstance(v, str) else v  # Learner.rollout holds only the mode; learner_read fills it


class TaskRead(ORMRead):
    id: int
    ordinal: int
    state: str
    classes: list[str]
    class_counts: dict[str, int]
    n_train: int
    n_holdout: int
    source: str
    kind: str = Field(
        default="learn",
        description="learn: an upload of new classes; forget: a request to remove the class in `classes` "
        "(DELETE /v1/learners/{name}/classes/{label})",
    )
    training_data_kept: bool = False
    job_id: int | None = None
    created_at: datetime


class JobRead(ORMRead):
    id: int
    task_id: int
    learner_id: int
    state: str
    progress: dict[str, Any] | None
    attempts: int
    worker: str | None
    error: str | None
    warnings: list[str] = Field(
        default_factory=list,
        description="set when the job succeeds: one warning per class of its task whose memory fidelity "
        f"is below {WARN_BELOW}",
    )
    result: dict[str, Any] | None = Field(
        default=None,
        description='set when the job succeeds: {"gate": {"policy", "decision" (activated, held or '
        'not_activated), "gated", "reasons", "note"}} (core/gate.py); a forget task\'s job: {"removed": '
        '{"label", "learned_by_task", "heads_removed", "task_released", "mask_units_released"}}',
    )
    cancel_requested: bool
    state_detail: str | None = Field(
        default=None,
        description="GET /v1/jobs/{id} and the dashboard: why a queued job has not started ('waiting: no "
        "live worker since ...', 'waiting for task #2 of the learner ...', 'waiting for a free worker'), or "
        "which worker runs it; null for finished jobs",
    )
    enqueued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    created_at: datetime

    @field_validator("warnings", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return [] if v is None else v  # NULL until the job succeeds (and on jobs older than the column)


class UploadAccepted(BaseModel):
    task: TaskRead
    job: JobRead
    urls: dict[str, str]


class VersionRead(ORMRead):
    number: int
    task_id: int
    task_ordinal: int | None = None
    trained_from: int | None = None  # version number this one continued from
    classes: list[str]
    parameters: int
    widths: dict[str, int]
    mask_usage: dict[str, float]
    units_added: dict[str, int]
    checkpoint_uri: str
    checkpoint_sha256: str
    checkpoint_bytes: int
    classifier_uri: str
    classifier_sha256: str
    classifier_bytes: int
    train_seconds: float
    accuracy: dict[str, float] = {}  # task ordinal -> accuracy on its holdout
    fidelity: dict[str, float | None] | None = Field(
        default=None,
        description="every class the version knows -> memory fidelity: the fraction of its generated "
        "samples that a classifier trained on its task's real images assigns to it (for a one-class task: "
        "trained against real held-out images of the classes learned before it, and relative to its rate "
        "on real images of the class). null for a class not measured (a one-class task without earlier "
        "holdouts or fidelity_min_images images, or fidelity off); null as a whole for versions "
        "published before it was kept",
    )
    active: bool
    status: str = Field(
        default="published",
        description="published; held: the regression gate (or the policy never) kept it from activation, "
        "hold_reasons says why, an admin may still activate it; purged: its files were deleted because it "
        "held a forgotten class (POST /v1/learners/{name}/classes/{label}/purge), predicting with it "
        "answers 410",
    )
    removed_classes: list[str] | None = Field(
        default=None, description="set on the version a forget task made: the classes it no longer has"
    )
    purged_at: datetime | None = None
    hold_reasons: list[dict[str, Any]] | None = Field(
        default=None,
        description='why it was held: {"tasks": [ordinals], "before": mean accuracy, "after": mean '
        'accuracy} (earlier tasks\' mean, among the active version\'s classes), {"task": ordinal, "before": '
        'accuracy, "after": accuracy} (one task), {"task": ordinal, "to_new": share} (answered with new '
        'classes), {"class": name, "fidelity": value} or {"policy": "never"}; kept after an admin '
        "activates it",
    )
    created_at: datetime


class Prediction(BaseModel):
    label: str
    score: float
    top_k: list[tuple[str, float]]


class PredictRequest(BaseModel):
    images: list[Any] = Field(
        description="each image: nested arrays (H x W, H x W x C or C x H x W; uint8 or float in [0, 1]) "
        "or a base64 PNG/JPEG string (a data: URL works too)",
        min_length=1,
    )
    top_k: int = 1
    version: int | None = None


class PredictResponse(BaseModel):
    learner: str
    version: int = Field(description="the version that answered")
    served_by: Literal["active", "candidate", "pinned"] = Field(
        default="active",
        description="why that version answered: the active one, a canary's candidate, or the version the "
        "request pinned (?version= or the body's version)",
    )
    shadow_version: int | None = Field(
        default=None, description="a shadow rollout's candidate, scored on the same images (not returned)"
    )
    classes: list[str]
    predictions: list[Prediction]


class HistoryRead(BaseModel):
    learner: LearnerRead
    tasks: list[TaskRead]
    jobs: list[JobRead]
    versions: list[VersionRead]
    expansions: list[dict[str, Any]]
    accuracy_matrix: dict[str, Any]


class KeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[Literal["predict", "train", "admin"]] = Field(min_length=1)
    learners: list[str] | None = Field(
        None,
        examples=[["fashion", "team-a-*"]],
        description="learner names, or name prefixes ending in '*', that the key reaches; omit for all",
    )


class KeyRead(ORMRead):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    learners: list[str] | None = None  # None: every learner
    revoked: bool
    created_at: datetime


class KeyCreated(KeyRead):
    key: str = Field(description="shown once; store it now")


class SessionRead(ORMRead):
    """A dashboard sign-in (never its token)."""

    id: int
    key_id: int
    key_name: str = ""
    created_at: datetime
    expires_at: datetime
    revoked: bool
    active: bool = False  # neither revoked nor expired, and its key not revoked
