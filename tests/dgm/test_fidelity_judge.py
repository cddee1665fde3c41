"""The fidelity judges' recipes: a multi-class task's judge learns from clean images, a one-class
task's from noisy ones (dgm/fidelity.py says why; benchmarks/probe_fidelity_judge.py measured it)."""

from dgm import fidelity
from tests.dgm.conftest import task_data, tiny_learner


def test_a_multi_class_judge_trains_on_clean_images_and_a_one_class_judge_on_noisy_ones(digits, monkeypatch):
    seen: list[float] = []
    train_epoch = fidelity.train_epoch

    def recording(*args, noise: float = 0.0, **kwargs):
        seen.append(noise)
        return train_epoch(*args, noise=noise, **kwargs)

    monkeypatch.setattr(fidelity, "train_epoch", recording)
    learner = tiny_learner(fidelity_min_images=20)
    learner.learn_task(*task_data(digits, [0, 1]))
    assert seen and set(seen) == {fidelity.TASK_NOISE} == {0.0}  # every epoch of the two-class judge
    seen.clear()
    x_ref, y_ref = task_data(digits, [0, 1], per_class=20)
    learner.learn_task(*task_data(digits, [2]), reference=(x_ref, y_ref))
    assert seen and set(seen) == {fidelity.NOISE} == {0.3}  # the one-class judge's
