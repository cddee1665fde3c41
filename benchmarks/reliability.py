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
