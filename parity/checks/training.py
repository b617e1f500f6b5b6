"""Training-mode parity: gradients, torch vs jaxcnn, judged against a float64 referee (parity.checks.referee).

Dropout is either off (eval mode) or replayed: the Flax run draws its masks,
and forward hooks apply the very same masks in torch (permuted into torch's
layout where a Dropout sits after a Flatten).
"""

import contextlib
import copy
import dataclasses
from typing import Any, Callable, Iterator

import jax
import numpy as np
import torch
import torch.nn.functional as F
from flax import linen as nn
from flax.traverse_util import flatten_dict

import jaxcnn
from jaxcnn.interchange import activation_to_torch, flatten_shapes, flax_name
from parity.checks import referee
from parity.checks.check import exact_numerics, in_mode, to_nhwc, to_numpy, to_torch
from parity.checks.convert import flax_to_torch
from parity.checks.flax_side import LinenSide, NNXSide, flax_loss, flax_side, flax_step_fn  # noqa: F401
from parity.checks.device import torch_device_of

def loss_kind(name: str) -> str:
    """'mse' or 'cross_entropy', as the network's config says (jaxcnn.model_config)."""
    return jaxcnn.model_config(name).loss


def make_targets(name: str, output_shape_nchw: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Regression targets of the output's shape (torch layout), or class labels (N,)."""
    rng = np.random.default_rng(seed)
    if loss_kind(name) == "mse":
        return rng.uniform(0, 1, output_shape_nchw).astype(np.float32)
    return rng.integers(0, output_shape_nchw[1], output_shape_nchw[0]).astype(np.int64)


def targets_for(name: str, module: torch.nn.Module, x_nchw: np.ndarray, seed: int = 0) -> np.ndarray:
    """make_targets for the output that `module` (in eval mode) gives on x_nchw."""
    with torch.no_grad():
        shape = tuple(module.eval()(to_torch(x_nchw, torch_device_of(module))).shape)
    return make_targets(name, shape, seed)


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
                lambda _m, inputs, _out, keep=keep, rate=rate:
                torch.where(keep.to(inputs[0].device), inputs[0] / (1.0 - rate), 0.0)))
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def torch_masks(model: nn.Module, intermediates: Any, shape_nhwc: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The Flax run's dropout masks, keyed by Flax layer name, in torch's layout."""
    flat = flatten_dict(intermediates) if intermediates else {}
    flattened = flatten_shapes(model, shape_nhwc) if flat else {}
    return {"_".join(path[:-1]): activation_to_torch(masks[0], flattened.get(path[:-1]))
            for path, masks in flat.items() if path[-1] == "keep"}


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
    try:
        with in_mode(module, train), torch.no_grad():
            module(to_torch(x_nchw, torch_device_of(module)))
    finally:
        for h in hooks:
            h.remove()
    return count


def torch_state(module: torch.nn.Module, keys: Callable[[str], bool] = lambda key: True) -> dict[str, np.ndarray]:
    """The state_dict entries `keys` accepts (num_batches_tracked aside), as host float64 arrays."""
    return {k: to_numpy(v).astype(np.float64) for k, v in module.state_dict().items()
            if keys(k) and not k.endswith("num_batches_tracked")}


def compare_states(module: torch.nn.Module, float64_module: torch.nn.Module, model: nn.Module, variables: Any,
                   sample_nchw: Any, rtol: float, keys: Callable[[str], bool] = lambda key: True
                   ) -> dict[str, referee.Verdict]:
    """Per state_dict key (those `keys` accepts): the Flax variables against torch's tensors and the referee's."""
    ours = {k: to_numpy(v).astype(np.float64) for k, v in flax_to_torch(variables, model, module, sample_nchw).items()}
    return referee.judge_each(ours, torch_state(module, keys), torch_state(float64_module, keys), rtol)


@dataclasses.dataclass
class GradientReport:
    """Losses of the three runs, and per parameter the verdict on max|g - g_ref| / max(max|g_ref|, floor)."""
    loss_torch: float
    loss_flax: float
    loss_float64: float
    verdicts: dict[str, referee.Verdict]

    @property
    def relative(self) -> dict[str, float]:
        """Per parameter: Flax vs torch."""
        return {k: v.flax_torch for k, v in self.verdicts.items()}

    @property
    def worst(self) -> float:
        return max(self.relative.values())

    @property
    def verdict(self) -> referee.Verdict:
        return referee.combine(self.verdicts.values())

    def loss_verdict(self, rtol: float = 1e-5) -> referee.Verdict:
        return referee.judge_scalar(self.loss_flax, self.loss_torch, self.loss_float64, rtol)

    def failures(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.verdicts.items() if not v.ok}


def float64_pair(module: torch.nn.Module, side: LinenSide | NNXSide, stack: contextlib.ExitStack):
    """Enters jax x64 on `stack`; returns a float64 copy of the module and the Flax side in float64."""
    stack.enter_context(jax.enable_x64(True))
    return copy.deepcopy(module).double(), side.in_float64()


def float64_data(kind: str, x: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.astype(np.float64), (targets.astype(np.float64) if kind == "mse" else targets)


def torch_gradients(module: torch.nn.Module, kind: str, x_nchw: np.ndarray, targets: np.ndarray,
                    masks: dict[str, np.ndarray], train: bool) -> tuple[float, dict[str, np.ndarray]]:
    """(loss, {parameter name: gradient as host float64}) of one torch forward/backward on the module's device,
    in the dtype of x_nchw, with the Dropout masks replayed. Leaves the module in eval mode."""
    where = torch_device_of(module)
    module.train(train)
    module.zero_grad(set_to_none=True)
    with exact_numerics(), replayed_dropout(module, masks):
        loss = torch_loss(kind, module(to_torch(x_nchw, where)), to_torch(targets, where))
        loss.backward()
    module.eval()
    return float(loss.detach()), {n: to_numpy(p.grad).astype(np.float64) for n, p in module.named_parameters()}


def compare_gradients(module: torch.nn.Module, model: nn.Module, variables: Any, x_nchw: np.ndarray,
                      targets: np.ndarray, kind: str, train: bool = False, seed: int = 0,
                      double: bool = False, rtol: float = 1e-4) -> GradientReport:
    """Gradients of the loss w.r.t. every parameter, both frameworks, same weights and input, with the referee.

    model, variables: a jaxcnn linen module and its variables, or a jaxcnn NNX network and None.
    torch runs on its module's device, Flax on JAX's default device, the referee (torch in float64) on the CPU.
    train=False: eval mode (Dropout off, BatchNorm running statistics).
    train=True: BatchNorm batch statistics, and Dropout with one shared mask.
    double=True: both sides in float64 (jax x64, a float64 copy of the module), which takes float32 rounding,
    and so max-pool near-ties, out of the comparison; torch is then its own referee.
    """
    side = flax_side(model, variables)
    with contextlib.ExitStack() as stack:
        if double:
            module, side = float64_pair(module, side, stack)
            x_nchw, targets = float64_data(kind, x_nchw, targets)
        x = to_nhwc(x_nchw)
        with exact_numerics():
            loss, grads, intermediates = side.gradients(kind, x, to_nhwc(targets), train, jax.random.key(seed))
        masks = torch_masks(side.linen, intermediates, x.shape)
        ours = {k: to_numpy(v).astype(np.float64) for k, v in flax_to_torch(
            {**side.variables(), "params": grads}, side.linen, module, x_nchw.shape).items()}
    loss_t, theirs = torch_gradients(module, kind, x_nchw, targets, masks, train)
    if double:
        loss_64, exact = loss_t, theirs
    else:
        loss_64, exact = torch_gradients(referee.float64_copy(module), kind, *float64_data(kind, x_nchw, targets),
                                         masks, train)
    # A gradient that is zero in exact arithmetic (a conv bias before train-mode BatchNorm) is pure
    # float32 rounding noise, ~5e-7 of the model's largest gradient in VGG-16-BN: tensors whose gradient
    # is below 1% of the model's largest are judged against that 1% instead of their own maximum.
    floor = 1e-2 * max(float(np.max(np.abs(g))) for g in exact.values())
    verdicts = referee.judge_each(ours, theirs, exact, rtol, floor)
    return GradientReport(loss_t, float(loss), loss_64, verdicts)
