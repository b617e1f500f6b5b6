"""torch-keyed weights <-> jaxcnn (Flax) variables, in numpy: no torch needed. All knowledge of torch's layouts
lives here.

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
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax.numpy as jnp
import numpy as np
import safetensors
import safetensors.numpy
from flax import linen as nn
from flax.traverse_util import flatten_dict, unflatten_dict

from jaxcnn import registry
from jaxcnn.files import atomic_target
from jaxcnn.layers import Dropout, Flatten, Linear
from jaxcnn.naming import BATCHNORM as _BATCHNORM, DROPPED, WEIGHTED as _WEIGHTED  # noqa: F401  (DROPPED re-exported)
from jaxcnn.naming import flax_name, torch_prefix  # noqa: F401  (re-exported: parity and train import them here)
from jaxcnn.nnx import CourseNet as NNXNetwork, linen_twin, linen_variables, load_linen_variables
from jaxcnn.summary import trace_layers



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


def to_nhwc(x: Any) -> np.ndarray:
    """(N, C, *spatial) -> (N, *spatial, C); 2-D arrays pass through."""
    x = np.asarray(x)
    return np.moveaxis(x, 1, -1) if x.ndim > 2 else x


def to_nchw(x: Any) -> np.ndarray:
    """(N, *spatial, C) -> (N, C, *spatial); 2-D arrays pass through."""
    x = np.asarray(x)
    return np.moveaxis(x, -1, 1) if x.ndim > 2 else x


def activation_to_torch(a: np.ndarray, flatten_from: tuple[int, ...] | None = None) -> np.ndarray:
    """A channels-last activation (or dropout mask) in torch's layout: (N, *spatial, C) -> (N, C, *spatial);
    (N, F) flattened from (*spatial, C) -> (N, F) in (C, *spatial) order."""
    a = np.asarray(a)
    if flatten_from is not None:
        *spatial, c = flatten_from
        return np.moveaxis(a.reshape(a.shape[0], *spatial, c), -1, 1).reshape(a.shape[0], -1)
    return to_nchw(a)


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
        return kernel_to_flax(w, self.flatten_from) if self.flax_path[-1] == "kernel" else w

    def to_torch(self, w: np.ndarray) -> np.ndarray:
        return kernel_to_torch(w, self.flatten_from) if self.flax_path[-1] == "kernel" else w


def kernel_to_flax(w: np.ndarray, flatten_from: tuple[int, ...] | None = None) -> np.ndarray:
    """A torch conv weight (O, I, *k) as a kernel (*k, I, O); a Linear weight (out, in) as (in, out).

    flatten_from: for a Linear fed by a channels-last flatten of (N, *spatial, C), that (*spatial, C): its input
    features are permuted from torch's (C, *spatial) order to (*spatial, C).
    """
    w = np.asarray(w)
    if flatten_from is not None:
        *spatial, c = flatten_from
        w = np.moveaxis(w.reshape(w.shape[0], c, *spatial), 1, -1).reshape(w.shape[0], -1)
    return np.transpose(w, (*range(2, w.ndim), 1, 0))


def kernel_to_torch(w: np.ndarray, flatten_from: tuple[int, ...] | None = None) -> np.ndarray:
    """The inverse of kernel_to_flax."""
    w = np.asarray(w)
    w = np.transpose(w, (w.ndim - 1, w.ndim - 2, *range(w.ndim - 2)))
    if flatten_from is not None:  # input features (*spatial, C) -> (C, *spatial), rows as a batch
        w = activation_to_torch(w, flatten_from)
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


def _traced(model: nn.Module, sample_shape_nchw) -> tuple[dict, list]:
    """(flat variable shapes, layer calls) of `model` on an NCHW sample shape (default: one image)."""
    if sample_shape_nchw is None:
        sample_shape_nchw = (1, model.input_shape[-1], *model.input_shape[:-1])
    shape = tuple(getattr(sample_shape_nchw, "shape", sample_shape_nchw))
    variables, calls = trace_layers(model, (shape[0], *shape[2:], shape[1]))
    return flatten_dict(dict(variables)), calls


def flatten_shapes(model: nn.Module, shape_nhwc: tuple[int, ...]) -> dict[tuple[str, ...], tuple[int, ...]]:
    """For layers fed by a Flatten (first Linear, Dropouts before it): the shape that Flatten received."""
    return _after_flatten(trace_layers(model, shape_nhwc)[1])


def _plan(traced: tuple[dict, list], torch_keys: Sequence[str]) -> tuple[list[_Slot], list[str], list[str], set]:
    """Matches torch keys to the variables of a `_traced` model. Returns (slots, unexpected torch keys, missing
    Flax paths, dropped keys)."""
    leaves, calls = traced
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
        if is_batchnorm and leaf == DROPPED:
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


def torch_keys(model: nn.Module, sequentials: Sequence[str] | None = None, sample_shape_nchw=None) -> list[str]:
    """The state_dict keys of `model`'s torch original, in torch's order (BatchNorm's num_batches_tracked too).

    Arguments:
        model: a jaxcnn linen module, or a jaxcnn NNX network (then its linen twin's keys: the same).
        sequentials: the torch attributes that are nn.Sequentials (jaxcnn.ModelConfig.torch_sequentials);
            default: the model's registered config, or none for a network outside the registry.
        sample_shape_nchw: the (N, C, H, W) input to trace the model with; default one image of
            `model.input_shape`.

    Returns:
        ['conv1.weight', 'conv1.bias', ...], as `list(module.state_dict())` of the torch original.
    """
    model, _ = _as_linen(model)
    if sequentials is None:
        sequentials = registry.config_of(model).torch_sequentials
    return _keys(_traced(model, sample_shape_nchw), sequentials)


def _keys(traced: tuple[dict, list], sequentials: Sequence[str]) -> list[str]:
    leaves, calls = traced
    by_module: dict[tuple[str, ...], set[tuple[str, str]]] = {}
    for path in leaves:
        by_module.setdefault(path[1:-1], set()).add((path[0], path[-1]))
    in_call_order = dict.fromkeys([c.path for c in calls if c.path in by_module] + list(by_module))
    keys = []
    for module_path in in_call_order:
        held = by_module[module_path]
        prefix = torch_prefix("_".join(module_path), sequentials)
        table = _BATCHNORM if ("batch_stats", "mean") in held else _WEIGHTED
        keys += [f"{prefix}.{leaf}" for leaf, slot in table.items() if slot in held]
        if table is _BATCHNORM:
            keys.append(f"{prefix}.{DROPPED}")
    return keys


def as_numpy(value: Any) -> np.ndarray:
    """An array-like (numpy, JAX, a CPU or GPU torch tensor, with or without grad) as a host numpy array; torch's
    bfloat16, which numpy lacks, becomes float32 (exactly)."""
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu()
        value = (value.float() if str(value.dtype) == "torch.bfloat16" else value).numpy()
    return np.asarray(value)


def _as_linen(model) -> tuple[nn.Module, NNXNetwork | None]:
    """(the linen module, None) for a linen module; (its linen twin, the network) for a jaxcnn NNX network."""
    if isinstance(model, nn.Module):
        return model, None
    if not isinstance(model, NNXNetwork):
        raise TypeError(f"expected a jaxcnn linen module or a jaxcnn NNX network (jaxcnn.nnx), "
                        f"got {type(model).__name__}")
    return linen_twin(model), model


def load_torch_weights(model, source: str | Path | Mapping[str, Any], sample_shape_nchw=None):
    """Flax variables for `model` from torch-keyed weights (a `.safetensors` file or a mapping), without torch.

    Strict, as torch's `load_state_dict(strict=True)`: every key of the model, no other, every shape. Conv
    weights (O, I, kh, kw) become kernels (kh, kw, I, O), Linear weights (out, in) kernels (in, out), BatchNorm's
    weight, bias, running_mean, running_var its params scale, bias and batch_stats mean, var
    (num_batches_tracked is dropped); the first Linear after a Flatten has its inputs permuted from torch's
    (C, H, W) order to the (H, W, C) of a channels-last flatten.

    Arguments:
        model: the jaxcnn linen module the weights are for; or a jaxcnn NNX network (`create_model(name,
            api="nnx", ...)`), which is loaded in place (through its linen twin, `jaxcnn.linen_twin`).
        source: a path to a torch-keyed .safetensors file (`torch.save` files need torch: `python -m parity
            convert`), or a mapping {'conv1.weight': array (O, I, kh, kw), ...} of numpy arrays, JAX arrays or
            torch tensors (bfloat16 included).
        sample_shape_nchw: the (N, C, H, W) input to trace the model with (for networks that take any size,
            the first Linear's permutation depends on it); default one image of `model.input_shape`.

    Returns:
        For a linen module, {'params': ..., 'batch_stats': ...} (batch_stats only when the model has BatchNorm):
        jax arrays in the model's dtypes, nested by module name ('conv_stack_0' -> 'kernel', 'bias'), ready for
        `model.apply(variables, x)` on NHWC x (N, H, W, C). For an NNX network, the network itself, its
        nnx.Params and nnx.BatchStats replaced (nothing is, when the weights do not fit).

    Raises:
        ConversionError: listing every missing key, unexpected key and shape mismatch at once.
        ValueError: a path that is not a .safetensors file, or one that holds Flax variables ('/'-joined keys).
        FileNotFoundError: no file at the path.
        TypeError: a model that is neither a jaxcnn linen module nor a jaxcnn NNX network.
    """
    model, net = _as_linen(model)
    if net is not None:
        return load_linen_variables(net, load_torch_weights(model, source, sample_shape_nchw))
    state = read_torch_safetensors(source) if isinstance(source, (str, Path)) else dict(source)
    slots, unexpected, missing, _ = _plan(_traced(model, sample_shape_nchw), list(state))
    mismatched = [f"{s.torch_key}: got {tuple(np.shape(state[s.torch_key]))}, the model expects {s.torch_shape()}"
                  for s in slots if tuple(np.shape(state[s.torch_key])) != s.torch_shape()]
    if unexpected or missing or mismatched:
        missing = [f"{m} (no torch key maps to it)" for m in missing]
        raise ConversionError(missing, unexpected, mismatched, "torch -> Flax")
    # Copies: jnp.asarray may alias a numpy view of torch storage, which torch may later update in place.
    flat = {s.flax_path: jnp.array(s.to_flax(as_numpy(state[s.torch_key])), s.flax_dtype, copy=True) for s in slots}
    return unflatten_dict(flat)


def torch_state_dict(model, variables: Mapping | None = None, keys: Sequence[str] | None = None,
                     sample_shape_nchw=None) -> dict[str, np.ndarray]:
    """The torch state_dict of Flax `variables`, as numpy arrays in torch's layouts, without torch.

    The inverse of `load_torch_weights`, bit for bit: `torch_module.load_state_dict({k: torch.from_numpy(v)
    ...}, strict=True)` accepts it, and `write_torch_safetensors` writes it as a file torch reads.

    Arguments:
        model: a jaxcnn linen module with its `variables`, or a jaxcnn NNX network (then `variables` defaults
            to its own, `jaxcnn.linen_variables(net)`).
        variables: {'params': ..., 'batch_stats': ...} of `model`.
        keys: the torch state_dict's keys (e.g. `list(module.state_dict())`); default `torch_keys(model)`.
        sample_shape_nchw: the (N, C, H, W) input to trace the model with; default one image of
            `model.input_shape`.

    Returns:
        {torch key: numpy array} in the keys' order: conv weights (O, I, kh, kw), Linear weights (out, in),
        biases and BatchNorm statistics (C,); num_batches_tracked, which Flax does not keep, a 0 of int64.

    Raises:
        ConversionError: the keys, the model and the variables disagree (every difference listed).
        TypeError: a linen module without variables; a model that is neither a jaxcnn linen module nor a
            jaxcnn NNX network.
    """
    model, net = _as_linen(model)
    if net is not None and variables is None:
        variables = linen_variables(net)
    if variables is None:
        raise TypeError("torch_state_dict(model, variables): a linen module needs its variables")
    traced = _traced(model, sample_shape_nchw)  # once, for the keys and the plan
    keys = list(_keys(traced, registry.config_of(model).torch_sequentials) if keys is None else keys)
    slots, unexpected, missing, dropped = _plan(traced, keys)
    given = flatten_dict(dict(variables))
    absent = ["/".join(s.flax_path) for s in slots if s.flax_path not in given]
    extra = ["/".join(p) for p in given if p not in {s.flax_path for s in slots}]
    mismatched = [f"{'/'.join(s.flax_path)}: got {tuple(np.shape(given[s.flax_path]))}, expected {s.flax_shape}"
                  for s in slots if s.flax_path in given and tuple(np.shape(given[s.flax_path])) != s.flax_shape]
    if unexpected or missing or absent or extra or mismatched:
        raise ConversionError(absent + [f"torch key {k} (the Flax model has no place for it)" for k in unexpected],
                              extra + [f"{m} (no torch key in the module)" for m in missing], mismatched,
                              "Flax -> torch")
    by_key = {s.torch_key: s for s in slots}
    return {key: np.zeros((), np.int64) if key in dropped else
            np.array(by_key[key].to_torch(np.asarray(given[by_key[key].flax_path])), copy=True, order="C")
            for key in keys}


def read_torch_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """A torch-keyed .safetensors file as {torch key: numpy array}, in torch's layouts (no torch needed).

    Raises:
        ValueError: a path that is not a .safetensors file, or a file of Flax variables ('/'-joined keys).
        FileNotFoundError: no file at the path.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: jaxcnn reads torch weights from .safetensors without torch; for a .pt/.pth file "
                         f"use `python -m parity convert` (it needs torch) or parity.checks.io.load_torch_state")
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    with safetensors.safe_open(str(path), "np") as f:
        keys = list(f.keys())
    if any("/" in key for key in keys):
        raise ValueError(f"{path} holds Flax variables ('/'-joined keys), not torch weights: read it with "
                         f"parity.checks.io.load_flax")
    return dict(safetensors.numpy.load_file(str(path)))


def write_torch_safetensors(state: Mapping[str, Any], path: str | Path,
                            metadata: Mapping[str, str] | None = None) -> None:
    """Writes a torch-keyed mapping of arrays as a .safetensors file that torch reads back as its state_dict.

    The file is complete or absent: written to a temporary name beside `path`, then renamed.

    Arguments:
        state: {torch key: array} (numpy, JAX or torch tensors), e.g. `torch_state_dict(model, variables)`.
        path: the file to write; `safetensors.torch.load_file(path)` reads it as a state_dict.
        metadata: str -> str pairs kept in the header (jaxcnn.pretrained.About.to_metadata).
    """
    with atomic_target(path) as tmp:
        safetensors.numpy.save_file({k: np.ascontiguousarray(as_numpy(v)) for k, v in state.items()}, str(tmp),
                                    metadata=dict(metadata) if metadata else None)
