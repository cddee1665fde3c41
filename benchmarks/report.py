"""Markdown tables for the README from the committed benchmark JSON.

python -m benchmarks.report accuracy [FILE]   # the accuracy summary and its targets
python -m benchmarks.report ablation [FILE]   # DGMw with one lever off at a time
python -m benchmarks.report latency | reliability
"""

from __future__ import annotations

import json
from pathlib import Path

from dgm.config import INERT, LearnerConfig

RESULTS = Path(__file__).parent / "results"
CONFIG_DEFAULTS = LearnerConfig().to_dict()


def _pm(mean, sd, digits: int = 3) -> str:
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None else "")


def _num(value, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def _machines(res: dict) -> str:
    def walk(entries: list[dict]):  # merged files keep the provenance of the files they merged
        for m in entries:
            if m.get("machine"):
                yield m["machine"]
            yield from walk(m.get("merged_from", []))

    machines = [res["machine"], *walk(res.get("merged_from", []))]
    seen = sorted({f"{m['cpu']}, {m['cpu_cores']} cores, torch {m['torch']}" for m in machines})
    threads = sorted({r.get("threads") for r in res["runs"] if r.get("threads") is not None})
    return "; ".join(seen) + (f"; torch threads per run {', '.join(map(str, threads))}" if threads else "")


def accuracy_table(path: Path = RESULTS / "accuracy.json") -> str:
    """The accuracy `summary` (one row per protocol x size x method, means over seeds) and the targets."""
    res = json.loads(Path(path).read_text())
    if "summary" not in res:
        return legacy_accuracy_table(res)
    st = res["settings"]
    rows = [r for r in res["summary"] if not r.get("lever")]
    seeds = sorted({s for r in rows for s in r["seeds"]})
    overrides = f" with {json.dumps(st['set'])}" if st.get("set") else ""
    lines = [
        f"Machine: {_machines(res)}. Preset `{st['preset']}`{overrides}; {st['data']}; seeds "
        f"{', '.join(map(str, seeds))} (mean ± sd over seeds); fidelity: {st['oracle']}, labelling "
        f"{st['fidelity_samples']} generated images per class after the last task.",
        "",
        "| protocol | images/class | method | seeds | A_t after each task | final A | min old class | "
        "min fidelity | generator growth | total growth | s/task |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for r in rows:
        curve = " ".join(f"{a:.2f}" for a in r["a_t_mean"])
        method = r["method"]
        if r.get("off_default"):  # a row some of whose seeds ran at an earlier default
            notes.append(f"{r['protocol']} {r['train_per_class']} {method}: " + "; ".join(
                f"seed {seed} {json.dumps(off, sort_keys=True)}" for seed, off in r["off_default"].items()
            ))  # fmt: skip
            method += f" [{len(notes)}]"
        lines.append(
            f"| {r['protocol']} | {r['train_per_class'] or 'all'} | {method} | {len(r['seeds'])} | "
            f"{curve} | **{_pm(r['final_a_mean'], r['final_a_sd'])}** | {_num(r['min_old_class_acc'])} | "
            f"{_num(r['min_fidelity'])} | {_num(r['generator_growth'], '{:.2f}x')} | "
            f"{_num(r['total_growth'], '{:.2f}x')} | {_secs(r)} |"
        )
    lines.append("")
    if notes:
        lines.append("Not at today's default (what those runs had instead):")
        lines += [f"- [{i}] {note}" for i, note in enumerate(notes, 1)]
        lines.append("")
    lines += targets_lines(res)
    return "\n".join(lines)


def _secs(row: dict) -> str:
    """Seconds per task, marked where they are not CPU seconds (GPU runs are ~10x faster)."""
    device = row.get("seconds_device", "cpu")
    return _num(row["seconds_per_task"], "{:.0f}") + ("" if device == "cpu" else f" ({device})")


def targets_lines(res: dict) -> list[str]:
    out = []
    for name, t in res.get("targets", {}).items():
        value = "-" if t["value"] is None else f"{t['value']:.3f}"
        verdict = "met" if t["pass"] else "**not met**"
        out.append(f"- {name}: {value} (target {t['target']}) {verdict}; {t['detail']}")
    return out


def ablation_table(path: Path = RESULTS / "accuracy.json") -> str:
    """The default against itself with one lever changed, per protocol x size (rows `<variant>-<lever>`)."""
    res = json.loads(Path(path).read_text())
    summary = res["summary"]
    panels = [(r["protocol"], r["train_per_class"]) for r in summary if r.get("lever")]
    lines = [
        "| protocol | images/class | run | overrides | seeds | final A | vs default | min old class | "
        "min fidelity | generator growth | s/task |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    if not panels:
        return "(no ablation runs in this file)"
    for panel in dict.fromkeys(panels):
        group = [r for r in summary if (r["protocol"], r["train_per_class"]) == panel]
        levers = [r for r in group if r.get("lever")]
        variants = {r["method"].partition("-")[0] for r in levers}
        bases = [r for r in group if r["method"] in variants]
        for r in bases + levers:
            delta = "-"
            if r in levers and r["final_a_mean"] is not None:
                delta = paired_delta(res["runs"], r, panel)
            variant = r["method"].partition("-")[0]
            what = (
                f"{variant} `{r['lever']}`: {r['lever_description']}"
                if r in levers
                else f"{variant}, default"
            )
            lines.append(
                f"| {r['protocol']} | {r['train_per_class'] or 'all'} | {what} | "
                f"{'`' + json.dumps(r['overrides']) + '`' if r['overrides'] else '-'} | {len(r['seeds'])} | "
                f"**{_pm(r['final_a_mean'], r['final_a_sd'])}** | {delta} | {_num(r['min_old_class_acc'])} | "
                f"{_num(r['min_fidelity'])} | {_num(r['generator_growth'], '{:.2f}x')} | "
                f"{_secs(r)} |"
            )
    return "\n".join(lines)


def paired_delta(runs: list[dict], row: dict, panel: tuple) -> str:
    """Lever minus the run it turns off from, on the same seeds, with where each ran: '+0.040 (s0 cuda/cpu)'.

    The base of a lever run is the run of the same variant, panel and seed whose config differs only in
    the lever's overrides, the run with no lever first: a lever measured when the default was different
    (500 steps) is paired with the default of its day, not with today's.
    """
    lever = {
        r["seed"]: r for r in runs
        if (r["protocol"], r["train_per_class"]) == panel and r["method"] == row["method"]
    }  # fmt: skip
    pairs = {s: b for s, r in lever.items() if (b := lever_base(runs, r)) is not None}
    if not pairs:
        return "-"
    diff = sum(lever[s]["A_final"] - b["A_final"] for s, b in pairs.items()) / len(pairs)
    where = ", ".join(
        f"s{s} {lever[s].get('device', 'cpu')}/{b.get('device', 'cpu')}" for s, b in pairs.items()
    )
    bases = sorted({b["method"] for b in pairs.values()})
    against = "" if bases == [row["method"].partition("-")[0]] else f" vs {', '.join(bases)}"
    return f"{diff:+.3f}{against} ({where})"


def lever_base(runs: list[dict], run: dict) -> dict | None:
    """The run `run`'s lever was turned off from (see paired_delta), or None. A key added to LearnerConfig
    later is missing from older runs' configs; they ran as its dataclass default (which keeps the earlier
    behaviour), so that is what they are compared as. A run that names
    its pair (`paired_with`: the method of a same-machine base, e.g. `dgmw-default_rerun_amd`) is paired
    with that run of the same seed only."""
    variant = run["method"].partition("-")[0]
    lever_keys = set(run.get("overrides") or {})

    def differs(a: dict, b: dict) -> set[str]:
        a, b = {**CONFIG_DEFAULTS, **a}, {**CONFIG_DEFAULTS, **b}
        return {k for k in set(a) & set(b) if a[k] != b[k]} - set(INERT.get(variant, ()))

    cfg = run.get("config") or {}
    panel = (run["protocol"], run["train_per_class"], run["seed"])
    same = [
        r for r in runs
        if r is not run and r["method"].partition("-")[0] == variant and r.get("config")
        and (r["protocol"], r["train_per_class"], r["seed"]) == panel
        and (diff := differs(r["config"], cfg)) and diff <= lever_keys
        and r["method"] == run.get("paired_with", r["method"])
    ]  # fmt: skip
    return min(same, key=lambda r: r["method"] != variant, default=None)


def legacy_accuracy_table(res: dict) -> str:
    """The table of the single-seed results JSON written before the `summary` list existed."""
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


def latency_table(path: Path = RESULTS / "predict_latency.json") -> str:
    """Predict latency over HTTP against the bare forward pass, at version 1 and the last version."""
    res = json.loads(path.read_text())
    m, setup = res["machine"], res["setup"]
    lines = [
        f"Machine: {m['cpu']}, {m['cpu_cores']} cores, torch {m['torch']}; {setup['transport']}; torch "
        f"threads {setup['inference_torch_threads']} in the server and in the bare pass; "
        f"{setup['conditions']}.",
        "",
        "| version (classes) | request | p50 ms | p99 ms | images/s | vs bare |",
        "|---|---|---|---|---|---|",
    ]
    names = {
        "http_single_json": ("HTTP, 1 image, JSON", "bare_single"),
        "http_batch64_json": ("HTTP, 64 images, JSON", "bare_batch64"),
        "http_batch64_npy": ("HTTP, 64 images, .npy body", "bare_batch64"),
        "bare_single": ("bare forward, 1 image", None),
        "bare_batch64": ("bare forward, 64 images", None),
    }
    for number, v in res["versions"].items():
        for key, (label, bare) in names.items():
            r = v[key]
            ratio = f"{r['images_per_s'] / v[bare]['images_per_s']:.2f}x" if bare else "-"
            lines.append(
                f"| v{number} ({v['classes']}) | {label} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                f"{r['images_per_s']:,.0f} | {ratio} |"
            )
    first, last = (res["versions"][k] for k in list(res["versions"])[:: len(res["versions"]) - 1])
    single = last["http_single_json"]["p50_ms"] / first["http_single_json"]["p50_ms"]
    batch = last["http_batch64_npy"]["p50_ms"] / first["http_batch64_npy"]["p50_ms"]
    lines += [
        "",
        f"- last vs first version, p50: single image {single:.2f}x, 64-image .npy batch {batch:.2f}x "
        "(target < 1.3x)",
    ]
    return "\n".join(lines)


def reliability_table(path: Path = RESULTS / "reliability.json") -> str:
    """One line per fault, hostile-input, fuzzing and load figure of reliability.json."""
    res = json.loads(path.read_text())
    lines = ["| what | result |", "|---|---|"]
    f = res.get("faults", {}).get("observed", {})
    rows = {
        "worker_sigkill_solo": lambda o: (
            "worker SIGKILLed mid-training (solo)",
            f"redelivered by lease expiry + sweeper {o['kill_to_redelivery_s']:.1f} s after the kill; "
            f"done at {o['kill_to_completion_s']:.1f} s, attempts {o['attempts']}, "
            f"version {o['version_during_outage']} served meanwhile",
        ),
        "worker_sigkill_prefork_child": lambda o: (
            "pool child SIGKILLed mid-training (prefork)",
            "Celery requeued it (acks_late, reject_on_worker_lost); "
            f"redelivered at {o['kill_to_redelivery_s']:.1f} s, "
            + f"done at {o['kill_to_completion_s']:.1f} s, attempts {o['attempts']}",
        ),
        "redis_restart_mid_job": lambda o: (
            "Redis restarted mid-job (SHUTDOWN NOSAVE)",
            f"running job {o['running_job']}; the queued job's lost message was re-sent; both done "
            f"{o['restart_to_both_done_s']:.1f} s after the restart, attempts {o['attempts']}",
        ),
        "postgres_connections_dropped_mid_job": lambda o: (
            "PostgreSQL backends of the worker terminated every 0.3 s",
            f"{o['backends_terminated']} terminated; job {o['outcome']}, attempts {o['attempts']}",
        ),
        "two_workers_order_and_duplicates": lambda o: (
            "two workers, two simultaneous uploads, 4 duplicate messages",
            f"versions {o['version_numbers']} follow ordinals {o['ordinals']}; no overlap "
            f"(gaps {o['gaps_between_jobs_s']} s); attempts {o['attempts']}",
        ),
        "disk_full_writing_checkpoint": lambda o: (
            "disk full (ENOSPC) while writing a checkpoint",
            f"job {o['job_state']} with ArtifactWriteFailed naming the disk; no files left; version "
            f"{o['version_serving_after_failure']} kept serving; retry {o['retry']}",
        ),
        "altered_checkpoint": lambda o: (
            "classifier file altered on disk",
            f"predict {o['predict_status']} {o['predict_error']} naming the sha256; other learners "
            f"{o['other_learner_status']}; training from it refused; after restore: {o['after_restore']}",
        ),
    }
    for key, row in rows.items():
        if key in f:
            lines.append("| {} | {} |".format(*row(f[key])))
    if "hostile_input" in res:
        h = res["hostile_input"]
        lines.append(
            f"| {h['hostile_cases']} hostile inputs ("
            + ", ".join(f"{n}x {code}" for code, n in sorted(h["expected_status_counts"].items()))
            + f") | {h['hostile_passed']}/{h['hostile_cases']} held (4xx naming the problem; rows, files and "
            f"active version unchanged); auth {h['auth_passed']}/{h['auth_tests']} |"
        )
    if "schemathesis" in res:
        s = res["schemathesis"]
        runs = [v for v in s.values() if isinstance(v, dict) and "cases_generated" in v]
        cases = sum(r["cases_generated"] for r in runs)
        fives = sum(r["responses_5xx"] for r in runs)
        lines.append(
            f"| schemathesis on the live schema with an admin key, {s['max_examples']} examples per "
            f"operation and phase | {cases} cases, {sum(r['requests'] for r in runs)} requests, "
            + f"{fives} responses 5xx |"
        )
    if "load" in res:
        ld = res["load"]
        rss = ld["api_rss_mib"]
        lines.append(
            f"| {ld['clients']} predict clients (one JSON image per request) for {ld['seconds']:.0f} s "
            f"while a task trains | {ld['requests_ok']} ok, {ld['error_count']} errors; "
            + f"p50 {ld['p50_ms']} ms, p99 "
            f"{ld['p99_ms']} ms, {ld['requests_per_s']} req/s; API RSS {rss['start']} → {rss['end']} MiB "
            f"(max {rss['max']}); training job {ld['training_during_window']['job_state_at_start']} → "
            f"{ld['training_during_window']['job_state_at_end']} during the window |"
        )
    if "many_learners" in res:
        m = res["many_learners"]
        c = m["cache"]
        lines.append(
            f"| {m['learners']} learners with one task each, predicts round-robin | {m['misrouted']} of "
            f"{m['predicts']} answers from the wrong model; cache size "
            f"{c.get('dgm_classifier_cache_size'):.0f} of {c.get('dgm_classifier_cache_capacity'):.0f}, "
            + "evictions "
            f"{c.get('dgm_classifier_cache_evictions_total'):.0f}; p50 {m['predict_p50_ms']} ms |"
        )
    return "\n".join(lines)


def walkthrough_table(path: Path = RESULTS / "walkthrough_digits.json") -> str:
    """One row per version: A_t and the worst old class per run (seed), mean over runs, seconds."""
    runs = json.loads(path.read_text())["runs"]
    seeds = [r["settings"]["seed"] for r in runs]
    head = " | ".join(f"A_t, worst old class (seed {s})" for s in seeds)
    lines = [
        f"| version | new classes | {head} | mean A_t | s upload → version |",
        "|---|---|" + "---|" * len(runs) + "---|---|",
    ]
    for i, v in enumerate(runs[0]["versions"]):
        rows = [r["versions"][i] for r in runs if len(r["versions"]) > i]
        cells = " | ".join(
            f"{row['a_t']:.3f}, {_num(row['old_class_min'])}"
            + (f" ({row['status']})" if row.get("status") == "held" else "")
            for row in rows
        )
        mean = sum(row["a_t"] for row in rows) / len(rows)
        secs = ", ".join(f"{row['seconds_upload_to_version']:.0f}" for row in rows)
        lines.append(f"| {v['version']} | {', '.join(v['classes'])} | {cells} | **{mean:.3f}** | {secs} |")
    last = [r["versions"][-1]["per_class"] for r in runs]
    classes = list(last[0])
    lines += [
        "",
        "Each class after the last task, real held-out images ("
        + ", ".join(f"seed {s}" for s in seeds)
        + "): "
        + "; ".join(f"{c} " + "/".join(f"{pc[c]:.2f}" for pc in last) for c in classes)
        + ".",
    ]
    return "\n".join(lines)


TABLES = {
    "accuracy": accuracy_table,
    "ablation": ablation_table,
    "latency": latency_table,
    "reliability": reliability_table,
    "walkthrough": walkthrough_table,
}

if __name__ == "__main__":
    import sys

    # python -m benchmarks.report [accuracy|ablation|latency|reliability|walkthrough] [results JSON]
    which = sys.argv[1] if len(sys.argv) > 1 else "accuracy"
    print(TABLES[which](*(Path(a) for a in sys.argv[2:3])))
