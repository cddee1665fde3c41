"""The critic's class-head update (METHOD.md §4 (a)) and the option that caps its cost per iteration."""

import pytest
import torch

from dgm import DGMInputError, LearnerConfig
from dgm.train import TaskTrainer
from tests.dgm.conftest import task_data, tiny_learner


@pytest.mark.parametrize("chunks", [0, 1, 2])
def test_classify_chunks_caps_the_class_head_steps_per_iteration(digits, monkeypatch, chunks):
    learner = tiny_learner(aux_g=True, classify_chunks=chunks)
    learner.learn_task(*task_data(digits, [0, 1, 2, 3]))
    counts: list[int] = []
    original = TaskTrainer.classify_steps

    def counting(self, *args):
        step, n = self.opt_d.step, [0]

        def counted(*a, **k):
            n[0] += 1
            return step(*a, **k)

        self.opt_d.step = counted
        try:
            return original(self, *args)
        finally:
            del self.opt_d.step
            counts.append(n[0])

    monkeypatch.setattr(TaskTrainer, "classify_steps", counting)
    learner.learn_task(*task_data(digits, [4]))
    # one new class, four replayed ones: the real batch plus four batches of replay make five chunks
    assert counts and set(counts) == {chunks or 5}


def test_classify_chunks_must_not_be_negative():
    with pytest.raises(DGMInputError, match="classify_chunks must be >= 0"):
        LearnerConfig.preset("tiny", classify_chunks=-1)


def test_lam_aux_weighs_the_generators_aux_term(digits):
    def trained(**overrides):
        learner = tiny_learner(aux_g=True, **overrides)
        learner.learn_task(*task_data(digits, [0, 1]))
        return learner.generator.weights[0].detach().clone()

    default = trained()
    assert torch.equal(default, trained(lam_aux=1.0))  # 1 is METHOD.md's weight, bit for bit
    assert not torch.equal(default, trained(lam_aux=3.0))


def test_lam_aux_must_not_be_negative():
    with pytest.raises(DGMInputError, match="lam_aux"):
        LearnerConfig.preset("tiny", lam_aux=-0.5)
