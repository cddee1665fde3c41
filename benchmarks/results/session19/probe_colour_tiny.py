"""The retention test's three tasks (tiny preset, scikit-learn digits) in grey or tinted to RGB.

    python benchmarks/results/session19/probe_colour_tiny.py '[["colour_s400", {"steps": 400}, true, 1]]'

It reads the test's tasks, budget and split from tests/dgm/test_retention.py in a checkout (loaded by
path: shipped code does not import the test suite).

Each entry: name, LearnerConfig overrides on the test's BUDGET, colour, seed. Prints each class's
accuracy on the test's held-out real images after the third task, and the worst and mean old class.
"""

import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

from dgm import Learner, LearnerConfig
from dgm.data import colourise

RETENTION = Path(__file__).resolve().parents[3] / "tests" / "dgm" / "test_retention.py"


def retention_test():
    spec = importlib.util.spec_from_file_location("retention_test", RETENTION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(configs: list) -> None:
    torch.set_num_threads(1)
    test = retention_test()
    BUDGET, TASKS, split, task_arrays = test.BUDGET, test.TASKS, test.split, test.task_arrays  # noqa: N806
    d = load_digits()
    x, y = (d.images / 16 * 255).astype(np.uint8), d.target
    lookup = {digit: name for task in TASKS for digit, name in task.items()}
    train_idx, test_idx = split((x, y))
    for name, over, colour, seed in configs:
        xx = colourise(x, 0) if colour else x
        shape = (3 if colour else 1, 8, 8)
        cfg = LearnerConfig.preset("tiny", image_shape=shape, variant="dgmw", **{**BUDGET, **over})
        learner, started = Learner(cfg, seed=seed, device="cpu"), time.time()
        for task in TASKS:
            learner.learn_task(*task_arrays((xx, y), train_idx, task))
        out = {}
        for digit, label in lookup.items():
            sel = test_idx[y[test_idx] == digit]
            predicted, _ = learner.predict(xx[sel])
            out[label] = round(float(np.mean(np.array(predicted) == label)), 3)
        old = [out[label] for task in TASKS[:-1] for label in task.values()]
        seconds = time.time() - started
        print(name, seed, f"{seconds:.0f}s", "old min", min(old), "old mean", round(np.mean(old), 3), out)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
