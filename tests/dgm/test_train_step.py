"""The critic's class-head update (METHOD.md §4 (a)) and the option that caps its cost per iteration."""

import pytest
import torch

from dgm import DGMInputError, LearnerConfig
from dgm.train import TaskTrainer, budget
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


@pytest.mark.parametrize(
    ("steps", "per_class", "classes", "expected"),
    [(30, 0, 4, 30), (30, 10, 2, 30), (30, 10, 4, 40), (0, 7, 3, 7 * 3)],
)
def test_step_budget_is_the_larger_floor_per_task_or_per_class(steps, per_class, classes, expected):
    """A task trains max(steps, steps_per_class x its classes) generator steps, in whole epochs."""
    cfg = LearnerConfig.preset("tiny", epochs=1, steps=steps, steps_per_class=per_class, batch_size=10)
    epochs, per_epoch = budget(cfg, 25, classes)  # 25 images: three batches an epoch
    assert per_epoch == 3 and epochs == -(-expected // 3)


def test_a_task_trains_the_step_floor_of_its_own_classes(digits):
    learner = tiny_learner(steps=0, steps_per_class=10, batch_size=10, fidelity_epochs=0)
    totals: list[int] = []
    for classes in ([0, 1, 2, 3], [4]):  # 20 images (2 batches), then 5 (1 batch)
        learner.learn_task(
            *task_data(digits, classes, per_class=5), progress=lambda p: totals.append(p.total)
        )
        assert totals[-1] == 10 * len(classes)


def test_steps_per_class_must_not_be_negative():
    with pytest.raises(DGMInputError, match="steps_per_class must be >= 0"):
        LearnerConfig.preset("tiny", steps_per_class=-1)


def test_only_dgmw_small_floors_steps_per_class():
    """Measured for DGMw on tasks of five classes only: DGMa's `small`, `tiny` and `paper` keep 0, and
    a config stored before the key existed (a learner's row, a checkpoint) loads as 0, its old budget."""
    assert LearnerConfig.preset("small").steps_per_class == 500
    assert LearnerConfig.preset("small", variant="dgma").steps_per_class == 0
    assert LearnerConfig.preset("tiny").steps_per_class == LearnerConfig.preset("paper").steps_per_class == 0
    stored = LearnerConfig.preset("small").to_dict()
    del stored["steps_per_class"]
    assert LearnerConfig.from_dict(stored).steps_per_class == 0


@pytest.mark.parametrize("decay", [False, True])
def test_gan_lr_decay_falls_to_zero_over_the_task_but_not_for_the_mask_embedding(digits, monkeypatch, decay):
    learner = tiny_learner(gan_lr_decay=decay, steps=20)
    lr = learner.config.lr
    seen: list[tuple[list[float], list[float]]] = []
    original = TaskTrainer.step

    def recording(self, *args):
        groups = self.opt_g.param_groups
        embedding = {id(e) for e in self.gen.embedding}
        holds_mask = [any(id(p) in embedding for p in g["params"]) for g in groups]
        mask_lrs = [g["lr"] for g, m in zip(groups, holds_mask, strict=True) if m]
        weights = [g for g, m in zip(groups, holds_mask, strict=True) if not m]
        others = [g["lr"] for g in [*self.opt_d.param_groups, *weights]]
        seen.append((others, mask_lrs))
        return original(self, *args)

    monkeypatch.setattr(TaskTrainer, "step", recording)
    learner.learn_task(*task_data(digits, [0, 1]))
    total = len(seen)
    assert total > 10
    assert all(mask == [lr] for _, mask in seen)  # what the task reserves learns at the full rate
    if not decay:
        assert all(set(others) == {lr} for others, _ in seen)
        return
    # step k (0-based) trains at lr * (1 - k / total): the full rate first, a step's worth at the end
    for k, (others, _) in enumerate(seen):
        assert others and all(v == pytest.approx(lr * (1 - k / total)) for v in others)


def test_critic_batch_std_scores_each_class_variety_and_never_serves():
    from dgm.networks import Discriminator, class_spread

    torch.manual_seed(0)
    disc = Discriminator(1, 4, 3, projection=True, batch_std=True).eval()  # BN: per-image features
    x, y = torch.randn(6, 1, 32, 32), torch.tensor([0, 0, 0, 1, 1, 1])
    one_kind = torch.cat([x[:1].expand(3, -1, -1, -1), x[3:4].expand(3, -1, -1, -1)])
    with torch.no_grad():
        h = disc.trunk(x)
        expected = (h[:3].std(0).mean() + h[3:].std(0).mean()) / 2
        assert class_spread(h, y) == pytest.approx(float(expected))
        assert float(class_spread(disc.trunk(one_kind), y)) == 0  # one image per class: no variety
        before = disc.score(x, y)  # the weight starts at 0: a critic that ignores variety at first
        disc.spread.fill_(2.0)
        assert torch.allclose(disc.score(x, y) - before, 2 * expected.expand(6))
        assert torch.allclose(disc.score(one_kind, y), before[[0, 0, 0, 3, 3, 3]])  # no variety, no bonus
    assert not [k for k in disc.state() if "spread" in k or "embed" in k]  # judges, never serves
