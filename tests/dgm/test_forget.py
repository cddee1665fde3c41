"""Forgetting a class (issue 11): its head goes, an emptied task's mask is released, the rest is untouched.

The promises checked here, on sklearn's real 8x8 digits:
- the remaining classes' generated samples are bit-identical after a forget, and after a later task;
- a task left with no class gives its reserved weights back, and the next task reuses them first;
- the classifier's class map and output layer lose the label, and it is never predicted;
- pruning the classifier costs no other class any accuracy on real held-out images (the service keeps
  it when a rebuilt classifier falls behind it by more than the gate's 0.05: tests/service);
- the checkpoint round-trips all of it.
"""

import numpy as np
import pytest
import torch

from dgm import DGMInputError, Learner
from dgm.train import generate
from tests.dgm.conftest import task_data, tiny_learner

# digit -> label, three tasks; "un" is the forgotten class of a two-class task, "deux" is a one-class task
NAMES = {0: "zero", 1: "un", 2: "deux", 3: "trois", 4: "quatre"}
TASKS = [[0, 1], [2], [3, 4]]


def named(x, y):
    return x, np.array([NAMES[int(v)] for v in y])


def samples(learner, labels, n=6):
    """Generated images per label, from a fixed noise stream per label."""
    out = {}
    for label in labels:
        rng = torch.Generator().manual_seed(7)
        out[label] = generate(learner.generator, [learner.classes.index(label)], n, rng)
    return out


@pytest.fixture(scope="module", params=["dgmw", "dgma"])
def three_tasks(request, digits):
    # reuse_start 0: each task claims weights of its own, so the one-class task has something to release
    learner = tiny_learner(request.param, reuse_start=0.0)
    for task in TASKS:
        learner.learn_task(*named(*task_data(digits, task)))
    return learner


def test_forget_keeps_the_remaining_classes_bit_identical(three_tasks):
    learner = _copy(three_tasks)
    keep = ["zero", "trois", "quatre"]
    before = samples(learner, keep)
    learner.forget(["un"])
    learner.forget(["deux"])
    after = samples(learner, keep)
    assert all(torch.equal(before[c], after[c]) for c in keep)


def test_forget_a_task_s_last_class_releases_its_mask(three_tasks):
    learner = _copy(three_tasks)
    gen = learner.generator
    reserved_before = [int(c.sum()) for c in gen.cumulative]
    partial = learner.forget(["un"])  # "zero" still holds task 0
    assert partial.tasks_removed == [] and sum(partial.released.values()) == 0
    assert partial.heads_removed == 1 and gen.n_tasks == 3
    whole = learner.forget(["deux"])  # task 1's only class
    assert whole.tasks_removed == [1] and gen.n_tasks == 2
    assert sum(whole.released.values()) > 0, "the one-class task reserved nothing"
    assert [int(c.sum()) for c in gen.cumulative] == [
        b - r for b, r in zip(reserved_before, whole.released.values(), strict=True)
    ]
    # what stays reserved is exactly what the remaining tasks' masks hold
    for l, cum in enumerate(gen.cumulative):
        union = torch.zeros_like(cum)
        for masks_t in gen.task_masks:
            m = masks_t[l]
            union[tuple(slice(0, n) for n in m.shape)] |= m
        assert torch.equal(cum, union)
    assert gen.spare == list(whole.released.values())
    assert gen.class_task == [0, 1, 1] and learner.classes == ["zero", "quatre", "trois"]


def test_forget_then_learn_reuses_released_capacity_and_keeps_old_samples(three_tasks, digits):
    learner = _copy(three_tasks)
    learner.forget(["deux"])
    gen = learner.generator
    credit = list(gen.spare)
    keep = ["zero", "un", "trois", "quatre"]
    before = samples(learner, keep)
    grown, expand = [], gen.expand
    gen.expand = lambda claimed: grown.append(list(claimed)) or expand(claimed)
    report = learner.learn_task(*named(*task_data(digits, [2])))  # "deux" learned again, a new task
    gen = learner.generator
    assert all(torch.equal(before[c], after) for c, after in samples(learner, keep).items())
    newly = list(report.newly_reserved.values())
    reused = [min(n, c) for n, c in zip(newly, credit, strict=True)]
    assert sum(reused) > 0, "the new task claimed none of the released capacity"
    assert gen.spare == [c - r for c, r in zip(credit, reused, strict=True)]
    assert grown == [[n - r for n, r in zip(newly, reused, strict=True)]]  # only the rest is grown
    assert learner.classes == ["un", "zero", "quatre", "trois", "deux"]
    assert len(set(gen.class_codes)) == len(gen.class_codes), "two classes share a latent code"


def test_forget_never_predicts_the_label(three_tasks, digits):
    learner = _copy(three_tasks)
    learner.forget(["un"])
    assert "un" not in learner.classes
    assert learner.classifier.classify.out_features == 4
    x_real, _ = task_data(digits, [0, 1, 2, 3, 4], per_class=80)
    noise = np.random.default_rng(0).integers(0, 256, (200, 8, 8), dtype=np.uint8)
    for x in (x_real, noise, np.zeros((4, 8, 8), np.uint8), np.full((4, 8, 8), 255, np.uint8)):
        labels, scores = learner.predict(x)
        assert "un" not in labels and scores.shape == (len(x), 4)
    with pytest.raises(DGMInputError, match="unknown class"):
        learner.sample("un")


def test_forget_checkpoint_round_trips(three_tasks, tmp_path):
    learner = _copy(three_tasks)
    learner.forget(["deux"])
    learner.forget(["un"])
    learner.save(tmp_path / "l.safetensors")
    back = Learner.load(tmp_path / "l.safetensors", device="cpu")
    assert back.classes == learner.classes
    assert back.generator.class_codes == learner.generator.class_codes == [1, 3, 4]
    assert back.generator.spare == learner.generator.spare
    assert all(
        torch.equal(a, b)
        for a, b in zip(back.generator.cumulative, learner.generator.cumulative, strict=True)
    )
    a, b = samples(learner, learner.classes), samples(back, back.classes)
    assert all(torch.equal(a[c], b[c]) for c in learner.classes)
    x = np.random.default_rng(1).integers(0, 256, (16, 8, 8), dtype=np.uint8)
    assert np.allclose(back.predict(x)[1], learner.predict(x)[1], atol=1e-6)
    assert all("un" not in r["classes"] and "un" not in (r["fidelity"] or {}) for r in back.history)


def test_forget_refuses_unknown_and_last_class_and_changes_nothing(three_tasks):
    learner = _copy(three_tasks)
    cases = ((["nine"], "unknown classes"), (learner.classes, "at least one must stay"), ([], "at least one"))
    for bad, match in cases:
        with pytest.raises(DGMInputError, match=match):
            learner.forget(bad)
    assert learner.classes == three_tasks.classes and len(learner.generator.heads) == 5


def test_forget_pruned_keeps_every_other_class_s_accuracy(three_tasks, digits):
    """The pruned classifier (what the service falls back to when a rebuilt one falls behind by more
    than the gate's 0.05): no remaining task's accuracy on real held-out images drops at all."""
    x, y = digits
    held = np.concatenate([np.where(y == d)[0][40:120] for d in range(5)])  # never trained on

    def accuracy(learner, task):
        sel = held[np.isin(y[held], [d for d in task if d != 1])]
        return learner.evaluate(*named(x[sel], y[sel]))

    learner = _copy(three_tasks)
    before = [accuracy(learner, t) for t in TASKS]
    report = learner.forget(["un"], rebuild=False)
    assert report.classifier == "pruned" and learner.classifier.classify.out_features == 4
    after = [accuracy(learner, t) for t in TASKS]
    assert all(a >= b for a, b in zip(after, before, strict=True)), (before, after)
    rebuilt = _copy(three_tasks)
    assert rebuilt.forget(["un"]).classifier == "rebuilt"
    assert not torch.equal(rebuilt.classifier.classify.weight, learner.classifier.classify.weight)


def _copy(learner: Learner) -> Learner:
    import copy

    return copy.deepcopy(learner)


@pytest.mark.parametrize("variant", ["dgmw", "dgma"])
def test_a_reused_code_s_row_trains_for_its_new_class_and_the_rest_stays_bit_identical(digits, variant):
    # own_code_rows after a forget: the new class takes the forgotten class's latent code (its class id is
    # another number), its row of conv1 was reserved for "un", and no remaining class reads it
    learner = tiny_learner(variant, reuse_start=0.0, own_code_rows=True)
    for task in TASKS:
        learner.learn_task(*named(*task_data(digits, task)))
    gen = learner.generator
    freed_code = gen.class_codes[learner.classes.index("un")]
    learner.forget(["un"])
    keep = ["zero", "deux", "trois", "quatre"]
    before = samples(learner, keep)
    frozen = (1 - gen.gradient_multipliers()[0]).bool()[freed_code]
    assert frozen.any(), "nothing of the freed code's row was reserved: the test shows nothing"
    row = gen.weights[0].detach()[freed_code].clone()
    x, y = task_data(digits, [5])
    learner.learn_task(x, np.array(["cinq"] * len(y)))
    new = learner.classes.index("cinq")
    assert gen.class_codes[new] == freed_code and new != freed_code
    moved = gen.weights[0].detach()[freed_code, : row.shape[0]]
    assert not torch.equal(moved[frozen], row[frozen]), "the new class's row should train where reserved"
    after = samples(learner, keep)
    assert all(torch.equal(before[c], after[c]) for c in keep)
