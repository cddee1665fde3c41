"""A learner's charts from its history (accuracy matrix, A_t curve, capacity growth), shared by
/v1/learners/{name}/plots/*.png and the dashboard; service/plots.py draws them."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from core.errors import NotFound, NotReady
from core.orm import Learner
from service import plots
from service.views import get_learner, history


def accuracy_matrix(h: dict) -> plots.AccuracyMatrix:
    m = h["accuracy_matrix"]
    classes = {t.ordinal: t.classes for t in h["tasks"]}
    labels = [f"T{o}\n{_short(classes.get(o, []))}" for o in m["tasks"]]
    return plots.AccuracyMatrix(
        versions=[r["version"] for r in m["rows"]],
        tasks=list(m["tasks"]),
        task_labels=labels,
        rows=[list(r["accuracy"]) for r in m["rows"]],
    )


def _short(classes: list[str], limit: int = 16) -> str:
    text = ",".join(classes)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _accuracy(name: str, h: dict) -> bytes:
    return plots.accuracy_png(_with_holdout(name, h))


def _at(name: str, h: dict) -> bytes:
    m = _with_holdout(name, h)
    return plots.at_png(m.versions, plots.a_t(m.rows))


def _capacity(_name: str, h: dict) -> bytes:
    vs = h["versions"]
    return plots.capacity_png(
        plots.Capacity(
            versions=[v.number for v in vs],
            parameters=[v.parameters for v in vs],
            widths=[v.widths for v in vs],
            mask_usage=[v.mask_usage for v in vs],
        )
    )


def _with_holdout(name: str, h: dict) -> plots.AccuracyMatrix:
    m = accuracy_matrix(h)
    if not m.tasks or all(a is None for row in m.rows for a in row):
        raise NotReady(
            f"learner {name!r} has no accuracy to plot: no task kept a holdout; upload tasks with "
            "a holdout fraction (e.g. -F holdout=0.2) to fill the accuracy matrix"
        )
    return m


CHARTS: dict[str, Callable[[str, dict], bytes]] = {
    "accuracy": _accuracy,
    "capacity": _capacity,
    "at": _at,
}


def learner_history(session: Session, learner: Learner) -> dict:
    """The history, or 409 when the learner has no version to chart yet."""
    h = history(session, learner)
    if not h["versions"]:
        raise NotReady(
            f"learner {learner.name!r} has no model versions yet, so there is nothing to plot; "
            "upload a task and wait for its job to succeed"
        )
    return h


def render_chart(session: Session, name: str, kind: str) -> bytes:
    """Chart `kind` of learner `name` as PNG bytes; 404 for an unknown learner or chart."""
    if kind not in CHARTS:
        raise NotFound(f"no plot named {kind!r}; the plots are {', '.join(f'{k}.png' for k in CHARTS)}")
    learner = get_learner(session, name)
    return CHARTS[kind](name, learner_history(session, learner))
