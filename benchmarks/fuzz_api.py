"""Long-form schemathesis run against the live stack; writes `schemathesis` in results/reliability.json.

Runs tests/service/test_schemathesis.py (uvicorn on PostgreSQL, a real worker on Redis, a trained
learner) with many more examples per operation than the suite's bounded form, and records the cases
generated, the status codes the server answered with, and the number of 5xx (the target is zero).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.machine import describe
from benchmarks.reliability import update

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fuzz_api", description=__doc__.split("\n")[0])
    p.add_argument("--examples", type=int, default=60, help="max examples per operation and phase")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        summary_path = Path(tmp) / "summary.json"
        env = dict(os.environ, DGM_FUZZ_EXAMPLES=str(args.examples), DGM_FUZZ_SUMMARY=str(summary_path))
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:warnings",
            "-q",
            "tests/service/test_schemathesis.py",
        ]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if not summary_path.exists():
            raise SystemExit(f"the fuzz run failed before its summary:\n{proc.stdout[-5000:]}")
        summary = json.loads(summary_path.read_text())
    summary["passed"] = proc.returncode == 0
    summary["machine"] = describe()
    update("schemathesis", summary)
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
