"""The regression gate's decisions (core/gate.py), as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.gate import Evidence, VersionRow, decide, describe_reason, held_by, hold_reasons, train_from

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def evidence(**kw) -> Evidence:
    base = {
        "before": {1: 0.95, 2: 0.90},
        "after": {1: 0.93, 2: 0.90, 3: 0.99},
        "fidelity_before": {"a": 0.9, "b": 0.85},
        "fidelity_after": {"a": 0.9, "b": 0.85, "c": 0.95},
        "this_task": 3,
    }
    return Evidence(**(base | kw))


def test_gate_activates_within_the_thresholds():
    out = decide("gate", evidence(), max_drop=0.05, min_fidelity=0.8)
    assert out["decision"] == "activated" and out["gated"] and out["reasons"] == []
    assert hold_reasons(out) is None


def test_gate_holds_a_drop_of_the_earlier_tasks_mean_accuracy():
    out = decide("gate", evidence(after={1: 0.81, 2: 0.90}), max_drop=0.05, min_fidelity=0.8)
    assert out["decision"] == "held"
    assert out["reasons"] == [{"tasks": [1, 2], "before": 0.925, "after": 0.855}]
    assert hold_reasons(out) == out["reasons"] and held_by(out["reasons"]) == "gate"
    assert describe_reason(out["reasons"][0]) == "tasks 1, 2: mean accuracy 0.925 -> 0.855 (-0.070)"


def test_gate_lets_one_task_trade_accuracy_with_another_up_to_max_task_drop():
    """Pullover loses to coat, coat gains from pullover: the mean holds, and one task may move this much
    (a classifier trained afresh on all the real data does, benchmarks/results/gate.json)."""
    trade = evidence(before={1: 0.80, 2: 0.70}, after={1: 0.55, 2: 0.93})
    out = decide("gate", trade, max_drop=0.05, min_fidelity=0.8)
    assert out["decision"] == "activated" and out["max_task_drop"] == 0.4
    # one task of ten collapses while the others gain: the mean hides it (0.9 -> 0.895), the task does not
    collapse = evidence(
        before={t: 0.9 for t in range(1, 12)}, after={1: 0.4} | {t: 0.95 for t in range(2, 11)}
    )
    out = decide("gate", collapse, max_drop=0.05, min_fidelity=0.8)
    assert out["reasons"] == [{"task": 1, "before": 0.9, "after": 0.4}]
    assert describe_reason(out["reasons"][0]) == "task 1: accuracy 0.900 -> 0.400 (-0.500)"
    assert "task 11: the new version was not scored on its holdout" in out["note"]


def test_gate_drop_equal_to_the_threshold_passes_and_zero_threshold_holds_any_drop():
    exact = evidence(before={1: 0.95}, after={1: 0.90})
    assert decide("gate", exact, max_drop=0.05, min_fidelity=0.8)["decision"] == "activated"
    tiny_drop = evidence(before={1: 0.95}, after={1: 0.9499})
    assert decide("gate", tiny_drop, max_drop=0.0, min_fidelity=0.8)["decision"] == "held"
    gain = evidence(before={1: 0.90}, after={1: 0.95})
    assert decide("gate", gain, max_drop=0.0, min_fidelity=0.8)["decision"] == "activated"


def test_gate_one_task_drop_at_max_task_drop_passes_and_one_task_can_give_both_reasons():
    at = evidence(before={1: 0.9, 2: 0.5}, after={1: 0.5, 2: 0.9})  # the mean holds, task 1 moves 0.4
    assert decide("gate", at, max_drop=0.05, min_fidelity=0.8)["decision"] == "activated"
    alone = decide("gate", evidence(before={1: 0.9}, after={1: 0.4}), max_drop=0.05, min_fidelity=0.8)
    assert alone["reasons"] == [
        {"tasks": [1], "before": 0.9, "after": 0.4},
        {"task": 1, "before": 0.9, "after": 0.4},
    ]


def test_gate_holds_a_new_class_below_the_fidelity_threshold():
    low = evidence(fidelity_after={"a": 0.9, "b": 0.85, "c": 0.62})
    out = decide("gate", low, max_drop=0.05, min_fidelity=0.8)
    assert out["decision"] == "held" and out["reasons"] == [{"class": "c", "fidelity": 0.62}]
    assert describe_reason(out["reasons"][0]) == "class 'c': memory fidelity 0.620"


def test_gate_does_not_hold_an_old_class_already_that_low_in_the_active_version():
    old_low = evidence(fidelity_before={"a": 0.5}, fidelity_after={"a": 0.5, "c": 0.9})
    out = decide("gate", old_low, max_drop=0.05, min_fidelity=0.8)
    assert out["decision"] == "activated" and "already that low" in out["note"]


def test_gate_unmeasured_fidelity_is_not_gated_and_said_so():
    out = decide("gate", evidence(fidelity_after={"a": 0.9, "c": None}), max_drop=0.05, min_fidelity=0.8)
    assert out["decision"] == "activated" and "['c']: memory fidelity not measured" in out["note"]


def test_gate_first_version_activates_with_nothing_to_compare():
    out = decide("gate", evidence(before=None, fidelity_before={}), max_drop=0.0, min_fidelity=1.0)
    assert out["decision"] == "activated" and not out["gated"] and out["reasons"] == []
    assert "nothing to compare against" in out["note"]


def test_gate_without_holdouts_falls_back_to_fidelity_and_says_so():
    no_acc = evidence(before={}, after={}, no_holdout=[1, 2], this_task_holdout=False)
    out = decide("gate", no_acc, max_drop=0.05, min_fidelity=0.8)
    assert out["decision"] == "activated" and out["gated"]  # fidelity was compared
    assert "tasks [1, 2] have no holdout" in out["note"] and "memory fidelity only" in out["note"]
    assert "task 3 was uploaded without a holdout" in out["note"]
    low = evidence(before={}, after={}, no_holdout=[1, 2], fidelity_after={"a": 0.9, "c": 0.5})
    assert decide("gate", low, max_drop=0.05, min_fidelity=0.8)["decision"] == "held"
    nothing = evidence(before={}, after={}, no_holdout=[1], fidelity_after={"a": None})
    out = decide("gate", nothing, max_drop=0.05, min_fidelity=0.8)
    assert out["decision"] == "activated" and not out["gated"] and "not gated" in out["note"]


def test_gate_task_missing_from_the_new_version_is_noted_not_held():
    out = decide("gate", evidence(after={2: 0.9}), max_drop=0.05, min_fidelity=0.8)
    assert out["decision"] == "activated" and "task 1: the new version was not scored" in out["note"]


def test_gate_policy_always_activates_but_reports_the_reasons():
    out = decide("always", evidence(after={1: 0.5, 2: 0.9}), max_drop=0.05, min_fidelity=0.8)
    assert out["decision"] == "activated" and out["reasons"] == [
        {"tasks": [1, 2], "before": 0.925, "after": 0.7},
        {"task": 1, "before": 0.95, "after": 0.5},
    ]
    assert "policy always" in out["note"] and hold_reasons(out) is None


def test_gate_policy_never_keeps_every_version_back():
    out = decide("never", evidence(), max_drop=0.05, min_fidelity=0.8)
    assert out["decision"] == "not_activated" and hold_reasons(out) == [{"policy": "never"}]
    assert held_by(hold_reasons(out)) == "policy"
    first = decide("never", evidence(before=None), max_drop=0.05, min_fidelity=0.8)
    assert first["decision"] == "not_activated"


def test_gate_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="auto_activate must be one of"):
        decide("sometimes", evidence(), max_drop=0.05, min_fidelity=0.8)


def row(vid: int, parent: int | None, status: str, minutes: int) -> VersionRow:
    return VersionRow(vid, vid, parent, status, T0 + timedelta(minutes=minutes))


def test_train_from_the_active_version_normally():
    rows = [row(1, None, "published", 0), row(2, 1, "published", 1)]
    assert train_from(rows, 2, T0 + timedelta(minutes=1)) == 2
    assert train_from([], None, None) is None


def test_train_from_the_newest_held_chain_after_the_active_version():
    rows = [row(1, None, "published", 0), row(2, 1, "held", 1), row(3, 2, "held", 2)]
    assert train_from(rows, 1, T0) == 3  # held work is kept
    assert train_from(rows, 1, None) == 3  # activated before the column existed


def test_train_from_an_explicit_rollback_breaks_the_chain():
    # v2 served, v3 held; the admin rolls back to v1: train from v1, not from v3
    rows = [row(1, None, "published", 0), row(2, 1, "published", 1), row(3, 2, "held", 2)]
    assert train_from(rows, 1, T0 + timedelta(minutes=3)) == 1
    # v2 held; the admin activates v1 again after it: the held version is passed over
    rows = [row(1, None, "published", 0), row(2, 1, "held", 1)]
    assert train_from(rows, 1, T0 + timedelta(minutes=5)) == 1


def test_train_from_held_first_versions_when_nothing_is_active():
    rows = [row(1, None, "held", 0), row(2, 1, "held", 1)]
    assert train_from(rows, None, None) == 2  # policy never: each version builds on the last


def test_train_from_skips_purged_versions():
    rows = [row(1, None, "published", 0), row(2, 1, "purged", 1)]
    assert train_from(rows, 1, T0) == 1


def test_gate_holds_an_earlier_task_answered_with_the_new_classes():
    """Issue 9's shortcut: real images of old classes answered with the newest ones. Among the old
    classes alone the order can survive, so only the share given to new classes shows it."""
    shortcut = evidence(after={1: 0.95, 2: 0.90}, to_new={1: 0.97, 2: 0.30})
    out = decide("gate", shortcut, max_drop=0.05, min_fidelity=0.8)
    assert out["decision"] == "held" and out["reasons"] == [{"task": 1, "to_new": 0.97}]
    assert out["max_to_new"] == 0.5 and held_by(out["reasons"]) == "gate"
    assert (
        describe_reason(out["reasons"][0]) == "task 1: 0.970 of its held-out images answered with a new class"
    )
    assert "compared among the classes the active version knows" in out["note"]


def test_gate_new_class_share_at_the_limit_passes_and_the_limit_is_a_parameter():
    at = evidence(to_new={1: 0.5, 2: 0.1})
    assert decide("gate", at, max_drop=0.05, min_fidelity=0.8)["decision"] == "activated"
    strict = decide("gate", at, max_drop=0.05, min_fidelity=0.8, max_to_new=0.2)
    assert strict["decision"] == "held" and strict["reasons"] == [{"task": 1, "to_new": 0.5}]


def test_gate_new_class_share_counts_only_tasks_the_active_version_was_scored_on():
    """Version 3 trained from a held version 2 is gated against version 1: task 2's classes are all
    unknown to version 1, so its holdout is answered with "new" classes by construction."""
    after_held = evidence(before={1: 0.95}, after={1: 0.95, 2: 0.0}, to_new={1: 0.1, 2: 1.0}, this_task=3)
    out = decide("gate", after_held, max_drop=0.05, min_fidelity=0.8)
    assert out["decision"] == "activated" and out["reasons"] == []


def test_gate_passes_a_one_class_active_version_that_a_confusable_class_follows():
    """t-shirt, then shirt (the quick start's demo): among the active version's one class every image
    is right, and the fifth of t-shirts now called shirt is what any classifier does."""
    out = decide("gate", evidence(before={1: 1.0}, after={1: 1.0}, to_new={1: 0.19}, this_task=2), 0.05, 0.8)
    assert out["decision"] == "activated" and out["reasons"] == []
