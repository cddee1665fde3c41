import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from dgm import CheckpointError, Learner, LearnerConfig, checkpoint
from dgm.inference import Classifier
from dgm.networks import Generator
from dgm.shared import sha256_file
from tests.dgm.conftest import task_data, tiny_learner

# Written by the code before Generator.state()/from_state() existed (commit 8a5c868): a DGMw learner,
# 8x8 images, ngf 2, ndf 2, nz 8, three tasks (zero+one, two, three), then "zero" and "one" forgotten,
# so the two classes left keep latent codes 2 and 3.
LEARNER_V1 = Path(__file__).parent / "data" / "learner_v1.safetensors"


def file_contents(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata(), {k: f.get_tensor(k) for k in f.keys()}


def assert_same_contents(a: Path, b: Path) -> None:
    """Same tensors and metadata; b's config may only add hyper-parameters that later code introduced,
    at their defaults (an old checkpoint keeps training as it did)."""
    (meta_a, tensors_a), (meta_b, tensors_b) = file_contents(a), file_contents(b)
    config_a, config_b = json.loads(meta_a.pop("config", "{}")), json.loads(meta_b.pop("config", "{}"))
    defaults = LearnerConfig().to_dict()
    assert config_b == {**config_a, **{k: defaults[k] for k in set(config_b) - set(config_a)}}
    assert meta_a == meta_b
    assert tensors_a.keys() == tensors_b.keys()
    for k, v in tensors_a.items():
        assert v.dtype == tensors_b[k].dtype and torch.equal(v, tensors_b[k]), k


@pytest.mark.parametrize(
    ("variant", "overrides"),
    [("dgmw", {}), ("dgma", {}), ("dgmw", {"classifier_ndf": 4}), ("dgmw", {"critic_batch_std": True})],
)
def test_save_load_identical_predictions_and_samples(digits, tmp_path, variant, overrides):
    learner = tiny_learner(variant, **overrides)  # classifier_ndf: a classifier narrower than the critic
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


def test_checkpoint_of_earlier_code_loads_and_saves_back_unchanged(tmp_path):
    learner = Learner.load(LEARNER_V1, device="cpu")
    assert learner.classes == ["two", "three"]
    assert learner.generator.class_codes == [2, 3]
    assert learner.generator.widths == [12, 4, 4]
    assert learner.sample("three", 3, seed=1).shape == (3, 1, 8, 8)
    learner.save(tmp_path / "again.safetensors")
    assert_same_contents(LEARNER_V1, tmp_path / "again.safetensors")


def test_checkpoint_from_before_forgetting_gets_default_codes_and_no_released_capacity(tmp_path):
    tensors, meta = checkpoint.read(LEARNER_V1, "learner")
    for key in ("class_codes", "released"):
        del meta["state"][key]
    checkpoint.write(tensors, meta, tmp_path / "old.safetensors")
    gen = Learner.load(tmp_path / "old.safetensors").generator
    assert gen.class_codes == [0, 1] and gen.spare == [0, 0, 0]


@pytest.mark.parametrize("variant", ["dgmw", "dgma"])
def test_generator_state_round_trips_through_json_metadata(digits, variant):
    learner = tiny_learner(variant)
    learner.learn_task(*task_data(digits, [0, 1]))
    learner.learn_task(*task_data(digits, [2]))
    gen = learner.generator
    tensors, meta = gen.state()
    assert all(isinstance(v, torch.Tensor) for v in tensors.values())
    back = Generator.from_state(learner.config, tensors, json.loads(json.dumps(meta)))
    noise = torch.randn(4, gen.nz, generator=torch.Generator().manual_seed(5))
    for task in range(gen.n_tasks):
        classes = torch.tensor(gen.task_class_ids(task)).repeat(4)[:4]
        assert torch.equal(back(noise, classes, task), gen(noise, classes, task))
    assert back.state()[1] == meta


def test_generator_state_refuses_an_open_task():
    gen = tiny_learner("dgmw").generator
    gen.begin_task(2)
    with pytest.raises(CheckpointError, match="still being learned"):
        gen.state()
