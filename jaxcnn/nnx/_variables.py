"""jaxcnn's NNX networks <-> linen variables, both ways, and the torch state_dict key of each NNX variable.

An NNX network's nnx.Params and nnx.BatchStats are its linen twin's 'params' and 'batch_stats', path for path
(`jaxcnn.naming`): ('conv_stack', 0, 'kernel') is ('params', 'conv_stack_0', 'kernel') is 'conv_stack.0.weight'.
The Dropout layers' RNG state (nnx.RngState) has no linen or torch counterpart: linen takes dropout keys per
call, torch draws from its global generator.
"""

from typing import Any, Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.traverse_util import flatten_dict, unflatten_dict

from jaxcnn import registry
from jaxcnn.naming import linen_path, torch_key

_COLLECTIONS = ((nnx.BatchStat, "batch_stats"), (nnx.Param, "params"), (nnx.Intermediate, "intermediates"))
_WEIGHTS = ("params", "batch_stats")


def _collection(variable: nnx.Variable) -> str | None:
    return next((name for kind, name in _COLLECTIONS if isinstance(variable, kind)), None)


def _flat(tree: nnx.Module | nnx.State, collections=_WEIGHTS) -> list[tuple[tuple, str, nnx.Variable]]:
    """(NNX path, linen collection, variable) of every variable of `collections` in a network or a state."""
    state = tree if isinstance(tree, nnx.State) else nnx.state(tree)
    return [(tuple(path), collection, variable) for path, variable in nnx.to_flat_state(state)
            if (collection := _collection(variable)) in collections]


def linen_variables(tree: nnx.Module | nnx.State) -> dict:
    """The linen variables of an NNX network (or of an nnx.State of its variables: the gradients `nnx.grad`
    returns, the intermediates `nnx.capture` returns), as its linen twin (`jaxcnn.linen_twin`) names them.

    Returns:
        {'params': {'conv_stack_0': {'kernel': array (3, 3, 1, 32), ...}, ...}, 'batch_stats': {...},
        'intermediates': {...}} (a collection without variables is left out).
    """
    return unflatten_dict({linen_path(path, collection): variable.get_value()
                           for path, collection, variable in _flat(tree, (*_WEIGHTS, "intermediates"))})


def state_dict_keys(net: nnx.Module) -> dict[tuple, str]:
    """{path of each nnx.Param and nnx.BatchStat of `net`: its torch state_dict key}, e.g. ('features', 3,
    'kernel') -> 'features.3.weight', ('conv', 1, 'mean') -> 'conv.1.running_mean'. One to one: the torch
    original's keys but BatchNorm's num_batches_tracked, which Flax does not keep."""
    return {path: torch_key(path, collection) for path, collection, _ in _flat(net)}


def _shapes(flat: Mapping[tuple, Any]) -> dict[str, tuple]:
    return {"/".join(path): tuple(np.shape(value)) for path, value in flat.items()}


def load_linen_variables(net: nnx.Module, variables: Mapping[str, Any]) -> nnx.Module:
    """Replaces every nnx.Param and nnx.BatchStat of `net`, in place, with linen `variables` of its linen twin's
    tree (each cast to the variable's dtype); returns `net`.

    Raises:
        ValueError: naming every missing, unexpected and misshaped array; nothing is replaced then.
    """
    held = {linen_path(path, collection): variable for path, collection, variable in _flat(net)}
    given = flatten_dict(dict(variables))
    want, got = _shapes({p: v.get_value() for p, v in held.items()}), _shapes(given)
    missing, unexpected = sorted(want.keys() - got.keys()), sorted(got.keys() - want.keys())
    misshaped = [f"{k}: the network holds {want[k]}, the variables {got[k]}"
                 for k in sorted(want.keys() & got.keys()) if want[k] != got[k]]
    if missing or unexpected or misshaped:
        parts = [f"missing {missing}" if missing else "", f"unexpected {unexpected}" if unexpected else "",
                 ", ".join(misshaped)]
        raise ValueError(f"linen variables do not fit {type(net).__name__}: {'; '.join(p for p in parts if p)}")
    for path, variable in held.items():
        variable.set_value(jnp.asarray(given[path], variable.get_value().dtype))
    return net


def nnx_from_linen(model, variables: Mapping[str, Any], rngs: nnx.Rngs | None = None) -> nnx.Module:
    """The NNX network of a registry linen module, holding its linen `variables`.

    Arguments:
        model: a linen module of the registry (`jaxcnn.create_model(name, **kwargs)`), or a registry name.
        variables: {'params': ..., 'batch_stats': ...} of `model`.
        rngs: the network's Dropout keys (its 'dropout' stream); default nnx.Rngs(0). Its weights are `variables`.

    Returns:
        `jaxcnn.create_model(name, api="nnx", **kwargs)` with `model`'s arguments, loaded in place with
        `load_linen_variables`; new, it is in training mode.

    Raises:
        TypeError: a module outside the registry. ValueError: variables of another tree.
    """
    name = model if isinstance(model, str) else registry.registered_name(model)
    if name is None:
        raise TypeError(f"{type(model).__name__} is not a registry network; its NNX network is unknown")
    kwargs = {} if isinstance(model, str) else {field: getattr(model, field) for field in model.__dataclass_fields__
                                                 if field not in ("parent", "name")}
    net = registry.create_model(name, api="nnx", rngs=nnx.Rngs(0) if rngs is None else rngs, **kwargs)
    return load_linen_variables(net, variables)
