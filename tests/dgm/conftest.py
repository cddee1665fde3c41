import numpy as np
import pytest
from sklearn.datasets import load_digits

from dgm import Learner, LearnerConfig


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's bundled 8x8 digits as uint8 images (1797 of them) and int labels."""
    d = load_digits()
    return (d.images / 16 * 255).astype(np.uint8), d.target


def task_data(digits, classes, per_class=40):
    x, y = digits
    idx = np.concatenate([np.where(y == c)[0][:per_class] for c in classes])
    return x[idx], y[idx]


def tiny_learner(variant="dgmw", **overrides) -> Learner:
    overrides = {"epochs": 1, "steps": 0, "consolidate_epochs": 1, **overrides}
    cfg = LearnerConfig.preset("tiny", image_shape=(1, 8, 8), variant=variant, **overrides)
    return Learner(cfg, seed=0, device="cpu")
