"""The regression gate's database side for the training job: what to train from, and the verdict.

The decisions themselves are pure functions in core/gate.py; this module reads their inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import gate
from core.errors import UnknownLearner
from core.lifecycle import TaskState
from core.orm import Evaluation, Learner, ModelVersion, Task


@dataclass
class Scored:
    """The new version on one earlier task's holdout: the holdout's labels and the version's softmax
    scores (N x K, columns in the order of `classes`)."""

    labels: list[str]
    scores: np.ndarray
    classes: list[str]

    @property
    def accuracy(self) -> float:
        """Over every class the version knows: the accuracy matrix's entry."""
        return self.among(set(self.classes))[0]

    def among(self, known: set[str]) -> tuple[float, float]:
        """(accuracy when it may answer only the classes in `known`, share it answers outside them)."""
        return gate.among(self.labels, self.scores, self.classes, known)


def parent_version(s: Session, learner: Learner) -> ModelVersion | None:
    """The version a new task trains from: the active one, or the newest held one after it (core/gate.py)."""
    rows = s.execute(
        select(
            ModelVersion.id,
            ModelVersion.number,
            ModelVersion.parent_id,
            ModelVersion.status,
            ModelVersion.created_at,
        ).where(ModelVersion.learner_id == learner.id)
    ).all()
    active = s.get(ModelVersion, learner.active_version_id) if learner.active_version_id else None
    since = active.activated_at if active is not None else None
    vid = gate.train_from([gate.VersionRow(*r) for r in rows], learner.active_version_id, since)
    return s.get(ModelVersion, vid) if vid is not None else None


def verdict(
    s: Session,
    learner_id: int,
    task_id: int,
    scored: dict[int, Scored],
    fidelity: dict[str, float | None] | None,
) -> dict[str, Any]:
    """Gate the new version (its scores per task id, its fidelity) against the learner's active version.

    Read inside the publish transaction, so it compares with what serves at that moment (an admin may
    have activated another version while the job trained): the accuracy it compares is the new
    version's among that version's classes.
    """
    learner = s.get(Learner, learner_id)
    if learner is None:
        raise UnknownLearner(f"learner {learner_id} was deleted while its job trained; nothing to publish")
    tasks = s.execute(
        select(Task.id, Task.ordinal, Task.kind, Task.state, Task.n_holdout).where(
            Task.learner_id == learner_id
        )
    ).all()
    ordinal = {t.id: t.ordinal for t in tasks}
    this = next(t for t in tasks if t.id == task_id)
    active = s.get(ModelVersion, learner.active_version_id) if learner.active_version_id else None
    before = None
    if active is not None:
        rows = s.execute(
            select(Evaluation.task_id, Evaluation.accuracy).where(Evaluation.version_id == active.id)
        ).all()
        before = {ordinal[tid]: acc for tid, acc in rows if tid != task_id}
    no_holdout = [
        t.ordinal
        for t in tasks
        if t.kind == "learn" and t.state == TaskState.TRAINED and not t.n_holdout and t.ordinal < this.ordinal
    ]
    known = set(active.classes) if active is not None else set()
    among = {ordinal[tid]: held.among(known) for tid, held in scored.items() if tid != task_id}
    evidence = gate.Evidence(
        before=before,
        after={t: acc for t, (acc, _) in among.items()},
        to_new={t: share for t, (_, share) in among.items()},
        fidelity_before=(active.fidelity or {}) if active is not None else {},
        fidelity_after=fidelity or {},
        no_holdout=no_holdout,
        this_task=this.ordinal,
        this_task_holdout=bool(this.n_holdout) or this.kind != "learn",
    )
    return gate.decide(
        learner.auto_activate,
        evidence,
        learner.gate_max_drop,
        learner.gate_min_fidelity,
        max_to_new=learner.gate_max_to_new,
        max_task_drop=learner.gate_max_task_drop,
    )
