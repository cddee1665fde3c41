"""Canary and shadow rollout: which version answers a predict request, and how the shadow is scored.

A learner may hold a candidate version beside its active one (Learner.candidate_version_id, .rollout,
.canary_percent); both predict routes (v1 and v2) ask `choose` which version answers.

- canary: round(percent) of every 100 predict requests go to the candidate, spread evenly: request n
  (counted from 0, v1 and v2 together) goes to it when floor((n+1)p/100) > floor(np/100), so at 20%
  requests 4, 9, 14, ... do. The count lives in the API process: with several replicas each one sends
  its own share, and starting a rollout restarts the count in the process that took the call.
- shadow: the active version answers; the candidate classifies the same images in the same request,
  and Prometheus counts, per class the active version predicted, whether the candidate agreed.

A pinned version (?version=, the body's `version`, or v2's /versions/N) bypasses the rollout. A candidate
that cannot be loaded, or was purged since, is skipped (and logged): the active version answers.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from core.errors import AppError
from core.orm import Learner, ModelVersion
from service.classifiers import ClassifierCache, served
from service.metrics import Metrics

log = logging.getLogger(__name__)

MODES = ("canary", "shadow")


@dataclass
class Choice:
    """The version that answers, its classifier, why it answers, and the shadow candidate if any."""

    version: ModelVersion
    clf: Any
    served_by: str  # "active", "candidate" (the canary's share) or "pinned"
    shadow: tuple[ModelVersion, Any] | None = None


class CanarySplit:
    """Per-learner request counters of this process: the deterministic canary split."""

    def __init__(self) -> None:
        self._counts: dict[int, tuple[tuple[int, int], int]] = {}  # learner id -> ((candidate, p), n)
        self._lock = threading.Lock()

    def restart(self, learner_id: int) -> None:
        with self._lock:
            self._counts.pop(learner_id, None)

    def take(self, learner_id: int, candidate_id: int, percent: float) -> bool:
        """Count one request; True when it is the candidate's."""
        p = round(percent)
        key = (candidate_id, p)
        with self._lock:
            seen, n = self._counts.get(learner_id, (key, 0))
            if seen != key:  # another rollout since (set by another process): start over
                n = 0
            self._counts[learner_id] = (key, (n + 1) % 100)  # the pattern repeats every 100
        return (n + 1) * p // 100 > n * p // 100


@dataclass(frozen=True)
class Serving:
    """What answering a predict call takes from the app: sessions, the classifier cache, this process's
    canary split and the metrics (one dependency for the predict paths, service/deps.py)."""

    sessions: sessionmaker[Session]
    classifiers: ClassifierCache
    canary_split: CanarySplit
    metrics: Metrics

    def served(self, learner: Learner, number: int | None) -> tuple[ModelVersion, Any]:
        return served(self.sessions, self.classifiers, learner, number)


def choose(serving: Serving, learner: Learner, pinned: int | None) -> Choice:
    """The version that answers this request: the pinned one, the canary's pick, or the active one."""
    if pinned is not None:
        version, clf = serving.served(learner, pinned)
        return Choice(version, clf, "pinned")
    candidate = _candidate(serving.sessions, learner)
    if candidate is not None and learner.rollout == "canary":
        if serving.canary_split.take(learner.id, candidate.id, learner.canary_percent or 0):
            clf = _load(serving.classifiers, candidate)
            if clf is not None:
                return Choice(candidate, clf, "candidate")
    version, clf = serving.served(learner, None)
    choice = Choice(version, clf, "active")
    if candidate is not None and learner.rollout == "shadow":
        shadow = _load(serving.classifiers, candidate)
        choice.shadow = (candidate, shadow) if shadow is not None else None
    return choice


def _candidate(sessions: sessionmaker[Session], learner: Learner) -> ModelVersion | None:
    if learner.rollout not in MODES or learner.candidate_version_id in (None, learner.active_version_id):
        return None
    with sessions() as s:
        candidate = s.get(ModelVersion, learner.candidate_version_id)
    if candidate is None or candidate.status == "purged":
        return None
    return candidate


def _load(cache: ClassifierCache, candidate: ModelVersion) -> Any:
    """The candidate's classifier, or None when it cannot be loaded (the cache logs why)."""
    try:
        return cache.get(candidate)
    except AppError as exc:
        log.warning("rollout candidate version %s skipped: %s", candidate.number, exc.detail)
        return None


def score_shadow(
    metrics: Metrics, learner: str, choice: Choice, x: np.ndarray, labels: Sequence[str]
) -> None:
    """Classify `x` with the shadow candidate and count agreement with `labels`, the active answers."""
    if choice.shadow is None:
        return
    version, clf = choice.shadow
    try:
        other, _ = clf.predict(x)
    except Exception:  # noqa: BLE001 - the shadow never changes the answer the client gets
        log.exception("shadow candidate version %s of %s failed", version.number, learner)
        return
    agreement = Counter((a, a == b) for a, b in zip(labels, other, strict=True))
    metrics.shadowed(learner, version.number, agreement)


def record_answer(metrics: Metrics, learner: str, choice: Choice, images: int) -> None:
    """Count the answer per version and reason (requests) and its images (dgm_predictions_total)."""
    metrics.predicted(learner, choice.version.number, images)
    metrics.answered(learner, choice.version.number, choice.served_by)
