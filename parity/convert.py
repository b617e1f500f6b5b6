"""torch state_dicts <-> jaxcnn (Flax) variables. All knowledge of torch's layouts lives here.

Names: a torch prefix maps to the Flax module of the same name with '.' as '_'
('conv_stack.0' -> 'conv_stack_0'); a bare nn.Sequential's '3' -> 'layers_3'.
Layouts: conv weights (O, I, *k) <-> kernels (*k, I, O); Linear weights
(out, in) <-> kernels (in, out); BatchNorm weight/bias/running_mean/running_var
<-> params scale/bias and batch_stats mean/var (num_batches_tracked is dropped).
The first Linear after a Flatten gets its input features permuted from torch's
(C, H, W) order to the (H, W, C) order of a channels-last flatten.

Conversion is strict: every missing key, unexpected key and shape mismatch is
collected and raised together in one ConversionError.
"""

import dataclasses
import re
from typing import Any, Mapping

import jax.numpy as jnp
import numpy as np
import torch
from flax import linen as nn
from flax.traverse_util import flatten_dict, unflatten_dict

from jaxcnn.layers import Dropout, Flatten, Linear
from jaxcnn.summary import trace_layers

_BATCHNORM = {"weight": ("params", "scale"), "bias": ("params", "bias"),
              "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}
_WEIGHTED = {"weight": ("params", "kernel"), "bias": ("params", "bias")}
_DROPPED = "num_batches_tracked"


class ConversionError(ValueError):
    """The state_dict and the Flax model disagree; lists every difference at once."""

    def __init__(self, missing: list[str], unexpected: list[str], mismatched: list[str], direction: str):
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        lines = [f"cannot convert {direction}:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}; the model needs them, the state_dict lacks them):")
            lines += [f"    {k}" for k in missing]
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}; the state_dict has them, the model has no place for them):")
            lines += [f"    {k}" for k in unexpected]
        if mismatched:
            lines.append(f"  shape mismatches ({len(mismatched)}):")
            lines += [f"    {k}" for k in mismatched]
        super().__init__("\n".join(lines))


def flax_name(torch_prefix: str) -> str:
    """'conv_stack.0' -> 'conv_stack_0'; '3' (a bare nn.Sequential) -> 'layers_3'."""
    name = torch_prefix.replace(".", "_")
    return f"layers_{name}" if re.match(r"\d", name) else name


@dataclasses.dataclass(frozen=True)
class _Slot:
    """Where one torch tensor lives in the Flax variables, and how its layout changes."""
    torch_key: str
    flax_path: tuple[str, ...]  # (collection, *module path, leaf)
    flax_shape: tuple[int, ...]
    flax_dtype: Any
    flatten_from: tuple[int, ...] | None  # channels-last (*spatial, C) feeding a Linear, if permuted

    def torch_shape(self) -> tuple[int, ...]:
        shape = self.flax_shape
        if self.flax_path[-1] != "kernel":
            return shape
        return (shape[-1], shape[-2], *shape[:-2])  # (*k, I, O) -> (O, I, *k); (in, out) -> (out, in)

    def to_flax(self, w: np.ndarray) -> np.ndarray:
        if self.flax_path[-1] != "kernel":
            return w
        if self.flatten_from is not None:  # features (C, *spatial) -> (*spatial, C)
            *spatial, c = self.flatten_from
            w = np.moveaxis(w.reshape(w.shape[0], c, *spatial), 1, -1).reshape(w.shape[0], -1)
        return np.transpose(w, (*range(2, w.ndim), 1, 0))

    def to_torch(self, w: np.ndarray) -> np.ndarray:
        if self.flax_path[-1] != "kernel":
            return w
        w = np.transpose(w, (w.ndim - 1, w.ndim - 2, *range(w.ndim - 2)))
        if self.flatten_from is not None:  # input features (*spatial, C) -> (C, *spatial), rows as a batch
            w = activation_to_torch(w, self.flatten_from)
        return w


def _after_flatten(calls) -> dict[tuple[str, ...], tuple[int, ...]]:
    """Paths of the first Linear after each Flatten, and of Dropouts between the two, mapped to the
    channels-last (*spatial, C) shape that Flatten received."""
    found, pending = {}, None
    for call in calls:
        if issubclass(call.layer, Flatten):
            pending = call.input_shape[1:] if len(call.input_shape) > 2 else None
        elif pending is not None and issubclass(call.layer, (Linear, Dropout)):
            found[call.path] = pending
            if issubclass(call.layer, Linear):
                pending = None
    return found


def activation_to_torch(a: np.ndarray, flatten_from: tuple[int, ...] | None = None) -> np.ndarray:
    """A channels-last activation (or dropout mask) in torch's layout: (N, *spatial, C) -> (N, C, *spatial);
    (N, F) flattened from (*spatial, C) -> (N, F) in (C, *spatial) order."""
    a = np.asarray(a)
    if flatten_from is not None:
        *spatial, c = flatten_from
        return np.moveaxis(a.reshape(a.shape[0], *spatial, c), -1, 1).reshape(a.shape[0], -1)
    return np.moveaxis(a, -1, 1) if a.ndim > 2 else a


def flatten_shapes(model: nn.Module, shape_nhwc: tuple[int, ...]) -> dict[tuple[str, ...], tuple[int, ...]]:
    """For layers fed by a Flatten (first Linear, Dropouts before it): the shape that Flatten received."""
    return _after_flatten(trace_layers(model, shape_nhwc)[1])


def _plan(model: nn.Module, torch_keys: list[str], sample_shape_nchw) -> tuple[list[_Slot], list[str], list[str], set]:
    """Matches torch keys to Flax variables. Returns (slots, unexpected torch keys, missing Flax paths, dropped keys)."""
    if sample_shape_nchw is None:
        sample_shape_nchw = (1, model.input_shape[-1], *model.input_shape[:-1])
    shape = tuple(sample_shape_nchw)
    nhwc = (shape[0], *shape[2:], shape[1])
    variables, calls = trace_layers(model, nhwc)
    leaves = flatten_dict(dict(variables))
    modules: dict[str, tuple[str, ...]] = {}
    for path in leaves:
        modules.setdefault("_".join(path[1:-1]), path[1:-1])
    permuted = _after_flatten(calls)

    slots, unexpected, dropped, taken = [], [], set(), set()
    for key in torch_keys:
        prefix, _, leaf = key.rpartition(".")
        module_path = modules.get(flax_name(prefix))
        if module_path is None:
            unexpected.append(key)
            continue
        is_batchnorm = ("batch_stats", *module_path, "mean") in leaves
        if is_batchnorm and leaf == _DROPPED:
            dropped.add(key)
            continue
        target = (_BATCHNORM if is_batchnorm else _WEIGHTED).get(leaf)
        flax_path = (target[0], *module_path, target[1]) if target else None
        if flax_path not in leaves or flax_path in taken:
            unexpected.append(key)
            continue
        taken.add(flax_path)
        flatten_from = permuted.get(module_path) if target[1] == "kernel" else None
        slots.append(_Slot(key, flax_path, tuple(leaves[flax_path].shape), leaves[flax_path].dtype, flatten_from))
    missing = ["/".join(p) for p in leaves if p not in taken]
    return slots, unexpected, missing, dropped


def torch_to_flax(module: torch.nn.Module | Mapping[str, torch.Tensor], model: nn.Module,
                  sample_nchw: Any = None) -> dict:
    """Converts a torch module (or its state_dict) into variables for the jaxcnn `model`.

    sample_nchw: an input (or just its shape) in torch's NCHW layout, used to
    trace the model; defaults to one image of `model.input_shape`.
    Returns {'params': ..., 'batch_stats': ...} (batch_stats only when the model
    has BatchNorm), float32 jax arrays. Raises ConversionError on any mismatch.
    """
    state = module.state_dict() if isinstance(module, torch.nn.Module) else dict(module)
    slots, unexpected, missing, _ = _plan(model, list(state), getattr(sample_nchw, "shape", sample_nchw))
    mismatched = [f"{s.torch_key}: got {tuple(state[s.torch_key].shape)}, the model expects {s.torch_shape()}"
                  for s in slots if tuple(state[s.torch_key].shape) != s.torch_shape()]
    if unexpected or missing or mismatched:
        missing = [f"{m} (no torch key maps to it)" for m in missing]
        raise ConversionError(missing, unexpected, mismatched, "torch -> Flax")
    # Copies: jnp.asarray may alias a numpy view of the torch storage, which torch may later update in place.
    flat = {s.flax_path: jnp.array(s.to_flax(state[s.torch_key].detach().cpu().numpy()), s.flax_dtype, copy=True)
            for s in slots}
    return unflatten_dict(flat)


def flax_to_torch(variables: Mapping, model: nn.Module, module: torch.nn.Module,
                  sample_nchw: Any = None) -> dict[str, torch.Tensor]:
    """Converts jaxcnn variables into a state_dict that `module.load_state_dict(sd, strict=True)` accepts.

    num_batches_tracked, which Flax does not keep, is taken from `module`.
    """
    target = module.state_dict()
    slots, unexpected, missing, dropped = _plan(model, list(target), getattr(sample_nchw, "shape", sample_nchw))
    given = flatten_dict(dict(variables))
    absent = ["/".join(s.flax_path) for s in slots if s.flax_path not in given]
    extra = ["/".join(p) for p in given if p not in {s.flax_path for s in slots}]
    mismatched = [f"{'/'.join(s.flax_path)}: got {tuple(np.shape(given[s.flax_path]))}, expected {s.flax_shape}"
                  for s in slots if s.flax_path in given and tuple(np.shape(given[s.flax_path])) != s.flax_shape]
    if unexpected or missing or absent or extra or mismatched:
        raise ConversionError(absent + [f"torch key {k} (the Flax model has no place for it)" for k in unexpected],
                              extra + [f"{m} (no torch key in the module)" for m in missing], mismatched,
                              "Flax -> torch")
    state = {}
    for key in target:
        if key in dropped:
            state[key] = target[key].clone()
            continue
        slot = next(s for s in slots if s.torch_key == key)
        array = slot.to_torch(np.asarray(given[slot.flax_path]))
        state[key] = torch.from_numpy(np.array(array, copy=True)).to(target[key].dtype)
    return state
