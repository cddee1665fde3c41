"""The regression gate (issue 11): may a newly published version replace the active one?

Pure functions; the worker reads the numbers from the database and stores what `decide` returns in the
job's result (`{"gate": ...}`) and, for a held version, its reasons in `ModelVersion.hold_reasons`.

The gate compares the new version with the ACTIVE one:
- accuracy, on the holdouts of the earlier tasks that both versions were scored on, with the new
  version answering only among the classes the active version knows (what the active version's own
  accuracy measured): their mean may drop by at most `max_drop`, a larger drop being a reason
  {"tasks": [ordinals], "before": mean, "after": mean}; and no one task may drop by more than
  `max_task_drop`, a reason {"task": ordinal, "before", "after"}. Over all of the new version's
  classes the two are not comparable: a new class that looks like an old one (shirt after t-shirt)
  takes some of the old class's images even from a perfect memory. And one task alone is noisy where
  its classes border others': a classifier trained afresh on all the real data moves single
  Fashion-MNIST classes (pullover, coat, shirt) by up to 0.28 from one version to the next, trading
  them among themselves, while the mean moves by at most 0.04 (benchmarks/results/gate.json);
- new classes: at most `max_to_new` of an earlier task's holdout may be answered with a class the
  active version does not know; more is a reason {"task": ordinal, "to_new": share}. This is the
  forgetting the first check cannot see: a classifier that answers real images with the newest
  classes (issue 9's shortcut) keeps its order among the old classes, but gives nearly every old
  image to a new one;
- memory fidelity: every class the new version knows must keep at least `min_fidelity`; a lower value
  is a reason {"class": name, "fidelity": value}, unless the active version already had the class at
  that value or lower (old classes' generators never change, so an old low class would otherwise block
  every later version forever). None (not measured: a one-class task without earlier holdouts or enough
  images, or fidelity off; see core/fidelity.py) is not gated, and said so.
The policy then chooses: `gate` activates only without reasons, `always` activates whatever the
reasons (they are still reported), `never` activates nothing (the version waits for an admin).
With nothing active (the learner's first version) there is nothing to compare: `gate` activates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np

POLICIES = ("gate", "always", "never")
DEFAULT_MAX_DROP = 0.05
DEFAULT_MAX_TASK_DROP = 0.4
DEFAULT_MAX_TO_NEW = 0.5
DEFAULT_MIN_FIDELITY = 0.8


class VersionRow(NamedTuple):
    """What `train_from` needs of a version."""

    id: int
    number: int
    parent_id: int | None
    status: str
    created_at: datetime


@dataclass(frozen=True)
class Evidence:
    """What the gate compares. Task keys are ordinals (what users see); accuracies are in [0, 1].

    before: the active version's accuracy per earlier task (None: nothing is active).
    after: the new version's accuracy per earlier task when it may answer only the classes the active
    version knows (what `before` measured; see the module's note).
    to_new: per earlier task, the share of its holdout the new version answers with a class the active
    version does not know.
    no_holdout: ordinals of earlier tasks uploaded without a holdout (their accuracy is unknown).
    this_task: the new version's task ordinal (its own accuracy has no "before").
    this_task_holdout: whether the new task kept a holdout (later versions can be gated on it).
    """

    before: dict[int, float] | None
    after: dict[int, float]
    fidelity_before: dict[str, float | None] = field(default_factory=dict)
    fidelity_after: dict[str, float | None] = field(default_factory=dict)
    no_holdout: list[int] = field(default_factory=list)
    this_task: int | None = None
    this_task_holdout: bool = True
    to_new: dict[int, float] = field(default_factory=dict)


def among(labels: list[str], scores: np.ndarray, classes: list[str], known: set[str]) -> tuple[float, float]:
    """A version on one holdout (`scores`: N x K, columns in the order of `classes`): its accuracy when it
    may answer only the classes in `known`, and the share of the holdout it answers outside them."""
    names = np.asarray(classes)
    inside = np.isin(names, sorted(known))
    if not inside.any():
        return 0.0, 1.0
    answer = names[inside][scores[:, inside].argmax(1)]
    outside = ~inside[scores.argmax(1)]
    return float(np.mean(answer == np.asarray(labels, dtype=str))), float(np.mean(outside))


def accuracy_check(
    before: dict[int, float], after: dict[int, float], max_drop: float, max_task_drop: float
) -> tuple[list[dict[str, Any]], list[str], int]:
    """(reasons, notes, tasks compared): the earlier tasks' mean accuracy if it fell by more than
    max_drop, and each earlier task whose accuracy fell by more than max_task_drop."""
    reasons: list[dict[str, Any]] = []
    notes: list[str] = []
    compared: list[int] = []
    for task in sorted(before):
        if task not in after:  # e.g. a class of it was forgotten: the new version is not scored on it
            notes.append(f"task {task}: the new version was not scored on its holdout, so it is not compared")
            continue
        compared.append(task)
        b, a = round(before[task], 4), round(after[task], 4)
        if b - a > max_task_drop + 1e-9:  # 1e-9: 0.95 - 0.90 is 0.0500000001 in floating point
            reasons.append({"task": task, "before": b, "after": a})
    if compared:
        b = round(sum(before[t] for t in compared) / len(compared), 4)
        a = round(sum(after[t] for t in compared) / len(compared), 4)
        if b - a > max_drop + 1e-9:
            reasons.insert(0, {"tasks": compared, "before": b, "after": a})
    return reasons, notes, len(compared)


def new_class_check(to_new: dict[int, float], max_to_new: float) -> list[dict[str, Any]]:
    """Each earlier task whose holdout the new version answers with new classes more than max_to_new."""
    return [
        {"task": task, "to_new": round(share, 4)}
        for task, share in sorted(to_new.items())
        if share > max_to_new + 1e-9
    ]


def fidelity_check(
    before: dict[str, float | None], after: dict[str, float | None], min_fidelity: float
) -> tuple[list[dict[str, Any]], list[str], int]:
    """(reasons, notes, classes measured): each class whose memory fidelity is below min_fidelity."""
    reasons, notes, measured = [], [], 0
    unmeasured = sorted(c for c, f in after.items() if f is None)
    for name in sorted(c for c, f in after.items() if f is not None):
        f, old = round(float(after[name] or 0.0), 4), before.get(name)  # never None here
        measured += 1
        if f >= min_fidelity:
            continue
        if old is not None and f >= round(float(old), 4):
            notes.append(f"class {name!r}: fidelity {f} was already that low in the active version; not held")
        else:
            reasons.append({"class": name, "fidelity": f})
    if unmeasured:
        notes.append(
            f"classes {unmeasured}: memory fidelity not measured (a one-class task without earlier "
            "holdouts or enough images, or fidelity off); not gated on fidelity"
        )
    return reasons, notes, measured


def decide(
    policy: str,
    evidence: Evidence,
    max_drop: float,
    min_fidelity: float,
    max_to_new: float = DEFAULT_MAX_TO_NEW,
    max_task_drop: float = DEFAULT_MAX_TASK_DROP,
) -> dict[str, Any]:
    """The gate's verdict as stored in Job.result["gate"].

    decision: "activated" (serves now), "held" (the gate found reasons; the active version keeps
    serving) or "not_activated" (policy never). gated: whether anything was compared at all.
    """
    if policy not in POLICIES:
        raise ValueError(f"auto_activate must be one of {list(POLICIES)}, not {policy!r}")
    notes = []
    if evidence.this_task is not None and not evidence.this_task_holdout:
        notes.append(
            f"task {evidence.this_task} was uploaded without a holdout: later versions cannot be gated on "
            "its accuracy, only on its classes' memory fidelity"
        )
    if evidence.before is None:
        reasons, gated = [], False
        notes.insert(0, "no version is active, so there is nothing to compare against")
    else:
        acc_reasons, acc_notes, tasks = accuracy_check(
            evidence.before, evidence.after, max_drop, max_task_drop
        )
        if tasks:
            notes.append("accuracy is compared among the classes the active version knows")
        fid_reasons, fid_notes, classes = fidelity_check(
            evidence.fidelity_before, evidence.fidelity_after, min_fidelity
        )
        # only tasks the active version was scored on: a held version's task is all "new" to it
        new_reasons = new_class_check(
            {t: share for t, share in evidence.to_new.items() if t in evidence.before}, max_to_new
        )
        reasons, gated = acc_reasons + new_reasons + fid_reasons, bool(tasks or classes)
        notes += acc_notes + fid_notes
        if evidence.no_holdout:
            notes.append(
                f"tasks {sorted(evidence.no_holdout)} have no holdout: their accuracy cannot be compared; "
                "the gate checks their classes' memory fidelity only"
            )
        if not gated:
            notes.append("no holdout accuracy and no measured fidelity to compare: the version is not gated")
    return {
        "policy": policy,
        "decision": verdict(policy, reasons, evidence.before is None),
        "gated": gated,
        "max_drop": max_drop,
        "max_task_drop": max_task_drop,
        "max_to_new": max_to_new,
        "min_fidelity": min_fidelity,
        "reasons": reasons,
        "note": "; ".join(notes + [policy_note(policy, reasons)]).strip("; "),
    }


def verdict(policy: str, reasons: list[dict[str, Any]], nothing_active: bool) -> str:
    if policy == "never":
        return "not_activated"
    if policy == "always" or nothing_active or not reasons:
        return "activated"
    return "held"


def policy_note(policy: str, reasons: list[dict[str, Any]]) -> str:
    if policy == "never":
        return "policy never: the version waits for an admin to activate it"
    if policy == "always" and reasons:
        return "policy always: activated although the gate found reasons to hold it"
    return ""


def hold_reasons(result: dict[str, Any]) -> list[dict[str, Any]] | None:
    """What ModelVersion.hold_reasons keeps for a version that does not go live: None when activated."""
    if result["decision"] == "activated":
        return None
    if result["decision"] == "not_activated":
        return [*result["reasons"], {"policy": result["policy"]}]
    return list(result["reasons"])


def held_by(reasons: list[dict[str, Any]]) -> str:
    """ "policy" when the policy never held a version, else "gate" (the label of dgm_versions_held_total)."""
    return "policy" if any("policy" in r for r in reasons) else "gate"


def describe_reason(reason: dict[str, Any]) -> str:
    """One reason as the CLI and the dashboard write it."""
    if "to_new" in reason:
        return (
            f"task {reason['task']}: {reason['to_new']:.3f} of its held-out images answered with a new class"
        )
    if "tasks" in reason:
        drop = reason["before"] - reason["after"]
        return (
            f"tasks {', '.join(map(str, reason['tasks']))}: mean accuracy {reason['before']:.3f} -> "
            f"{reason['after']:.3f} (-{drop:.3f})"
        )
    if "task" in reason:
        drop = reason["before"] - reason["after"]
        return (
            f"task {reason['task']}: accuracy {reason['before']:.3f} -> {reason['after']:.3f} (-{drop:.3f})"
        )
    if "class" in reason:
        return f"class {reason['class']!r}: memory fidelity {reason['fidelity']:.3f}"
    if "policy" in reason:
        return f"policy {reason['policy']}: waits for an admin"
    return ", ".join(f"{k} {v}" for k, v in reason.items())


def train_from(
    versions: list[VersionRow], active_id: int | None, active_since: datetime | None
) -> int | None:
    """Which version the learner's next task trains from (an id; None: a new network).

    The active version, except when the newest version is held and descends from the active one
    through versions that are all held and all newer than the active one's activation (or, with
    nothing active, from no version at all): then the newest, so held work is not lost when the next
    task arrives, and the version it makes is gated against the active one again. An admin's explicit
    activation (a rollback, or activating the active version again) is newer than the held versions,
    so it breaks the chain: the next task trains from what the admin chose. Purged versions are never
    trained from. `active_since` None (a version activated before the column existed): no time limit.
    """
    live = {v.id: v for v in versions if v.status != "purged"}
    if not live:
        return active_id
    newest = max(live.values(), key=lambda v: v.number).id
    vid: int | None = newest
    while vid is not None and vid != active_id:
        v = live.get(vid)
        if v is None or v.status != "held" or (active_since is not None and v.created_at <= active_since):
            return active_id
        vid = v.parent_id
    return newest if vid == active_id else active_id
