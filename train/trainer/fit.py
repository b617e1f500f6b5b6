"""The training library under the commands: a run's settings, its model, optimizer and Trainer, and one `fit`.

    settings = fit.Settings(model="mnist_cnn", **recipes.named("fast_99"))
    run = fit.setup(settings, dataset)
    state, key = run.trainer.init_state(settings.seed)
    state, history = fit.fit(run, state, key, data)
"""

import dataclasses
import time
from typing import Any, Callable

import jax
import numpy as np
import optax
from flax import linen as nn

import jaxcnn
from jaxcnn.preprocess import preprocessor
from train.data.augment import AUGMENTATIONS, HOST_AUGMENTATIONS
from train.data.dataset import Dataset
from train.trainer import finetune, recipes
from train.trainer.data_parallel import Trainer
from train.trainer.errors import TrainingError
from train.trainer.models import DATA_NAMES, build_model
from train.trainer.nnx_model import APIS, NnxModel
from train.trainer.optimizers import create_optimizer, learning_rate
from train.trainer.step import TrainState, epoch_order, variables_of
from train.trainer.stream import FolderData, StreamRunner


@dataclasses.dataclass
class Settings:
    """A run's hyperparameters; those left None come from the recipe of the model on the data set
    (train.trainer.recipes.for_model)."""
    model: str = "lenet5_mnist"
    dataset: str = "mnist"  # a train.data.sources name
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    weight_decay: float | None = None
    schedule: str | None = None  # 'constant' (lr throughout) or 'onecycle' (lr the peak); see train.trainer.recipes
    warmup_fraction: float | None = None
    label_smoothing: float | None = None  # torch's CrossEntropyLoss(label_smoothing=...), training loss only
    preprocess: str | None = None
    augment: str | None = None  # train.data.augment.AUGMENTATIONS; default 'none'
    seed: int = 0
    init: str = "torch"
    weights: str | None = None  # a torch-keyed .safetensors to start from (train.trainer.finetune.start_from)
    freeze: tuple[str, ...] = ()  # torch prefixes whose parameters (and BatchNorm statistics) do not change
    lr_head: float | None = None  # the output layer's learning rate, where it differs from lr
    dtype: str = "float32"  # what the forward and backward compute in: float32 or bfloat16 (train.trainer.step.make_apply)
    mean: tuple[float, ...] | None = None  # with std: Normalize(mean, std) of [0, 1] pixels instead of `preprocess`
    std: tuple[float, ...] | None = None
    api: str = "linen"  # the network trained: the registry's linen module, or its native NNX one (NnxModel)

    def __post_init__(self):
        recipe = dict(schedule="constant", warmup_fraction=0.25, label_smoothing=0.0, augment="none",
                      weight_decay=0.0) | recipes.for_model(self.model, self.dataset)
        for key, value in recipe.items():
            if hasattr(self, key) and getattr(self, key) is None:
                setattr(self, key, value)
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {self.augment!r}; choose one of {AUGMENTATIONS}")
        self.freeze = tuple(self.freeze)
        self.mean, self.std = (tuple(v) if v is not None else None for v in (self.mean, self.std))
        preprocessor(self.preprocess, self.mean, self.std)  # a ValueError names what is wrong
        if self.api not in APIS:
            raise ValueError(f"unknown api {self.api!r}; choose one of {APIS}")
        if self.optimizer == "adam_l2" and not self.weight_decay > 0:
            raise ValueError("--optimizer adam_l2 is torch's Adam(weight_decay=...), L2 added to the gradient: give "
                             "--weight-decay > 0 (or --optimizer adam)")


def start_from_weights(run: "Run", state: Any) -> tuple[Any, list[str]]:
    """The run's fresh (replicated) state with settings.weights loaded (train.trainer.finetune.start_from) and the
    optimizer state begun anew; returns it with the notes on what was not loaded."""
    trainer, nnx_model = run.trainer, isinstance(run.model, NnxModel)
    variables = variables_of(trainer.unreplicate(state))
    model, variables = run.model.linen(variables) if nnx_model else (run.model, variables)  # its linen twin's
    try:
        variables, notes = finetune.start_from(model, variables, run.settings.weights)
    except ValueError as err:  # jaxcnn.ConversionError too: the file does not fit the model
        raise TrainingError(str(err)) from err
    variables = run.model.from_linen(variables) if nnx_model else variables
    params = variables["params"]
    fresh = TrainState(np.zeros((), np.int32), params, variables.get("batch_stats", {}), run.tx.init(params))
    return trainer.replicate_state(fresh), notes


def place(run: "Run", dataset) -> Any:
    """The data as `fit` takes it: a streamed FolderData as it is, else both splits on the run's devices
    (Trainer.put_replicated): (train images, train labels, test images, test labels)."""
    if run.stream:
        return dataset
    put = run.trainer.put_replicated
    return (*put((dataset.train_images, dataset.train_labels)), *put((dataset.test_images, dataset.test_labels)))


@dataclasses.dataclass
class Run:
    """What `setup` builds for a run: the model (and the kwargs it took), the optimizer, the Trainer."""
    settings: Settings
    model: nn.Module
    model_kwargs: dict
    tx: optax.GradientTransformation
    trainer: Trainer
    steps_per_epoch: int
    regression: bool = False
    loss_limit: float | None = None  # a training or test loss above it has diverged (exploding_limit)
    stream: StreamRunner | None = None  # for data streamed from disk (train.trainer.stream), else None


def optimizer_of(settings: Settings, model: nn.Module, total_steps: int) -> tuple[optax.GradientTransformation,
                                                                                 frozenset]:
    """The run's optax optimizer (its schedule spanning total_steps; frozen parameters and the head's learning
    rate as settings say: train.trainer.finetune) and the modules whose BatchNorms are frozen."""
    optimizer = lambda peak: create_optimizer(settings.optimizer, learning_rate(  # noqa: E731
        peak, settings.schedule, total_steps, settings.warmup_fraction), settings.weight_decay)
    if not (settings.freeze or settings.lr_head):
        return optimizer(settings.lr), frozenset()
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), jax.numpy.zeros((1, *model.input_shape))))
    try:
        labels = finetune.parameter_groups(model, params["params"], settings.freeze, bool(settings.lr_head))
    except ValueError as err:
        raise TrainingError(str(err)) from err
    tx = finetune.grouped(optimizer(settings.lr), labels, optimizer(settings.lr_head) if settings.lr_head else None)
    return tx, finetune.frozen_modules(labels)


def exploding_limit(dataset: Dataset) -> float:
    """EXPLODING_LOSS, scaled for regression by the targets' mean square (notebook 003's sun at (x, y) in pixels
    starts near 2e4: its limit is ~2e10)."""
    if not dataset.regression:
        return EXPLODING_LOSS
    return EXPLODING_LOSS * max(1.0, float(np.mean(np.square(dataset.train_labels, dtype=np.float64))))


def setup(settings: Settings, dataset: Dataset, devices: list | None = None, parallel: str = "sharding",
          loop: str = "auto", micro_batches: int | None = None) -> Run:
    """The model (for the data set's image shape and outputs), optimizer (its schedule spans settings.epochs of
    the training split) and Trainer of a run (devices, parallel, loop, micro_batches: see train.trainer.data_parallel.Trainer)."""
    model, model_kwargs = build_model(settings.model, settings.init, dataset.image_shape, dataset.num_outputs,
                                      dataset.regression, DATA_NAMES.get(dataset.name, dataset.name), settings.api)
    num_train = len(dataset.train_labels)
    steps_per_epoch = num_train // settings.batch_size
    if steps_per_epoch == 0:
        raise TrainingError(f"{num_train} training images make no batch of {settings.batch_size}")
    tx, frozen = optimizer_of(settings, model, settings.epochs * steps_per_epoch)
    streamed = isinstance(dataset, FolderData)
    if streamed != (settings.augment in HOST_AUGMENTATIONS) and settings.augment != "none":
        on_device = ", ".join(a for a in AUGMENTATIONS if a not in HOST_AUGMENTATIONS)
        raise TrainingError(f"--augment {settings.augment} is for " + (
            "data on the devices; streamed images take random_resized_crop" if streamed else
            f"streamed image folders; {dataset.name} takes {on_device}"))
    prep = preprocessor(settings.preprocess, settings.mean, settings.std)
    trainer = Trainer(model, tx, prep, parallel, "step" if streamed else loop, devices=devices,
                      micro_batches=micro_batches, label_smoothing=settings.label_smoothing,
                      loss=jaxcnn.model_config(settings.model).loss,
                      augment="none" if streamed else settings.augment, compute_dtype=settings.dtype, frozen=frozen)
    if settings.batch_size % trainer.num_devices:
        raise TrainingError(f"--batch-size {settings.batch_size} must be divisible by the {trainer.num_devices} "
                            "devices")
    return Run(settings, model, model_kwargs, tx, trainer, steps_per_epoch, dataset.regression,
               exploding_limit(dataset), StreamRunner(trainer) if streamed else None)


EXPLODING_LOSS = 1e6  # cross-entropy over 10 classes starts near 2.3; a loss this large has diverged


def _first_bad(losses: np.ndarray, limit: float | None = None) -> int | None:
    """The first non-finite or exploding (> limit, default EXPLODING_LOSS) loss."""
    limit = EXPLODING_LOSS if limit is None else limit
    bad = np.flatnonzero(~np.isfinite(losses) | (np.abs(losses) > limit))
    return int(bad[0]) if bad.size else None


def check_test_loss(test_loss: float, epoch: int, limit: float | None = None) -> None:
    """Raises TrainingError for a non-finite or exploding (> limit, default EXPLODING_LOSS) test loss."""
    limit = EXPLODING_LOSS if limit is None else limit
    if not np.isfinite(test_loss) or abs(test_loss) > limit:
        raise TrainingError(f"test loss is {test_loss:g} after epoch {epoch} (non-finite or above "
                            f"{limit:g}: the run diverged); try a lower --lr")


def fit(run: Run, state: Any, dropout_key: jax.Array, data: tuple, first_epoch: int = 1,
        last_epoch: int | None = None, on_epoch: Callable[[dict, Any], bool | None] | None = None,
        progress: Callable[[int], Any] | None = None) -> tuple[Any, list[dict]]:
    """Trains epochs first_epoch..last_epoch (default settings.epochs), evaluating after each.

    Arguments:
        data: (train images, train labels, test images, test labels) as Trainer.put_replicated placed them,
            images (N, H, W, C) uint8, labels (N,) int32 or regression targets (N, K) float32; or, for a run
            set up on streamed data, that train.trainer.stream.FolderData.
        on_epoch: called with each epoch's entry and the state; returning True stops training.
        progress: epoch -> a progress bar (update(steps, device losses), close()) or None.
    Returns:
        (state, history): one entry per epoch trained, {'epoch', 'train_loss', 'test_loss', 'test_accuracy',
        'seconds'} (seconds: training alone, evaluation apart; train_loss the mean of the epoch's step losses,
        notebook 003's `loss_mean`; for regression test_loss is the test MSE, notebook 003's `Q`, and there is
        no test_accuracy).
    Raises:
        TrainingError naming the step of the first non-finite or exploding loss, or the epoch of such a test loss.
    """
    settings, trainer = run.settings, run.trainer
    limit = EXPLODING_LOSS if run.loss_limit is None else run.loss_limit
    history = []
    for epoch in range(first_epoch, (last_epoch or settings.epochs) + 1):
        bar = progress(epoch) if progress else None
        seconds = time.perf_counter()
        on_losses = bar.update if bar else None
        if run.stream:
            batches = data.train_batches(settings.batch_size, settings.seed, epoch, settings.augment != "none")
            state, losses = run.stream.train_epoch(state, batches, dropout_key, on_losses)
        else:
            images, labels = data[:2]
            order = epoch_order(settings.seed, epoch, labels.shape[0 if trainer.parallel != "pmap" else 1],
                                settings.batch_size)
            state, losses = trainer.train_steps(state, images, labels, order, dropout_key, on_losses=on_losses)
        epoch_losses = trainer.host_losses(losses)  # waits for the last step
        seconds = time.perf_counter() - seconds
        if bar:
            bar.close()
        bad = _first_bad(epoch_losses, limit)
        if bad is not None:
            raise TrainingError(f"loss is {epoch_losses[bad]} at step {bad + 1} of epoch {epoch} (global step "
                                f"{(epoch - 1) * run.steps_per_epoch + bad + 1}; non-finite or above "
                                f"{limit:g})")
        test_loss, test_accuracy = (run.stream.evaluate(state, data.test_batches(settings.batch_size),
                                                        settings.batch_size) if run.stream
                                    else trainer.evaluate(state, *data[2:]))
        check_test_loss(test_loss, epoch, limit)
        entry = {"epoch": epoch, "train_loss": float(epoch_losses.mean()), "test_loss": test_loss}
        history.append(entry | ({} if run.regression else {"test_accuracy": test_accuracy}) | {"seconds": seconds})
        if on_epoch and on_epoch(history[-1], state):
            break
    return state, history
