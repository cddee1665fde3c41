"""Activation: the one writer of which version a learner serves.

Learner.active_version_id is the only record of it; ModelVersion.active is derived from it (core/orm.py).
Three callers make a version active, all through `activate`: an admin (POST .../versions/{n}/activate
and .../rollout/promote, service/routes/versions.py), the training job's publish when the regression
gate passes (worker/train.py), and the forget job's publish (worker/forget.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.orm import Learner, ModelVersion, utcnow


def activate(
    s: Session, learner_id: int, version_id: int, *, end_rollout: bool = False, at: datetime | None = None
) -> None:
    """Make version `version_id` the one learner `learner_id` serves; the caller commits.

    A held version becomes published (its hold_reasons stay, for the history) and its activated_at is
    `at` (default: now). A rollout ends when its candidate is this version (it is now simply the active
    one) or when `end_rollout` asks for it.
    """
    values: dict[str, Any] = {"activated_at": at or utcnow()}
    if s.scalar(select(ModelVersion.status).where(ModelVersion.id == version_id)) == "held":
        values["status"] = "published"
    s.execute(update(ModelVersion).where(ModelVersion.id == version_id).values(**values))
    learner: dict[str, Any] = {"active_version_id": version_id}
    candidate = s.scalar(select(Learner.candidate_version_id).where(Learner.id == learner_id))
    if end_rollout or candidate == version_id:
        learner |= {"candidate_version_id": None, "rollout": None, "canary_percent": None}
    s.execute(update(Learner).where(Learner.id == learner_id).values(**learner))
