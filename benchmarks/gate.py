"""The regression gate (core/gate.py) replayed on the accuracy benchmark's real test images.

    python -m benchmarks.gate RUNS.json [RUNS.json ...] --out benchmarks/results/gate.json

Every run that recorded `gate_evidence` (benchmarks/accuracy.py) is replayed version by version: version
t is gated against version t - 1 as if that one were active (what the service does while nothing is
held), at the learner defaults, by two rules:
- `before`: the rule up to the twelfth session: each earlier task's accuracy over every class the new
  version knows may drop by at most 0.05 (gate_max_drop was per task then), and a version that knows
  one class is not compared against;
- `now` (core/gate.py): among the active version's classes, the earlier tasks' mean accuracy may drop
  by at most gate_max_drop (0.05) and one task's by at most gate_max_task_drop (0.4); at most
  gate_max_to_new (0.5) of an earlier task's images may be answered with a new class.
Memory fidelity is left out (gate_min_fidelity 0): this is about the accuracy rules. Joint training (a
fresh classifier on all the real data so far) stands for a perfect memory: each version it would hold
is a false hold. Fine-tuning forgets every earlier class: each version it would let through is a miss.
In the service a held version is not the end: the next one trains from it and is compared with the
older active version, so false holds compound there; this replay counts each version once.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.machine import describe
from core.gate import DEFAULT_MAX_DROP, DEFAULT_MAX_TASK_DROP, DEFAULT_MAX_TO_NEW, Evidence, decide

RESULTS = Path(__file__).parent / "results"


def replay(
    run: dict,
    max_drop: float = DEFAULT_MAX_DROP,
    max_task_drop: float = DEFAULT_MAX_TASK_DROP,
    max_to_new: float = DEFAULT_MAX_TO_NEW,
) -> list[dict]:
    """Per version t >= 1: both rules' decisions and the reasons of the current one."""
    matrix, out = run["accuracy_matrix"], []
    for t, evidence in enumerate(run["gate_evidence"], start=1):
        earlier = range(1, t + 1)  # task ordinals, as the service numbers them
        before = dict(zip(earlier, matrix[t - 1], strict=True))
        one_class = len(run["tasks"][0]) == 1 and t == 1
        old = Evidence(
            before={} if one_class else before, after=dict(zip(earlier, matrix[t][:t], strict=True))
        )
        now = Evidence(
            before=before,
            after=dict(zip(earlier, evidence["known"], strict=True)),
            to_new=dict(zip(earlier, evidence["to_new"], strict=True)),
        )
        then = decide("gate", old, 1.0, 0.0, max_to_new=1.0, max_task_drop=max_drop)  # per task, no mean
        today = decide("gate", now, max_drop, 0.0, max_to_new=max_to_new, max_task_drop=max_task_drop)
        out.append(
            {
                "version": t + 1,
                "before": then["decision"],
                "before_reasons": then["reasons"],
                "now": today["decision"],
                "now_reasons": today["reasons"],
                "largest_drop_all_classes": round(
                    max(b - a for b, a in zip(matrix[t - 1], matrix[t][:t], strict=True)), 4
                ),
                "largest_drop_known_classes": round(
                    max(b - a for b, a in zip(matrix[t - 1], evidence["known"], strict=True)), 4
                ),
                "mean_drop_known_classes": round(
                    (sum(matrix[t - 1]) - sum(evidence["known"])) / len(evidence["known"]), 4
                ),
                "largest_to_new": round(max(evidence["to_new"]), 4),
            }
        )
    return out


def summarise(runs: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for run in runs:
        groups[(run["protocol"], run["train_per_class"], run["method"])].append(run)
    rows = []
    for (protocol, size, method), group in sorted(groups.items()):
        versions = [v for run in group for v in run["versions"]]
        rows.append(
            {
                "protocol": protocol,
                "train_per_class": size,
                "method": method,
                "seeds": sorted(run["seed"] for run in group),
                "versions": len(versions),
                "held_before": sum(v["before"] == "held" for v in versions),
                "held_now": sum(v["now"] == "held" for v in versions),
                "held_now_by_mean": sum(any("tasks" in r for r in v["now_reasons"]) for v in versions),
                "held_now_by_task": sum(
                    any("task" in r and "after" in r for r in v["now_reasons"]) for v in versions
                ),
                "held_now_by_to_new": sum(any("to_new" in r for r in v["now_reasons"]) for v in versions),
                "largest_drop_known_classes": max(v["largest_drop_known_classes"] for v in versions),
                "largest_mean_drop_known_classes": max(v["mean_drop_known_classes"] for v in versions),
                "largest_to_new": max(v["largest_to_new"] for v in versions),
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| protocol | images/class | method | seeds | versions gated | held, old rule | held, new rule "
        "(mean / one task / to new) | largest drop among known classes: one task, mean | largest share "
        "to new classes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        seeds = ",".join(map(str, r["seeds"]))
        held = (
            f"{r['held_now']} ({r['held_now_by_mean']} / {r['held_now_by_task']} / {r['held_now_by_to_new']})"
        )
        drops = f"{r['largest_drop_known_classes']:.3f}, {r['largest_mean_drop_known_classes']:.3f}"
        lines.append(
            f"| {r['protocol']} | {r['train_per_class']} | {r['method']} | {seeds} | {r['versions']} | "
            f"{r['held_before']} | {held} | {drops} | {r['largest_to_new']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="benchmarks.accuracy result files")
    p.add_argument("--out", default=str(RESULTS / "gate.json"))
    args = p.parse_args(argv)
    runs = []
    for path in args.runs:
        for run in json.loads(Path(path).read_text())["runs"]:
            if run.get("gate_evidence") is None:
                continue  # recorded before the benchmark kept the gate's evidence
            keep = ("protocol", "train_per_class", "seed", "method", "tasks", "device", "date")
            runs.append({**{k: run.get(k) for k in keep}, "versions": replay(run)})
    rows = summarise(runs)
    result = {
        "machine": describe(),
        "max_drop": DEFAULT_MAX_DROP,
        "max_task_drop": DEFAULT_MAX_TASK_DROP,
        "max_to_new": DEFAULT_MAX_TO_NEW,
        "sources": [Path(p).name for p in args.runs],
        "summary": rows,
        "runs": runs,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(table(rows))
    return result


if __name__ == "__main__":
    main()
