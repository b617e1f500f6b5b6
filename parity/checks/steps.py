"""Training steps side by side: BatchNorm in train mode and optimizer steps, torch vs jaxcnn, with the referee.

Each check runs three trajectories from the same weights on the same batches (and the same Dropout masks,
drawn by the Flax run): Flax on JAX's default device, torch on its module's device, and the float64
referee (a float64 copy of the torch module, on the CPU). See parity.checks.referee for the verdicts.
"""

import contextlib
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from flax import linen as nn

import jaxcnn
from parity.checks import referee
from parity.checks.check import exact_numerics, to_nhwc, to_numpy, to_torch
from parity.checks.device import torch_device_of
from parity.checks.flax_side import flax_side
from parity.checks.training import (compare_states, float64_data, float64_pair, replayed_dropout, torch_loss,
                                    torch_masks)
from train.trainer.optimizers import create_optimizer


def _output_verdict(y_flax: Any, y_torch: torch.Tensor, y_float64: torch.Tensor, rtol: float) -> referee.Verdict:
    return referee.judge(np.asarray(y_flax, np.float64), to_nhwc(to_numpy(y_torch)).astype(np.float64),
                         to_nhwc(to_numpy(y_float64)), rtol)


@dataclasses.dataclass
class BatchNormReport:
    """Verdicts on the train-mode output of each step, and on every BatchNorm running statistic at the end."""
    outputs: list[referee.Verdict]
    statistics: dict[str, referee.Verdict]

    @property
    def verdict(self) -> referee.Verdict:
        return referee.combine([*self.outputs, *self.statistics.values()])


def compare_batchnorm_training(module: torch.nn.Module, model: nn.Module, variables: Any,
                               batches: list[np.ndarray], seed: int = 0, rtol: float = 1e-5) -> BatchNormReport:
    """k train-mode forward passes on the same batches (shared dropout masks), Flax vs torch vs float64.

    model, variables: a jaxcnn linen module and its variables, or a jaxcnn NNX network and None (a copy of it
    runs, in training mode: its BatchNorm statistics move in place)."""
    side = flax_side(model, variables)
    exact = referee.float64_copy(module)
    where = torch_device_of(module)
    outputs = []
    module.train()
    exact.train()
    for step, x_nchw in enumerate(batches):
        x = to_nhwc(x_nchw)
        with exact_numerics():
            y, intermediates = side.train_forward(x, jax.random.fold_in(jax.random.key(seed), step))
            masks = torch_masks(side.linen, intermediates, x.shape)
            with torch.no_grad(), replayed_dropout(module, masks), replayed_dropout(exact, masks):
                y_t = module(to_torch(x_nchw, where))
                y_64 = exact(to_torch(x_nchw.astype(np.float64)))
        outputs.append(_output_verdict(y, y_t, y_64, rtol))
    module.eval()
    exact.eval()
    stats = compare_states(module, exact, side.linen, side.variables(), batches[0].shape, rtol,
                           lambda k: "running_" in k)
    return BatchNormReport(outputs, stats)


# torch.optim's class behind each train.trainer.optimizers name.
TORCH_OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adam_l2": torch.optim.Adam,
                    "adamw": torch.optim.AdamW}


def _notebook_settings() -> dict[str, dict]:
    """Each optimizer the notebooks train with, with their settings, from the networks' recipes."""
    recipes = [jaxcnn.model_config(name).recipe for name in jaxcnn.list_models()]
    return {r["optimizer"]: {"lr": r["lr"], "weight_decay": r.get("weight_decay", 0.0)} for r in recipes if r}


# The optimizers of the notebooks (SGD(lr=0.01), Adam(lr=1e-3), Adam(lr=1e-3, weight_decay=1e-3)), as
# (torch, optax) pairs.
NOTEBOOK_OPTIMIZERS = {name: (lambda ps, name=name, kw=kw: TORCH_OPTIMIZERS[name](ps, **kw),
                              lambda name=name, kw=kw: create_optimizer(name, **kw))
                       for name, kw in _notebook_settings().items()}


@dataclasses.dataclass
class OptimizerReport:
    """(torch, flax, float64) loss of every step, and the verdict on every parameter and statistic at the end."""
    losses: list[tuple[float, float, float]]
    states: dict[str, referee.Verdict]

    @property
    def relative(self) -> dict[str, float]:
        """Per state_dict key: Flax vs torch."""
        return {k: v.flax_torch for k, v in self.states.items()}

    @property
    def verdict(self) -> referee.Verdict:
        return referee.combine(self.states.values())

    def loss_verdict(self, rtol: float) -> referee.Verdict:
        """The losses of all steps judged as one quantity: relative differences of each step, worst over steps."""
        return referee.combine(referee.judge_scalar(f, t, e, rtol) for t, f, e in self.losses)


def compare_optimizer_steps(module: torch.nn.Module, model: nn.Module, variables: Any, batches: list[np.ndarray],
                            targets: list[np.ndarray], kind: str, optimizer: str, seed: int = 0,
                            double: bool = False, rtol: float = 1e-5) -> OptimizerReport:
    """One optimizer step per batch in train mode, torch.optim vs the optax twin vs the float64 referee.

    model, variables: a jaxcnn linen module and its variables (jax.value_and_grad, tx.update), or a jaxcnn NNX
    network and None (a copy of it trained with nnx.value_and_grad and nnx.Optimizer).
    double=True runs Flax and torch in float64 too (the module is copied; the given one is untouched).
    """
    exact = referee.float64_copy(module)
    side = flax_side(model, variables)
    with contextlib.ExitStack() as stack:
        if double:
            module, side = float64_pair(module, side, stack)
            pairs = [float64_data(kind, x, t) for x, t in zip(batches, targets)]
            batches, targets = [x for x, _ in pairs], [t for _, t in pairs]
        make_torch, make_optax = NOTEBOOK_OPTIMIZERS[optimizer]
        torch_opt, exact_opt, tx = make_torch(module.parameters()), make_torch(exact.parameters()), make_optax()
        flax_step = side.trainer(tx, kind)
        where = torch_device_of(module)

        def torch_step(net, opt, x_nchw, t, masks, device) -> float:
            opt.zero_grad()
            with replayed_dropout(net, masks):
                loss = torch_loss(kind, net(to_torch(x_nchw, device)), to_torch(t, device))
            loss.backward()
            opt.step()
            return float(loss.detach())

        losses = []
        module.train()
        exact.train()
        for step, (x_nchw, t) in enumerate(zip(batches, targets)):
            x = to_nhwc(x_nchw)
            with exact_numerics():
                loss, intermediates = flax_step(x, to_nhwc(t), jax.random.fold_in(jax.random.key(seed), step))
                masks = torch_masks(side.linen, intermediates, x.shape)
                loss_t = torch_step(module, torch_opt, x_nchw, t, masks, where)
                loss_64 = torch_step(exact, exact_opt, *float64_data(kind, x_nchw, t), masks, "cpu")
            losses.append((loss_t, float(loss), loss_64))
        module.eval()
        exact.eval()
        states = compare_states(module, exact, side.linen, side.variables(), batches[0].shape, rtol)
        return OptimizerReport(losses, states)


def compare_optimizer_arithmetic(optimizer: str, shapes: list[tuple[int, ...]], steps: int = 20,
                                 seed: int = 0) -> dict[str, float]:
    """The optimizers alone: the same gradient sequence fed to torch.optim and to the optax twin.

    Gradients have magnitudes spread over six decades per entry, as real ones
    do. Returns, per tensor, max|p_optax - p_torch| / max|p_torch| after `steps`.
    """
    rng = np.random.default_rng(seed)
    start = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    make_torch, make_optax = NOTEBOOK_OPTIMIZERS[optimizer]
    tensors = [torch.tensor(p, requires_grad=True) for p in start]
    torch_opt, tx = make_torch(tensors), make_optax()
    params = [jnp.asarray(p) for p in start]
    opt_state = tx.init(params)
    for _ in range(steps):
        grads = [(rng.standard_normal(s) * 10.0 ** rng.uniform(-6, 0, s)).astype(np.float32) for s in shapes]
        for tensor, g in zip(tensors, grads):
            tensor.grad = torch.as_tensor(g)
        torch_opt.step()
        updates, opt_state = tx.update([jnp.asarray(g) for g in grads], opt_state, params)
        params = optax.apply_updates(params, updates)
    return {f"tensor{i}": referee.relative_difference(np.asarray(p, np.float64), to_numpy(t))
            for i, (p, t) in enumerate(zip(params, tensors))}
