"""The training library under the commands: a run's settings, its model, optimizer and Trainer, and one `fit`.

    settings = fit.Settings(model="mnist_cnn", **recipes.named("fast_99"))
    run = fit.setup(settings, num_train=60_000)
    state, key = run.trainer.init_state(settings.seed)
    state, history = fit.fit(run, state, key, dataset)
"""

import dataclasses
import time
from typing import Any, Callable

import jax
import numpy as np
import optax
from flax import linen as nn

import jaxcnn
from train import recipes
from train.optimizers import create_optimizer, learning_rate
from train.step import Trainer, epoch_order


class TrainingError(RuntimeError):
    """Training cannot go on (NaN loss, a model that does not take MNIST); the message says why."""


@dataclasses.dataclass
class Settings:
    """A run's hyperparameters; those left None come from the model's recipe (train.recipes.for_model)."""
    model: str = "lenet5_mnist"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    weight_decay: float = 0.0
    schedule: str | None = None  # 'constant' (lr throughout) or 'onecycle' (lr the peak); see train.recipes
    warmup_fraction: float | None = None
    label_smoothing: float | None = None  # torch's CrossEntropyLoss(label_smoothing=...), training loss only
    preprocess: str | None = None
    seed: int = 0
    init: str = "torch"

    def __post_init__(self):
        recipe = recipes.for_model(self.model) | dict(schedule="constant", warmup_fraction=0.25, label_smoothing=0.0)
        for key, value in recipe.items():
            if hasattr(self, key) and getattr(self, key) is None:
                setattr(self, key, value)


def build_model(name: str, init: str) -> tuple[nn.Module, dict]:
    """The registry model configured for 28x28x1 images and 10 classes, and the kwargs that did it."""
    if name not in jaxcnn.list_models():
        raise TrainingError(f"unknown model {name!r}; available: {', '.join(jaxcnn.list_models())}")
    probe = jaxcnn.create_model(name)
    kwargs = {k: v for k, v in (("in_channels", 1), ("input_size", 28), ("num_classes", 10))
              if hasattr(probe, k) and getattr(probe, k) != v}
    model = jaxcnn.create_model(name, weight_init=init, **kwargs)
    try:
        jax.eval_shape(lambda: model.init(jax.random.key(0), jax.numpy.zeros((1, 28, 28, 1))))
    except (ValueError, TypeError) as err:
        raise TrainingError(f"model {name!r} does not take MNIST's 28x28x1 images: {err}") from err
    if not hasattr(probe, "num_classes"):
        raise TrainingError(f"model {name!r} is not a classifier (it has no num_classes)")
    return model, kwargs


@dataclasses.dataclass
class Run:
    """What `setup` builds for a run: the model (and the kwargs it took), the optimizer, the Trainer."""
    settings: Settings
    model: nn.Module
    model_kwargs: dict
    tx: optax.GradientTransformation
    trainer: Trainer
    steps_per_epoch: int


def setup(settings: Settings, num_train: int, devices: list | None = None, parallel: str = "sharding",
          loop: str = "auto", micro_batches: int | None = None) -> Run:
    """The model, optimizer (its schedule spans settings.epochs of num_train images) and Trainer of a run
    (devices, parallel, loop, micro_batches: see train.step.Trainer)."""
    model, model_kwargs = build_model(settings.model, settings.init)
    steps_per_epoch = num_train // settings.batch_size
    if steps_per_epoch == 0:
        raise TrainingError(f"{num_train} training images make no batch of {settings.batch_size}")
    lr = learning_rate(settings.lr, settings.schedule, settings.epochs * steps_per_epoch, settings.warmup_fraction)
    tx = create_optimizer(settings.optimizer, lr, settings.weight_decay)
    trainer = Trainer(model, tx, settings.preprocess, parallel, loop, devices=devices, micro_batches=micro_batches,
                      label_smoothing=settings.label_smoothing)
    if settings.batch_size % trainer.num_devices:
        raise TrainingError(f"--batch-size {settings.batch_size} must be divisible by the {trainer.num_devices} "
                            "devices")
    return Run(settings, model, model_kwargs, tx, trainer, steps_per_epoch)


EXPLODING_LOSS = 1e6  # cross-entropy over 10 classes starts near 2.3; a loss this large has diverged


def _first_bad(losses: np.ndarray) -> int | None:
    """The first non-finite or exploding (> EXPLODING_LOSS) loss."""
    bad = np.flatnonzero(~np.isfinite(losses) | (np.abs(losses) > EXPLODING_LOSS))
    return int(bad[0]) if bad.size else None


def check_test_loss(test_loss: float, epoch: int) -> None:
    """Raises TrainingError for a non-finite or exploding test loss."""
    if not np.isfinite(test_loss) or abs(test_loss) > EXPLODING_LOSS:
        raise TrainingError(f"test loss is {test_loss:g} after epoch {epoch} (non-finite or above "
                            f"{EXPLODING_LOSS:g}: the run diverged); try a lower --lr")


def fit(run: Run, state: Any, dropout_key: jax.Array, data: tuple, first_epoch: int = 1,
        last_epoch: int | None = None, on_epoch: Callable[[dict, Any], bool | None] | None = None,
        progress: Callable[[int], Any] | None = None) -> tuple[Any, list[dict]]:
    """Trains epochs first_epoch..last_epoch (default settings.epochs), evaluating after each.

    Arguments:
        data: (train images, train labels, test images, test labels) as Trainer.put_replicated placed them;
            images (N, 28, 28, 1) uint8.
        on_epoch: called with each epoch's entry and the state; returning True stops training.
        progress: epoch -> a progress bar (update(steps, device losses), close()) or None.
    Returns:
        (state, history): one entry per epoch trained, {'epoch', 'train_loss', 'test_loss', 'test_accuracy',
        'seconds'} (seconds: training alone, evaluation apart).
    Raises:
        TrainingError naming the step of the first non-finite or exploding loss, or the epoch of such a test loss.
    """
    settings, trainer = run.settings, run.trainer
    images, labels, test_images, test_labels = data
    history = []
    for epoch in range(first_epoch, (last_epoch or settings.epochs) + 1):
        order = epoch_order(settings.seed, epoch, labels.shape[-1], settings.batch_size)
        bar = progress(epoch) if progress else None
        seconds = time.perf_counter()
        state, losses = trainer.train_steps(state, images, labels, order, dropout_key,
                                            on_losses=bar.update if bar else None)
        epoch_losses = trainer.host_losses(losses)  # waits for the last step
        seconds = time.perf_counter() - seconds
        if bar:
            bar.close()
        bad = _first_bad(epoch_losses)
        if bad is not None:
            raise TrainingError(f"loss is {epoch_losses[bad]} at step {bad + 1} of epoch {epoch} (global step "
                                f"{(epoch - 1) * run.steps_per_epoch + bad + 1}; non-finite or above "
                                f"{EXPLODING_LOSS:g})")
        test_loss, test_accuracy = trainer.evaluate(state, test_images, test_labels)
        check_test_loss(test_loss, epoch)
        history.append({"epoch": epoch, "train_loss": float(epoch_losses.mean()), "test_loss": test_loss,
                        "test_accuracy": test_accuracy, "seconds": seconds})
        if on_epoch and on_epoch(history[-1], state):
            break
    return state, history
