"""One error hierarchy. The API turns each into `{"error": "<ClassName>", "detail": "<what to fix>"}`."""

from __future__ import annotations


class AppError(Exception):
    status_code = 500

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class InvalidInput(AppError):
    """The request is well-formed but its content cannot be used (shape, labels, values)."""

    status_code = 400


class InvalidParameter(AppError):
    """A parameter is out of range (top_k, holdout, hyper-parameters)."""

    status_code = 422


class CorruptFile(AppError):
    status_code = 400


class UnsafeArchive(AppError):
    status_code = 400


class PayloadTooLarge(AppError):
    status_code = 413


class TooManyRequests(AppError):
    status_code = 429


class NotFound(AppError):
    status_code = 404


class UnknownLearner(NotFound):
    pass


class UnknownVersion(NotFound):
    pass


class UnknownJob(NotFound):
    pass


class UnknownKey(NotFound):
    pass


class UnknownSession(NotFound):
    pass


class Conflict(AppError):
    status_code = 409


class LearnerExists(Conflict):
    pass


class JobStateConflict(Conflict):
    pass


class RolloutConflict(Conflict):
    """A rollout that cannot start, be promoted or be aborted as asked (service/routes/rollout.py)."""


class Gone(AppError):
    """The resource existed and was deliberately removed (a purged model version)."""

    status_code = 410


class VersionPurged(Gone):
    pass


class NotReady(AppError):
    """The learner has no model version yet, or its artifact cannot be served."""

    status_code = 409


class ArtifactCorrupt(AppError):
    status_code = 503


class ArtifactWriteFailed(AppError):
    """The artifact store cannot take a file: disk full, read-only or not a folder."""

    status_code = 507


class Unauthorized(AppError):
    status_code = 401


class Forbidden(AppError):
    status_code = 403
