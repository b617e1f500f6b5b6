"""The port as a tree: the traced module, and each submodule of its own class (a `Bottleneck`, a user's
`ResBlock`) ported on its own, from the values the module hands it, into an `Instance` of its own."""

import dataclasses
import itertools
import re
from typing import Any

import torch

from parity.port import _emit
from parity.port._context import Context, Value, Values, Weight, var_name
from parity.port._layout import Layout
from parity.port._trace import Traced, innermost_module, is_random, trace

_TOKENS = itertools.count()


@dataclasses.dataclass
class Instance:
    """One ported module: its torch `module` at `path`, the Context its lines are in, its argument names and
    output (Values, possibly in a tuple or list), and per placeholder token in its setup the child ported there."""
    module: torch.nn.Module
    path: str
    ctx: Context
    inputs: list[str]
    output: Any
    children: dict[str, "Instance"]
    layouts: list[Layout]
    call: str = ""  # how its parent constructs it, once resolved: 'Bottleneck(inplanes=64, ...)'

    @property
    def traced(self) -> Traced:
        return self.ctx.traced


def _prefixed(path: str, name: str) -> str:
    return f"{path}.{name}" if path and name else path or name


def port_instance(module: torch.nn.Module, path: str, examples: tuple, layouts: list[Layout]) -> Instance:
    """Ports `module` (the port's own copy; its submodules of their own class recursively) on `examples`."""
    children: dict[str, Instance] = {}
    calls: dict[str, tuple[str, Instance, list]] = {}  # torch target -> (expression, instance, input layouts)

    def child(ctx: Context, submodule: torch.nn.Module, *args) -> Any:
        target = ctx.node.target
        if not all(isinstance(a, Value) or _tensors(a) for a in args):
            raise _emit.Unsupported("a submodule called with something other than tensors or lists of them")
        layouts_in = [_layouts(a) for a in args]
        if target in calls and calls[target][2] != layouts_in:  # called again: its input as the first call had it
            args = tuple(_converted(ctx, a, layout) for a, layout in zip(args, calls[target][2]))
        if target not in calls:
            examples_in = tuple(_examples(ctx, a) for a in ctx.node.args)
            instance = port_instance(submodule, _prefixed(path, target), examples_in, layouts_in)
            token = f"__child_{next(_TOKENS)}__"
            children[token] = instance
            calls[target] = (ctx.submodule(target, token), instance, layouts_in)
        expr, instance, _ = calls[target]
        return _call(ctx, expr, [_expression(a) for a in args], instance.output)

    traced = trace(module, examples, own_copy=True)
    ctx, inputs, output = _emit.run(traced, layouts, child)
    return Instance(module, path, ctx, inputs, output, children, layouts)


def _tensors(arg: Any) -> bool:
    return isinstance(arg, (list, tuple)) and bool(arg) and all(isinstance(a, Value) for a in arg)


def _layouts(arg: Value | list) -> Layout | list[Layout]:
    return arg.layout if isinstance(arg, Value) else [a.layout for a in arg]


def _converted(ctx: Context, arg: Value | list, layout: Layout | list[Layout]) -> Value | list:
    """`arg` (a tensor, or a list of them) held in `layout` (one per tensor of a list)."""
    if isinstance(arg, Value):
        return Value(ctx.convert(arg, layout), layout, arg.shape, arg.dtype)
    return [_converted(ctx, a, l) for a, l in zip(arg, layout)]


def _examples(ctx: Context, arg: Any) -> Any:
    """The example value of an argument node, or of a list of them (a plain list: the module may change it)."""
    if isinstance(arg, (list, tuple)):
        return (list if isinstance(arg, list) else tuple)(_examples(ctx, a) for a in arg)
    return ctx.example(arg.name)


def _expression(arg: Value | list) -> str:
    """The argument as the call writes it: a tensor's name, a list of them as a list (the forward's own argument
    list by its name)."""
    if isinstance(arg, (Value, Values)):
        return arg.var
    return "[" + ", ".join(a.var for a in arg) + "]"


def _call(ctx: Context, expr: str, args: list[str], output: Any) -> Any:
    """`y = self.block(x, train)`; the Values of y as the child's output has them (a tuple: indexed)."""
    name = var_name(ctx.node.name)
    ctx.body.append(f"{name} = {expr}({', '.join(args)}, train)")
    if isinstance(output, Value):
        return Value(name, output.layout, output.shape, output.dtype)
    if isinstance(output, (tuple, list)) and all(isinstance(v, Value) for v in output):
        return type(output)(Value(f"{name}[{i}]", v.layout, v.shape, v.dtype) for i, v in enumerate(output))
    if isinstance(output, _emit.ModeOutputs):
        raise _emit.Unsupported("a submodule that returns other outputs in train mode than in eval mode: only the "
                                "ported network itself may (its return is written per mode)")
    raise _emit.Unsupported("a submodule that returns something other than a tensor or a tuple/list of them")


def instances(root: Instance) -> list[Instance]:
    """Every instance of the tree, children before their parents."""
    found: list[Instance] = []

    def visit(instance: Instance) -> None:
        for child in instance.children.values():
            visit(child)
        found.append(instance)

    visit(root)
    return found


def weights(instance: Instance, api: str = "linen") -> list[Weight]:
    """The state_dict rows of an instance and its children, keys and Flax paths from the instance; the paths
    are linen's variables' ('params/layer1/0/conv1/kernel') or, for api='nnx', NNX's ('layer1/0/conv1/kernel')."""
    ctx = instance.ctx
    rows = [w if api == "linen" or w.flax_path is None else
            dataclasses.replace(w, flax_path=ctx.nnx_path(w.flax_path.split("/", 1)[1])) for w in ctx.weights]
    for target, prefix, child in _children(instance, api):
        for w in weights(child, api):
            flax = None if w.flax_path is None else re.sub(r"^(\w+)/", rf"\1/{prefix}/", w.flax_path) \
                if api == "linen" else f"{prefix}/{w.flax_path}"
            rows.append(Weight(f"{target}.{w.key}", flax, w.kind, w.shape, w.flatten_from))
    return rows


def dropouts(instance: Instance, api: str = "linen") -> list[tuple]:
    """(torch reference, Flax module path, perm, flat_from) of every dropout in the tree: the reference is
    ('module', path) for a Dropout module, ('function', innermost module path, k) for the k-th functional one
    there (what parity.port.check finds in torch's own trace); the path linen's names' or NNX's (api)."""
    rows = []
    traced = instance.traced.train or instance.traced  # dropouts are drawn in the train-mode graph
    graph = {n.name: n for n in traced.graph.nodes}
    counts: dict[str, int] = {}
    order = [n for n in traced.graph.nodes if is_random(n)]
    index = {}
    for n in order:
        where = _prefixed(instance.path, innermost_module(n))
        index[n.name] = (where, counts.get(where, 0))
        counts[where] = counts.get(where, 0) + 1
    ctx = instance.ctx
    for node_name, (module, layout) in ctx.dropouts.items():
        node = graph[node_name]
        reference = ("module", _prefixed(instance.path, node.target)) if node.op == "call_module" \
            else ("function", *index[node_name])
        flax = ctx.flax_path(f"self.{module}")
        rows.append((reference, flax if api == "linen" else ctx.nnx_path(flax), layout.perm, layout.flat_from))
    for _, prefix, child in _children(instance, api):
        rows += [(ref, f"{prefix}/{flax}", perm, flat) for ref, flax, perm, flat in dropouts(child, api)]
    return rows


def _children(instance: Instance, api: str) -> list[tuple[str, str, Instance]]:
    """(torch path from the instance, Flax module path in it: linen's names or NNX's attributes, child) of each
    child instance."""
    rows = []
    for child in instance.children.values():
        target = child.path[len(instance.path) + 1:] if instance.path else child.path
        path = instance.ctx.module_paths[target]
        rows.append((target, path if api == "linen" else instance.ctx.nnx_path(path), child))
    return rows
