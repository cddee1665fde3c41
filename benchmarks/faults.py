"""Fault injection figures: run the fault tests and record what each one observed.

The tests (tests/worker/test_faults_*.py) kill workers mid-training (solo and a prefork pool child),
restart a private Redis with SHUTDOWN NOSAVE, terminate the worker's PostgreSQL backends, fill the disk
while a version is saved, and alter a checkpoint on disk. Each writes its observations (seconds from the
fault to redelivery and completion, which mechanism redelivered, attempts, error texts) to the file
named by DGM_FAULTS_RESULTS. This script runs them with that set and stores the figures, with the
machine record, under the key "faults" of benchmarks/results/reliability.json; other keys of that file
belong to other benchmarks and are kept as they are.

Run: `python -m benchmarks.faults` (PostgreSQL on 127.0.0.1:5432 and redis-server on PATH needed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import describe

ROOT = Path(__file__).resolve().parent.parent
TESTS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests" / "worker").glob("test_faults_*.py"))
KEY = "faults"


def run_tests(results: Path) -> dict:
    """Run the fault tests; return pass/fail, pytest's summary line and seconds per test (setup + call)."""
    env = {**os.environ, "DGM_FAULTS_RESULTS": str(results), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "pytest", "-p", "no:warnings", "-p", "no:cacheprovider", "--durations=0"]
    started = time.monotonic()
    proc = subprocess.run([*cmd, *TESTS], cwd=ROOT, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode:
        print(proc.stdout[-5000:], proc.stderr[-2000:], file=sys.stderr)
    per_test: dict[str, float] = {}
    for ln in lines:  # "12.34s call     tests/worker/test_faults_x.py::test_y[param]"
        m = re.match(r"([0-9.]+)s (setup|call|teardown) +\S+::(\S+)$", ln.strip())
        if m:
            per_test[m[3]] = round(per_test.get(m[3], 0.0) + float(m[1]), 2)
    return {
        "passed": proc.returncode == 0,
        "pytest": lines[-1].strip("= ") if lines else "",
        "wall_s": round(time.monotonic() - started, 1),
        "seconds_per_test": dict(sorted(per_test.items())),
    }


def store(out: Path, entry: dict) -> None:
    """Read-modify-write: only our key changes, whatever else the file holds."""
    data = json.loads(out.read_text()) if out.exists() else {}
    data[KEY] = entry
    out.write_text(json.dumps(data, indent=2) + "\n")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.faults", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "reliability.json")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dgm-faults-") as folder:
        results = Path(folder) / "observed.json"
        run = run_tests(results)
        observed = json.loads(results.read_text()) if results.exists() else {}
    entry = {
        "what": __doc__.split("\n\n")[1].replace("\n", " "),
        "command": "python -m benchmarks.faults",
        "tests": TESTS,
        **run,
        "conditions": "TINY learner (8x8 digits, preset tiny, 24 images per class; 80 epochs, 120 for the "
        "Redis and PostgreSQL faults, where a job must last long enough to be hit), lease_s 5, progress "
        "every 0.2 s, worker torch threads 1, solo workers unless said, private redis-server, fresh "
        "PostgreSQL schema per test module; machine shared with other test runs",
        "observed": observed,
        "machine": describe(),
    }
    store(args.out, entry)
    print(json.dumps({k: entry[k] for k in ("passed", "pytest", "wall_s")}, indent=2))
    return entry


if __name__ == "__main__":
    sys.exit(0 if main()["passed"] else 1)
