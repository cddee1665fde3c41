"""The offline probes (probe_classifier, probe_fidelity_judge) on a digit set read with --labels."""

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from benchmarks import probe_classifier, probe_fidelity_judge
from dgm import Learner, LearnerConfig
from dgm.data import DIGIT_WORDS, MNIST_FILES, save_idx


@pytest.fixture
def checkpoint(tmp_path) -> tuple[Path, Path]:
    """A tiny learner that learned digits three and five, and an IDX folder of sklearn's digits."""
    d = load_digits()
    x, y = (d.images / 16 * 255).astype(np.uint8), d.target
    cfg = LearnerConfig.preset("tiny", image_shape=(1, 8, 8), epochs=1, steps=0, consolidate_epochs=1)
    learner = Learner(cfg, seed=0, device="cpu")
    task = np.where(np.isin(y[:1200], [3, 5]))[0]
    learner.learn_task(x[task], np.array(DIGIT_WORDS)[y[task]])
    learner.save(tmp_path / "ckpt.safetensors")
    folder = tmp_path / "idx"
    folder.mkdir()
    arrays = {"x_train": x[:1200], "y_train": y[:1200], "x_test": x[1200:], "y_test": y[1200:]}
    for key, array in arrays.items():
        save_idx(folder / f"{MNIST_FILES[key]}.gz", array.astype(np.uint8))
    return tmp_path / "ckpt.safetensors", folder


def test_probe_scores_a_digit_checkpoint_on_the_real_test_images_of_its_classes(tmp_path, checkpoint):
    ckpt, folder = checkpoint
    out = tmp_path / "probe.json"
    argv = [str(ckpt), "--data-dir", str(folder), "--variants", "base", "--reps", "1", "--out", str(out)]
    result = probe_classifier.main([*argv, "--labels", "digits"])
    probe = result["probes"][0]
    assert sorted(probe["classes"]) == ["five", "three"] and json.loads(out.read_text()) == result
    # every score is a fraction of the real test threes and fives: none is missing or NaN
    for scores in (probe["saved"], probe["variants"]["base"]["runs"][0]["per_class"]):
        assert set(scores) == {"three", "five"}
        assert all(0.0 <= v <= 1.0 for v in scores.values())
    # under Fashion-MNIST's names the same folder holds no image of either class: refused, naming both
    with pytest.raises(SystemExit, match=r"no image of \['five', 'three'\]; is --labels right"):
        probe_classifier.main([*argv, "--labels", "fashion"])


def test_fidelity_judge_probe_reads_the_same_folder_under_digit_words(tmp_path, checkpoint):
    ckpt, folder = checkpoint
    out = tmp_path / "judge.json"
    probe_fidelity_judge.main([str(ckpt), "--data-dir", str(folder), "--labels", "digits", "--size", "40",
                               "--judges", "1", "--recipes", "now", "--out", str(out)])  # fmt: skip
    result = json.loads(out.read_text())
    assert result["args"]["labels"] == "digits" and len(result["tasks"]) == 1
