"""The classifier step (dgm/consolidate.py): its optional linear lr decay and mixup, both off by default."""

import pytest
import torch

import dgm.consolidate as consolidate
from dgm import Learner
from tests.dgm.test_checkpoint import LEARNER_V1 as FIXTURE


@pytest.mark.parametrize("decay", [False, True])
def test_consolidation_lr_decays_to_zero_only_when_asked(monkeypatch, decay):
    learner = Learner.load(FIXTURE)
    cfg = learner.config.replace(consolidate_per_class=40, consolidate_epochs=3, consolidate_lr_decay=decay)
    seen: list[float] = []
    train_epoch = consolidate.train_epoch

    def recording(*args, **kwargs):
        train_epoch(*args, **kwargs)
        seen.append(args[-1].get_last_lr()[0])  # the schedule, after the epoch's batches

    monkeypatch.setattr(consolidate, "train_epoch", recording)
    clf = consolidate.consolidate(
        cfg, learner.generator, len(learner.classes), torch.Generator().manual_seed(0)
    )
    assert len(seen) == 3 and clf.classify.out_features == len(learner.classes)
    if decay:  # falls every epoch and ends at 0 after the last batch
        assert seen[0] > seen[1] > seen[2] == pytest.approx(0.0, abs=1e-12) and seen[0] < cfg.lr
    else:
        assert seen == [cfg.lr] * 3


def test_lr_decay_is_off_for_a_checkpoint_written_before_it_existed():
    assert Learner.load(FIXTURE).config.consolidate_lr_decay is False


@pytest.mark.parametrize("mixup", [0.0, 1.0])
def test_mixup_blends_each_batch_with_a_shuffled_copy_only_when_asked(mixup):
    # class 0 is all +1, class 1 all -1: a shift keeps them constant, so any value strictly between
    # the two is a blend
    cfg = Learner.load(FIXTURE).config
    x = torch.cat([torch.ones(16, 1, 32, 32), -torch.ones(16, 1, 32, 32)])
    y = torch.cat([torch.zeros(16, dtype=torch.long), torch.ones(16, dtype=torch.long)])
    net = consolidate.Discriminator(1, 4, 2)
    seen: list[torch.Tensor] = []
    logits = net.logits
    net.logits = lambda xb: seen.append(xb.detach()) or logits(xb)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    consolidate.train_epoch(cfg, net, opt, x, y, 8, torch.Generator().manual_seed(0), mixup=mixup)
    values = torch.cat(seen).flatten()
    blended = ((values > -1 + 1e-6) & (values < 1 - 1e-6)).any()
    assert bool(blended) == bool(mixup)
