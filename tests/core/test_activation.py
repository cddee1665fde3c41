"""Activation (core/activation.py): the learner's active_version_id is the one record; `active` follows it."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from core.activation import activate
from core.orm import Base, Job, Learner, ModelVersion, Task


@pytest.fixture
def session():
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        yield s
    engine.dispose()


def version(learner: Learner, task: Task, number: int, status: str) -> ModelVersion:
    return ModelVersion(
        learner_id=learner.id, number=number, task_id=task.id, classes=["a"], checkpoint_uri="c",
        checkpoint_sha256="x", checkpoint_bytes=1, classifier_uri="k", classifier_sha256="y",
        classifier_bytes=1, parameters=1, widths={}, mask_usage={}, units_added={}, report={},
        train_seconds=0.0, status=status,
    )  # fmt: skip


def learner_with_versions(s: Session) -> tuple[Learner, ModelVersion, ModelVersion]:
    learner = Learner(name="l", image_shape=[1, 8, 8], variant="dgmw", preset="tiny", config={})
    s.add(learner)
    s.flush()
    task = Task(learner_id=learner.id, ordinal=1, classes=["a"], class_counts={}, n_train=1, source="t")
    s.add(task)
    s.flush()
    s.add(Job(task_id=task.id, learner_id=learner.id))
    v1, v2 = version(learner, task, 1, "published"), version(learner, task, 2, "held")
    s.add_all([v1, v2])
    s.commit()
    s.expire_all()  # loaded from the database from here on, as in the app
    return learner, v1, v2


def test_active_is_derived_from_the_learner(session: Session):
    learner, v1, v2 = learner_with_versions(session)
    assert not v1.active and not v2.active
    activate(session, learner.id, v1.id)
    assert learner.active_version_id == v1.id and v1.active and not v2.active
    assert v1.activated_at is not None


def test_activating_a_held_candidate_publishes_it_and_ends_the_rollout(session: Session):
    learner, v1, v2 = learner_with_versions(session)
    activate(session, learner.id, v1.id)
    learner.candidate_version_id, learner.rollout, learner.canary_percent = v2.id, "canary", 10.0
    session.commit()
    activate(session, learner.id, v2.id)
    assert (v2.status, v2.active, v1.active) == ("published", True, False)
    assert (learner.candidate_version_id, learner.rollout, learner.canary_percent) == (None, None, None)


def test_end_rollout_ends_a_rollout_of_another_candidate(session: Session):
    learner, v1, v2 = learner_with_versions(session)
    learner.candidate_version_id, learner.rollout = v2.id, "shadow"
    session.commit()
    activate(session, learner.id, v1.id)
    assert (learner.candidate_version_id, learner.rollout) == (v2.id, "shadow")  # not its candidate
    activate(session, learner.id, v1.id, end_rollout=True)
    assert (learner.candidate_version_id, learner.rollout, v2.status) == (None, None, "held")
