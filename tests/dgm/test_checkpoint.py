import json

import numpy as np
import pytest

from dgm import CheckpointError, Learner
from dgm.inference import Classifier, sha256_file
from tests.dgm.conftest import task_data, tiny_learner


@pytest.mark.parametrize("variant", ["dgmw", "dgma"])
def test_save_load_identical_predictions_and_samples(digits, tmp_path, variant):
    learner = tiny_learner(variant)
    learner.learn_task(*task_data(digits, [0, 1]))
    learner.learn_task(*task_data(digits, [2]))
    x, _ = task_data(digits, [0, 1, 2], per_class=20)
    learner.save(tmp_path / "full.safetensors")
    learner.save_classifier(tmp_path / "clf.safetensors")

    loaded = Learner.load(tmp_path / "full.safetensors", device="cpu")
    assert loaded.classes == learner.classes
    assert loaded.generator.widths == learner.generator.widths
    assert np.array_equal(loaded.predict(x)[1], learner.predict(x)[1])
    for c in learner.classes:
        assert np.array_equal(loaded.sample(c, 5, seed=3), learner.sample(c, 5, seed=3))

    clf = Classifier.load(tmp_path / "clf.safetensors", sha256=sha256_file(tmp_path / "clf.safetensors"))
    assert clf.classes == learner.classes
    assert np.array_equal(clf.predict(x)[1], learner.predict(x)[1])
    assert (tmp_path / "clf.safetensors").stat().st_size < (tmp_path / "full.safetensors").stat().st_size


def test_loaded_learner_keeps_learning_and_protects_old_tasks(digits, tmp_path):
    learner = tiny_learner("dgmw")
    learner.learn_task(*task_data(digits, [0, 1]))
    learner.save(tmp_path / "v1.safetensors")
    before = learner.sample("0", 6, seed=1)
    loaded = Learner.load(tmp_path / "v1.safetensors")
    loaded.learn_task(*task_data(digits, [2, 3]))
    assert np.array_equal(loaded.sample("0", 6, seed=1), before)
    assert loaded.classes == ["0", "1", "2", "3"]


def test_checkpoint_metadata_describes_architecture_and_holds_no_pickle(digits, tmp_path):
    from safetensors import safe_open

    learner = tiny_learner("dgma")
    learner.learn_task(*task_data(digits, [0, 1]))
    path = tmp_path / "full.safetensors"
    learner.save(path)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        keys = set(f.keys())
    state = json.loads(meta["state"])
    assert json.loads(meta["config"])["variant"] == "dgma"
    assert state["widths"] == learner.generator.widths and state["classes"] == ["0", "1"]
    assert {"mask.0.0", "cumulative.2", "gen.weights.0", "disc.classify.weight"} <= keys
    assert b"\x80\x04" not in path.read_bytes()[:64]  # no pickle protocol header


def test_classifier_refuses_tampered_file(digits, tmp_path):
    learner = tiny_learner("dgmw")
    learner.learn_task(*task_data(digits, [0, 1]))
    path = tmp_path / "clf.safetensors"
    learner.save_classifier(path)
    digest = sha256_file(path)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        Classifier.load(path, sha256=digest)


def test_garbage_file_is_a_clear_checkpoint_error(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        Learner.load(path)
