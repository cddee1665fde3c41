"""A one-class task's fidelity judge learns its class against real images of known classes (reference),
and its fidelity is relative to its rate on real images of the class that it did not learn from."""

import dataclasses

import numpy as np
import pytest
import torch

from dgm import DGMInputError, fidelity, images
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
    seen, rates = judged(monkeypatch), []
    score = fidelity.score
    monkeypatch.setattr(fidelity, "score", lambda *a, **k: rates.append(score(*a, **k)) or rates[-1])
    learner = tiny_learner(fidelity_min_images=20)
    learner.learn_task(*task_data(digits, [0, 1]))
    x_ref, y_ref = task_data(digits, [0, 1], per_class=20)
    x, y = task_data(digits, [2])
    report = learner.learn_task(x, y, reference=(x_ref, y_ref))
    # 32 of the task's 40 images of "2" are the judge's class 0, the one scored (8 measure the judge on
    # real images); each known class brings 32 / 4 = 8 images, the first it was given
    assert (seen[-1][:32] == 0).all() and seen[-1][32:].tolist() == [1] * 8 + [2] * 8
    xt, ref = images.prepare(x, learner.config.image_shape, "cpu"), learner.check_reference((x_ref, y_ref))
    cfg, gen = learner.config, learner.generator
    f, real = fidelity.one_class_fidelity(cfg, gen, xt, 2, *ref, learner.task_seed(1))
    # the same judge again: the report's value is the samples' rate over the real one
    assert real is not None and real >= fidelity.MIN_REAL
    assert report.fidelity["2"] == f == pytest.approx(min(1.0, rates[-1][0] / real))
    assert learner.fidelity()["2"] == report.fidelity["2"]
    assert report.fidelity["0"] is not None  # earlier classes keep what their own task measured


def test_a_one_class_task_too_small_or_a_judge_too_unsure_is_not_measured(digits, monkeypatch):
    seen = judged(monkeypatch)
    learner = tiny_learner(fidelity_min_images=41)
    learner.learn_task(*task_data(digits, [0, 1]))
    ref = task_data(digits, [0, 1], per_class=20)
    report = learner.learn_task(*task_data(digits, [2]), reference=ref)  # 40 images of "2" < 41
    assert report.fidelity["2"] is None and len(seen) == 1  # no judge was trained for it
    monkeypatch.setattr(fidelity, "MIN_REAL", 1.01)  # no judge is that sure
    learner.config = dataclasses.replace(learner.config, fidelity_min_images=20)
    report = learner.learn_task(*task_data(digits, [3]), reference=ref)
    assert report.fidelity["3"] is None and len(seen) == 2


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


def test_a_one_class_judge_keeps_four_of_its_class_per_known_image(digits, monkeypatch):
    """Against few known images the judge learns from fewer of its own class: with 1600 shirts against
    200 of each known class a judge called most pullover samples shirt; at 4 to 1 far fewer."""
    seen = judged(monkeypatch)
    learner = tiny_learner(fidelity_min_images=20)
    learner.learn_task(*task_data(digits, [0, 1]))
    ref = task_data(digits, [0, 1], per_class=3)
    learner.learn_task(*task_data(digits, [2]), reference=ref)
    assert seen[-1].tolist() == [0] * 12 + [1] * 3 + [2] * 3  # 8 of the 40 kept to measure it; 12 of 32
