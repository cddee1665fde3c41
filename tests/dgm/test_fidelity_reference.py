"""A one-class task's fidelity judge learns its class against real images of known classes (reference)."""

import numpy as np
import pytest
import torch

from dgm import DGMInputError, fidelity
from tests.dgm.conftest import task_data, tiny_learner


def judged(monkeypatch) -> list[torch.Tensor]:
    """Record the local labels of every judge dgm.fidelity trains (its images are in the same order)."""
    seen: list[torch.Tensor] = []
    oracle = fidelity.oracle

    def recording(cfg, x, y, rng, *args, **kwargs):
        assert len(x) == len(y)
        seen.append(y.clone())
        return oracle(cfg, x, y, rng, *args, **kwargs)

    monkeypatch.setattr(fidelity, "oracle", recording)
    return seen


def test_a_one_class_task_is_judged_against_the_reference(digits, monkeypatch):
    seen = judged(monkeypatch)
    learner = tiny_learner()
    learner.learn_task(*task_data(digits, [0, 1]))
    x_ref, y_ref = task_data(digits, [0, 1], per_class=10)
    report = learner.learn_task(*task_data(digits, [2]), reference=(x_ref, y_ref))
    # the task's 40 images of "2" are the judge's class 0, the one scored; the known classes follow
    assert (seen[-1][:40] == 0).all() and sorted(seen[-1][40:].tolist()) == [1] * 10 + [2] * 10
    assert 0.0 <= report.fidelity["2"] <= 1.0
    assert learner.fidelity()["2"] == report.fidelity["2"]
    assert report.fidelity["0"] is not None  # earlier classes keep what their own task measured


def test_without_a_reference_a_one_class_task_has_no_fidelity(digits, monkeypatch):
    seen = judged(monkeypatch)
    learner = tiny_learner()
    learner.learn_task(*task_data(digits, [0, 1]))
    report = learner.learn_task(*task_data(digits, [2]))
    assert report.fidelity["2"] is None and len(seen) == 1


def test_a_multi_class_task_ignores_the_reference(digits):
    plain, given = tiny_learner(), tiny_learner()
    for learner in (plain, given):
        learner.learn_task(*task_data(digits, [0, 1]))
    ref = task_data(digits, [0, 1], per_class=10)
    a = plain.learn_task(*task_data(digits, [2, 3]))
    b = given.learn_task(*task_data(digits, [2, 3]), reference=ref)
    assert a.fidelity == b.fidelity
    assert torch.equal(plain.generator.weights[0], given.generator.weights[0])


def test_a_reference_of_unknown_classes_is_refused_and_changes_nothing(digits):
    learner = tiny_learner()
    learner.learn_task(*task_data(digits, [0, 1]))
    before = learner.fidelity()
    x_ref, _ = task_data(digits, [5], per_class=10)
    with pytest.raises(DGMInputError, match="reference labels the learner has not learned: \\['5'\\]"):
        learner.learn_task(*task_data(digits, [2]), reference=(x_ref, np.full(10, 5)))
    assert learner.classes == ["0", "1"] and learner.fidelity() == before
