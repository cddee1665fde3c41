"""Dynamic Generative Memory (Ostapenko et al., CVPR 2019) as a library: no web, SQL or queue code here.

from dgm import Learner, LearnerConfig
learner = Learner(LearnerConfig.preset("small", image_shape=(1, 28, 28)))
report = learner.learn_task(x, y)          # new classes only; old data never needed again
labels, scores = learner.predict(x_test)   # over every class seen so far
"""

from dgm.config import LearnerConfig
from dgm.errors import CheckpointError, DGMInputError, TrainingCancelled
from dgm.learner import ForgetReport, Learner, TaskReport
from dgm.train import Progress

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
