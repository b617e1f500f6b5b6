"""A ported NNX network seen as the checks and the weight tables see a linen port: its variables by collection
(nnx.Param: 'params', nnx.BatchStat: 'batch_stats', layers.Buffer: 'buffers') and a pure `apply`.

The NNX network's own tables (TORCH_WEIGHTS, ...) give its state paths ('layer1/0/conv1/kernel'); its view's give
them under their collection ('params/layer1/0/conv1/kernel'), as a linen port's do. So `parity.port.check` and
the weight conversions serve both, and `apply` is `nnx.merge` of the variables into the network's graph: what
runs is the NNX network's own `__call__`.
"""

from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import nnx
from flax.traverse_util import flatten_dict, unflatten_dict

from jaxcnn.nnx.layers import Buffer

COLLECTIONS = ((nnx.BatchStat, "batch_stats"), (Buffer, "buffers"), (nnx.Param, "params"))
TABLES = ("TORCH_WEIGHTS", "TORCH_DROPOUTS", "TORCH_CONSTANTS", "TORCH_TRAIN_BRANCHES", "TORCH_METADATA")


def collection(variable: nnx.Variable) -> str | None:
    """The linen collection of an NNX variable; None for what is no weight (a dropout's rng stream)."""
    return next((name for kind, name in COLLECTIONS if isinstance(variable, kind)), None)


def _path(path: tuple) -> str:
    return "/".join(str(p) for p in path)


def flat_variables(state: nnx.State) -> dict[str, tuple[str, Any]]:
    """{'layer1/0/conv1/kernel': (collection, value)} of the weights in an NNX state (rng streams left out)."""
    return {_path(p): (collection(v), v.get_value()) for p, v in nnx.to_flat_state(state) if collection(v)}


class ShapesOnly:
    """Stands in for the `nnx.Rngs` of a ported network's constructor while its shapes are taken (nnx.eval_shape)
    before its weights are filled in from torch's: no weight drawn from it is kept, so it splits no key. (A real
    Rngs counts each draw, and under eval_shape each count is a traced update: quadratic in the layers, 10 s for
    NASNet.) Dropout and stochastic depth fork their streams from it, which `fill` then seeds."""

    def params(self) -> jax.Array:
        return jax.random.key(0)

    def fork(self) -> nnx.RngStream:
        return nnx.RngStream(jax.random.key(0), tag="dropout")


def fill(abstract: nnx.Module, values: Mapping[str, Any], seed: int = 0) -> tuple[nnx.Module, list[str]]:
    """The network `abstract` (from nnx.eval_shape) with its weights from `values` ({state path: array}) and
    concrete rng streams (keys from `seed`); and the lines naming every path where the two disagree."""
    graphdef, state = nnx.split(abstract)
    problems, seen, streams = [], set(), 0
    for path, variable in nnx.to_flat_state(state):
        name, shape = _path(path), tuple(variable.get_value().shape)
        if isinstance(variable, nnx.RngKey):
            variable.set_value(jax.random.fold_in(jax.random.key(seed), streams))
            streams += 1
        elif isinstance(variable, nnx.RngCount):
            variable.set_value(jnp.zeros((), jnp.uint32))
        elif name not in values:
            problems.append(f"  only the module declares {name} {shape}")
        elif tuple(values[name].shape) != shape:
            problems.append(f"  {name}: the module declares {shape}, the weights hold {tuple(values[name].shape)}")
        else:
            variable.set_value(jnp.asarray(values[name]))
            seen.add(name)
    problems += [f"  only the weights hold {name} {tuple(v.shape)}" for name, v in values.items() if name not in seen
                 and not any(p.startswith(f"  {name}:") for p in problems)]
    return nnx.merge(graphdef, state), problems


def assign(net: nnx.Module, values: Mapping[str, Any]) -> None:
    """Sets every weight of `net` in place from `values` ({state path: array}, all of them)."""
    for path, node in nnx.iter_graph(net):
        if isinstance(node, nnx.Variable) and collection(node):
            node.set_value(jnp.asarray(values[_path(path)]))


class LinenView:
    """A ported NNX network as a linen port is used: `variables()` by collection, `apply(variables, x, train,
    mutable, rngs)`; its class (made by `view_of`) carries the tables with collection-prefixed paths."""

    def __init__(self, net: nnx.Module):
        self.graphdef, state = nnx.split(net)
        self.state = state

    def variables(self, state: nnx.State | None = None) -> dict:
        """The weights of `state` (default: the network's) as linen variables, {collection: nested dict}."""
        flat = flat_variables(self.state if state is None else state)
        return unflatten_dict({(c, *name.split("/")): v for name, (c, v) in flat.items()})

    def _merged(self, variables: Mapping) -> nnx.Module:
        given = {"/".join(k[1:]): v for k, v in flatten_dict(dict(variables)).items() if k[0] != "intermediates"}
        net = nnx.merge(self.graphdef, jax.tree.map(lambda v: v, self.state))  # a copy: its arrays are replaced
        assign(net, given)
        return net

    def apply(self, variables: Mapping, x: jax.Array, train: bool = False, mutable: Any = (), rngs: Any = None):
        """The network's outputs on x in `train` or eval mode; with `mutable`, also (as linen's apply) the new
        BatchNorm statistics and the dropout masks drawn ('intermediates'). rngs: unused (the network's
        dropout streams draw)."""
        net = self._merged(variables)
        net.train() if train else net.eval()
        y, captured = nnx.capture(net, nnx.Intermediate)(x)
        if not mutable:
            return y
        new = self.variables(nnx.state(net)).get("batch_stats", {})
        masks = unflatten_dict({tuple(_path(p).split("/")): v.get_value() for p, v in nnx.to_flat_state(captured)})
        return y, {"batch_stats": new, "intermediates": masks}


def view_of(net: nnx.Module) -> LinenView:
    """The LinenView of a ported NNX network, its class carrying the network's tables with each weight's path
    under its collection."""
    tables = {name: getattr(type(net), name) for name in TABLES if hasattr(type(net), name)}
    flat = flat_variables(nnx.state(net))
    prefixed = lambda path: path and f"{flat[path][0]}/{path}"  # noqa: E731
    tables["TORCH_WEIGHTS"] = tuple((key, path and prefixed(path), *rest) for key, path, *rest in tables["TORCH_WEIGHTS"])
    tables["TORCH_CONSTANTS"] = {prefixed(path): value for path, value in tables.get("TORCH_CONSTANTS", {}).items()}
    return type(f"{type(net).__name__}LinenView", (LinenView,), tables)(net)
