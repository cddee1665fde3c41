import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from dgm import DGMInputError
from dgm.data import FASHION_MNIST_DIR, class_incremental, load_idx, load_mnist_like


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_idx_round_trip_and_bad_magic(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.gz", arr)
    assert np.array_equal(load_idx(tmp_path / "a.gz"), arr)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DGMInputError, match="not an IDX file"):
        load_idx(tmp_path / "bad")


def test_missing_dataset_says_how_to_install(tmp_path):
    with pytest.raises(DGMInputError, match="apt-get install -y dataset-fashion-mnist"):
        load_mnist_like(tmp_path)


@pytest.mark.skipif(not FASHION_MNIST_DIR.exists(), reason="apt-get install -y dataset-fashion-mnist")
def test_real_fashion_mnist_loads_in_five_tasks_of_two():
    d = load_mnist_like()
    assert d["x_train"].shape == (60000, 28, 28) and d["x_test"].shape == (10000, 28, 28)
    assert d["x_train"].dtype == np.uint8
    assert class_incremental(d["y_train"], 2) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
