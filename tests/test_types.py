"""The type check as a test, so CI runs it: `python -m mypy dgm core` with the settings in pyproject.toml
([tool.mypy]: check_untyped_defs, warn_unused_ignores, untyped third-party libraries ignored)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_passes_on_dgm_and_core():
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "dgm", "core"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, f"mypy found type errors:\n{run.stdout}{run.stderr}"
