"""Data sets from local files only (nothing downloads): IDX (MNIST-family) and npz, plus task splits."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from numpy.typing import DTypeLike

from dgm.errors import DGMInputError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
)
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# names for an IDX set's classes 0-9 (the benchmarks' --labels); their sorted order is not the class order
CLASS_NAMES = {"fashion": FASHION_MNIST_CLASSES, "digits": DIGIT_WORDS}
# the four standard IDX files of an MNIST-style set, without the optional .gz
MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES: dict[int, DTypeLike] = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def load_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally .gz) into an array of its declared shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DGMInputError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=_IDX_DTYPES[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DGMInputError(f"{path}: header says {dims} but holds {data.size} values")
    return data.reshape(dims)


def save_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as one IDX file (gzipped when the name ends in .gz); load_idx reads it back."""
    path = Path(path)
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise DGMInputError(f"{path}: save_idx writes uint8 arrays, got {array.dtype}")
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def load_mnist_like(root: str | Path = FASHION_MNIST_DIR) -> dict[str, np.ndarray]:
    """x_train (60000, 28, 28) uint8, y_train, x_test, y_test from the four standard IDX files in `root`."""
    root = Path(root)
    out = {}
    for key, stem in MNIST_FILES.items():
        candidates = [root / f"{stem}.gz", root / stem]
        found = next((p for p in candidates if p.exists()), None)
        if found is None:
            raise DGMInputError(
                f"{stem}(.gz) not found in {root}; "
                "for Fashion-MNIST run: apt-get install -y dataset-fashion-mnist"
            )
        out[key] = load_idx(found)
    return out


def load_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """x and y arrays from an npz file; pickled object arrays are refused."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return f["x"], f["y"]
    except (KeyError, ValueError, OSError) as exc:
        raise DGMInputError(
            f"{path}: need an npz with arrays 'x' and 'y' and no pickled objects ({exc})"
        ) from exc


def colourise(x: np.ndarray, seed: int) -> np.ndarray:
    """Grey N x H x W uint8 -> N x H x W x 3 uint8: each image's ink and background get their own colour.

    A colour stand-in for the 3-channel path on real shapes (no colour image set is on disk here): the
    ink is a bright colour (each channel in [0.35, 1]) and the background a dark one ([0, 0.3]), drawn
    per image from `seed`, so colour says nothing of the class and the shape says everything.
    """
    x = np.asarray(x)
    if x.ndim != 3 or x.dtype != np.uint8:
        raise DGMInputError(f"colourise needs N x H x W uint8 grey images, got {x.dtype} {x.shape}")
    rng = np.random.default_rng(seed)
    ink = rng.uniform(0.35, 1.0, (len(x), 1, 1, 3)).astype(np.float32)
    ground = rng.uniform(0.0, 0.3, (len(x), 1, 1, 3)).astype(np.float32)
    a = x[..., None].astype(np.float32) / 255.0
    return np.rint((a * ink + (1 - a) * ground) * 255).astype(np.uint8)


def colourise_sets(data: dict) -> dict:
    """`data` with x_train and x_test tinted by colourise, one fixed draw each (the same pixels whatever
    the run or seed): the benchmarks' --colour."""
    return {**data, "x_train": colourise(data["x_train"], 1), "x_test": colourise(data["x_test"], 2)}


def class_incremental(y: np.ndarray, classes_per_task: int, order: list | None = None) -> list[list]:
    """Split the sorted class list into consecutive tasks of `classes_per_task` classes."""
    order = list(order) if order is not None else sorted(np.unique(y).tolist())
    return [order[i : i + classes_per_task] for i in range(0, len(order), classes_per_task)]


def select(x: np.ndarray, y: np.ndarray, classes: list) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isin(y, classes)
    return x[keep], y[keep]
