"""A ported module's weights both ways, by the `TORCH_WEIGHTS` table its generated class carries: torch
state_dict -> Flax variables and back, strictly (every key, every shape), bit for bit."""

import collections
from typing import Any, Mapping, Sequence

import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx
from flax.traverse_util import flatten_dict, unflatten_dict

from jaxcnn.interchange import ConversionError, as_numpy, kernel_to_flax, kernel_to_torch
from parity.port._nnx_view import assign, view_of

Table = Sequence[tuple]  # (torch key, Flax path or None, kind, torch shape, flatten_from or None)


def _table(model_or_table: Any) -> Table:
    table = getattr(model_or_table, "TORCH_WEIGHTS", model_or_table)
    if not isinstance(table, (tuple, list)):
        raise TypeError(f"{type(model_or_table).__name__} is not a ported module (it has no TORCH_WEIGHTS table)")
    return table


def load_state_dict(model: Any, state: Mapping[str, Any]) -> Any:
    """Flax variables of a ported module from the torch module's state_dict (tensors or arrays); the buffers that
    torch keeps out of its state_dict (persistent=False) come from the port's TORCH_CONSTANTS. A ported NNX
    network gets them in place (and its nnx.state is returned).

    Raises ConversionError listing every missing key, unexpected key and shape mismatch.
    """
    if isinstance(model, nnx.Module):
        assign(model, {"/".join(k[1:]): v for k, v in flatten_dict(load_state_dict(view_of(model), state)).items()})
        return nnx.state(model)
    table = _table(model)
    known = {row[0] for row in table}
    missing = [row[0] for row in table if row[0] not in state and row[2] != "unused"]
    unexpected = [k for k in state if k not in known]
    mismatched = [f"{key}: got {tuple(np.shape(state[key]))}, the module expects {tuple(shape)}"
                  for key, path, _, shape, _ in table
                  if key in state and path is not None and tuple(np.shape(state[key])) != tuple(shape)]
    if missing or unexpected or mismatched:
        raise ConversionError(missing, unexpected, mismatched, "torch -> Flax (ported module)")
    flat = {}
    for key, path, kind, _, flatten_from in table:
        if path is None:
            continue
        w = as_numpy(state[key])
        w = kernel_to_flax(w, tuple(flatten_from) if flatten_from else None) if kind == "kernel" else w
        flat[tuple(path.split("/"))] = jnp.array(w, copy=True)
    for path, (_, value) in getattr(model, "TORCH_CONSTANTS", {}).items():
        flat[tuple(path.split("/"))] = jnp.array(value, copy=True)
    return unflatten_dict(flat)


def numpy_state_dict(model: Any, variables: Any = None, dropped: Mapping[str, Any] | None = None
                     ) -> dict[str, np.ndarray]:
    """The torch state_dict (numpy arrays, torch's key order) of a ported module's variables (a ported NNX
    network's own, or the nnx.State given).

    dropped: values for what Flax does not keep (BatchNorm's num_batches_tracked, weights forward never reads),
    e.g. the original state_dict; default zeros.
    Raises ConversionError when the variables lack an entry of the table or hold one it does not know.
    """
    if isinstance(model, nnx.Module):
        view = view_of(model)
        return numpy_state_dict(view, view.variables(variables), dropped)
    if variables is None:
        raise TypeError("a linen port's variables are needed: numpy_state_dict(module, variables)")
    table = _table(model)
    given = {"/".join(k): v for k, v in flatten_dict(dict(variables)).items()}
    paths = {row[1] for row in table if row[1] is not None} | set(getattr(model, "TORCH_CONSTANTS", {}))
    absent = [p for p in paths if p not in given]
    extra = [p for p in given if p not in paths]
    if absent or extra:
        raise ConversionError(absent, extra, [], "Flax (ported module) -> torch")
    state = {}
    for key, path, kind, shape, flatten_from in table:
        if path is None:  # num_batches_tracked; a weight forward never reads (kind 'unused')
            zeros = np.zeros(shape, np.float32) if kind == "unused" else np.zeros((), np.int64)
            state[key] = as_numpy(dropped[key]) if dropped and key in dropped else zeros
            continue
        w = np.asarray(given[path])
        w = kernel_to_torch(w, tuple(flatten_from) if flatten_from else None) if kind == "kernel" else \
            w.astype(np.int64) if kind == "index" else w
        state[key] = np.array(w, copy=True, order="C")
    return state


def torch_state_dict(model: Any, variables: Any = None, dropped: Mapping[str, Any] | None = None) -> dict:
    """`numpy_state_dict` as torch tensors: `torch_module.load_state_dict(torch_state_dict(model, variables))`
    (an NNX port: `torch_state_dict(net)`) loads strictly into the module the port was made from (an OrderedDict carrying, as torch's does, the
    `_metadata` of each module's layout version)."""
    state = collections.OrderedDict((k, torch.from_numpy(v))
                                    for k, v in numpy_state_dict(model, variables, dropped).items())
    metadata = getattr(model, "TORCH_METADATA", None)
    if metadata:
        state._metadata = collections.OrderedDict((prefix, dict(entry)) for prefix, entry in metadata.items())
    return state
