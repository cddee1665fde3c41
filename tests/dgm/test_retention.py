"""Retention on real held-out images: the tests that would have caught issue 9.

Three tasks of sklearn's real handwritten digits, two or three classes each, with string labels whose
sorted order differs from the order they first appear in. After the last task:
- real held-out images of every old class are still predicted as that class, far above chance;
- an independent classifier (logistic regression on the real training pixels, no part of the learner)
  assigns each generator head's samples to that head's own class.
A learner that forgets, or whose heads swap classes inside a task, fails both. Each check runs for DGMw,
DGMa, and DGMw on the same digits tinted to RGB (a 3-channel learner).
"""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from dgm import Learner, LearnerConfig
from dgm.data import colourise

# digit -> label; inside each task the first label to appear sorts last
TASKS = [
    {7: "seven", 2: "deux"},
    {3: "three", 0: "nought", 6: "six"},
    {9: "nine", 4: "four"},
]
HELD_OUT = 40  # real images per class never shown to the learner
# tiny widths, and a budget toward the small preset's floor (1000 steps) rather than the tiny preset's few
# seconds. At 120 steps DGMa failed here on an AMD EPYC machine (it had passed on an Intel one): its
# heads drew recognisable 2s (fidelity 1.0), yet the classifier consolidated from them recognised 0-25% of
# real 2s, on seed 0 and at task 1 of seed 1. At 200 steps seeds 0, 1 and 2 kept every old class >= 0.7.
# carry_surplus as in the small preset: DGMw's network then grows only by what its tasks claimed
BUDGET = {
    "steps": 200, "consolidate_per_class": 160, "consolidate_epochs": 4, "fidelity_steps": 300,
    "carry_surplus": True,
}  # fmt: skip


def split(digits):
    x, y = digits
    rng = np.random.default_rng(0)
    train, test = [], []
    for c in range(10):
        idx = rng.permutation(np.where(y == c)[0])
        test.append(idx[:HELD_OUT])
        train.append(idx[HELD_OUT:])
    return np.concatenate(train), np.concatenate(test)


def task_arrays(digits, idx, task):
    """The task's images in an order where its classes first appear as listed in TASKS."""
    x, y = digits
    sel = idx[np.isin(y[idx], list(task))]
    order = np.argsort([list(task).index(v) for v in y[sel]], kind="stable")
    sel = sel[order]
    return x[sel], np.array([task[v] for v in y[sel]])


# (variant, colour): colour tints every image to RGB (dgm.data.colourise), the 3-channel learner on the
# same real shapes, ink and background a colour each, so colour says nothing of the class. Its generator
# needs more of the budget at these tiny widths: at 200 steps its worst old class was 0.375, 0.50 and
# 0.075 (seeds 0-2, AMD EPYC), at 400 steps 0.85, 0.75 and 0.675 (mean 0.93, 0.87, 0.87); grey at 200
# keeps 0.80 (seed 0). The small preset's floor is 1000 steps (MNIST tinted: README, Colour)
CASES = [("dgmw", False), ("dgma", False), ("dgmw", True)]
IDS = ["dgmw", "dgma", "dgmw-colour"]
COLOUR_STEPS = 400


@pytest.fixture(scope="module")
def learners() -> dict:
    return {}  # trained on first use, once per case: training takes a while


@pytest.fixture
def trained(request, learners, digits):
    """A learner after all three tasks for the test's case, the real images it saw, and the split."""
    variant, colour = request.param
    x, y = digits
    if colour:
        x = colourise(x, 0)
    train_idx, test_idx = split(digits)
    if request.param not in learners:
        budget = {**BUDGET, "steps": COLOUR_STEPS} if colour else BUDGET
        cfg = LearnerConfig.preset("tiny", image_shape=(3 if colour else 1, 8, 8), variant=variant, **budget)
        learner = Learner(cfg, seed=0, device="cpu")
        for task in TASKS:
            learner.learn_task(*task_arrays((x, y), train_idx, task))
        learners[request.param] = learner
    return learners[request.param], (x, y), train_idx, test_idx


def names(y):
    lookup = {d: name for task in TASKS for d, name in task.items()}
    return np.array([lookup.get(int(v), "?") for v in y])


@pytest.mark.parametrize("trained", CASES, ids=IDS, indirect=True)
def test_real_images_of_old_classes_still_recognised(trained):
    learner, (x, y), _, test_idx = trained
    per_class = {}
    for task in TASKS[:-1]:  # the old tasks
        for digit, label in task.items():
            sel = test_idx[y[test_idx] == digit]
            predicted, _ = learner.predict(x[sel])
            per_class[label] = float(np.mean(np.array(predicted) == label))
    # chance is 1/7: every old class well above it, and most old images right
    assert min(per_class.values()) >= 0.5, per_class
    assert np.mean(list(per_class.values())) >= 0.75, per_class


@pytest.mark.parametrize("trained", CASES, ids=IDS, indirect=True)
def test_generator_heads_draw_their_own_class(trained):
    learner, (x, y), train_idx, _ = trained
    known = [d for task in TASKS for d in task]
    sel = train_idx[np.isin(y[train_idx], known)]
    # the learner's samples are N x C x H x W; the oracle reads the same layout
    pixels = (x[sel] if x.ndim == 3 else x[sel].transpose(0, 3, 1, 2)).reshape(len(sel), -1) / 255.0
    oracle = LogisticRegression(max_iter=2000).fit(pixels, names(y[sel]))
    fidelity = {}
    for label in learner.classes:
        samples = learner.sample(label, 200, seed=1)  # N x C x 8 x 8 in [0, 1]
        fidelity[label] = float(np.mean(oracle.predict(samples.reshape(200, -1)) == label))
    assert min(fidelity.values()) >= 0.6, fidelity
