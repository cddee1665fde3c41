"""PNG charts of a learner's history: accuracy matrix, A_t curve, capacity growth.

Rendering uses matplotlib's object API on the Agg canvas (no pyplot, so no global figure state and no
display), which makes it safe to call from the API's thread pool. Inputs are plain numbers taken from
`service.views.history`; nothing here touches torch, SQL or HTTP.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100


@dataclass(frozen=True)
class AccuracyMatrix:
    """rows[i][j]: accuracy of version versions[i] on task tasks[j]'s holdout (None: not evaluated)."""

    versions: list[int]
    tasks: list[int]
    task_labels: list[str]
    rows: list[list[float | None]]


@dataclass(frozen=True)
class Capacity:
    """Per version: parameter count, per-layer width (units) and mask usage (fraction of weights)."""

    versions: list[int]
    parameters: list[int]
    widths: list[dict[str, int]]
    mask_usage: list[dict[str, float]]


def a_t(rows: Sequence[Sequence[float | None]]) -> list[float | None]:
    """A_t per version: the mean accuracy over the tasks it was evaluated on (the tasks it has seen)."""
    out: list[float | None] = []
    for row in rows:
        seen = [a for a in row if a is not None]
        out.append(sum(seen) / len(seen) if seen else None)
    return out


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def accuracy_png(m: AccuracyMatrix) -> bytes:
    """Heatmap: one row per version, one column per task, each cell annotated with its accuracy."""
    import numpy as np

    grid = np.array([[np.nan if a is None else a for a in row] for row in m.rows], dtype=float)
    fig = Figure(figsize=(1.6 + 0.9 * len(m.tasks), 1.4 + 0.45 * len(m.versions)), layout="constrained")
    ax = fig.add_subplot()
    cmap = _cmap("viridis").with_extremes(bad="#eeeeee")  # grey: the version predates the task
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    for i, row in enumerate(m.rows):
        for j, acc in enumerate(row):
            if acc is None:
                ax.text(j, i, "-", ha="center", va="center", color="#777777", fontsize=9)
            else:
                color = "white" if acc < 0.6 else "black"  # readable on viridis' dark and light ends
                ax.text(j, i, f"{acc:.2f}", ha="center", va="center", color=color, fontsize=9)
    ax.set_xticks(range(len(m.tasks)), m.task_labels, fontsize=8)
    ax.set_yticks(range(len(m.versions)), [f"v{v}" for v in m.versions], fontsize=8)
    ax.set_xlabel("task (classes)")
    ax.set_ylabel("model version")
    ax.set_title("accuracy on each task's holdout", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.08, pad=0.02)
    return _png(fig)


def at_png(versions: list[int], values: list[float | None]) -> bytes:
    """A_t curve: mean accuracy over the tasks seen so far, per version."""
    points = [(v, a) for v, a in zip(versions, values, strict=True) if a is not None]
    fig = Figure(figsize=(4.4, 3.0), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color="#1f77b4")
    for v, a in points:
        ax.annotate(f"{a:.2f}", (v, a), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.set_xticks(versions, [f"v{v}" for v in versions])
    ax.set_ylim(0.0, 1.1)  # room for the labels above the points
    ax.set_xlabel("model version")
    ax.set_ylabel("A_t")
    ax.set_title("mean accuracy over the tasks seen so far", fontsize=10)
    ax.grid(alpha=0.3)
    return _png(fig)


def capacity_png(c: Capacity) -> bytes:
    """Three panels: parameters per version, units per layer, and mask usage per layer."""
    fig = Figure(figsize=(11.0, 3.2), layout="constrained")
    params, widths, usage = fig.subplots(1, 3)
    labels = [f"v{v}" for v in c.versions]
    params.bar(labels, c.parameters, color="#4c72b0")
    params.set_title("parameters (generator + discriminator)", fontsize=10)
    params.ticklabel_format(axis="y", style="sci", scilimits=(0, 3))
    _per_layer(widths, labels, c.widths, "generator units per layer (expansion)")
    _per_layer(usage, labels, c.mask_usage, "mask usage per layer (fraction of weights)")
    usage.set_ylim(0.0, 1.0)
    for ax in (params, widths, usage):
        ax.set_xlabel("model version")
        ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def _per_layer(ax, labels: list[str], per_version: list[dict], title: str) -> None:
    layers = sorted({layer for d in per_version for layer in d})
    for layer in layers:
        ax.plot(labels, [d.get(layer, float("nan")) for d in per_version], marker="o", label=layer)
    ax.set_title(title, fontsize=10)
    if layers:
        ax.legend(fontsize=8)


def _cmap(name: str):
    import matplotlib

    return matplotlib.colormaps[name].copy()
