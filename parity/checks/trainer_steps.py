"""The trainer itself against the notebooks' torch loop: train.trainer.fit's epoch and torch's DataLoader loop, from the
same weights, on the same batches in the same order, judged by the float64 referee (parity.checks.referee).

    report = compare_trainer_epoch(settings, dataset, torch_dataset_of)
    assert report.verdict.ok

`torch_dataset_of(dtype)` is the notebook's Dataset (parity.originals.notebook_loops.SunFiles over notebook 003's folder,
RgbImages over CIFAR-10's records) giving the torch side its batches; the Flax side is the uint8 `dataset` the
trainer holds on its devices. The DataLoader draws the trainer's own order (train.trainer.step.epoch_order) through its
batch_sampler, so both see the same images step by step.
"""

import contextlib
import copy
import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import torch

import jaxcnn
from parity.checks import convert
from parity.checks.check import exact_numerics
from parity.checks.steps import OptimizerReport, TORCH_OPTIMIZERS
from parity.checks.training import compare_states
from parity.originals import torch_models
from parity.originals.notebook_loops import notebook_loop
from train.data import pipeline
from train.data.dataset import Dataset
from train.trainer import fit
from train.trainer.step import TrainState, epoch_order, variables_of
from train.trainer.stream import FolderData, StreamRunner

TORCH_LOSSES = {"mse": torch.nn.MSELoss, "cross_entropy": torch.nn.CrossEntropyLoss}


@dataclasses.dataclass
class TrainerReport(OptimizerReport):
    """parity.checks.steps' report of (torch, flax, float64) step losses and per-parameter verdicts, with the Flax run's
    variables after the epoch (host arrays)."""
    variables: dict = dataclasses.field(default_factory=dict)


def frozen_parts(module: torch.nn.Module, prefixes) -> tuple[torch.nn.Module, ...]:
    """torch's fine-tuning of `module` with `prefixes` frozen: their parameters' requires_grad off (torch.optim
    then leaves them alone) and the submodules returned, for the loop to keep in eval() (BatchNorm statistics)."""
    parts = tuple(module.get_submodule(prefix) for prefix in prefixes)
    for part in parts:
        part.requires_grad_(False)
    return parts


def _torch_epoch(module: torch.nn.Module, settings: fit.Settings, dataset: torch.utils.data.Dataset,
                 order: np.ndarray) -> list[float]:
    """One epoch of the notebook's loop with the notebook's optimizer and loss, batches in `order`; the head's
    parameters in a group of their own at settings.lr_head."""
    frozen = frozen_parts(module, settings.freeze)
    head = {id(p) for p in module.get_submodule(head_prefix_of(module)).parameters()}
    rest = [p for p in module.parameters() if id(p) not in head]
    groups = [{"params": rest}, {"params": [p for p in module.parameters() if id(p) in head],
                                 "lr": settings.lr_head or settings.lr}]
    optimizer = TORCH_OPTIMIZERS[settings.optimizer](groups, lr=settings.lr, weight_decay=settings.weight_decay)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=order.tolist())
    return notebook_loop(module, loader, optimizer, TORCH_LOSSES[jaxcnn.model_config(settings.model).loss](),
                         frozen=frozen)


def head_prefix_of(module: torch.nn.Module) -> str:
    """The module's output layer: the owner of its last parameter ('fc.3' of 'fc.3.bias')."""
    return [name for name, _ in module.named_parameters()][-1].rsplit(".", 1)[0]


def _flax_epoch(run: fit.Run, variables: dict, dataset: Dataset) -> tuple[Any, np.ndarray]:
    """train.trainer.fit's first epoch from `variables` on one device: (final state, the step losses)."""
    trainer = run.trainer
    params = variables["params"]
    state = trainer.replicate_state(TrainState(jnp.zeros((), jnp.int32), params, variables.get("batch_stats", {}),
                                               run.tx.init(params)))
    data = fit.place(run, dataset)
    key = trainer.put_replicated(jax.random.PRNGKey(run.settings.seed))
    losses = []
    state, _ = fit.fit(run, state, key, data, last_epoch=1,
                       progress=lambda epoch: _Losses(trainer, losses))
    return trainer.unreplicate(state), np.concatenate(losses)


def _order(dataset, settings: fit.Settings) -> np.ndarray:
    """(steps, batch) indices of the trainer's first epoch: train.trainer.step's order for data on the devices, the input
    pipeline's for a streamed folder (one host)."""
    n, batch = len(dataset.train_labels), settings.batch_size
    if isinstance(dataset, FolderData):
        return pipeline.epoch_order(n, settings.seed, 1)[:n // batch * batch].reshape(-1, batch)
    return epoch_order(settings.seed, 1, n, batch)


class _Losses:
    """A stand-in progress bar that keeps the step losses fit reports."""

    def __init__(self, trainer, losses: list):
        self.trainer, self.losses = trainer, losses

    def update(self, steps: int, device_losses) -> None:
        self.losses.append(self.trainer.host_losses([device_losses]))

    def close(self) -> None:
        pass


def compare_trainer_epoch(settings: fit.Settings, dataset: Dataset,
                          torch_dataset_of: Callable[[torch.dtype], torch.utils.data.Dataset],
                          double: bool = False, rtol: float = 1e-5, **model_kwargs) -> TrainerReport:
    """One epoch of `settings` (augment 'none'; no dropout in the model) through train.trainer.fit and through the
    notebook's torch loop, from one torch initialisation (or, with settings.weights, from the trainer's start:
    the file and a fresh head), and the float64 referee's epoch beside them. settings.freeze and lr_head are
    torch's fine-tuning on the torch side (frozen_parts; a parameter group for the head).

    double=True runs the Flax trainer (jax x64) and torch in float64 as well. model_kwargs: the models' other
    fields (dropout=0.0, ...), on both sides.
    """
    if settings.augment != "none":
        raise ValueError("the notebooks' loops do not augment: compare with augment='none'")
    with contextlib.ExitStack() as stack:
        stack.enter_context(exact_numerics())
        if double:
            stack.enter_context(jax.enable_x64(True))
        run = fit.setup(settings, dataset, devices=jax.devices()[:1], loop="step")
        if model_kwargs:
            run.model = run.model.clone(**model_kwargs)
            run.trainer = dataclasses.replace(run.trainer, model=run.model)
            run.stream = run.stream and StreamRunner(run.trainer)
        torch.manual_seed(settings.seed)
        module = torch_models.create(settings.model, **run.model_kwargs, **model_kwargs)
        if settings.weights:
            state, _ = fit.start_from_weights(run, run.trainer.init_state(settings.seed)[0])
            module.load_state_dict(convert.flax_to_torch(variables_of(run.trainer.unreplicate(state)), run.model,
                                                         module), strict=True)
        exact = copy.deepcopy(module).double()
        dtype = torch.float64 if double else torch.float32
        variables = convert.torch_to_flax(module, run.model)
        if double:
            module = module.double()
            variables = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), variables)
        order = _order(dataset, settings)
        state, flax_losses = _flax_epoch(run, variables, dataset)
        torch_losses = _torch_epoch(module, settings, torch_dataset_of(dtype), order)
        exact_losses = _torch_epoch(exact, settings, torch_dataset_of(torch.float64), order)
        module.eval()
        exact.eval()
        sample = (1, *np.moveaxis(np.zeros(dataset.image_shape), -1, 0).shape)
        states = compare_states(module, exact, run.model, variables_of(state), sample, rtol)
    losses = list(zip(torch_losses, map(float, flax_losses), exact_losses))
    return TrainerReport(losses, states, variables_of(state))
