"""The error that ends a run: `TrainingError`, its message saying why (train.cli prints it as `error: ...`)."""


class TrainingError(RuntimeError):
    """Training cannot go on (NaN loss, a model that does not take the data); the message says why."""
