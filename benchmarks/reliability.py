"""benchmarks/results/reliability.json: one key per reliability benchmark, each written on its own."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

PATH = Path(__file__).resolve().parent / "results" / "reliability.json"


def update(key: str, value: Any, path: Path = PATH) -> None:
    """Replace `key` and keep every other benchmark's figures (read, modify, atomic rename)."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = value
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


# ----- the README's reliability table -------------------------------------------------------------
# Where the benchmarks without their own "stack" field ran (their scripts say so; see each module).
STACKS = {
    "hostile_input": "API in-process (TestClient) on PostgreSQL, a real worker process on Redis",
    "schemathesis": "API under uvicorn (a thread of the test) on PostgreSQL, a real worker process on Redis",
    "load": "full stack: dgm serve --no-worker (uvicorn) + a dgm worker, PostgreSQL, Redis",
    "many_learners": "full stack: dgm serve --no-worker (uvicorn) + a dgm worker, PostgreSQL, Redis",
}
SETTINGS = {
    "hostile_input": "upload limit 2 MiB, unpacked 16 MiB; sweeper off",
    "schemathesis": "sweeper off",
    "load": "sweeper off; progress every 1 s; worker torch threads 1",
    "many_learners": "classifier cache 8; sweeper off",
}


def _fault_settings(row: dict[str, Any]) -> str:
    s = row.get("settings")
    if not s:
        return "not recorded (run before the field existed)"
    return f"lease {s['lease_s']} s, sweeper {s['sweeper']}, progress every {s['progress_s']} s"


def _fault_rows(observed: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    o = observed
    dupes = o.get("two_workers_order_and_duplicates", {}).get("duplicate_messages_sent")
    texts = {
        "worker_sigkill_solo": (
            "worker SIGKILLed mid-training (solo)",
            lambda r: (
                f"redelivered by lease expiry + sweep() {r['kill_to_redelivery_s']} s after the kill; "
                f"done at {r['kill_to_completion_s']} s, attempts {r['attempts']}, version "
                f"{r['version_during_outage']} served meanwhile"
            ),
        ),
        "worker_sigkill_prefork_child": (
            "pool child SIGKILLed mid-training (prefork)",
            lambda r: (
                "Celery requeued it (acks_late, reject_on_worker_lost); redelivered at "
                f"{r['kill_to_redelivery_s']} s, done at {r['kill_to_completion_s']} s, "
                f"attempts {r['attempts']}"
            ),
        ),
        "redis_restart_mid_job": (
            "Redis restarted mid-job (SHUTDOWN NOSAVE)",
            lambda r: (
                f"running job {r['running_job']}; the queued job's lost message was re-sent; both done "
                f"{r['restart_to_both_done_s']} s after the restart, attempts {r['attempts']}"
            ),
        ),
        "postgres_connections_dropped_mid_job": (
            "PostgreSQL backends of the worker terminated every 0.3 s",
            lambda r: f"{r['backends_terminated']} terminated; job {r['outcome']}, attempts {r['attempts']}",
        ),
        "two_workers_order_and_duplicates": (
            f"two workers, two simultaneous uploads, {dupes} duplicate messages",
            lambda r: (
                f"versions {r['version_numbers']} follow ordinals {r['ordinals']}; no overlap (gaps "
                f"{r['gaps_between_jobs_s']} s); attempts {r['attempts']}"
            ),
        ),
        "disk_full_writing_checkpoint": (
            "disk full (ENOSPC) while writing a checkpoint",
            lambda r: (
                f"job {r['job_state']} with ArtifactWriteFailed naming the disk; files left "
                f"{len(r['files_left_behind'])}; version {r['version_serving_after_failure']} kept serving; "
                f"retry {r['retry']}"
            ),
        ),
        "disk_full_writing_classifier": (
            "disk full (ENOSPC) while writing a classifier",
            lambda r: (
                f"job {r['job_state']}; files left {len(r['files_left_behind'])}; version "
                f"{r['version_serving_after_failure']} kept serving; retry {r['retry']}"
            ),
        ),
        "versions_folder_is_a_file": (
            "the versions folder is a file",
            lambda r: (
                f"job {r['job_state']} naming the path; files left {len(r['files_left_behind'])}; "
                f"retry {r['retry']}"
            ),
        ),
        "altered_checkpoint": (
            "classifier file altered on disk",
            lambda r: (
                f"predict {r['predict_status']} {r['predict_error']} naming the sha256; other learners "
                f"{r['other_learner_status']}; training from it refused; after restore: {r['after_restore']}"
            ),
        ),
        "database_lost_while_publishing_before_commit": (
            "database lost while publishing, before COMMIT",
            lambda r: f"job {r['job_state']}; versions {r['versions']}; new files kept: {r['files_kept']}",
        ),
        "database_lost_while_publishing_after_commit": (
            "database lost while publishing, after COMMIT",
            lambda r: f"job {r['job_state']}; versions {r['versions']}; new files kept: {r['files_kept']}",
        ),
    }
    rows = []
    for key, (what, result) in texts.items():
        if key in o:
            r = o[key]
            rows.append((what, r.get("stack", "not recorded"), _fault_settings(r), result(r)))
    return rows


def _recovery_rows(rec: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    s = rec["settings"]
    settings = (
        f"defaults: lease {s['lease_s']} s (renewed while training), sweeper every "
        f"{s['sweep_interval_s']:g} s in the API, worker restart after {s['worker_restart_s']:g} s"
    )
    rows = []
    for which in ("embedded", "distributed"):
        if which not in rec:
            continue
        r, trials = rec[which]["kill_to_redelivery"], rec[which]["trials"]
        done = sorted(t["kill_to_completion_s"] for t in trials)
        states = sorted({t["state"] for t in trials})
        rows.append(
            (
                f"worker SIGKILLed mid-training at the default settings ({which})",
                f"full stack, {rec[which]['stack']}",
                settings,
                f"redelivered {r['min_s']}-{r['max_s']} s after the kill (median {r['median_s']} s, "
                f"{len(trials)} kills); done at {done[0]}-{done[-1]} s, {'/'.join(states)}",
            )
        )
    return rows


def _other_rows(data: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    if "hostile_input" in data:
        h = data["hostile_input"]
        counts = ", ".join(f"{n}x {code}" for code, n in sorted(h["expected_status_counts"].items()))
        rows.append(
            (
                f"{h['hostile_cases']} hostile inputs ({counts})",
                STACKS["hostile_input"],
                SETTINGS["hostile_input"],
                f"{h['hostile_passed']}/{h['hostile_cases']} held (4xx naming the problem; rows, files and "
                f"active version unchanged); auth {h['auth_passed']}/{h['auth_tests']}",
            )
        )
    if "schemathesis" in data:
        f = data["schemathesis"]
        cases = sum(f[k]["cases_generated"] for k in ("pinned", "free"))
        bad = sum(f[k]["responses_5xx"] for k in ("pinned", "free"))
        rows.append(
            (
                f"schemathesis on the live schema, {f['max_examples']} examples per operation and phase",
                STACKS["schemathesis"],
                SETTINGS["schemathesis"],
                f"{cases} cases, {bad} responses 5xx",
            )
        )
    if "load" in data:
        ld = data["load"]
        t = ld["training_during_window"]
        rows.append(
            (
                f"{ld['clients']} predict clients (one JSON image per request) for {ld['seconds']} s while a "
                "task trains",
                STACKS["load"],
                SETTINGS["load"],
                f"{ld['requests_ok']} ok, {ld['error_count']} errors; p50 {ld['p50_ms']} ms, "
                f"p99 {ld['p99_ms']} ms, {ld['requests_per_s']} req/s; API RSS {ld['api_rss_mib']['start']} "
                f"→ {ld['api_rss_mib']['end']} MiB; training {t['job_state_at_start']} → "
                f"{t['job_state_at_end']}",
            )
        )
    if "many_learners" in data:
        m = data["many_learners"]
        c = m["cache"]
        rows.append(
            (
                f"{m['learners']} learners with one task each, predicts round-robin",
                STACKS["many_learners"],
                SETTINGS["many_learners"],
                f"{m['misrouted']} of {m['predicts']} answers from the wrong model; cache size "
                f"{c['dgm_classifier_cache_size']:g} of {c['dgm_classifier_cache_capacity']:g}, evictions "
                f"{c['dgm_classifier_cache_evictions_total']:g}; p50 {m['predict_p50_ms']} ms",
            )
        )
    return rows


def table(data: dict[str, Any]) -> str:
    """The README's reliability table: what, where it ran (full stack or in-process), settings, result."""
    rows = []
    if "recovery_defaults" in data:
        rows += _recovery_rows(data["recovery_defaults"])
    if "faults" in data:
        rows += _fault_rows(data["faults"]["observed"])
    rows += _other_rows(data)
    lines = ["| what | where it ran | settings | result |", "|---|---|---|---|"]
    lines += [f"| {what} | {where} | {settings} | {result} |" for what, where, settings, result in rows]
    return "\n".join(lines)


if __name__ == "__main__":  # python -m benchmarks.reliability [FILE]: print the table for the README
    import sys

    print(table(json.loads(Path(sys.argv[1] if len(sys.argv) > 1 else PATH).read_text())))
