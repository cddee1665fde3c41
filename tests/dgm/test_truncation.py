"""The memory's latent truncation (LearnerConfig.truncation): what the memory draws from, what it keeps."""

import math

import pytest
import torch

from dgm import DGMInputError, LearnerConfig
from dgm.networks import Generator
from dgm.train import noise_like
from tests.dgm.conftest import task_data, tiny_learner


def test_untruncated_noise_is_the_plain_normal_stream():
    a = noise_like(300, 32, torch.Generator().manual_seed(3), torch.device("cpu"))
    b = torch.randn(300, 32, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("t", [0.5, 1.0, 2.0])
def test_truncated_noise_is_the_normal_conditioned_on_the_interval(t):
    z = noise_like(4000, 64, torch.Generator().manual_seed(0), torch.device("cpu"), t)
    assert z.abs().max() <= t
    # variance of N(0, 1) conditioned on |z| <= t: 1 - 2 t phi(t) / (2 Phi(t) - 1)
    phi, big_phi = math.exp(-t * t / 2) / math.sqrt(2 * math.pi), 0.5 * (1 + math.erf(t / math.sqrt(2)))
    assert z.var().item() == pytest.approx(1 - 2 * t * phi / (2 * big_phi - 1), rel=0.01)
    assert abs(z.mean().item()) < 0.01


def test_the_memory_draws_truncated_noise_and_training_does_not(digits, monkeypatch):
    seen: list[tuple[bool, float]] = []  # (generator in training mode, largest |noise| entry)
    forward = Generator.forward

    def recording(self, noise, classes, task, s=None):
        seen.append((self.training, float(noise[:, self.cfg.max_classes :].abs().max())))
        return forward(self, noise, classes, task, s)

    monkeypatch.setattr(Generator, "forward", recording)
    learner = tiny_learner(truncation=0.5, aux_g=True)  # aux_g: a replay set is drawn for the class head
    learner.learn_task(*task_data(digits, [0, 1]))
    learner.learn_task(*task_data(digits, [2, 3]))
    drawn = [m for training, m in seen if not training]  # replay, consolidation, fidelity
    trained = [m for training, m in seen if training]
    assert drawn and max(drawn) <= 0.5
    assert max(trained) > 2  # the generator still learns from the whole N(0, 1)
    seen.clear()
    samples = learner.sample("0", n=32)
    assert samples.shape[0] == 32 and max(m for _, m in seen) <= 0.5


def test_truncation_changes_the_samples_and_0_keeps_them(digits):
    plain, cut = tiny_learner(), tiny_learner(truncation=0.25)
    for learner in (plain, cut):
        learner.learn_task(*task_data(digits, [0, 1]))
    # same seeds, same training (training noise is untruncated): only the drawing differs
    assert torch.equal(plain.generator.weights[0], cut.generator.weights[0])
    assert not (plain.sample("0", n=8) == cut.sample("0", n=8)).all()
    cut.config = cut.config.replace(truncation=0.0)
    assert (plain.sample("0", n=8) == cut.sample("0", n=8)).all()


@pytest.mark.parametrize("bad", [-1.0, float("nan"), 11.0])
def test_truncation_must_lie_in_0_to_10(bad):
    with pytest.raises(DGMInputError, match="truncation must be in 0..10"):
        LearnerConfig.preset("tiny", truncation=bad)


def test_the_widest_truncation_stays_finite():
    z = noise_like(2000, 64, torch.Generator().manual_seed(0), torch.device("cpu"), 10.0)
    assert torch.isfinite(z).all() and z.abs().max() <= 10
