"""Hostile input and access figures for results/reliability.json, from the suite's own tests.

Runs tests/service/test_hostile.py and tests/service/test_auth.py against PostgreSQL and a real worker
and records, per case, the expected status and whether it held (4xx naming the problem, nothing stored
changed: row counts, artifact files, active version).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from benchmarks.machine import describe
from benchmarks.reliability import update

ROOT = Path(__file__).resolve().parent.parent
FILES = ["tests/service/test_hostile.py", "tests/service/test_auth.py"]


def result(case: ET.Element) -> str:
    if case.find("failure") is not None or case.find("error") is not None:
        return "failed"
    return "skipped" if case.find("skipped") is not None else "passed"


def expected_status(case: ET.Element) -> str | None:
    """The status the test expected, which it records as a JUnit property (the benchmark imports no test)."""
    prop = case.find("properties/property[@name='expected_status']")
    return None if prop is None else prop.get("value")


def main() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-p", "no:warnings", "-q", *FILES, f"--junitxml={junit}"]
        subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        cases = list(ET.parse(junit).getroot().iter("testcase"))
    outcome = {c.get("name"): result(c) for c in cases}
    expected = [expected_status(c) for c in cases if c.get("name").startswith("test_hostile_input_is_4xx")]
    hostile = {k: v for k, v in outcome.items() if k.startswith("test_hostile_input_is_4xx")}
    auth = {k: v for k, v in outcome.items() if k.startswith("test_auth")}
    figures = {
        "hostile_cases": len(hostile),
        "hostile_passed": sum(v == "passed" for v in hostile.values()),
        "expected_status_counts": dict(Counter(expected)),
        "failed": sorted(k for k, v in outcome.items() if v != "passed"),
        "auth_tests": len(auth),
        "auth_passed": sum(v == "passed" for v in auth.values()),
        "machine": describe(),
    }
    update("hostile_input", figures)
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
