"""Errors the library raises. Messages say what is wrong and how to fix it."""


class DGMInputError(ValueError):
    """Input data or configuration the learner cannot use; the message says what to change."""


class TrainingCancelled(RuntimeError):
    """`learn_task` stopped because `should_stop()` returned True; the learner is left as before the task."""


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged or of an unknown format."""
