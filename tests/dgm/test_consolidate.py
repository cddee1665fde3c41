"""The classifier step (dgm/consolidate.py): its optional linear lr decay, and that it is off by default."""

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

    def recording(*args):
        train_epoch(*args)
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
