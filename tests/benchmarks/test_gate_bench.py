"""`benchmarks.gate`: the regression gate replayed on recorded accuracy runs, by the old and the new rule."""

import json

from benchmarks import gate


def run(method: str, tasks: list[list[str]], matrix: list[list[float]], evidence: list[dict]) -> dict:
    return {
        "protocol": "5x2", "train_per_class": 800, "seed": 0, "method": method, "tasks": tasks,
        "accuracy_matrix": matrix, "gate_evidence": evidence,
    }  # fmt: skip


TASKS = [["t-shirt", "trouser"], ["shirt", "bag"], ["coat", "sandal"]]
# a perfect memory: shirt takes t-shirts (0.95 -> 0.80 over all classes) but among the old ones nothing moved
JOINT = run(
    "joint",
    TASKS,
    [[0.95], [0.80, 0.97], [0.79, 0.95, 0.96]],
    [{"known": [0.95], "to_new": [0.15]}, {"known": [0.80, 0.96], "to_new": [0.02, 0.01]}],
)
# issue 9's shortcut: old images answered with the newest classes, their order among the old ones kept
SHORTCUT = run(
    "finetune",
    TASKS,
    [[0.95], [0.02, 0.99], [0.0, 0.01, 0.99]],
    [{"known": [0.93], "to_new": [0.98]}, {"known": [0.90, 0.95], "to_new": [1.0, 0.99]}],
)
# one class first: the old rule skipped the comparison, the new one compares on the one known class
ONE_CLASS = run(
    "joint", [["t-shirt"], ["shirt"]], [[1.0], [0.81, 0.84]], [{"known": [1.0], "to_new": [0.19]}]
)


def test_replay_counts_false_holds_and_misses_by_both_rules(tmp_path):
    src = tmp_path / "runs.json"
    src.write_text(json.dumps({"runs": [JOINT, SHORTCUT, ONE_CLASS, {**JOINT, "gate_evidence": None}]}))
    out = gate.main([str(src), "--out", str(tmp_path / "gate.json")])
    assert json.loads((tmp_path / "gate.json").read_text())["summary"] == out["summary"]
    joint = next(r for r in out["summary"] if r["method"] == "joint")
    assert joint["versions"] == 3  # two of JOINT, one of ONE_CLASS; a run without evidence is skipped
    assert (joint["held_before"], joint["held_now"]) == (1, 0)  # 0.95 -> 0.80: a false hold, once
    shortcut = next(r for r in out["summary"] if r["method"] == "finetune")
    assert (shortcut["held_before"], shortcut["held_now"], shortcut["held_now_by_to_new"]) == (2, 2, 2)
    assert shortcut["held_now_by_mean"] == shortcut["held_now_by_task"] == 0  # among old classes: passed
    assert shortcut["largest_to_new"] == 1.0
    first = next(r for r in out["runs"] if r["tasks"] == ONE_CLASS["tasks"])["versions"][0]
    assert (first["before"], first["now"], first["largest_to_new"]) == ("activated", "activated", 0.19)
