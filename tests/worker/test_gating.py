"""What the gate is given for each earlier task: the new version's accuracy among the active version's
classes, and the share of the holdout it gives to classes the active version does not know."""

from __future__ import annotations

import numpy as np

from worker.gating import Scored


def scored(labels: list[str], answers: list[str], runner_up: list[str], classes: list[str]) -> Scored:
    """Softmax-like scores whose first choice is `answers` and second `runner_up`."""
    scores = np.full((len(labels), len(classes)), 0.01)
    for i, (a, b) in enumerate(zip(answers, runner_up, strict=True)):
        scores[i, classes.index(a)], scores[i, classes.index(b)] = 0.6, 0.3
    return Scored(labels, scores, classes)


def test_a_confusable_new_class_takes_images_without_lowering_accuracy_among_known_classes():
    # t-shirts: two of ten now called shirt (the new class), t-shirt their second choice
    held = scored(["t-shirt"] * 10, ["t-shirt"] * 8 + ["shirt"] * 2, ["trouser"] * 8 + ["t-shirt"] * 2,
                  ["t-shirt", "trouser", "shirt"])  # fmt: skip
    assert held.accuracy == 0.8
    assert held.among({"t-shirt", "trouser"}) == (1.0, 0.2)


def test_the_shortcut_gives_nearly_every_old_image_to_the_new_classes():
    # every old image answered with a new class: among the old ones, the second choice decides
    held = scored(["zero"] * 4 + ["one"] * 4, ["two"] * 8, ["zero"] * 4 + ["zero"] * 4,
                  ["zero", "one", "two", "three"])  # fmt: skip
    assert held.accuracy == 0.0
    assert held.among({"zero", "one"}) == (0.5, 1.0)


def test_a_class_the_active_version_knows_and_the_new_one_does_not_is_left_out():
    # after a forget task the active version may know a class the new version lacks: only shared ones
    held = scored(["a", "b"], ["a", "c"], ["b", "b"], ["a", "b", "c"])
    assert held.among({"a", "b", "x"}) == (1.0, 0.5)
    assert held.among({"x"}) == (0.0, 1.0)  # no class in common: nothing of it is answered
