"""Writing the Flax port: one pass over the traced graph turns each node into a line of `__call__` (and each
torch submodule into a line of `setup`), tracking every value's layout (parity.port._layout)."""

import dataclasses
import inspect
import operator
from typing import Any, Callable

import torch
import torch.fx as fx

from parity.port._context import Attribute, Context, Unsupported, Value, Values, Weight, var_name  # noqa: F401  (the handlers' API)
from parity.port._layout import Layout
from parity.port._trace import NAMED_FUNCTIONS, PortError, Traced, location, own_class

FUNCTIONS: dict[Any, Callable] = {}  # torch function -> handler(ctx, *args, **kwargs)
METHODS: dict[str, Callable] = {}  # Tensor method name -> handler(ctx, self, *args, **kwargs)
MODULES: dict[type, Callable] = {}  # torch.nn leaf module type -> handler(ctx, module, *args)
FUNCTIONS_BY_NAME: dict[str, Callable] = {}  # functions of libraries not imported here, by __name__
TAKES_ATTRIBUTES: set = set()  # torch functions whose handlers take parameters and buffers as Attributes


def handles(*targets, methods: tuple[str, ...] = (), names: tuple[str, ...] = (), attributes: bool = False):
    """Registers a handler for torch functions and modules (by identity / type), Tensor methods (by name) and
    functions of libraries that are not imported here (by `__name__`, e.g. torchvision's 'stochastic_depth').
    With `attributes`, a parameter or buffer that only such functions read reaches the handler as an Attribute,
    for it to declare the layer that holds it (a BatchNorm for F.batch_norm's statistics)."""
    def register(handler):
        for target in targets:
            (MODULES if isinstance(target, type) else FUNCTIONS)[target] = handler
            if attributes:
                TAKES_ATTRIBUTES.add(target)
        for name in methods:
            METHODS[name] = handler
        for name in names:
            FUNCTIONS_BY_NAME[name] = handler
            NAMED_FUNCTIONS.add(name)
        return handler
    return register


def supported() -> dict[str, list[str]]:
    """What the port understands: torch.nn module classes, torch functions and Tensor methods, by name."""
    functions = sorted({_function_name(f) for f in FUNCTIONS if callable(f)} | set(FUNCTIONS_BY_NAME))
    return {"modules": sorted(f"nn.{m.__name__}" for m in MODULES), "functions": functions,
            "methods": sorted(f"Tensor.{m}" for m in METHODS)}


def _function_name(function: Callable) -> str:
    module = (getattr(function, "__module__", None) or "torch").replace("torch._C._nn", "torch.nn.functional")
    return f"{module.replace('_operator', 'operator')}.{getattr(function, '__name__', function)}"


def _resolve(ctx: Context, arg: Any) -> Any:
    """A node argument as the handlers see it: a Value for tensors, the example's Python value for sizes."""
    if isinstance(arg, fx.Node):
        if arg.name not in ctx.values:
            raise _Skipped()
        return ctx.values[arg.name]
    if isinstance(arg, (list, tuple)):
        items = [_resolve(ctx, a) for a in arg]
        for whole in ctx.input_lists:  # an argument's list as a whole: its name
            if len(whole) == len(items) and all(a is b for a, b in zip(whole, items)):
                return whole
        return type(arg)(*items) if hasattr(arg, "_fields") else type(arg)(items)
    if isinstance(arg, dict):
        return {k: _resolve(ctx, v) for k, v in arg.items()}
    return arg


class _Skipped(Exception):
    """An input of the node is not ported (its own node is already listed): the node is skipped too."""


def _describe(node: fx.Node, root: torch.nn.Module) -> str:
    if node.op == "call_module":
        return f"{type(root.get_submodule(node.target)).__name__} (submodule {node.target!r})"
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    if node.op == "call_function":
        if node.target is operator.getitem:
            return "tensor indexing (operator.getitem)"
        if node.target is operator.setitem:
            return "tensor item assignment (operator.setitem)"
        return _function_name(node.target)
    return f"{node.op} {node.target}"


def _refuse_reused_in_place(node: fx.Node, order: dict, root: torch.nn.Module) -> None:
    """An in-place operation whose input is read again later: torch's later reads see the changed tensor, a
    functional port would not."""
    name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
    in_place = (isinstance(name, str) and name.endswith("_") and not name.startswith("_")) \
        or node.kwargs.get("inplace") is True \
        or (node.op == "call_module" and getattr(root.get_submodule(node.target), "inplace", False) is True)
    source = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
    if in_place and source is not None and any(order[u] > order[node] for u in source.users):
        raise Unsupported(f"works in place on {source.name!r}, which is read again afterwards (torch then reads the "
                          "changed tensor); write it out of place (inplace=False, or without the trailing _)")


def run(traced: Traced, input_layouts: list[Layout], child_handler: Callable | None = None
        ) -> tuple[Context, list[str], Any]:
    """Ports every node; the inputs are held in `input_layouts`, a call of an own_class submodule goes to
    `child_handler`. Returns (context, the names of the inputs, the output structure of Values); raises
    PortError listing every node it cannot port, each with the user's line. A module traced once per mode
    (traced.train) is written `if train: <train-mode lines> else: <eval-mode lines>`."""
    ctx, refused = Context(traced), []
    ctx.child_handler = child_handler
    inputs, output = _port_graph(ctx, traced, input_layouts, refused)
    if traced.train is not None and not refused:
        eval_body, ctx.body, ctx.values, ctx._converted, ctx.traced = ctx.body, [], {}, {}, traced.train
        ctx.input_lists = []
        _, train_output = _port_graph(ctx, traced.train, input_layouts, refused)
        if not refused:
            output = _branches(ctx, eval_body, output, train_output)
        ctx.traced = traced
    if refused:
        root = traced.graph_module
        error = PortError(f"cannot port {root.__class__.__name__}: {len(refused)} operation(s) are not supported "
                          "(nothing was ported):\n" + "\n".join(f"  {line}" for line in refused)
                          + "\nWhat the port supports: parity.port.supported(), or docs/port.md.")
        error.lines = refused
        raise error
    return ctx, inputs, output


@dataclasses.dataclass(frozen=True)
class ModeOutputs:
    """The outputs of a forward that returns other outputs in train mode than in eval mode (torchvision's GoogLeNet
    and Inception3 add auxiliary logits): the lines both modes begin with (`head`), each mode's lines after them,
    and each mode's outputs. Only the ported network itself may return them (parity.port._port writes a return
    per mode)."""
    head: list[str]
    train_body: list[str]
    eval_body: list[str]
    train: Any
    eval: Any


def _branches(ctx: Context, eval_body: list[str], output: Any, train_output: Any) -> Any:
    """ctx.body (the train-mode lines) and `eval_body` as one `if train: ... else: ...`, each branch ending with
    the outputs under the same names, in the eval-mode layouts; returns the outputs as Values of those names.
    Outputs of another structure in each mode: ModeOutputs, ctx.body the lines both modes begin with."""
    flat, train_flat = flat_outputs(output), flat_outputs(train_output)
    shared = 0  # the lines both modes begin with are written once, before the `if`
    while shared < min(len(ctx.body), len(eval_body)) - 1 and ctx.body[shared] == eval_body[shared]:
        shared += 1
    if type(output) is not type(train_output) or [v.shape for v in flat] != [v.shape for v in train_flat]:
        parts = ModeOutputs(eval_body[:shared], ctx.body[shared:], eval_body[shared:], train_output, output)
        ctx.body = list(parts.head)
        return parts
    named = []
    for i, (e, t) in enumerate(zip(flat, train_flat)):
        name = e.var if e.var.isidentifier() else f"output_{i}"
        if name != e.var:
            eval_body.append(f"{name} = {e.var}")
        train_var = ctx.convert(t, e.layout)
        if train_var != name:
            ctx.body.append(f"{name} = {train_var}")
        named.append(Value(name, e.layout, e.shape, e.dtype))
    ctx.body = [*eval_body[:shared], "if train:", *indent(ctx.body[shared:]), "else:", *indent(eval_body[shared:])]
    return named[0] if isinstance(output, Value) else type(output)(named)


def indent(lines: list[str]) -> list[str]:
    """A block's lines, indented one level (`pass` for none)."""
    return [f"    {line}" for line in lines] or ["    pass"]


def flat_outputs(output: Any) -> list:
    values = [output] if isinstance(output, Value) else list(output) if isinstance(output, (tuple, list)) else []
    if not values or not all(isinstance(v, Value) for v in values):
        raise PortError("forward must return a tensor or a tuple/list of tensors")
    return values


def _input(ctx: Context, name: str, example: Any, layout: Layout | list[Layout]) -> Value | Values:
    """A forward argument: a tensor, or (for a submodule of its own class) a list or tuple of tensors."""
    if isinstance(example, torch.Tensor):
        return Value(name, layout, tuple(example.shape), example.dtype)
    if isinstance(example, (list, tuple)) and example and all(isinstance(e, torch.Tensor) for e in example):
        values = Values(name, [Value(f"{name}[{i}]", l, tuple(e.shape), e.dtype)
                               for i, (e, l) in enumerate(zip(example, layout))])
        ctx.input_lists.append(values)
        return values
    raise Unsupported("an input that is not a tensor: forward's inputs must be tensors")


def _port_graph(ctx: Context, traced: Traced, input_layouts: list[Layout], refused: list[str]
                ) -> tuple[list[str], Any]:
    """Ports the nodes of one graph into ctx; (the names of the inputs, the output structure of Values)."""
    inputs, output = [], None
    child_handler = ctx.child_handler
    layouts = iter(input_layouts)
    root = traced.graph_module
    order = {n: i for i, n in enumerate(traced.graph.nodes)}
    for node in traced.graph.nodes:
        ctx.node = node
        example = traced.values.get(node.name)
        if node.op == "get_attr" and node.users and all(
                u.op == "call_function" and u.target in TAKES_ATTRIBUTES for u in node.users):
            ctx.values[node.name] = Attribute(node.target, example)
            continue
        try:
            if node.op == "placeholder":
                inputs.append(var_name(node.name))
                ctx.values[node.name] = _input(ctx, var_name(node.name), example, next(layouts))
                continue
            if node.op == "output":
                output = _resolve(ctx, node.args[0])
                continue
            tensors = isinstance(example, (tuple, list)) and any(isinstance(e, torch.Tensor) for e in example)
            if not isinstance(example, torch.Tensor) and not tensors and node.op in ("call_function", "call_method"):
                ctx.values[node.name] = example  # a size, a shape: a Python value of the example
                continue
            _refuse_reused_in_place(node, order, root)
            args, kwargs = _resolve(ctx, node.args), _resolve(ctx, node.kwargs)
            if node.op == "get_attr":
                handler = FUNCTIONS["get_attr"]
                args = (node.target,)
            elif node.op == "call_module":
                module = root.get_submodule(node.target)
                handler = MODULES.get(type(module))
                if handler is None and own_class(module) and child_handler is not None:
                    handler = child_handler
                args = (module, *args)
            elif node.op == "call_method":
                handler = METHODS.get(node.target)
            else:
                handler = FUNCTIONS.get(node.target) or FUNCTIONS_BY_NAME.get(getattr(node.target, "__name__", None))
            if handler is None:
                raise Unsupported("not supported")
            if handler is not child_handler:  # (a child's own nodes are checked when it is ported)
                try:
                    inspect.signature(handler).bind(ctx, *args, **kwargs)
                except TypeError as err:  # arguments that the handler's torch-like signature does not take
                    raise Unsupported(f"arguments not supported ({err})") from err
            ctx.values[node.name] = handler(ctx, *args, **kwargs)
        except _Skipped:
            continue
        except PortError as child:  # a submodule of its own class, refused: its lines join this module's
            refused.extend(getattr(child, "lines", [str(child)]))
            if isinstance(example, torch.Tensor):
                ctx.values[node.name] = Value(var_name(node.name), Layout.channels_last(example.ndim),
                                              tuple(example.shape), example.dtype)
        except (Unsupported, Exception) as why:  # any other exception: the port's own fault, named where it arose
            reason = why if isinstance(why, Unsupported) else \
                f"internal error of the port ({type(why).__name__}: {why}); please report it with your module"
            refused.append(f"{location(node)}  <- {_describe(node, root)}: {reason}")
            if isinstance(example, torch.Tensor):  # stands in, so that what follows is checked too
                ctx.values[node.name] = Value(var_name(node.name), Layout.channels_last(example.ndim),
                                              tuple(example.shape), example.dtype)
    return inputs, output
