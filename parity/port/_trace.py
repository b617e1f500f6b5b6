"""The traced module the port writes from: the graph of what it runs on the example input (parity.port._record),
every node's example value, its functional dropouts, and where in the user's source each node comes from."""

import copy
import dataclasses
import functools
import inspect
import os
from typing import Any

import torch
import torch.fx as fx

from parity.port._batch import batch_arguments
from parity.port._record import HiddenInList, StaleView, ValueDependent, record, where

NAMED_FUNCTIONS: set[str] = set()  # library functions recorded as one node, by __name__ (parity.port._emit fills it)


class PortError(ValueError):
    """The module cannot be ported as it is; the message says why and what to change."""


@dataclasses.dataclass(frozen=True)
class Traced:
    """A traced module: `graph_module` (sharing the module's submodules), `values` (node name -> the example
    input's value there: a tensor, or a Python value such as a size), `functional_dropout` (node name of each
    F.dropout -> 'train' when it follows the module's mode, 'always' or 'never' when it does not) and the
    `module` itself (with what its graph does not read, such as BatchNorm's num_batches_tracked); `train`: the
    train-mode trace where forward branches on self.training (this one is then the eval-mode one)."""
    graph_module: fx.GraphModule
    values: dict[str, Any]
    functional_dropout: dict[str, str]
    module: torch.nn.Module
    train: "Traced | None" = None  # the train-mode trace, where forward runs other operations in train mode
    batch_arguments: dict[str, dict[int, int]] = dataclasses.field(default_factory=dict)  # see parity.port._batch

    @property
    def graph(self) -> fx.Graph:
        return self.graph_module.graph


_CONTAINERS = (torch.nn.Sequential, torch.nn.ModuleList, torch.nn.ModuleDict)


def own_class(module: torch.nn.Module) -> bool:
    """A submodule that the port writes as a Flax class of its own: a module class of the user's (or of a
    library's, not torch.nn's) holding weights. Plain containers and weightless helpers are traced through."""
    if type(module) in _CONTAINERS or type(module).__module__.startswith("torch.nn"):
        return False
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def _torch_leaf(module: torch.nn.Module) -> bool:
    """A torch.nn layer: one node of the graph (as torch.fx keeps it)."""
    return type(module).__module__.startswith("torch.nn") and not isinstance(module, _CONTAINERS)


def _nested_leaf(module: torch.nn.Module, args: tuple, kwargs: dict) -> bool:
    """A torch.nn layer, or a submodule of its own class called on tensors alone (or lists of them, as timm's
    DenseLayer is): one node each."""
    tensors = lambda a: isinstance(a, (list, tuple)) and a and all(isinstance(t, torch.Tensor) for t in a)  # noqa: E731
    return _torch_leaf(module) or (own_class(module) and not kwargs
                                   and all(isinstance(a, torch.Tensor) or tensors(a) for a in args))


# library functions of stochastic depth, by name -> the position of their `training` argument and its default:
# torchvision's stochastic_depth(input, p, mode, training=True), timm's drop_path(x, drop_prob, training=False, ...),
# efficientnet_pytorch's drop_connect(inputs, p, training)
STOCHASTIC_DEPTH = {"stochastic_depth": (3, True), "drop_path": (2, False), "drop_connect": (2, False)}


def is_random(node: fx.Node) -> bool:
    """A functional dropout or stochastic depth (STOCHASTIC_DEPTH, matched by name)."""
    return node.op == "call_function" and (node.target is torch.nn.functional.dropout
                                           or getattr(node.target, "__name__", "") in STOCHASTIC_DEPTH)


def innermost_module(node: fx.Node) -> str:
    """The path of the innermost module whose forward made `node` ('' for the traced module's own)."""
    stack = node.meta.get("nn_module_stack") or {}
    return next(reversed(stack), "") if stack else ""


def _source_of(module: torch.nn.Module) -> str:
    try:
        return f" ({os.path.basename(inspect.getsourcefile(type(module)) or '')})"
    except TypeError:
        return ""


def _record(module: torch.nn.Module, example_inputs: tuple, nested: bool) -> tuple[fx.GraphModule, dict]:
    name = type(module).__name__
    try:
        return record(module, example_inputs, _nested_leaf if nested else lambda m, a, k: _torch_leaf(m),
                      frozenset(NAMED_FUNCTIONS), name)
    except ValueDependent as err:
        raise PortError(f"{name}{_source_of(module)} reads tensor values into Python control flow at {err.where} "
                        f"({err.what}): the port follows the Python a network runs on its example input, so a path "
                        "chosen by tensor values cannot be ported; write it with tensor operations (torch.where, "
                        "masks), or move it out of forward.") from err
    except HiddenInList as err:
        raise PortError(f"{name}{_source_of(module)} at {err}: return the changed list from {err.module}.forward "
                        "(or a new one) and read that.") from err
    except StaleView as err:
        raise PortError(f"{name}{_source_of(module)} at {err}: a port computes without changing tensors in place, "
                        "so write the in-place operation out of place (inplace=False, or without the trailing _), or "
                        "take the view after it.") from err
    except PortError:
        raise
    except Exception as err:
        shapes = ", ".join(str(tuple(x.shape)) for x in example_inputs if isinstance(x, torch.Tensor))
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise PortError(f"{name} fails on an example input of shape {shapes}: {first}\n"
                        "Give the input shape the module takes (--input-shape N,C,H,W).") from err


def flat_trace(module: torch.nn.Module, example_inputs: tuple) -> fx.GraphModule:
    """The graph of `module` in its current mode, torch.nn layers as nodes, everything else traced through (what
    parity.port.check replays to give torch the Flax run's dropout masks). The module is not changed."""
    return _record(module, example_inputs, nested=False)[0]


def _signature(gm: fx.GraphModule, training: bool) -> list[tuple]:
    """What a graph does, node by node (operation and arguments), but for what follows the mode by design: the
    training flags of dropouts (functional_dropout) and of F.batch_norm on running statistics (ported as a
    BatchNorm following `train`) where the flag is the recording's mode."""
    signature = []
    for n in gm.graph.nodes:
        target = n.target if n.op != "call_function" else id(n.target)
        if is_random(n):
            signature.append((n.op, target, n.name))
            continue
        args, kwargs = n.args, dict(n.kwargs)
        if n.target is torch.nn.functional.batch_norm:
            flag = kwargs.pop("training", args[5] if len(args) > 5 else False)
            args = args[:5] + (None,) + args[6:] if len(args) > 5 else args
            kwargs["training"] = "mode" if flag == training else flag
        signature.append((n.op, target, n.name, repr((args, kwargs))))
    return signature


def trace(module: torch.nn.Module, example_inputs: tuple, own_copy: bool = False) -> Traced:
    """Traces a copy of `module` (the module itself when `own_copy`: one the port made) on `example_inputs`, each
    own_class submodule one node, in train and in eval mode, keeping every node's value of the eval-mode run;
    where the two graphs differ (forward branches on self.training), the train-mode trace goes with it. The module
    is left in eval mode."""
    module = module if own_copy else copy.deepcopy(module).cpu().float()
    module.eval()
    gm, values = _record(module, example_inputs, nested=True)
    if not _reads_mode(gm.meta["inline"]):  # nothing it runs inline can run otherwise in train mode
        return Traced(gm, values, _modes(gm, "always"), module,
                      batch_arguments=_batch_arguments(module, gm, example_inputs))
    module.train()
    try:
        train, train_values = _record(module, example_inputs, nested=True)
    finally:
        module.eval()
    batch = _batch_arguments(module, gm, example_inputs)
    if _signature(train, True) != _signature(gm, False):
        return Traced(gm, values, _modes(gm, "always"), module,
                      Traced(train, train_values, _modes(train, "train"), module, batch_arguments=batch), batch)
    dropout = {}
    for t, e in zip(train.graph.nodes, gm.graph.nodes):
        if is_random(e):
            modes = (_training_flag(t), _training_flag(e))
            dropout[e.name] = {(True, False): "train", (True, True): "always", (False, False): "never"}.get(modes)
            if dropout[e.name] is None:
                raise PortError(f"{location(e)}: {e.target.__name__} is on in eval mode and off in train mode")
    return Traced(gm, values, dropout, module, batch_arguments=batch)


def _batch_arguments(module: torch.nn.Module, gm: fx.GraphModule, example_inputs: tuple) -> dict:
    """The sizes of `gm` (recorded in eval mode) that follow the batch; found in eval mode, named alike in train."""
    return batch_arguments(gm, example_inputs, lambda inputs: _record(module, inputs, nested=True)[0])


@functools.cache
def _class_reads_mode(cls: type) -> bool:
    """The class's own source mentions `training` (self.training, a training= argument); unknown source: yes."""
    try:
        return "training" in inspect.getsource(cls)
    except (OSError, TypeError):
        return True


def _reads_mode(classes: frozenset[type]) -> bool:
    """Some of `classes` (the traced module's, and those whose forward ran inline in its graph), other than
    torch.nn's own (whose modes the port's handlers know), may run otherwise in train mode. A submodule recorded
    as one node is traced on its own, and decides there."""
    return any(_class_reads_mode(c) for cls in classes for c in cls.__mro__
               if c is not object and not c.__module__.startswith("torch.nn"))


def _modes(gm: fx.GraphModule, on: str) -> dict[str, str]:
    """The dropouts of a graph traced in one mode only: `on` where its training flag is set, else 'never'."""
    return {n.name: on if _training_flag(n) else "never" for n in gm.graph.nodes if is_random(n)}


def _training_flag(node: fx.Node) -> bool:
    position, default = (2, True) if node.target is torch.nn.functional.dropout else \
        STOCHASTIC_DEPTH[node.target.__name__]
    if "training" in node.kwargs:
        return bool(node.kwargs["training"])
    return bool(node.args[position]) if len(node.args) > position else default


def location(node: fx.Node) -> str:
    """'file.py:12: code' of the user's line that made `node` (the innermost frame outside torch)."""
    frames = node.meta.get("frames")
    return where(frames) if frames else f"(node {node.name})"
