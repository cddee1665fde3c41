"""Canary and shadow rollout of a candidate version (admin): start, promote, abort.

How predict requests are then split or shadowed is in service/rollout.py.
"""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.orm import Session

from core.errors import InvalidParameter, NotReady, RolloutConflict
from core.orm import Learner, ModelVersion
from core.schemas import LearnerRead, RolloutCreate
from service.deps import AdminKey, CanarySplitDep, ClassifiersDep, SessionDep
from service.versions import activate
from service.views import get_learner, get_version, learner_read

router = APIRouter(prefix="/v1/learners", tags=["rollout"])


@router.post("/{name}/rollout", response_model=LearnerRead, dependencies=[AdminKey])
def start_rollout(
    name: str, body: RolloutCreate, session: SessionDep, classifiers: ClassifiersDep, split: CanarySplitDep
) -> LearnerRead:
    """Put version `version` beside the active one, as a canary (`percent` of requests) or a shadow.

    Replaces a rollout in progress. The candidate may be held by the regression gate (that is what a
    canary is for), not purged, and not the active version."""
    learner = get_learner(session, name)
    if body.mode == "canary" and body.percent is None:
        raise InvalidParameter("a canary needs percent: the candidate's share of requests, 0..100")
    if body.mode == "shadow" and body.percent is not None:
        raise InvalidParameter("percent applies to a canary only; a shadow sees every request, leave it out")
    if learner.active_version_id is None:
        raise NotReady(f"learner {name!r} has no active version to roll out beside; activate one first")
    version = get_version(session, learner, body.version)
    servable(version)
    if version.id == learner.active_version_id:
        raise RolloutConflict(
            f"version {version.number} is already active; name another version as the candidate"
        )
    classifiers.get(version)  # a damaged candidate answers 503 now, not at predict time
    learner.candidate_version_id = version.id
    learner.rollout = body.mode
    learner.canary_percent = float(body.percent) if body.mode == "canary" else None
    session.commit()
    split.restart(learner.id)
    return learner_read(session, learner)


@router.post("/{name}/rollout/promote", response_model=LearnerRead, dependencies=[AdminKey])
def promote_rollout(name: str, session: SessionDep) -> LearnerRead:
    """The candidate becomes the active version (as POST .../versions/N/activate) and the rollout ends."""
    learner = get_learner(session, name)
    candidate = current_candidate(session, learner, "promote")
    servable(candidate)
    activate(session, learner, candidate)
    session.commit()
    return learner_read(session, learner)


@router.post("/{name}/rollout/abort", response_model=LearnerRead, dependencies=[AdminKey])
def abort_rollout(name: str, session: SessionDep) -> LearnerRead:
    """End the rollout: the active version answers every request again. Nothing else changes."""
    learner = get_learner(session, name)
    current_candidate(session, learner, "abort")
    learner.candidate_version_id = learner.rollout = learner.canary_percent = None
    session.commit()
    return learner_read(session, learner)


def current_candidate(session: Session, learner: Learner, action: str) -> ModelVersion:
    candidate = session.get(ModelVersion, learner.candidate_version_id) if learner.rollout else None
    if candidate is None:
        raise RolloutConflict(
            f"learner {learner.name!r} has no rollout to {action}; start one with POST "
            f"/v1/learners/{learner.name}/rollout"
        )
    return candidate


def servable(version: ModelVersion) -> None:
    if version.status == "purged":
        raise RolloutConflict(
            f"version {version.number} is purged (its files were deleted when a class was forgotten) and "
            "cannot serve; name a published or held version"
        )
