"""The torch-free rules that the library and the service both apply, written once.

The service checks every upload and predict body before it queues or loads anything (core/datasets.py,
core/images.py: messages that name the file); the library checks again for callers of `dgm` without the
service (dgm/images.py, dgm/learner.py: DGMInputError). Each side words its own message; what is
accepted is decided here. This module imports only numpy and the standard library, and `import dgm.shared`
does not load torch (dgm/__init__.py is lazy), so core may import it (tests/test_import_contracts.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

MAX_LABEL_CHARS = 200  # a class name; longer ones are refused at upload and by Learner.learn_task


def nchw(x: np.ndarray, image_shape: tuple[int, int, int]) -> np.ndarray | None:
    """x as N x C x H x W if it is N x H x W (one channel), N x C x H x W or N x H x W x C; else None."""
    c, h, w = image_shape
    if x.ndim == 3 and c == 1 and x.shape[1:] == (h, w):
        return x[:, None]
    if x.ndim == 4 and x.shape[1:] == (c, h, w):
        return x
    if x.ndim == 4 and x.shape[1:] == (h, w, c):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return None


def bad_labels(labels: Iterable[str]) -> list[str]:
    """The distinct labels that are empty, blank or longer than MAX_LABEL_CHARS, sorted."""
    return sorted({lab for lab in labels if not lab.strip() or len(lab) > MAX_LABEL_CHARS})


def sha256_file(path: str | Path) -> str:
    """sha256 hex digest of a file, read in blocks by the standard library."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
