"""The NNX source of a port: each generated linen class (parity.port._classes) rewritten as the NNX module it
is. `setup` becomes `__init__(self, <fields>, *, rngs)`, building the layers as attributes (jaxcnn.nnx.layers,
torch's arguments, `rngs` where they draw); `__call__` loses its `train` argument: Dropout, BatchNorm and the
`if train:` of a module traced once per mode follow `net.train()` / `net.eval()` (NNX's `deterministic`)."""

import ast

from parity.port._classes import FlaxClass
from parity.port._trace import PortError

RNG_LAYERS = {"Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "Linear",
              "Dropout", "StochasticDepth"}  # the jaxcnn.nnx layers that take rngs
MODE = "deterministic"  # the attribute net.train() / net.eval() set: True in eval mode


def _self_attribute(node: ast.AST) -> str | None:
    """'x' for `self.x`."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return node.attr
    return None


def _layer(node: ast.Call) -> str | None:
    """'Conv2d' for a call of `layers.Conv2d`."""
    func = node.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "layers":
        return func.attr
    return None


def _layers_call(name: str, args: list, keywords: list) -> ast.Call:
    return ast.Call(ast.Attribute(ast.Name("layers", ast.Load()), name, ast.Load()), args, keywords)


class _Constructors(ast.NodeTransformer):
    """setup's lines as __init__'s: fields read as the arguments they are, `rngs=rngs` to the layers and classes
    that draw, torch's containers as jaxcnn.nnx's, parameters and buffers as nnx.Param and layers.Buffer."""

    def __init__(self, fields: set[str], generated: set[str]):
        self.fields, self.generated = fields, generated
        self.parameters: set[str] = set()
        self.buffers: set[str] = set()

    def visit_Assign(self, node: ast.Assign) -> ast.Assign:
        attribute = _self_attribute(node.targets[0])
        value = node.value
        if isinstance(value, ast.Call) and _self_attribute(value.func) in ("param", "variable"):
            kind, (shape, *dtype) = _self_attribute(value.func), value.args[2:] if value.func.attr == "param" \
                else value.args[3:]
            shape, dtype = self.visit(shape), [self.visit(d) for d in dtype]
            zeros = ast.Call(ast.Attribute(ast.Name("jnp", ast.Load()), "zeros", ast.Load()), [shape, *dtype], [])
            (self.parameters if kind == "param" else self.buffers).add(attribute)
            node.value = ast.Call(ast.Attribute(ast.Name("nnx", ast.Load()), "Param", ast.Load()), [zeros], []) \
                if kind == "param" else _layers_call("Buffer", [zeros], [])
            return node
        self.generic_visit(node)
        return node

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        name = _self_attribute(node)
        if name in self.fields and isinstance(node.ctx, ast.Load):
            return ast.Name(name, ast.Load())
        return self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> ast.Call:
        self.generic_visit(node)
        node.keywords = [k for k in node.keywords if k.arg != "name"]  # linen's name: the attribute is the name
        layer = _layer(node)
        if layer in ("Sequential", "ModuleList", "ModuleDict") and len(node.args) == 1:
            entries = node.args[0]
            if isinstance(entries, ast.Dict):
                return _layers_call("NamedSequential" if layer == "Sequential" else "ModuleDict", [entries], [])
            return _layers_call(layer, list(entries.elts) if layer == "Sequential" else [entries], [])
        if layer in RNG_LAYERS or (isinstance(node.func, ast.Name) and node.func.id in self.generated):
            node.keywords.append(ast.keyword("rngs", ast.Name("rngs", ast.Load())))
        return node


class _Forward(ast.NodeTransformer):
    """__call__'s lines without `train`: calls lose it, `if train:` reads the mode, parameters and buffers are
    read as arrays (`self.gamma[...]`); an always-on dropout (F.dropout(x, training=True)) says so."""

    def __init__(self, parameters: set[str], buffers: set[str], entries: dict[str, int]):
        self.parameters, self.buffers, self.entries = parameters, buffers, entries
        self.branches = False

    def visit_Call(self, node: ast.Call) -> ast.Call:
        last = node.args[-1] if node.args else None
        if isinstance(last, ast.Name) and last.id == "train":
            node.args = node.args[:-1]
        elif isinstance(last, ast.Constant) and last.value is True and _self_attribute(node.func) is not None:
            node.args = node.args[:-1]
            node.keywords.append(ast.keyword(MODE, ast.Constant(False)))
        return self.generic_visit(node)

    def visit_If(self, node: ast.If) -> ast.If:
        if isinstance(node.test, ast.Name) and node.test.id == "train":
            self.branches = True
            node.test = ast.UnaryOp(ast.Not(), ast.Attribute(ast.Name("self", ast.Load()), MODE, ast.Load()))
        return self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        name = _self_attribute(node.value)
        if node.attr == "value" and name in self.buffers:
            return ast.Subscript(node.value, ast.Constant(Ellipsis), ast.Load())
        name = _self_attribute(node)
        if name in self.parameters and isinstance(node.ctx, ast.Load):
            return ast.Subscript(node, ast.Constant(Ellipsis), ast.Load())
        if name in self.entries:  # an entry of a sequence: self[0]
            return ast.Subscript(node.value, ast.Constant(self.entries[name]), ast.Load())
        return self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if node.id == "train":
            raise PortError(f"internal error of the port: `train` read in {ast.unparse(node)!r} of NNX source "
                            "(please report it with your module)")
        return node


def methods(flax_class: FlaxClass, generated: set[str]) -> str:
    """The `__init__` and `__call__` of `flax_class` (its linen `setup` and `__call__`) as NNX's, unindented.
    generated: the names of the generated classes (their constructors take rngs)."""
    setup, call = ast.parse(flax_class.methods).body
    names = [name for name, _ in flax_class.fields]
    constructors = _Constructors(set(names), generated)
    statements = [constructors.visit(s) for s in setup.body if not isinstance(s, ast.Pass)]
    entries = {}
    if flax_class.sequence:  # the entries go to layers.Sequential's constructor, in torch's order
        entries = {s.targets[0].attr: i for i, s in enumerate(statements)}
        statements = [ast.Expr(ast.Call(ast.Attribute(ast.Call(ast.Name("super", ast.Load()), [], []), "__init__",
                                                      ast.Load()), [s.value for s in statements], []))]
    forward = _Forward(constructors.parameters, constructors.buffers, entries)
    call.body = [forward.visit(s) for s in call.body]
    call.args.args = [a for a in call.args.args if a.arg != "train"]
    call.args.defaults = []
    read = {_self_attribute(n) for n in ast.walk(call)} - {None}
    kept = [ast.parse(f"self.{name} = {name}").body[0] for name in names if name in read]
    mode = [ast.parse(f"self.{MODE} = False").body[0]] if forward.branches else []
    arguments = [f"{name}: {annotation}" for name, annotation in flax_class.fields]
    lines = [f"def __init__({', '.join(['self', *arguments, '*', 'rngs: nnx.Rngs'])}):"]
    for statement in [*statements, *kept, *mode] if entries else [*kept, *mode, *statements] or [ast.Pass()]:
        text = ast.unparse(statement)
        if isinstance(statement, ast.Assign) and _is_container(statement.value):
            text = f"self.{statement.targets[0].attr} = {_render(statement.value, '')}"
        elif entries and isinstance(statement, ast.Expr) and len(text) > 100:
            text = "super().__init__(\n" + "".join(f"    {ast.unparse(e)},\n" for e in statement.value.args) + ")"
        lines += [f"    {line}" for line in text.split("\n")]
    if forward.branches:  # ast drops comments: the mode's is put back
        lines[lines.index(f"    self.{MODE} = False")] += "  # net.eval() sets True: torch's eval mode"
    return "\n".join([*lines, ast.unparse(call)])


CONTAINERS = ("Sequential", "NamedSequential", "ModuleList", "ModuleDict")


def _is_container(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and _layer(node) in CONTAINERS


def _render(node: ast.expr, indent: str) -> str:
    """A container's constructor, an entry a line where it does not fit on one (entries that are containers
    rendered so too)."""
    one = ast.unparse(node)
    if not _is_container(node) or len(indent) + len(one) < 90:
        return one
    inner = indent + "    "
    if _layer(node) == "Sequential":
        entries = [f"{inner}{_render(e, inner)}," for e in node.args]
        opening, closing = "(", ")"
    elif isinstance(node.args[0], ast.Dict):
        entries = [f"{inner}{ast.unparse(k)}: {_render(v, inner)}," for k, v in zip(node.args[0].keys,
                                                                                 node.args[0].values)]
        opening, closing = "({", "})"
    else:
        entries = [f"{inner}{_render(e, inner)}," for e in node.args[0].elts]
        opening, closing = "([", "])"
    return f"layers.{_layer(node)}{opening}\n" + "\n".join(entries) + f"\n{indent}{closing}"
