"""Training-mode parity: gradients, BatchNorm statistics and optimizer steps, torch vs jaxcnn.

Dropout is either off (eval mode) or replayed: the Flax run draws its masks,
and forward hooks apply the very same masks in torch (permuted into torch's
layout where a Dropout sits after a Flatten).
"""

import contextlib
import copy
import dataclasses
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
import torch.nn.functional as F
from flax import linen as nn
from flax.traverse_util import flatten_dict

from parity.check import exact_numerics, relative_difference, to_nhwc, to_torch
from parity.convert import activation_to_torch, flatten_shapes, flax_name, flax_to_torch
from train.optimizers import torch_adam, torch_sgd

# Notebook 003 regresses the sun's (x, y) with MSE, conv_relu_conv outputs feature maps (MSE against
# a target map); everything else is a classifier trained with cross-entropy.
REGRESSION = {"sun_regressor", "conv_relu_conv"}


def loss_kind(name: str) -> str:
    return "mse" if name in REGRESSION else "cross_entropy"


def make_targets(name: str, output_shape_nchw: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Regression targets of the output's shape (torch layout), or class labels (N,)."""
    rng = np.random.default_rng(seed)
    if loss_kind(name) == "mse":
        return rng.uniform(0, 1, output_shape_nchw).astype(np.float32)
    return rng.integers(0, output_shape_nchw[1], output_shape_nchw[0]).astype(np.int64)


def targets_for(name: str, module: torch.nn.Module, x_nchw: np.ndarray, seed: int = 0) -> np.ndarray:
    """make_targets for the output that `module` (in eval mode) gives on x_nchw."""
    with torch.no_grad():
        shape = tuple(module.eval()(to_torch(x_nchw)).shape)
    return make_targets(name, shape, seed)


def flax_loss(kind: str, y: jax.Array, targets: jax.Array) -> jax.Array:
    if kind == "mse":
        return jnp.mean(jnp.square(y - targets))
    return optax.softmax_cross_entropy_with_integer_labels(y, targets).mean()


def torch_loss(kind: str, y: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(y, targets) if kind == "mse" else F.cross_entropy(y, targets)


@contextlib.contextmanager
def replayed_dropout(module: torch.nn.Module, masks: dict[str, np.ndarray]) -> Iterator[None]:
    """Makes each torch nn.Dropout named n apply masks[flax_name(n)] (torch layout) instead of a random one."""
    hooks = []
    for name, layer in module.named_modules():
        if isinstance(layer, torch.nn.Dropout) and flax_name(name) in masks:
            keep = torch.from_numpy(np.array(masks[flax_name(name)], copy=True))
            rate = layer.p
            hooks.append(layer.register_forward_hook(
                lambda _m, inputs, _out, keep=keep, rate=rate: torch.where(keep, inputs[0] / (1.0 - rate), 0.0)))
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def _torch_masks(model: nn.Module, intermediates: Any, shape_nhwc: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The Flax run's dropout masks, keyed by Flax layer name, in torch's layout."""
    flat = flatten_dict(intermediates) if intermediates else {}
    flattened = flatten_shapes(model, shape_nhwc) if flat else {}
    return {"_".join(path[:-1]): activation_to_torch(masks[0], flattened.get(path[:-1]))
            for path, masks in flat.items() if path[-1] == "keep"}


def flax_step_fn(model: nn.Module, kind: str, train: bool) -> Callable:
    """(params, state, x, targets, key) -> ((loss, (y, new_batch_stats, intermediates)), grads), jitted."""

    def loss_fn(params, state, x, targets, key):
        variables = {**state, "params": params}
        if train:
            y, new = model.apply(variables, x, train=True, mutable=["batch_stats", "intermediates"],
                                 rngs={"dropout": key})
        else:
            y, new = model.apply(variables, x), {}
        return flax_loss(kind, y, targets), (y, new.get("batch_stats", state.get("batch_stats")),
                                             new.get("intermediates", {}))

    return jax.jit(jax.value_and_grad(loss_fn, has_aux=True))


def near_kinks(module: torch.nn.Module, x_nchw: np.ndarray, gap: float = 1e-6, train: bool = False) -> int:
    """Points where the gradient jumps and float32 rounding decides which side it lands on.

    Counts ReLU inputs within `gap` x the layer's largest |input| of zero, and
    max-pool windows whose two largest inputs lie that close. There two float32
    implementations (torch's own CPU and GPU kernels too) may route the gradient
    differently, so gradient comparisons use inputs without such points.
    train: count them in a train-mode forward (BatchNorm batch statistics; Dropout as torch draws it).
    """
    count = 0

    def relu_hook(_layer, inputs, _out):
        nonlocal count
        a = inputs[0].detach().double()
        count += int(((a.abs() <= gap * a.abs().max()) & (a != 0)).sum())

    def pool_hook(layer, inputs, _out):
        nonlocal count
        a = inputs[0].detach().double()
        windows = F.unfold(a.flatten(0, 1)[:, None], layer.kernel_size, layer.dilation, layer.padding,
                           layer.stride)  # (N*C, k*k, L)
        top2 = windows.topk(2, dim=1).values
        near = (top2[:, 0] - top2[:, 1]) <= gap * a.abs().max()
        count += int((near & (top2[:, 0] != 0)).sum())  # all-zero windows after a ReLU route nothing

    hooks = [m.register_forward_hook(pool_hook) for m in module.modules() if isinstance(m, torch.nn.MaxPool2d)]
    hooks += [m.register_forward_hook(relu_hook) for m in module.modules() if isinstance(m, torch.nn.ReLU)]
    was_training = module.training
    module.train(train)
    try:
        with torch.no_grad():
            module(to_torch(x_nchw).clone())
    finally:
        module.train(was_training)
        for h in hooks:
            h.remove()
    return count


def compare_states(module: torch.nn.Module, model: nn.Module, variables: Any, sample_nchw: Any,
                   keys: Callable[[str], bool] = lambda key: True) -> dict[str, float]:
    """Per state_dict key (those `keys` accepts): relative difference of the Flax variables to torch's tensors."""
    ours = flax_to_torch(variables, model, module, sample_nchw)
    theirs = module.state_dict()
    return {k: relative_difference(ours[k].double().numpy(), theirs[k].detach().double().numpy())
            for k in theirs if keys(k) and not k.endswith("num_batches_tracked")}


@dataclasses.dataclass
class GradientReport:
    loss_torch: float
    loss_flax: float
    relative: dict[str, float]  # per parameter: max|g_flax - g_torch| / max(max|g_torch|, floor)

    @property
    def worst(self) -> float:
        return max(self.relative.values())


def _float64(module: torch.nn.Module, variables: Any, stack: contextlib.ExitStack):
    """Enters jax x64 on `stack`; returns a float64 copy of the module and float64 variables."""
    stack.enter_context(jax.enable_x64(True))
    variables = jax.tree_util.tree_map(
        lambda a: jnp.asarray(a, jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, variables)
    return copy.deepcopy(module).double(), variables


def _float64_data(kind: str, x: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.astype(np.float64), (targets.astype(np.float64) if kind == "mse" else targets)


def compare_gradients(module: torch.nn.Module, model: nn.Module, variables: Any, x_nchw: np.ndarray,
                      targets: np.ndarray, kind: str, train: bool = False, seed: int = 0,
                      double: bool = False) -> GradientReport:
    """Gradients of the loss w.r.t. every parameter, both frameworks, same weights and input.

    train=False: eval mode (Dropout off, BatchNorm running statistics).
    train=True: BatchNorm batch statistics, and Dropout with one shared mask.
    double=True: both sides in float64 (jax x64, a float64 copy of the module),
    which takes float32 rounding, and so max-pool near-ties, out of the comparison.
    """
    with contextlib.ExitStack() as stack:
        if double:
            module, variables = _float64(module, variables, stack)
            x_nchw, targets = _float64_data(kind, x_nchw, targets)
        x = to_nhwc(x_nchw)
        state = {k: v for k, v in variables.items() if k != "params"}
        with exact_numerics():
            (loss, (_, _, intermediates)), grads = flax_step_fn(model, kind, train)(
                variables["params"], state, x, to_nhwc(targets), jax.random.key(seed))
            module.train(train)
            module.zero_grad(set_to_none=True)
            with replayed_dropout(module, _torch_masks(model, intermediates, x.shape)):
                loss_t = torch_loss(kind, module(to_torch(x_nchw)), to_torch(targets))
            loss_t.backward()
        grads_sd = flax_to_torch({**state, "params": grads}, model, module, x_nchw.shape)
    # A gradient that is zero in exact arithmetic (a conv bias before train-mode BatchNorm) is pure
    # float32 rounding noise, ~5e-7 of the model's largest gradient in VGG-16-BN: tensors whose gradient
    # is below 1% of the model's largest are judged against that 1% instead of their own maximum.
    floor = 1e-2 * max(float(p.grad.abs().max()) for p in module.parameters())
    relative = {name: relative_difference(grads_sd[name].double().numpy(), p.grad.double().numpy(), floor)
                for name, p in module.named_parameters()}
    module.eval()
    return GradientReport(float(loss_t.detach()), float(loss), relative)


def compare_batchnorm_training(module: torch.nn.Module, model: nn.Module, variables: Any,
                               batches: list[np.ndarray], seed: int = 0) -> tuple[list[float], dict[str, float]]:
    """k train-mode forward passes on the same batches (shared dropout masks).

    Returns the relative output difference at each step, and the final
    relative difference of every BatchNorm running statistic.
    """
    state = dict(variables)
    outputs = []
    module.train()
    for step, x_nchw in enumerate(batches):
        x = to_nhwc(x_nchw)
        with exact_numerics():
            y, new = model.apply(state, x, train=True, mutable=["batch_stats", "intermediates"],
                                 rngs={"dropout": jax.random.fold_in(jax.random.key(seed), step)})
            with torch.no_grad(), replayed_dropout(module, _torch_masks(model, new.get("intermediates"), x.shape)):
                y_t = module(to_torch(x_nchw))
        state["batch_stats"] = new["batch_stats"]
        outputs.append(relative_difference(np.asarray(y, np.float64), to_nhwc(y_t).astype(np.float64)))
    module.eval()
    stats = compare_states(module, model, state, batches[0].shape, lambda k: "running_" in k)
    return outputs, stats


# The optimizers of the notebooks, as (torch, optax) pairs.
NOTEBOOK_OPTIMIZERS = {
    "sgd": (lambda ps: torch.optim.SGD(ps, lr=0.01), lambda: torch_sgd(lr=0.01)),
    "adam": (lambda ps: torch.optim.Adam(ps, lr=1e-3), lambda: torch_adam(lr=1e-3)),
    "adam_l2": (lambda ps: torch.optim.Adam(ps, lr=1e-3, weight_decay=1e-3),
                lambda: torch_adam(lr=1e-3, weight_decay=1e-3)),
}


def compare_optimizer_steps(module: torch.nn.Module, model: nn.Module, variables: Any, batches: list[np.ndarray],
                            targets: list[np.ndarray], kind: str, optimizer: str, seed: int = 0,
                            double: bool = False) -> tuple[list[tuple[float, float]], dict[str, float]]:
    """One optimizer step per batch in train mode, torch.optim vs the optax twin from the same weights.

    Returns the (torch, flax) loss of every step, and the final relative
    difference of every parameter and BatchNorm statistic. double=True runs
    both sides in float64 (the module is copied; the given one is untouched).
    """
    with contextlib.ExitStack() as stack:
        if double:
            module, variables = _float64(module, variables, stack)
            pairs = [_float64_data(kind, x, t) for x, t in zip(batches, targets)]
            batches, targets = [x for x, _ in pairs], [t for _, t in pairs]
        make_torch, make_optax = NOTEBOOK_OPTIMIZERS[optimizer]
        torch_opt, tx = make_torch(module.parameters()), make_optax()
        params = variables["params"]
        state = {k: v for k, v in variables.items() if k != "params"}
        opt_state = tx.init(params)
        step_fn = flax_step_fn(model, kind, train=True)

        @jax.jit
        def apply_updates(grads, opt_state, params):
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        losses = []
        module.train()
        for step, (x_nchw, t) in enumerate(zip(batches, targets)):
            x = to_nhwc(x_nchw)
            with exact_numerics():
                (loss, (_, batch_stats, intermediates)), grads = step_fn(
                    params, state, x, to_nhwc(t), jax.random.fold_in(jax.random.key(seed), step))
                params, opt_state = apply_updates(grads, opt_state, params)
                if batch_stats is not None:
                    state["batch_stats"] = batch_stats
                torch_opt.zero_grad()
                with replayed_dropout(module, _torch_masks(model, intermediates, x.shape)):
                    loss_t = torch_loss(kind, module(to_torch(x_nchw)), to_torch(t))
                loss_t.backward()
                torch_opt.step()
            losses.append((float(loss_t.detach()), float(loss)))
        module.eval()
        return losses, compare_states(module, model, {**state, "params": params}, batches[0].shape)


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
    return {f"tensor{i}": relative_difference(np.asarray(p, np.float64), t.detach().double().numpy())
            for i, (p, t) in enumerate(zip(params, tensors))}
