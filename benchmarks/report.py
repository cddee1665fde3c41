"""Markdown tables for the README from the committed benchmark JSON: `python -m benchmarks.report`."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def accuracy_table(path: Path = RESULTS / "accuracy.json") -> str:
    res = json.loads(path.read_text())
    lines = [
        f"Machine: {res['machine']['cpu']}, {res['machine']['cpu_cores']} cores, "
        f"torch {res['machine']['torch']}; "
        f"seed {res['seed']}; {res['epochs_per_task']} epochs per task; {res['train_per_class']} training "
        f"images per class; {res['test_images']} test images.",
        "",
        "| protocol | method | A_t after each task | final A | avg forgetting | params first → last "
        "| s/task |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, entry in res["protocols"].items():
        for method, m in entry["methods"].items():
            params = m.get("parameters_per_version")
            growth = f"{params[0]:,} → {params[-1]:,}" if params else "-"
            secs = sum(m["seconds_per_task"]) / len(m["seconds_per_task"])
            curve = " ".join(f"{a:.2f}" for a in m["A_t"])
            lines.append(
                f"| {name} | {method} | {curve} | **{m['A_final']:.3f}** | "
                f"{m['average_forgetting']:.3f} | {growth} | {secs:.0f} |"
            )
    lines.append("")
    for name, entry in res["protocols"].items():
        if "dgmw_vs_joint" in entry:
            lines.append(
                f"- {name}: DGMw final A = {entry['dgmw_vs_joint']:.2f} x joint (target >= 0.85) and "
                f"{entry['dgmw_vs_finetune']:.1f} x fine-tune (target >= 3); parameter growth "
                + ", ".join(f"{k} {v:.2f}x" for k, v in entry["parameter_growth"].items())
            )
    for step in res.get("masked_step", []):
        lines.append(
            f"- one training step (D and G, batch {step['batch_size']}), {step['variant']}: masked "
            f"{step['masked_step_s'] * 1000:.1f} ms vs unmasked {step['unmasked_step_s'] * 1000:.1f} ms "
            f"= {step['ratio']:.2f}x (target <= 1.25x)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(accuracy_table())
