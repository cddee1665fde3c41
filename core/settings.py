"""Deployment settings: one validated object, read from `DGM_*` environment variables.

Embedded default (no env vars): SQLite and a filesystem broker under `./var`, artifacts in
`./var/artifacts`. Distributed: set DGM_DATABASE_URL, DGM_BROKER_URL and DGM_ARTIFACT_DIR.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DGM_", extra="ignore")

    data_dir: Path = Path("var")
    database_url: str = ""  # default: sqlite file under data_dir
    broker_url: str = ""  # default: kombu filesystem transport under data_dir
    artifact_dir: Path | None = None  # default: data_dir / "artifacts"
    queue: str = "dgm"
    admin_key: SecretStr | None = None  # bootstrap admin key; create others with `dgm keys create`
    session_ttl_s: int = Field(8 * 3600, ge=1)  # a dashboard sign-in lasts this long (DGM_SESSION_TTL_S)

    max_upload_bytes: int = Field(200 * 2**20, ge=1024)
    max_uncompressed_bytes: int = Field(1024 * 2**20, ge=1024)  # bound on a zip/npz's unpacked size
    max_zip_entries: int = Field(200_000, ge=1)
    max_json_bytes: int = Field(1 * 2**20, ge=1024)  # body limit of every route but uploads and predict
    # Quotas per API key in the `limits` notation ("600/minute", "100 per 10 seconds"); "": none.
    predict_limit: str = ""  # images predicted (v1 predict and v2 infer): 32 images cost 32
    upload_limit: str = ""  # task uploads, 1 each
    # Where quotas are counted: "" is the broker when it is redis:// (replicas share one quota), else
    # memory:// (embedded: one API process).
    rate_limit_storage: str = Field("", pattern=r"^(memory://|(rediss?|redis\+unix)://.+)?$")
    predict_rate_per_s: float = 0.0  # replaced by predict_limit; set, it stops the start with a hint
    max_predict_images: int = Field(1024, ge=1)
    min_samples_per_class: int = Field(4, ge=1)  # the learner's own minimum applies too
    max_holdout: float = Field(0.5, gt=0, lt=1)

    keep_training_data: bool = False  # retention: keep a task's training data after it is trained
    classifier_cache_size: int = Field(8, ge=1)
    torch_threads: int = Field(0, ge=0)  # training threads in the worker; 0: torch's default
    # Inference threads in the API. One per request is fastest for these small networks, and on a
    # busy machine several OpenMP threads per forward pass wait on each other (80 ms instead of 1 ms).
    api_torch_threads: int = Field(1, ge=0)
    device: str | None = None  # training device; None: cuda if available
    # Device of the served classifiers (predict, v2 infer, sample grids). `auto`: the GPU when torch sees
    # one, else the CPU; `cuda` on a machine without a GPU stops the API at start instead of at a request.
    serve_device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$")

    progress_interval_s: float = Field(1.0, ge=0)  # throttle for progress writes and cancel checks
    # A running job's lease. The worker renews it every lease_s / 3 from a thread while the job runs
    # (and with every progress write), so a short lease only bounds how soon a dead worker's job is
    # free again: the sweeper re-sends it at most lease_s + sweep_interval_s after the kill.
    lease_s: int = Field(30, ge=5)
    # A job that is not its learner's turn looks again after as long as it has already waited (doubling),
    # at least requeue_countdown_s and at most requeue_max_s (and half of stuck_after_s, so the
    # sweeper never mistakes a waiting job for a lost one). The earlier job's end starts it at once.
    requeue_countdown_s: float = Field(3.0, ge=0)
    requeue_max_s: float = Field(60.0, ge=0)
    sweep_interval_s: float = Field(10.0, ge=0)  # the sweeper thread in the API; 0 turns it off
    stuck_after_s: float = Field(120.0, ge=1)  # a queued job untouched this long is re-enqueued
    heartbeat_s: float = Field(5.0, gt=0)  # a worker writes its heartbeat row this often
    worker_alive_s: float = Field(30.0, gt=0)  # a worker seen within this window counts as alive
    # `dgm serve` restarts its embedded worker when it exits: after this delay, doubling up to
    # worker_restart_max_s while it keeps exiting within a minute of its start.
    worker_restart_s: float = Field(1.0, ge=0)
    worker_restart_max_s: float = Field(60.0, ge=0)
    visibility_timeout_s: int = Field(6 * 3600, ge=60)  # Redis: above the longest training
    log_json: bool = False  # DGM_LOG_JSON=1: API and worker log one JSON object per line
    # /metrics needs an admin key (its labels name every learner); true: open, for a private network
    metrics_public: bool = False

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        data = self.data_dir.resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{data / 'dgm.db'}"
        if not self.broker_url:
            self.broker_url = "filesystem://"
        if self.artifact_dir is None:
            self.artifact_dir = data / "artifacts"
        if self.predict_rate_per_s:
            raise ValueError(
                "DGM_PREDICT_RATE_PER_S and DGM_PREDICT_BURST are replaced by DGM_PREDICT_LIMIT, images per "
                "API key in a window shared by every API process, e.g. DGM_PREDICT_LIMIT=600/minute"
            )
        if not self.database_url.split(":", 1)[0].startswith(("sqlite", "postgresql")):
            raise ValueError(
                f"DGM_DATABASE_URL must be sqlite:/// or postgresql+psycopg2://, got {self.database_url!r}"
            )
        return self

    @field_validator("predict_limit", "upload_limit")
    @classmethod
    def _quota(cls, text: str, info: ValidationInfo) -> str:
        from limits import parse

        text = text.strip()
        try:
            if text:
                parse(text)
        except ValueError:
            name = f"DGM_{str(info.field_name).upper()}"
            raise ValueError(
                f"{name} must read like '600/minute' or '100 per 10 seconds', not {text!r}"
            ) from None
        return text

    @property
    def rate_limit_uri(self) -> str:
        """Where the quotas are counted (see rate_limit_storage)."""
        if self.rate_limit_storage:
            return self.rate_limit_storage
        return self.broker_url if self.broker_url.startswith(("redis://", "rediss://")) else "memory://"

    @property
    def artifacts(self) -> Path:
        assert self.artifact_dir is not None
        return self.artifact_dir

    @property
    def broker_dir(self) -> Path:
        """Folder of the filesystem broker (embedded mode)."""
        return self.data_dir.resolve() / "broker"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; fails fast on bad configuration."""
    return Settings()
