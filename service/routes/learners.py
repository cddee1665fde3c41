"""Learners: create, list, read, and the admin history."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.errors import InvalidParameter, LearnerExists
from core.orm import Learner
from core.schemas import HistoryRead, LearnerCreate, LearnerRead
from service.deps import AnyKey, SessionDep, TrainKey
from service.views import get_learner, history, learner_read

router = APIRouter(prefix="/v1/learners", tags=["learners"])


def build_config(body: LearnerCreate) -> dict:
    """Validate the preset and overrides through the library's own LearnerConfig."""
    from dgm.config import LearnerConfig
    from dgm.errors import DGMInputError

    clash = sorted({"image_shape", "variant"} & set(body.hyperparameters))
    if clash:
        raise InvalidParameter(f"set {clash} as top-level fields, not in hyperparameters")
    try:
        cfg = LearnerConfig.preset(
            body.preset, image_shape=body.image_shape, variant=body.variant, **body.hyperparameters
        )
    except DGMInputError as exc:
        raise InvalidParameter(str(exc)) from exc
    return cfg.to_dict()


@router.post("", status_code=201, response_model=LearnerRead, dependencies=[TrainKey])
def create_learner(body: LearnerCreate, session: SessionDep) -> LearnerRead:
    if session.scalar(select(Learner.id).where(Learner.name == body.name)) is not None:
        raise LearnerExists(f"a learner named {body.name!r} exists; pick another name")
    config = build_config(body)
    learner = Learner(
        name=body.name,
        image_shape=list(body.image_shape),
        variant=body.variant,
        preset=body.preset,
        config=config,
    )
    session.add(learner)
    try:
        session.commit()
    except IntegrityError as exc:
        raise LearnerExists(f"a learner named {body.name!r} exists; pick another name") from exc
    return learner_read(session, learner)


@router.get("", response_model=list[LearnerRead], dependencies=[AnyKey])
def list_learners(session: SessionDep) -> list[LearnerRead]:
    return [learner_read(session, lr) for lr in session.scalars(select(Learner).order_by(Learner.id))]


@router.get("/{name}", response_model=LearnerRead, dependencies=[AnyKey])
def read_learner(name: str, session: SessionDep) -> LearnerRead:
    return learner_read(session, get_learner(session, name))


@router.get("/{name}/history", response_model=HistoryRead, dependencies=[AnyKey])
def learner_history(name: str, session: SessionDep) -> dict:
    return history(session, get_learner(session, name))
