"""Memory fidelity as the service shows it: the threshold, the job's warnings, and how a value reads.

A version's fidelity maps every class it knows to the fraction of that class's generated samples that
an independent classifier, trained on the class's task before its images were deleted, assigns to it
(dgm/fidelity.py). A one-class task's classifier learns its class against real held-out images of the
classes learned before it (worker/train.py `fidelity_reference`), since one trained on a single class
says yes to anything, and its value is relative to how much of the class's real images it recognises.
None: not measured: a one-class task without a known class in the earlier holdouts, with fewer images
than the learner's `fidelity_min_images`, or whose classifier could not tell real images of its class
from the known ones; a version published before one-class tasks were measured; or a learner created
with `fidelity_epochs` 0. Core imports no torch, so the
threshold is repeated here; tests/worker/test_fidelity.py holds it equal to dgm.fidelity.WARN_BELOW.
"""

from __future__ import annotations

from typing import Any

WARN_BELOW = 0.8


def rounded(fidelity: dict[str, float | None] | None) -> dict[str, float | None] | None:
    """Four decimals, as the accuracy matrix shows them; None (a version older than the column) stays."""
    if fidelity is None:
        return None
    return {c: None if f is None else round(float(f), 4) for c, f in fidelity.items()}


def job_warnings(report: dict[str, Any]) -> list[str]:
    """One warning per class of the task whose memory fidelity is below WARN_BELOW (a TaskReport dict).

    The learner names those classes in `low_fidelity`; old classes are not repeated, since their
    fidelity was measured, and warned about, by the job that learned them.
    """
    fidelity = report.get("fidelity") or {}
    out = []
    for c in report.get("low_fidelity") or []:
        f = fidelity.get(c)
        if f is None:  # the learner flags only measured classes; nothing to say about an unknown value
            continue
        out.append(
            f"memory fidelity of class {c!r} is {f:.2f} (< {WARN_BELOW}): only {f:.0%} of its generated "
            f"samples are recognised as {c!r} by a classifier trained on this task's real images, so "
            f"replay will teach later versions a poor {c!r}; to fix it, activate the version before this "
            "one and upload the task again with more images per class, or on a learner created with a "
            "larger `steps` hyper-parameter"
        )
    return out


def describe(value: float | None, one_class_task: bool) -> str:
    """How the dashboard and the CLI write one class's fidelity."""
    if value is None:
        return "n/a (one-class task: not measured)" if one_class_task else "n/a (not measured)"
    return f"{value:.3f}"
