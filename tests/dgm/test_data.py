import numpy as np
import pytest

from dgm import DGMInputError
from dgm.data import FASHION_MNIST_DIR, class_incremental, colourise, load_idx, load_mnist_like, save_idx


def test_idx_round_trip_and_bad_magic(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a.gz", "a"):  # gzipped and plain
        save_idx(tmp_path / name, arr)
        assert np.array_equal(load_idx(tmp_path / name), arr)
    assert (tmp_path / "a").read_bytes()[:4] == bytes([0, 0, 0x08, 3])
    with pytest.raises(DGMInputError, match="uint8"):
        save_idx(tmp_path / "f", arr.astype(np.float32))
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


def test_colourise_tints_ink_and_background_per_image_and_refuses_non_grey():
    x = np.zeros((50, 4, 4), np.uint8)
    x[:, 1:3, 1:3] = 255  # ink in the middle
    rgb = colourise(x, seed=3)
    assert rgb.shape == (50, 4, 4, 3) and rgb.dtype == np.uint8
    ink, ground = rgb[:, 1, 1], rgb[:, 0, 0]
    assert (ink >= 89).all() and (ground <= 77).all()  # bright ink ([0.35, 1]), dark ground ([0, 0.3])
    assert len(np.unique(ink, axis=0)) == 50  # a colour per image, not per set
    assert np.array_equal(colourise(x, seed=3), rgb) and not np.array_equal(colourise(x, seed=4), rgb)
    with pytest.raises(DGMInputError, match="grey"):
        colourise(rgb, seed=0)
