"""Dynamic Generative Memory (Ostapenko et al., CVPR 2019) as a library: no web, SQL or queue code here.

from dgm import Learner, LearnerConfig
learner = Learner(LearnerConfig.preset("small", image_shape=(1, 28, 28)))
report = learner.learn_task(x, y)          # new classes only; old data never needed again
labels, scores = learner.predict(x_test)   # over every class seen so far

The names below load on first use, so `import dgm.shared` (the torch-free input rules the service
shares) does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dgm.config import LearnerConfig
    from dgm.errors import CheckpointError, DGMInputError, TrainingCancelled
    from dgm.learner import ForgetReport, Learner, TaskReport
    from dgm.train import Progress

_HOME = {
    "CheckpointError": "dgm.errors",
    "DGMInputError": "dgm.errors",
    "ForgetReport": "dgm.learner",
    "Learner": "dgm.learner",
    "LearnerConfig": "dgm.config",
    "Progress": "dgm.train",
    "TaskReport": "dgm.learner",
    "TrainingCancelled": "dgm.errors",
}
__all__ = [
    "CheckpointError",
    "DGMInputError",
    "ForgetReport",
    "Learner",
    "LearnerConfig",
    "Progress",
    "TaskReport",
    "TrainingCancelled",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'dgm' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value  # loaded once
    return value
