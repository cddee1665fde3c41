"""Learners: create, list, read, and the admin history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.errors import Forbidden, InvalidParameter, LearnerExists
from core.keys import Principal
from core.orm import Learner
from core.schemas import HistoryRead, LearnerCreate, LearnerRead, LearnerUpdate
from service.deps import AdminKey, AnyKey, Caller, SessionDep, TrainKey
from service.views import get_learner, history, learner_read, reachable

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


@router.post("", status_code=201, response_model=LearnerRead)
def create_learner(
    body: LearnerCreate, session: SessionDep, who: Annotated[Principal, TrainKey]
) -> LearnerRead:
    if not who.reaches(body.name):  # before the name check: a scoped key learns nothing outside its scope
        raise Forbidden(
            f"this API key reaches only the learners {who.describe()}; "
            f"{body.name!r} is outside that scope, so pick a name inside it"
        )
    if session.scalar(select(Learner.id).where(Learner.name == body.name)) is not None:
        raise LearnerExists(f"a learner named {body.name!r} exists; pick another name")
    config = build_config(body)
    learner = Learner(
        name=body.name,
        image_shape=list(body.image_shape),
        variant=body.variant,
        preset=body.preset,
        config=config,
        auto_activate=body.auto_activate,
        gate_max_drop=body.gate_max_drop,
        gate_min_fidelity=body.gate_min_fidelity,
        gate_max_task_drop=body.gate_max_task_drop,
        gate_max_to_new=body.gate_max_to_new,
    )
    session.add(learner)
    try:
        session.commit()
    except IntegrityError as exc:
        raise LearnerExists(f"a learner named {body.name!r} exists; pick another name") from exc
    return learner_read(session, learner)


@router.get("", response_model=list[LearnerRead])
def list_learners(session: SessionDep, who: Caller) -> list[LearnerRead]:
    """The learners this key reaches."""
    return [learner_read(session, lr) for lr in reachable(session, who)]


@router.get("/{name}", response_model=LearnerRead, dependencies=[AnyKey])
def read_learner(name: str, session: SessionDep) -> LearnerRead:
    return learner_read(session, get_learner(session, name))


@router.patch("/{name}", response_model=LearnerRead, dependencies=[AdminKey])
def update_learner(name: str, body: LearnerUpdate, session: SessionDep) -> LearnerRead:
    """Change the activation policy or the regression gate's thresholds; they apply from the next job."""
    learner = get_learner(session, name)
    given = body.model_dump(exclude_unset=True)
    if not given:
        raise InvalidParameter(f"nothing to change: send any of {sorted(LearnerUpdate.model_fields)}")
    nulls = sorted(k for k, v in given.items() if v is None)
    if nulls:
        raise InvalidParameter(f"{nulls} cannot be null; leave a field out to keep its value")
    for field, value in given.items():
        setattr(learner, field, value)
    session.commit()
    return learner_read(session, learner)


@router.get("/{name}/history", response_model=HistoryRead, dependencies=[AnyKey])
def learner_history(name: str, session: SessionDep) -> dict:
    return history(session, get_learner(session, name))
