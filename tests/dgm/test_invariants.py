"""One test per promise of the method: old tasks are untouched by new tasks and by expansion."""

import numpy as np
import pytest
import torch

from dgm import masks
from dgm.train import generate
from tests.dgm.conftest import task_data, tiny_learner


def _old_outputs(learner, classes, n=8):
    rng = torch.Generator().manual_seed(123)
    return generate(learner.generator, classes, n, rng)


@pytest.mark.parametrize(("g_ema", "own_code_rows"), [(0.0, False), (0.9, False), (0.0, True)])
@pytest.mark.parametrize("variant", ["dgmw", "dgma"])
def test_generator_old_classes_bit_identical_after_new_task_and_expansion(
    digits, variant, g_ema, own_code_rows
):
    # reuse_start 0 (the official all-zero start): later tasks claim free weights, so the network grows;
    # g_ema: the averaged weights a task leaves behind must not touch what earlier tasks reserved;
    # own_code_rows: later tasks train their own code rows of conv1 even where reserved
    learner = tiny_learner(variant, reuse_start=0.0, g_ema=g_ema, own_code_rows=own_code_rows)
    learner.learn_task(*task_data(digits, [0, 1]))
    before = _old_outputs(learner, [0, 1])
    widths_before = list(learner.generator.widths)
    learner.learn_task(*task_data(digits, [2, 3, 4]))
    learner.learn_task(*task_data(digits, [5]))
    assert learner.generator.widths != widths_before, "the network should have grown"
    after = _old_outputs(learner, [0, 1])
    assert torch.equal(before, after)


@pytest.mark.parametrize("g_ema", [0.0, 0.9])
@pytest.mark.parametrize("variant", ["dgmw", "dgma"])
def test_reserved_weights_bit_identical_after_next_task(digits, variant, g_ema):
    learner = tiny_learner(variant, g_ema=g_ema)
    learner.learn_task(*task_data(digits, [0, 1]))
    gen = learner.generator
    frozen = [(1 - m).bool() for m in gen.gradient_multipliers()]
    assert any(f.any() for f in frozen), "the first task reserved nothing"
    kept = [w.detach().clone()[f] for w, f in zip(gen.weights, frozen, strict=True)]
    free_before = [w.detach().clone()[~f] for w, f in zip(gen.weights, frozen, strict=True)]
    learner.learn_task(*task_data(digits, [2, 3]))
    for l, f in enumerate(frozen):
        w = learner.generator.weights[l].detach()[: f.shape[0], : f.shape[1]]
        assert torch.equal(w[f], kept[l])
    moved = [
        not torch.equal(learner.generator.weights[l].detach()[: f.shape[0], : f.shape[1]][~f], b)
        for l, (f, b) in enumerate(zip(frozen, free_before, strict=True))
    ]
    assert any(moved), "free weights should still be trained"


def test_own_code_rows_train_where_reserved_and_nothing_else_reserved_moves(digits):
    # DGMa: a reserved conv1 unit freezes every row into it, the later classes' code rows included.
    # (DGMw reserves per weight, and no gradient but the sparsity term's reaches an unused code row, so
    # a first task leaves those rows free: nothing to show there.)
    learner = tiny_learner("dgma", own_code_rows=True)
    learner.learn_task(*task_data(digits, [0, 1]))
    gen = learner.generator
    frozen = [(1 - m).bool() for m in gen.gradient_multipliers()]  # no task open: every reserved weight
    before = [w.detach().clone() for w in gen.weights]
    learner.learn_task(*task_data(digits, [2, 3]))
    rows = [gen.class_codes[c] for c in gen.task_class_ids(1)]
    assert len(rows) == 2 and not set(rows) & {gen.class_codes[c] for c in gen.task_class_ids(0)}
    w0 = gen.weights[0].detach()[:, : before[0].shape[1]]
    reserved_rows = frozen[0][rows]
    assert reserved_rows.any(), "task 1 reserved nothing on task 2's code rows: the test shows nothing"
    assert not torch.equal(w0[rows][reserved_rows], before[0][rows][reserved_rows]), (
        "the new classes' code rows should train where task 1 reserved them"
    )
    others = torch.ones(frozen[0].shape[0], dtype=torch.bool)
    others[rows] = False
    assert torch.equal(w0[others][frozen[0][others]], before[0][others][frozen[0][others]])
    for l in (1, 2):
        w = gen.weights[l].detach()[: before[l].shape[0], : before[l].shape[1]]
        assert torch.equal(w[frozen[l]], before[l][frozen[l]])


@pytest.mark.parametrize("variant", ["dgmw", "dgma"])
def test_masks_binarise_at_s_max(digits, variant):
    """What the task trained (soft masks at s_max) is what is served (the binarised masks).

    A mask entry whose task loss and sparsity cost balance sits at a fixed soft value whatever s is
    (its e shrinks as 1/s), so an entry can end between 0.05 and 0.95. DGMa's tiny preset has 28 units,
    where one such unit is 3.6% of the entries (issue 9 saw it on a fresh machine): the fraction is
    checked on DGMw's thousands of weight entries, and for both variants the served generator must draw
    what the trained one drew.
    """
    learner = tiny_learner(variant, epochs=8)
    x, y = task_data(digits, [0, 1], per_class=60)
    seen = {}

    def grab(progress):
        if progress.step == progress.total:
            s_max = learner.config.s_max
            seen["soft"] = [torch.sigmoid(s_max * e.detach()) for e in learner.generator.embedding]

    learner.learn_task(x, y, progress=grab)
    soft = torch.cat([m.flatten() for m in seen["soft"]])
    between = ((soft > 0.05) & (soft < 0.95)).float().mean().item()
    if variant == "dgmw":
        assert between < 0.01, f"{between:.2%} of mask entries are not binary at s_max"
    gen = learner.generator
    binary = gen.task_masks[0]
    served = generate(gen, [0, 1], 200, torch.Generator().manual_seed(1))
    gen.task_masks = [seen["soft"]]  # the network as it was trained at the end of the anneal
    trained = generate(gen, [0, 1], 200, torch.Generator().manual_seed(1))
    gen.task_masks = [binary]
    per_image = (served - trained).abs().mean((1, 2, 3))
    assert per_image.max() < 0.05, f"binarising changed an image by {per_image.max():.3f} (pixels in [-1, 1])"
    assert per_image.mean() < 0.02, f"binarising changed the samples by {per_image.mean():.3f} on average"


@pytest.mark.parametrize("variant", ["dgmw", "dgma"])
def test_free_capacity_does_not_shrink(digits, variant):
    learner = tiny_learner(variant)
    free_before = {k: v["free"] for k, v in learner.generator.capacity().items()}
    for classes in ([0, 1], [2, 3], [4, 5]):
        report = learner.learn_task(*task_data(digits, classes))
        for layer, free in report.free.items():
            assert free >= free_before[layer], (layer, free, free_before[layer])
        free_before = dict(report.free)


@pytest.mark.parametrize(("variant", "carry"), [("dgmw", True), ("dgmw", False), ("dgma", True)])
def test_carried_surplus_keeps_free_capacity_at_its_first_level(digits, variant, carry):
    # DGMw grows whole channels, so an expansion adds more free weights than the task claimed. Carried,
    # that surplus is spare capacity the next claims use first: free minus spare stays at the first
    # mask size. Not carried (METHOD.md as written), free capacity drifts up with every task
    learner = tiny_learner(variant, carry_surplus=carry, reuse_start=0.0)
    gen = learner.generator
    level = [c.numel() for c in gen.cumulative]
    drift = []
    for classes in ([0, 1], [2, 3], [4, 5], [6, 7]):
        report = learner.learn_task(*task_data(digits, classes))
        assert sum(report.newly_reserved.values()) > 0, "the task claimed nothing: nothing to check"
        free = list(report.free.values())
        if carry:
            assert [f - s for f, s in zip(free, gen.spare, strict=True)] == level, (free, gen.spare, level)
        drift.append(sum(free) - sum(level))
    if variant == "dgmw" and not carry:
        assert gen.spare == [0, 0, 0] and drift[-1] > drift[0] > 0, drift


def test_dgmw_expansion_follows_rule_for_known_mask():
    learner = tiny_learner("dgmw")  # tiny: nz 24, widths (16, 8, 4), k 4
    gen = learner.generator
    # conv1: 1000 new weights -> ceil(1000 / (24*16)) = 3 channels
    # conv2: input growth gives 3*8*16 = 384; 1000-384 = 616 -> ceil(616 / ((16+3)*16)) = 3
    # conv3: input growth gives 3*4*16 = 192 >= 100 -> 0
    assert gen.expansion_for([1000, 1000, 100]) == [3, 3, 0]
    assert gen.expansion_for([0, 0, 0]) == [0, 0, 0]
    widths = list(gen.widths)
    gen.expand([1000, 1000, 100])
    assert gen.widths == [widths[0] + 3, widths[1] + 3, widths[2]]
    assert tuple(gen.weights[1].shape) == (widths[0] + 3, widths[1] + 3, 4, 4)
    assert tuple(gen.cumulative[1].shape) == tuple(gen.weights[1].shape)


def test_dgma_expansion_adds_newly_reserved_units():
    gen = tiny_learner("dgma").generator
    assert gen.expansion_for([5, 0, 2]) == [5, 0, 2]
    widths = list(gen.widths)
    gen.expand([5, 0, 2])
    assert gen.widths == [widths[0] + 5, widths[1], widths[2] + 2]
    assert tuple(gen.weights[1].shape)[:2] == (widths[0] + 5, widths[1])


def test_classifier_head_grows_and_string_labels_round_trip(digits):
    learner = tiny_learner("dgmw")
    names = np.array(["zero", "one", "two", "three", "four"])
    x, y = task_data(digits, [0, 1])
    learner.learn_task(x, names[y])
    assert learner.classifier.classify.out_features == 2
    x2, y2 = task_data(digits, [2, 3, 4])
    learner.learn_task(x2, names[y2])
    assert learner.classifier.classify.out_features == 5
    assert learner.classes == ["one", "zero", "four", "three", "two"]
    labels, scores = learner.predict(x2)
    assert set(labels) <= set(names) and scores.shape == (len(x2), 5)
    np.testing.assert_allclose(scores.sum(1), 1.0, rtol=1e-5)
    assert learner.sample("three", 3).shape == (3, 1, 8, 8)


def test_same_seed_same_result_on_cpu(digits):
    a, b = tiny_learner("dgmw"), tiny_learner("dgmw")
    x, y = task_data(digits, [0, 1])
    a.learn_task(x, y)
    b.learn_task(x, y)
    assert np.array_equal(a.predict(x)[1], b.predict(x)[1])
    assert np.array_equal(a.sample("1", 4), b.sample("1", 4))


@pytest.mark.parametrize("variant", ["dgmw", "dgma"])
def test_claim_cap_bounds_what_later_tasks_reserve_and_grow(digits, variant):
    # tiny widths (16, 8, 4); cap 0.25: a later task claims at most 4, 2, 1 free units (DGMa) a layer
    # no sparsity pull and no lean towards reuse: uncapped, a task claims about half of what is free
    learner = tiny_learner(variant, claim_cap=0.25, lam=0.0, reuse_start=0.0)
    gen = learner.generator
    budgets = [gen.claim_budget(l) for l in range(3)]
    learner.learn_task(*task_data(digits, [0, 1]))
    for classes in ([2, 3], [4, 5]):
        before = [c.clone() for c in gen.cumulative]
        report = learner.learn_task(*task_data(digits, classes))
        newly = [int(a.sum()) - int(b.sum()) for b, a in zip(before, gen.cumulative, strict=False)]
        assert all(n <= b for n, b in zip(newly, budgets, strict=True)), (newly, budgets)
        assert sum(newly) > 0, "the cap left the task nothing new to claim"
        assert list(report.newly_reserved.values()) == newly  # what the history shows is what it claimed
    uncapped = tiny_learner(variant, lam=0.0, reuse_start=0.0)
    for classes in ([0, 1], [2, 3], [4, 5]):
        uncapped.learn_task(*task_data(digits, classes))
    assert learner.generator_parameter_count() < uncapped.generator_parameter_count()


def test_claimable_keeps_reserved_and_the_top_k_free_entries():
    e = torch.tensor([0.9, -0.5, 0.3, 0.1, -0.2, 0.7])
    reserved = torch.tensor([True, True, False, False, False, False])
    keep = masks.claimable(e, reserved, k=2)
    assert keep.tolist() == [True, True, True, False, False, True]  # reserved, then 0.7 and 0.3
    assert masks.claimable(e, reserved, k=4).all()  # the budget covers every free entry


def test_averaged_generator_is_what_the_task_leaves_behind(digits):
    # the same training with an average that barely moves (decay close to 1) must leave the task's
    # weights near where they started, and with the last step's weights (g_ema 0) far from it
    x, y = task_data(digits, [0, 1])
    start = tiny_learner("dgmw").generator.weights[0].detach().clone()  # seed 0: the same initial weights
    moved = {}
    for g_ema in (0.0, 0.999999):
        learner = tiny_learner("dgmw", g_ema=g_ema)
        learner.learn_task(x, y)
        w = learner.generator.weights[0].detach()[: start.shape[0], : start.shape[1]]
        moved[g_ema] = float((w - start).abs().max())
        # the task's BatchNorm statistics were re-estimated for the weights it keeps: finite, not reset
        bn = learner.generator.bns[0][0]
        assert torch.isfinite(bn.running_var).all() and not torch.equal(
            bn.running_var, torch.ones_like(bn.running_var)
        )
    assert moved[0.999999] < 1e-3 < moved[0.0], moved
