"""Tracing by running: the module runs on its example input, eagerly, and every torch operation it performs on
tensors is written into an fx graph as it happens. Python reads real shapes (`if x.shape[1] != C`, `int(h / 2)`,
keyword defaults, dataclass outputs, modules built in forward); only control flow on tensor values is refused."""

import dataclasses
import inspect
import operator
import os
import sys
import traceback
from typing import Any, Callable

import torch
import torch.fx as fx
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree

from parity.port._patching import patched

_TORCH_DIR = os.path.dirname(torch.__file__)
_PORT_DIR = os.path.dirname(os.path.abspath(__file__))

# Reading a tensor's values into Python: what the port cannot follow (the code would take another path for other
# values), refused with the user's line.
_READS_VALUES = {"__bool__", "item", "tolist", "__int__", "__float__", "__index__", "__complex__", "numpy",
                 "__array__", "equal", "is_nonzero", "allclose", "__format__"}
# The reflected operators: torch gives `1 - x` as Tensor.__rsub__(x, 1); the graph writes operator.sub(1, x).
_REFLECTED = {"__rsub__": operator.sub, "__rtruediv__": operator.truediv, "__rdiv__": operator.truediv,
              "__radd__": operator.add, "__rmul__": operator.mul, "__rpow__": operator.pow,
              "__rfloordiv__": operator.floordiv, "__rmatmul__": operator.matmul}
_OPERATORS = {"__getitem__": operator.getitem, "__matmul__": operator.matmul, "__floordiv__": operator.floordiv,
              "__mod__": operator.mod, "__and__": operator.and_, "__or__": operator.or_, "__invert__": operator.invert}


class StaleView(Exception):
    """The module reads a view of a tensor that an in-place operation changed after the view was taken."""

    def __init__(self, where: str, changed: str):
        super().__init__(f"{where}: reads a view of a tensor that was changed in place afterwards ({changed})")
        self.where, self.changed = where, changed


class HiddenInList(Exception):
    """The module reads a tensor that a submodule put into a list it was handed, without returning it."""

    def __init__(self, where: str, module: str):
        super().__init__(f"{where}: reads a tensor that {module} put into the list it was given in place of another "
                         f"(a submodule's output the port follows only where it is returned)")
        self.where, self.module = where, module


class ValueDependent(Exception):
    """The module's Python reads a tensor's values (`if x.sum() > 0`, `.item()`); `where` is the user's line."""

    def __init__(self, what: str, where: str):
        super().__init__(f"{where}: {what} reads a tensor's values into Python")
        self.what, self.where = what, where


def user_frames(frames: traceback.StackSummary) -> list[traceback.FrameSummary]:
    """The frames of `frames` outside torch and the port: the user's (and their libraries') code."""
    return [f for f in frames if not f.filename.startswith((_TORCH_DIR, _PORT_DIR))]


def where(frames: traceback.StackSummary) -> str:
    ours = user_frames(frames)
    if not ours:
        return "(unknown line)"
    frame = ours[-1]
    code = (frame.line or "").strip()
    return f"{os.path.basename(frame.filename)}:{frame.lineno}: {code}"


def _stack() -> traceback.StackSummary:
    return traceback.StackSummary.extract(traceback.walk_stack(sys._getframe(2)), lookup_lines=False)[::-1]


@dataclasses.dataclass
class _Call:
    module: torch.nn.Module
    path: str


class Recorder(TorchFunctionMode):
    """Runs `root` on example inputs and writes what it does into `graph`.

    Arguments:
        root: the module (its submodules are found by identity, so those it holds are call_module nodes).
        is_leaf: whether a call of a submodule (module, args, kwargs) is one node rather than traced through.
        named: functions of libraries, by __name__, recorded as one call_function node each (torchvision's
            `stochastic_depth`): their own torch operations are not written.
    """

    def __init__(self, root: torch.nn.Module, is_leaf: Callable[[torch.nn.Module, tuple, dict], bool],
                 named: frozenset[str] = frozenset()):
        super().__init__()
        self.is_leaf, self.named = is_leaf, named
        self.graph = fx.Graph()
        self.values: dict[str, Any] = {}
        self._nodes: dict[int, fx.Node] = {}  # id(tensor) -> the node that made it
        self._alive: list[Any] = []  # every recorded tensor, so that no id is reused while recording
        self._paths = {id(m): name for name, m in root.named_modules(remove_duplicate=False)}
        self._attributes = {id(t): name for name, t in [*root.named_parameters(remove_duplicate=False),
                                                        *root.named_buffers(remove_duplicate=False)]}
        self._stack: list[_Call] = []
        self._stale: dict[int, str] = {}  # id(tensor) -> the line that changed its storage in place after it was made
        self._hidden: dict[int, str] = {}  # id(tensor) -> the submodule that put it into a list and did not return it
        self._quiet = 0
        self.constants: dict[str, torch.Tensor] = {}
        self.inline: set[type] = {type(root)}  # the classes whose forward ran into this graph (not as one node)

    # -- the graph ----------------------------------------------------------------------------------------------
    def placeholder(self, name: str, value: Any) -> fx.Node:
        node = self.graph.placeholder(name)
        self._bind(node, value)
        if isinstance(value, list):  # the example as given, whatever forward does to its list
            self.values[node.name] = list(value)
        return node

    def _bind(self, node: fx.Node, value: Any) -> None:
        self.values[node.name] = value
        if isinstance(value, torch.Tensor):
            self._nodes[id(value)] = node
            self._alive.append(value)
        elif isinstance(value, (tuple, list)) and any(isinstance(v, torch.Tensor) for v in value):
            self._alive.append(value)
            for i, item in enumerate(value):
                if isinstance(item, torch.Tensor):
                    element = self.graph.call_function(operator.getitem, (node, i))
                    self._meta(element)
                    self._bind(element, item)

    def _arg(self, value: Any) -> Any:
        """A Python argument as a graph argument: a recorded tensor as its node, a parameter or buffer of root as
        a get_attr node, any other tensor as a constant of the graph module."""
        if isinstance(value, torch.Tensor):
            if id(value) in self._stale:
                raise StaleView(where(_stack()), self._stale[id(value)])
            if id(value) in self._hidden:
                raise HiddenInList(where(_stack()), self._hidden[id(value)])
            node = self._nodes.get(id(value))
            if node is not None:
                return node
            name = self._attributes.get(id(value))
            if name is None:
                name = f"_tensor_constant{len(self.constants)}"
                self.constants[name] = value
                self._attributes[id(value)] = name
            node = self.graph.get_attr(name)
            self._meta(node)
            self._bind(node, value)
            return node
        if isinstance(value, (tuple, list)):
            return type(value)(self._arg(v) for v in value) if not hasattr(value, "_fields") else \
                type(value)(*(self._arg(v) for v in value))
        if isinstance(value, dict):
            return {k: self._arg(v) for k, v in value.items()}
        if isinstance(value, slice):
            return slice(self._arg(value.start), self._arg(value.stop), self._arg(value.step))
        return value

    def _meta(self, node: fx.Node) -> None:
        node.meta["frames"] = _stack()
        node.meta["nn_module_stack"] = {c.path: (c.path, type(c.module)) for c in self._stack if c.path}

    def record(self, op: str, target: Any, args: tuple, kwargs: dict, result: Any, in_place: bool = False) -> Any:
        """One node; `in_place`: the operation changed its first argument, which it returns (later reads of that
        tensor read this node). A result that is an input returned as it is (an identity, a dropout in eval mode)
        is given to the module as a new view of it, so that the input's other reads keep their node."""
        node = self.graph.create_node(op, target, self._arg(tuple(args)), self._arg(dict(kwargs)))
        self._meta(node)
        if isinstance(result, torch.Tensor) and (id(result) in self._nodes or id(result) in self._attributes):
            if in_place:
                self._mark_views_stale(result, node)
            else:
                self._quiet += 1
                try:
                    result = result.view_as(result)
                finally:
                    self._quiet -= 1
        self._bind(node, result)
        return result

    def _mark_views_stale(self, changed: torch.Tensor, node: fx.Node) -> None:
        """Other recorded tensors on the storage `changed` lives on now hold other values than the graph gives them."""
        storage = changed.untyped_storage().data_ptr()
        for other in self._alive:
            if isinstance(other, torch.Tensor) and other is not changed and id(other) not in self._stale \
                    and other.untyped_storage().data_ptr() == storage:
                self._stale[id(other)] = where(node.meta["frames"])

    def output(self, result: Any) -> None:
        self.graph.output(self._arg(plain_output(result)))

    # -- torch operations ---------------------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if self._quiet:
            return func(*args, **kwargs)
        if name in _READS_VALUES and any(id(t) in self._nodes or id(t) in self._attributes
                                         for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)):
            raise ValueDependent(f"Tensor.{name}" if name.startswith("__") else name, where(_stack()))
        result = func(*args, **kwargs)
        if name == "__setitem__":  # x[i] = y changes x (and returns None): a node, so that later reads see it
            self.record("call_function", operator.setitem, args, kwargs, args[0], in_place=True)
            return result
        if not any(isinstance(t, torch.Tensor) for t in pytree.tree_leaves(result)):
            return result  # a size, a dtype, a shape check: Python values of the example
        getter = getattr(func, "__self__", None)
        if name == "__get__" and getter is not None:  # a tensor-valued attribute: x.T, x.mT
            return self.record("call_function", getattr, (args[0], getter.__name__), {}, result)
        if name in _REFLECTED:
            return self.record("call_function", _REFLECTED[name], (args[1], args[0], *args[2:]), kwargs, result)
        if name in _OPERATORS:
            return self.record("call_function", _OPERATORS[name], args, kwargs, result)
        if _is_tensor_method(func):
            return self.record("call_method", name, args, kwargs, result, in_place=_names_in_place(name))
        return self.record("call_function", func, args, kwargs, result,
                           in_place=_names_in_place(name) or kwargs.get("inplace") is True)

    # -- modules and named functions ----------------------------------------------------------------------------
    def call_module(self, call: Callable, module: torch.nn.Module, args: tuple, kwargs: dict) -> Any:
        if self._quiet:
            return call(module, *args, **kwargs)
        path = self._paths.get(id(module))
        if path and self.is_leaf(module, args, kwargs) and all(
                not isinstance(a, torch.Tensor) or id(a) in self._nodes or id(a) in self._attributes
                for a in pytree.tree_leaves((args, kwargs))):
            given = [(a, list(a)) for a in args if isinstance(a, list)]  # the lists as they are handed over
            self._quiet += 1
            try:
                result = call(module, *args, **kwargs)
            finally:
                self._quiet -= 1
            self._follow_changed_lists(module, given, result)
            snapshot = {id(a): items for a, items in given}
            args = tuple(snapshot.get(id(a), a) for a in args)
            return self.record("call_module", path, args, kwargs, result,
                               in_place=getattr(module, "inplace", False) is True)
        self._stack.append(_Call(module, path or ""))
        self.inline.add(type(module))
        try:
            return call(module, *args, **kwargs)
        finally:
            self._stack.pop()

    def _follow_changed_lists(self, module: torch.nn.Module, given: list, result: Any) -> None:
        """A submodule recorded as one node may change a list it was handed (HRNet's modules put each branch's
        output in its input's place) and return it: what the list then holds is that node's output. A tensor
        put into the list that the module does not return cannot be followed: read later, it is refused."""
        returned = {id(t) for t in pytree.tree_leaves(result) if isinstance(t, torch.Tensor)}
        for changed, before in given:
            kept = {id(t) for t in before}
            for t in changed:
                if isinstance(t, torch.Tensor) and id(t) not in kept and id(t) not in returned:
                    self._hidden[id(t)] = type(module).__name__
                    self._alive.append(t)

    def call_named(self, function: Callable, args: tuple, kwargs: dict) -> Any:
        if self._quiet:
            return function(*args, **kwargs)
        self._quiet += 1
        try:
            result = function(*args, **kwargs)
        finally:
            self._quiet -= 1
        return self.record("call_function", function, args, kwargs, result)


def _names_in_place(name: str) -> bool:
    """torch's naming of an operation that changes its first argument: add_, relu_ (not __init__ nor _foo)."""
    return name.endswith("_") and not name.startswith("_")


def _is_tensor_method(func) -> bool:
    owner = getattr(func, "__qualname__", "").split(".")[0]
    return owner in ("TensorBase", "Tensor", "_TensorBase")


def plain_output(result: Any) -> Any:
    """A forward's result as tensors in tuples, lists and dicts: a dataclass of outputs (transformers'
    ModelOutput, a user's) as the tuple of its tensor fields, a namedtuple as a tuple."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        values = [getattr(result, f.name) for f in dataclasses.fields(result)]
        return tuple(plain_output(v) for v in values if v is not None)
    if isinstance(result, dict) and type(result) is not dict:
        return tuple(plain_output(v) for v in result.values() if v is not None)
    if isinstance(result, tuple) and hasattr(result, "_fields"):  # a namedtuple (torchvision's GoogLeNetOutputs)
        return tuple(plain_output(v) for v in result)
    return result


def _drop_unused(graph: fx.Graph) -> None:
    """Removes what nothing reads: values computed for Python's checks, unused tuple elements."""
    for node in reversed(list(graph.nodes)):
        if node.op not in ("placeholder", "output") and not node.users:
            graph.erase_node(node)


def record(root: torch.nn.Module, example_inputs: tuple, is_leaf: Callable, named: frozenset[str] = frozenset(),
           class_name: str | None = None) -> tuple[fx.GraphModule, dict[str, Any]]:
    """Runs `root(*example_inputs)` (no gradients) and returns the fx GraphModule of what it did, and each node's
    value. Raises ValueDependent where the module's Python reads a tensor's values."""
    recorder = Recorder(root, is_leaf, named)
    names = [p.name for p in inspect.signature(root.forward).parameters.values()
             if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    names += [f"input_{i}" for i in range(len(names), len(example_inputs))]
    example_inputs = tuple(list(v) if isinstance(v, list) else v for v in example_inputs)  # forward may change them
    for name, value in zip(names, example_inputs):
        recorder.placeholder(name, value)
    buffers = {name: b.clone() for name, b in root.named_buffers()}
    try:
        with torch.no_grad(), torch.random.fork_rng(), patched(recorder.named, recorder.call_named, recorder.call_module, recorder):
            result = root(*example_inputs)
    finally:  # the module as it was: BatchNorm in train mode has updated its statistics
        with torch.no_grad():
            for name, b in root.named_buffers():
                b.copy_(buffers[name])
    recorder.output(result)
    _drop_unused(recorder.graph)
    for name, value in recorder.constants.items():
        root.register_buffer(name, value, persistent=False)
    gm = fx.GraphModule(root, recorder.graph, class_name or type(root).__name__)
    gm.meta["inline"] = frozenset(recorder.inline)
    return gm, recorder.values
