"""Writing the Flax port: one pass over the traced graph turns each node into a line of `__call__` (and each
torch submodule into a line of `setup`), tracking every value's layout (parity.port._layout)."""

import dataclasses
import inspect
import operator
import re
from typing import Any, Callable

import torch
import torch.fx as fx

from jaxcnn.interchange import flax_name
from parity.port._layout import Layout, conversion
from parity.port._trace import PortError, Traced, location

FUNCTIONS: dict[Any, Callable] = {}  # torch function -> handler(ctx, *args, **kwargs)
METHODS: dict[str, Callable] = {}  # Tensor method name -> handler(ctx, self, *args, **kwargs)
MODULES: dict[type, Callable] = {}  # torch.nn leaf module type -> handler(ctx, module, *args)
_RESERVED = {"jax", "jnp", "nn", "layers", "self", "train", "math", "ClassVar"}


def handles(*targets, methods: tuple[str, ...] = ()):
    """Registers a handler for torch functions and modules (by identity / type) and Tensor methods (by name)."""
    def register(handler):
        for target in targets:
            (MODULES if isinstance(target, type) else FUNCTIONS)[target] = handler
        for name in methods:
            METHODS[name] = handler
        return handler
    return register


class Unsupported(Exception):
    """Raised by a handler for arguments it cannot port (the node is listed with this reason)."""


@dataclasses.dataclass
class Value:
    """A tensor of the port: the Python name holding it, its layout, its torch shape and dtype."""
    var: str
    layout: Layout
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclasses.dataclass
class Weight:
    """One torch state_dict entry: the Flax variable holding it ('params/conv1/kernel'; None when Flax keeps
    no copy, as for num_batches_tracked), how its layout changes ('kernel', 'copy', 'dropped'), its torch shape,
    and for a Linear fed by a channels-last flatten the (*spatial, C) shape its input features come from."""
    key: str
    flax_path: str | None
    kind: str
    shape: tuple[int, ...]
    flatten_from: tuple[int, ...] | None = None


class Context:
    """What the handlers write into: `setup` and `body` lines, the weights, and the Dropouts to replay."""

    def __init__(self, traced: Traced):
        self.traced = traced
        self.values: dict[str, Any] = {}
        self.setup: list[str] = []
        self.body: list[str] = []
        self.weights: list[Weight] = []
        self.dropouts: dict[str, tuple[str, Layout]] = {}  # fx node -> (Flax module name, layout of its input)
        self.submodules: dict[str, str] = {}  # Flax name -> torch path
        self.linear_inputs: dict[str, Layout] = {}
        self.node: fx.Node | None = None
        self._converted: dict[tuple[str, Layout], str] = {}

    # -- values -------------------------------------------------------------------------------------------------
    def example(self, node_name: str) -> Any:
        return self.traced.values[node_name]

    def result_shape(self) -> tuple[int, ...]:
        return tuple(self.example(self.node.name).shape)

    def convert(self, value: Value, layout: Layout) -> str:
        """The name of `value` held in `layout`, converting (once per value and layout) where they differ."""
        if value.layout == layout:
            return value.var
        key = (value.var, layout)
        if key not in self._converted:
            stem = re.sub(r"\W", "_", value.var.removeprefix("self.").removesuffix(".value"))
            name = f"{stem}_{'torch' if layout.is_torch else 'cl'}"
            self.body.append(f"{name} = {conversion(value.var, value.layout, layout)}")
            self._converted[key] = name
        return self._converted[key]

    def channels_last(self, value: Value) -> str:
        return self.convert(value, Layout.channels_last(value.rank))

    def torch_order(self, value: Value) -> str:
        return self.convert(value, Layout.same(value.rank))

    def out(self, expr: str, layout: Layout) -> Value:
        """The current node's value: `name = expr`, held in `layout`."""
        example = self.example(self.node.name)
        self.body.append(f"{var_name(self.node.name)} = {expr}")
        return Value(var_name(self.node.name), layout, tuple(example.shape), example.dtype)

    # -- submodules and weights ---------------------------------------------------------------------------------
    def submodule(self, torch_path: str, constructor: str | Callable[[str], str], name: str | None = None) -> str:
        """`self.<name> = constructor` in setup, once per torch submodule (name: flax_name(torch_path);
        a callable constructor is given the name); returns 'self.<name>'."""
        name = name or flax_name(torch_path)
        if name in _RESERVED:
            name += "_"
        known = self.submodules.get(name)
        if known is not None and known != torch_path:
            raise Unsupported(f"torch submodules {known!r} and {torch_path!r} would share the Flax name {name!r}")
        if known is None:
            self.submodules[name] = torch_path
            self.setup.append(f"self.{name} = {constructor(name) if callable(constructor) else constructor}")
        return f"self.{name}"

    def add_weight(self, key: str, flax_path: str | None, kind: str, shape, flatten_from=None) -> None:
        if not any(w.key == key for w in self.weights):
            self.weights.append(Weight(key, flax_path, kind, tuple(shape), flatten_from))


def supported() -> dict[str, list[str]]:
    """What the port understands: torch.nn module classes, torch functions and Tensor methods, by name."""
    functions = sorted({_function_name(f) for f in FUNCTIONS if callable(f)})
    return {"modules": sorted(f"nn.{m.__name__}" for m in MODULES), "functions": functions,
            "methods": sorted(f"Tensor.{m}" for m in METHODS)}


def _function_name(function: Callable) -> str:
    module = (getattr(function, "__module__", None) or "torch").replace("torch._C._nn", "torch.nn.functional")
    return f"{module.replace('_operator', 'operator')}.{getattr(function, '__name__', function)}"


def var_name(node_name: str) -> str:
    return node_name + "_" if node_name in _RESERVED else node_name


def _resolve(ctx: Context, arg: Any) -> Any:
    """A node argument as the handlers see it: a Value for tensors, the example's Python value for sizes."""
    if isinstance(arg, fx.Node):
        if arg.name not in ctx.values:
            raise _Skipped()
        return ctx.values[arg.name]
    if isinstance(arg, (list, tuple)):
        return type(arg)(_resolve(ctx, a) for a in arg)
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


def run(traced: Traced, placeholder_layout: Callable[[int], Layout]) -> tuple[Context, list[str], Any]:
    """Ports every node. Returns (context, the names of the inputs, the output structure of Values); raises
    PortError listing every node it cannot port, each with the user's line."""
    ctx, inputs, output, refused = Context(traced), [], None, []
    root = traced.graph_module
    order = {n: i for i, n in enumerate(traced.graph.nodes)}
    for node in traced.graph.nodes:
        ctx.node = node
        example = traced.values.get(node.name)
        try:
            if node.op == "placeholder":
                inputs.append(var_name(node.name))
                ctx.values[node.name] = Value(var_name(node.name), placeholder_layout(example.ndim),
                                              tuple(example.shape), example.dtype)
                continue
            if node.op == "output":
                output = _resolve(ctx, node.args[0])
                continue
            if not isinstance(example, torch.Tensor) and node.op in ("call_function", "call_method"):
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
                args = (module, *args)
            elif node.op == "call_method":
                handler = METHODS.get(node.target)
            else:
                handler = FUNCTIONS.get(node.target)
            if handler is None:
                raise Unsupported("not supported")
            try:
                inspect.signature(handler).bind(ctx, *args, **kwargs)
            except TypeError as err:  # arguments that the handler's torch-like signature does not take
                raise Unsupported(f"arguments not supported ({err})") from err
            ctx.values[node.name] = handler(ctx, *args, **kwargs)
        except _Skipped:
            continue
        except Unsupported as why:
            refused.append(f"{location(node)}  <- {_describe(node, root)}: {why}")
            if isinstance(example, torch.Tensor):  # stands in, so that what follows is checked too
                ctx.values[node.name] = Value(var_name(node.name), Layout.channels_last(example.ndim),
                                              tuple(example.shape), example.dtype)
    if refused:
        raise PortError(f"cannot port {root.__class__.__name__}: {len(refused)} operation(s) are not supported "
                        "(nothing was ported):\n" + "\n".join(f"  {line}" for line in refused)
                        + "\nWhat the port supports: parity.port.supported(), or the README's \"Port your own network\".")
    return ctx, inputs, output
