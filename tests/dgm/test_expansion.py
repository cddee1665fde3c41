"""The expansion rule (dgm/expansion.py, METHOD.md §5) on numbers alone: no network is built."""

import torch

from dgm import expansion

K = 4


def test_dgmw_channels_follow_the_rule_layer_by_layer():
    # nz 24, widths (16, 8, 4):
    # conv1: ceil(1000 / (24*16)) = 3; conv2: the input growth gives 3*8*16 = 384, ceil(616 / (19*16)) = 3;
    # conv3: the input growth gives 3*4*16 = 192 >= 100, so 0
    assert expansion.dgmw_channels([1000, 1000, 100], nz=24, widths=[16, 8, 4], kernel=K) == [3, 3, 0]
    assert expansion.dgmw_channels([0, 0, 0], nz=24, widths=[16, 8, 4], kernel=K) == [0, 0, 0]
    # one weight more than a whole channel holds needs a second channel
    assert expansion.dgmw_channels([24 * 16 + 1, 0, 0], nz=24, widths=[16, 8, 4], kernel=K) == [2, 0, 0]


def test_dgmw_channels_restore_at_least_the_reserved_weights():
    nz, widths = 24, [16, 8, 4]
    for newly in ([1, 1, 1], [500, 40, 9], [10_000, 3_000, 700]):
        added = expansion.dgmw_channels(newly, nz, widths, K)
        outs = [w + a for w, a in zip(widths, added, strict=True)]
        ins, ins_new = [nz, *widths[:-1]], [nz, *outs[:-1]]
        for l in range(3):
            grown = ins_new[l] * outs[l] - ins[l] * widths[l]
            assert grown * K * K >= newly[l], (newly, added, l)


def test_dgma_adds_one_channel_per_newly_reserved_unit():
    assert expansion.channels_to_add("dgma", [5, 0, 2], nz=24, widths=[16, 8, 4], kernel=K) == [5, 0, 2]
    # the same counts as weights: conv3's input did not grow, so its 2 weights need a channel of its own
    assert expansion.channels_to_add("dgmw", [5, 0, 2], nz=24, widths=[16, 8, 4], kernel=K) == [1, 0, 1]


def test_released_capacity_pays_before_growth():
    assert expansion.claim_spare([10, 3, 0], [4, 5, 2]) == ([6, 0, 0], [0, 2, 2])
    assert expansion.claim_spare([1, 2, 3], [0, 0, 0]) == ([1, 2, 3], [0, 0, 0])


def test_surplus_is_what_the_expansion_added_beyond_the_claim():
    assert expansion.surplus([384 * 3, 900, 192], [1000, 900, 100]) == [152, 0, 92]


def test_newly_reserved_and_mask_usage_count_mask_entries():
    before = [torch.tensor([True, False, False, False]), torch.zeros(2, 2, dtype=torch.bool)]
    task = [torch.tensor([True, True, False, False]), torch.tensor([[True, False], [False, False]])]
    after = [b | t for b, t in zip(before, task, strict=True)]
    assert expansion.newly_reserved(before, after) == [1, 1]
    assert expansion.mask_usage(task) == [0.5, 0.25]
