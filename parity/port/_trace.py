"""torch.fx tracing of a user's module: the graph, every node's example value, and where in the user's source
each node comes from."""

import copy
import dataclasses
import os
import re
from typing import Any

import torch
import torch.fx as fx

_TORCH_DIR = os.path.dirname(torch.__file__)
_PORT_DIR = os.path.dirname(os.path.abspath(__file__))
_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)\n\s*(?P<code>[^\n]*)')


class PortError(ValueError):
    """The module cannot be ported as it is; the message says why and what to change."""


@dataclasses.dataclass(frozen=True)
class Traced:
    """A traced module: `graph_module` (sharing the module's submodules), `values` (node name -> the example
    input's value there: a tensor, or a Python value such as a size) and `functional_dropout` (node name of each
    F.dropout -> 'train' when it follows the module's mode, 'always' or 'never' when it does not)."""
    graph_module: fx.GraphModule
    values: dict[str, Any]
    functional_dropout: dict[str, str]

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


class _Tracer(fx.Tracer):
    """torch.fx's tracer; with `nested`, each own_class submodule called on tensors stays one call_module node."""

    def __init__(self, nested: bool):
        super().__init__()
        self.nested = nested
        self.record_stack_traces = True

    def call_module(self, m, forward, args, kwargs):
        if self.nested and own_class(m) and not kwargs and all(isinstance(a, fx.Proxy) for a in args):
            return self.create_proxy("call_module", self.path_of_module(m), args, kwargs)
        return super().call_module(m, forward, args, kwargs)


def is_random(node: fx.Node) -> bool:
    """A functional dropout or stochastic depth (torchvision's `stochastic_depth`, matched by name)."""
    return node.op == "call_function" and (node.target is torch.nn.functional.dropout
                                           or getattr(node.target, "__name__", "") == "stochastic_depth")


def innermost_module(node: fx.Node) -> str:
    """The path of the innermost module whose forward made `node` ('' for the traced module's own)."""
    stack = node.meta.get("nn_module_stack") or {}
    return next(reversed(stack), "") if stack else ""


def _symbolic_trace(module: torch.nn.Module, nested: bool = False) -> fx.GraphModule:
    tracer = _Tracer(nested)
    try:
        graph = tracer.trace(module)
    except Exception as err:  # fx raises TraceError, TypeError, RuntimeError ... from the user's forward
        raise PortError(f"torch.fx cannot trace {type(module).__name__}.forward: {err}\n"
                        "Control flow that depends on tensor values (`if x.sum() > 0`, loops over a tensor) cannot be "
                        "traced; write it with tensor operations, or move it out of forward.") from err
    return fx.GraphModule(tracer.root, graph, type(module).__name__)


def _signature(gm: fx.GraphModule) -> list[tuple]:
    return [(n.op, n.target if n.op != "call_function" else id(n.target), n.name) for n in gm.graph.nodes]


class _Recorder(fx.Interpreter):
    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        self.values[n.name] = result
        return result


def trace(module: torch.nn.Module, example_inputs: tuple, own_copy: bool = False) -> Traced:
    """Traces a copy of `module` (the module itself when `own_copy`: one the port made), each own_class submodule
    one node, in train and in eval mode (the two graphs must agree), and runs it, in eval mode, on
    `example_inputs`, recording every node's value. The module is left in eval mode."""
    module = module if own_copy else copy.deepcopy(module).cpu().float()
    module.train()
    train = _symbolic_trace(module, nested=True)
    module.eval()
    gm = _symbolic_trace(module, nested=True)
    if _signature(train) != _signature(gm):
        raise PortError(f"{type(module).__name__}.forward runs other operations in train mode than in eval mode "
                        "(it branches on self.training); only Dropout and BatchNorm may depend on the mode.")
    dropout = {}
    for t, e in zip(train.graph.nodes, gm.graph.nodes):
        if is_random(e):
            modes = (_training_flag(t), _training_flag(e))
            dropout[e.name] = {(True, False): "train", (True, True): "always", (False, False): "never"}.get(modes)
            if dropout[e.name] is None:
                raise PortError(f"{location(e)}: {e.target.__name__} is on in eval mode and off in train mode")
    recorder = _Recorder(gm)
    recorder.values = {}
    try:
        with torch.no_grad():
            recorder.run(*example_inputs)
    except Exception as err:
        shapes = ", ".join(str(tuple(x.shape)) for x in example_inputs if isinstance(x, torch.Tensor))
        raise PortError(f"{type(module).__name__} fails on an example input of shape {shapes}: "
                        f"{str(err).splitlines()[0]}\nGive the input shape the module takes (--input-shape N,C,H,W)."
                        ) from err
    return Traced(gm, recorder.values, dropout)


def _training_flag(node: fx.Node) -> bool:
    position = 2 if node.target is torch.nn.functional.dropout else 3  # stochastic_depth(input, p, mode, training)
    if "training" in node.kwargs:
        return bool(node.kwargs["training"])
    return bool(node.args[position]) if len(node.args) > position else True


def location(node: fx.Node) -> str:
    """'file.py:12: code' of the user's line that made `node` (the innermost frame outside torch)."""
    frames = [m for m in _FRAME.finditer(node.stack_trace or "") if not m["file"].startswith((_TORCH_DIR, _PORT_DIR))]
    if not frames:
        return f"(node {node.name})"
    frame = frames[-1]
    return f"{os.path.basename(frame['file'])}:{frame['line']}: {frame['code'].strip()}"
