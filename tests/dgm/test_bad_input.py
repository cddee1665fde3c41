import numpy as np
import pytest

from dgm import DGMInputError, LearnerConfig, TrainingCancelled
from tests.dgm.conftest import task_data, tiny_learner


def test_wrong_image_shape_says_expected_shape(digits):
    x, y = task_data(digits, [0, 1])
    with pytest.raises(DGMInputError, match=r"expects N x 8 x 8"):
        tiny_learner().learn_task(np.zeros((len(y), 9, 9), np.uint8), y)


def test_nan_pixels_refused(digits):
    x, y = task_data(digits, [0, 1])
    xf = x.astype(np.float32) / 255
    xf[3, 2, 2] = np.nan
    with pytest.raises(DGMInputError, match="NaN"):
        tiny_learner().learn_task(xf, y)


def test_float_out_of_range_refused(digits):
    x, y = task_data(digits, [0, 1])
    with pytest.raises(DGMInputError, match=r"\[0, 1\]"):
        tiny_learner().learn_task(x.astype(np.float32), y)


def test_labels_already_learned_refused_and_learner_unchanged(digits):
    learner = tiny_learner()
    learner.learn_task(*task_data(digits, [0, 1]))
    widths = list(learner.generator.widths)
    with pytest.raises(DGMInputError, match=r"already learned: \['1'\]"):
        learner.learn_task(*task_data(digits, [1, 2]))
    assert learner.classes == ["0", "1"] and learner.generator.widths == widths


def test_too_few_samples_per_class(digits):
    x, y = task_data(digits, [0, 1], per_class=3)
    with pytest.raises(DGMInputError, match="at least 4 samples"):
        tiny_learner().learn_task(x, y)


def test_label_count_mismatch_and_empty_labels(digits):
    x, y = task_data(digits, [0, 1])
    with pytest.raises(DGMInputError, match="one label per image"):
        tiny_learner().learn_task(x, y[:-1])
    with pytest.raises(DGMInputError, match="non-empty"):
        tiny_learner().learn_task(x, np.where(y == 0, "", "a"))


def test_unknown_hyper_parameter_named():
    with pytest.raises(DGMInputError, match="unknown hyper-parameter.*'lrr'"):
        LearnerConfig.preset("tiny", lrr=0.1)
    with pytest.raises(DGMInputError, match="variant"):
        LearnerConfig.preset("tiny", variant="dgmx")


def test_predict_before_any_task_says_learn_first(digits):
    with pytest.raises(DGMInputError, match="learn_task first"):
        tiny_learner().predict(digits[0][:2])


def test_cancel_leaves_learner_as_before(digits):
    learner = tiny_learner()
    learner.learn_task(*task_data(digits, [0, 1]))
    before = learner.sample("0", 4)
    with pytest.raises(TrainingCancelled):
        learner.learn_task(*task_data(digits, [2, 3]), should_stop=lambda: True)
    assert learner.classes == ["0", "1"] and learner.generator.n_tasks == 1
    assert np.array_equal(learner.sample("0", 4), before)
    learner.learn_task(*task_data(digits, [2, 3]))
    assert learner.classes == ["0", "1", "2", "3"]
