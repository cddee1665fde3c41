"""The `--labels` option of the scripts that read an IDX folder: which names its classes 0-9 take.

A module of its own, without torch, so that `benchmarks.walkthrough` (an HTTP client of `dgm serve`)
shares it without importing the learner.
"""

from __future__ import annotations

import argparse

from dgm.data import CLASS_NAMES


def add_labels_argument(p: argparse.ArgumentParser, which: str, default: str | None = "fashion") -> None:
    """--labels, a key of dgm.data.CLASS_NAMES; `which` is what the help says of the choice."""
    help = f"names of the IDX classes 0-9: {which}"
    p.add_argument("--labels", choices=sorted(CLASS_NAMES), default=default, help=help)
