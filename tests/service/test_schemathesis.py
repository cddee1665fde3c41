"""Schemathesis against the live OpenAPI schema, with a valid admin key: no generated request is a 5xx.

The suite runs a bounded form (`DGM_FUZZ_EXAMPLES`, default 6 per operation and phase); the long form
is `python -m benchmarks.fuzz_api`, which runs this test with more examples and records the figures.
Server under test: uvicorn on PostgreSQL, with the real worker on Redis, and a learner trained for this
test whose name the fuzzer is given, so that generated predict and version requests reach a real model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from fastapi.testclient import TestClient

from core.settings import Settings
from tests.service.live import live_server
from tests.service.support import ADMIN, learned

EXAMPLES = int(os.environ.get("DGM_FUZZ_EXAMPLES", "6"))


def run_schemathesis(
    url: str, learner: str, examples: int, out: Path
) -> tuple[subprocess.CompletedProcess, dict]:
    config = out / "schemathesis.toml"
    # Path parameter `name` is pinned to the test's own learner for half the runs (below); the rest are free.
    config.write_text(f'[parameters]\n"path.name" = "{learner}"\n' if learner else "")
    report = out / "report.json"
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", f"{url}/openapi.json",
        "-H", f"Authorization: Bearer {ADMIN}", "--checks", "not_a_server_error",
        "--max-examples", str(examples), "--seed", "0", "--workers", "1", "--generation-database", "none",
        "--phases", "examples,coverage,fuzzing", "--suppress-health-check", "all", "--request-timeout", "60",
        "--no-color", "--report", "json,har", "--report-json-path", str(report),
        "--report-har-path", str(out / "requests.har"),
    ]  # fmt: skip
    # Never delete a learner or forget its classes, pinned or free: the pinned learner must stay whole for
    # the whole run, and the free run finds real learners' names too (it once deleted the session's
    # `trained` learner, so every later test that used it got 404). Both routes have their own tests.
    cmd += ["--exclude-operation-id-regex", "^(delete_learner|forget_class)_"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=out)
    return proc, json.loads(report.read_text()) if report.exists() else {}


def summarise(report: dict, har: Path) -> dict:
    """Cases generated, failures, and the status codes the server gave (from the HAR of every request)."""
    entries = json.loads(har.read_text())["log"]["entries"]
    statuses = Counter(str(e["response"]["status"]) for e in entries)
    return {
        "operations": report["operations"]["tested"],
        "cases_generated": report["test_cases"]["generated"],
        "cases_with_failures": report["test_cases"]["with_failures"],
        "requests": len(entries),
        "responses_5xx": sum(n for code, n in statuses.items() if code.startswith("5")),
        "status_counts": dict(sorted(statuses.items())),
        "seconds": round(report["running_time"], 1),
    }


def test_schemathesis_finds_no_server_errors(
    client: TestClient, pg_settings: Settings, pg_worker: None, tmp_path: Path
):
    # its own learner, not the session's `trained`: the fuzzer changes its gate and activates versions
    fuzzed = learned(client, "fuzz", [0, 1])
    results = {}
    with live_server(pg_settings) as url:
        for label, learner in (("pinned", fuzzed), ("free", "")):
            folder = tmp_path / label
            folder.mkdir()
            proc, report = run_schemathesis(url, learner, EXAMPLES, folder)
            results[label] = (proc, report)
    summary = {}
    for label, (proc, report) in results.items():
        assert proc.returncode == 0, f"{label}:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
        summary[label] = summarise(report, tmp_path / label / "requests.har")
        assert summary[label]["responses_5xx"] == 0 and summary[label]["cases_with_failures"] == 0
    assert sum(s["cases_generated"] for s in summary.values()) >= 1000
    if os.environ.get("DGM_FUZZ_SUMMARY"):  # the benchmark's long form collects the figures
        Path(os.environ["DGM_FUZZ_SUMMARY"]).write_text(json.dumps({"max_examples": EXAMPLES, **summary}))
