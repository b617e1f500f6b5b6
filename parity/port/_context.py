"""What a handler writes into while one traced module is ported: the lines of its Flax class's `setup` and
`__call__`, its submodules (torch containers as jaxcnn's, so the Flax variables nest as the state_dict does), its
weights and its dropouts."""

import dataclasses
import keyword
import re
from typing import Any, Callable

import torch
import torch.fx as fx
from flax import linen as nn, nnx

from parity.port._layout import Layout, conversion

CONTAINER = "#container"
RESERVED = {"jax", "jnp", "nn", "nnx", "layers", "self", "train", "math", "ClassVar", "rngs", "deterministic"} \
    | set(dir(nn.Module)) | set(dir(nnx.Module))


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


class Values(list):
    """The tensors of a forward argument that is a list or tuple of them (timm's DenseLayer takes its block's
    features so far): a Value `name[i]` per element, and `var`, the argument's name, that stands for them all."""

    def __init__(self, var: str, items: list[Value]):
        super().__init__(items)
        self.var = var

    def layouts(self) -> list[Layout]:
        return [v.layout for v in self]


@dataclasses.dataclass(frozen=True)
class Attribute:
    """A parameter or buffer of the traced module (`target`: its path there, 'bn.weight') handed as it is to a
    handler that declares the layer holding it (F.batch_norm's statistics, F.conv2d's weight)."""
    target: str
    tensor: torch.Tensor

    @property
    def owner(self) -> str:
        """The path of the module holding it ('' for the traced module's own)."""
        return self.target.rpartition(".")[0]


@dataclasses.dataclass
class Weight:
    """One torch state_dict entry: the Flax variable holding it ('params/conv1/kernel'; None when Flax keeps
    no copy, as for num_batches_tracked), how it changes ('kernel', 'copy', 'dropped'; 'index': an int64 table,
    int32 in Flax), its torch shape, and for a Linear fed by a channels-last flatten the (*spatial, C) shape its
    input features come from."""
    key: str
    flax_path: str | None
    kind: str
    shape: tuple[int, ...]
    flatten_from: tuple[int, ...] | None = None


def identifier(name: str, taken: set[str]) -> str:
    """`name` as a Python identifier that is not reserved nor in `taken` ('block2-1' -> 'block2_1', '0' -> 'layers_0',
    'lambda' -> 'lambda_'); added to `taken`."""
    name = re.sub(r"\W", "_", name)
    name = f"layers_{name}" if name[:1].isdigit() else name
    name = f"{name}_" if keyword.iskeyword(name) or name in RESERVED else name
    unique, n = name, 2
    while unique in taken:
        unique, n = f"{name}_{n}", n + 1
    taken.add(unique)
    return unique


def _accessor(key: str) -> str:
    if key.isdigit():
        return f"[{key}]"
    return f".{key}" if key.isidentifier() and not keyword.iskeyword(key) and key not in RESERVED else f"[{key!r}]"


class Context:
    """What the handlers write into: `setup` and `body` lines, the weights, and the Dropouts to replay."""

    def __init__(self, traced: Any):
        self.traced = traced
        self.values: dict[str, Any] = {}
        self.setup: list[str] = []
        self.body: list[str] = []
        self.weights: list[Weight] = []
        self.dropouts: dict[str, tuple[str, Layout]] = {}  # fx node -> (Flax module name, layout of its input)
        self.submodules: dict[str, str] = {}  # Flax attribute -> torch path
        self.module_paths: dict[str, str] = {}  # torch module path -> Flax path ('layer1.0' -> 'layer1/0')
        self.expressions: dict[str, str] = {}  # 'self.layer1[0]' -> 'layer1/0'
        self.containers: dict[str, dict] = {}  # Flax attribute -> {torch key: constructor or nested dict}
        self.flax_names: dict[str, str] = {}  # Python attribute -> its Flax name, the torch one, where they differ
        self.names: set[str] = set()
        self.linear_inputs: dict[str, Layout] = {}
        self.child_handler: Callable | None = None  # ports a call of an own_class submodule (parity.port._nest)
        self.node: fx.Node | None = None
        self._converted: dict[tuple[str, Layout, Layout], str] = {}
        self.input_lists: list[Values] = []  # the forward's arguments that are lists of tensors

    # -- values -------------------------------------------------------------------------------------------------
    def example(self, node_name: str) -> Any:
        return self.traced.values[node_name]

    def result_shape(self) -> tuple[int, ...]:
        return tuple(self.example(self.node.name).shape)

    def size(self, position: int, number: int) -> str:
        """A size argument of the current node (at `position` among parity.port._batch.leaves of its args): the
        example's number, or an expression of the input's batch where the number follows the batch."""
        k = self.traced.batch_arguments.get(self.node.name, {}).get(position)
        if k is None:
            return repr(number)
        inputs = (self.values.get(n.name) for n in self.traced.graph.nodes if n.op == "placeholder")
        first = next((v for v in inputs if isinstance(v, Value) and v.rank), None)
        if first is None:
            return repr(number)
        batch = f"{first.var}.shape[{first.layout.perm.index(0)}]"
        return batch if k == 1 else f"{k} * {batch}"

    def convert(self, value: Value, layout: Layout) -> str:
        """The name of `value` held in `layout`, converting (once per value and layout) where they differ."""
        if value.layout == layout:
            return value.var
        key = (value.var, value.layout, layout)  # one array, held as two tensors (a relabelling permute)
        if key not in self._converted:
            stem = re.sub(r"\W", "_", value.var.removeprefix("self.").removesuffix(".value")).strip("_")
            name = f"{stem}_{'torch' if layout.is_torch else 'cl'}"
            self.body.append(f"{name} = {conversion(value.var, value.layout, layout)}")
            self._converted[key] = name
        return self._converted[key]

    def channels_last(self, value: Value) -> str:
        return self.convert(value, Layout.channels_last(value.rank))

    def torch_order(self, value: Value) -> str:
        return self.convert(value, Layout.same(value.rank))

    def out(self, expr: str, layout: Layout) -> Value:
        """The current node's value: `name = expr`, held in `layout`; a local name as it is (an identity, or a
        permute that only relabels the axes, writes no line)."""
        example = self.example(self.node.name)
        if not re.fullmatch(r"[A-Za-z_]\w*", expr):
            self.body.append(f"{var_name(self.node.name)} = {expr}")
            expr = var_name(self.node.name)
        return Value(expr, layout, tuple(example.shape), example.dtype)

    # -- submodules and weights ---------------------------------------------------------------------------------
    def submodule(self, torch_path: str, constructor: str | Callable[[str], str], name: str | None = None) -> str:
        """The expression of torch submodule `torch_path` in the Flax class, declared once: `self.<name> =
        constructor` in setup, or an entry of a container (`self.layer1[0]` for `layer1.0`, the container
        written by `setup_lines`). A callable constructor (a parameter, a buffer) is given the name."""
        known = self.module_paths.get(torch_path)
        if known is not None:
            return next(e for e, p in self.expressions.items() if p == known)
        head, *rest = torch_path.split(".") if name is None and not callable(constructor) else [torch_path]
        if rest:
            attribute = self._attribute(head, torch_path)
            if attribute not in self.containers:
                self.setup.append(f"{CONTAINER} {attribute}")  # written out by parity.port._classes
            tree = self.containers.setdefault(attribute, {})
            for key in rest[:-1]:
                tree = tree.setdefault(key, {})
            tree[rest[-1]] = constructor
            expr = f"self.{attribute}" + "".join(_accessor(k) for k in rest)
            path = "/".join([self.flax_names.get(attribute, attribute), *rest])
        else:
            attribute = self._attribute(name or head, torch_path, into_container=not callable(constructor))
            self.setup.append(f"self.{attribute} = {constructor(attribute) if callable(constructor) else constructor}")
            expr, path = f"self.{attribute}", self.flax_names.get(attribute, attribute)
        self.module_paths[torch_path] = path
        self.expressions[expr] = path
        return expr

    def _attribute(self, name: str, torch_path: str, into_container: bool = True) -> str:
        """The Flax attribute for the first component of `torch_path` (made an identifier, unique); a module
        goes into the container already declared for that component, a parameter or buffer never does."""
        head = torch_path.split(".")[0]
        for attribute, path in self.submodules.items():
            if into_container and path == head and attribute in self.containers:
                return attribute
        attribute = identifier(name, self.names)
        self.submodules[attribute] = head if "." in torch_path else torch_path
        if name == head and attribute != head:  # a torch child ('0', 'block2-1', 'layers'): Flax keeps its name
            self.flax_names[attribute] = head
        return attribute

    def flax_path(self, expr: str) -> str:
        """The Flax module path of a submodule expression ('self.layer1[0]' -> 'layer1/0')."""
        return self.expressions.get(expr, expr.removeprefix("self."))

    def sequence_like(self) -> bool:
        """A torch Sequential or ModuleList subclass (torchvision's Conv2dNormActivation) whose submodules are its
        entries '0', '1', ... in order: its NNX class is a layers.Sequential, indexed as torch's (`conv[0]`)."""
        if not isinstance(self.traced.module, (torch.nn.Sequential, torch.nn.ModuleList)) or self.containers:
            return False
        names = [self.flax_names.get(a) for a in self.submodules]
        return bool(names) and names == [str(i) for i in range(len(names))]

    def nnx_path(self, path: str) -> str:
        """A Flax path within this class (linen's names: '0/conv/kernel') as its NNX attributes hold it: the
        first name is the attribute ('layers_0/conv/kernel'; an entry of a sequence_like class keeps its
        index), the rest (containers' entries) torch's."""
        if self.sequence_like():
            return path
        head, _, rest = path.partition("/")
        attribute = next((a for a, name in self.flax_names.items() if name == head), head)
        return f"{attribute}/{rest}" if rest else attribute

    def add_weight(self, key: str, flax_path: str | None, kind: str, shape, flatten_from=None) -> None:
        """Records a state_dict entry; a weight of a submodule in a container is moved to the container's path."""
        module, _, leaf = key.rpartition(".")
        if flax_path is not None and module in self.module_paths:
            collection, *_, variable = flax_path.split("/")
            flax_path = f"{collection}/{self.module_paths[module]}/{variable}"
        if not any(w.key == key for w in self.weights):
            self.weights.append(Weight(key, flax_path, kind, tuple(shape), flatten_from))


def var_name(node_name: str) -> str:
    """The Python name of a node's value: fx's name, made readable ('_0', a Sequential's child: 'y0')."""
    if re.fullmatch(r"_\d+(_\d+)?", node_name):
        return f"y{node_name[1:]}"
    return node_name + "_" if node_name in RESERVED or keyword.iskeyword(node_name) else node_name
