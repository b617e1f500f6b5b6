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


def _symbolic_trace(module: torch.nn.Module) -> fx.GraphModule:
    tracer = fx.Tracer()
    tracer.record_stack_traces = True
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


def trace(module: torch.nn.Module, example_input: torch.Tensor) -> Traced:
    """Traces a copy of `module` in train and in eval mode (the two graphs must agree) and runs it, in eval mode,
    on `example_input`, recording every node's value. The module itself is left as it was."""
    module = copy.deepcopy(module).cpu().float()
    module.train()
    train = _symbolic_trace(module)
    module.eval()
    gm = _symbolic_trace(module)
    if _signature(train) != _signature(gm):
        raise PortError(f"{type(module).__name__}.forward runs other operations in train mode than in eval mode "
                        "(it branches on self.training); only Dropout and BatchNorm may depend on the mode.")
    dropout = {}
    for t, e in zip(train.graph.nodes, gm.graph.nodes):
        if e.op == "call_function" and e.target is torch.nn.functional.dropout:
            modes = (_training_flag(t), _training_flag(e))
            dropout[e.name] = {(True, False): "train", (True, True): "always", (False, False): "never"}.get(modes)
            if dropout[e.name] is None:
                raise PortError(f"{location(e)}: F.dropout is on in eval mode and off in train mode")
    recorder = _Recorder(gm)
    recorder.values = {}
    try:
        with torch.no_grad():
            recorder.run(example_input.detach().cpu().float())
    except Exception as err:
        raise PortError(f"{type(module).__name__} fails on an example input of shape {tuple(example_input.shape)}: "
                        f"{str(err).splitlines()[0]}\nGive the input shape the module takes (--input-shape N,C,H,W)."
                        ) from err
    return Traced(gm, recorder.values, dropout)


def _training_flag(node: fx.Node) -> bool:
    if "training" in node.kwargs:
        return bool(node.kwargs["training"])
    return bool(node.args[2]) if len(node.args) > 2 else True


def location(node: fx.Node) -> str:
    """'file.py:12: code' of the user's line that made `node` (the innermost frame outside torch)."""
    frames = [m for m in _FRAME.finditer(node.stack_trace or "") if not m["file"].startswith(_TORCH_DIR)]
    if not frames:
        return f"(node {node.name})"
    frame = frames[-1]
    return f"{os.path.basename(frame['file'])}:{frame['line']}: {frame['code'].strip()}"
