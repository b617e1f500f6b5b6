"""One Flax class per torch submodule class: the instances of a class whose code differs only in literals
(channels, strides) share a class whose fields are those literals; instances that trace to other code get a
class of their own, named after what they have more (`BottleneckWithDownsample`) or numbered."""

import ast
import dataclasses
import inspect
import keyword
import re

import torch

from jaxcnn import layers
from parity.port._context import CONTAINER, Context, identifier
from parity.port._nest import Instance, instances

_CHAIN = re.compile(r"^(\w+) = self\.(\w+)\[(\d+)\]\((\w+)(, train)?\)$")


@dataclasses.dataclass
class FlaxClass:
    """A generated class: its name, the torch class it ports, its fields ((name, annotation) each) and its
    methods' text (`def setup(self): ...` and `def __call__(...): ...`, unindented)."""
    name: str
    torch_class: type
    fields: list[tuple[str, str]]
    methods: str


def class_name(torch_class: str) -> str:
    name = re.sub(r"\W", "_", torch_class).lstrip("_") or "Module"
    return name if name.isidentifier() and not keyword.iskeyword(name) else f"Ported{name}"


# -- one instance's text ----------------------------------------------------------------------------------------
def _container_type(module: torch.nn.Module) -> str:
    if isinstance(module, torch.nn.Sequential):
        return "Sequential"
    return "ModuleList" if isinstance(module, torch.nn.ModuleList) else "ModuleDict"


def _render_container(module: torch.nn.Module, tree: dict, calls: dict[str, str], indent: str) -> str:
    """`layers.Sequential([...])` (a list where it holds every torch child in order, else by torch name)."""
    def entry(key: str, value) -> str:
        if isinstance(value, dict):
            return _render_container(module.get_submodule(key), value, calls, indent + "    ")
        return calls.get(value, value)

    kind = _container_type(module)
    complete = kind != "ModuleDict" and list(tree) == [str(i) for i in range(len(module))]
    items = [entry(k, v) if complete else f"{k!r}: {entry(k, v)}" for k, v in tree.items()]
    inner = f"\n{indent}    ".join(f"{item}," for item in items)
    opening, closing = ("[", "]") if complete else ("{", "}")
    if len(", ".join(items)) < 80 and "\n" not in "".join(items):
        return f"layers.{kind}({opening}{', '.join(items)}{closing})"
    return f"layers.{kind}({opening}\n{indent}    {inner}\n{indent}{closing})"


def _collapse_chains(instance: Instance, body: list[str]) -> list[str]:
    """`a = self.seq[0](x); b = self.seq[1](a, train)` over all of a Sequential's children -> `b = self.seq(x,
    train)`, when nothing else reads what they hand on."""
    ctx = instance.ctx
    for attribute, tree in ctx.containers.items():
        module = instance.module.get_submodule(ctx.submodules[attribute])
        if type(module) is not torch.nn.Sequential or list(tree) != [str(i) for i in range(len(module))] \
                or any(isinstance(v, dict) for v in tree.values()):
            continue
        rows = [(i, _CHAIN.match(line)) for i, line in enumerate(body)]
        rows = [(i, m) for i, m in rows if m and m[2] == attribute]
        if [int(m[3]) for _, m in rows] != list(range(len(module))) or \
                [i for i, _ in rows] != list(range(rows[0][0], rows[0][0] + len(rows))):
            continue
        if any(m[4] != prev[1] for (_, m), (_, prev) in zip(rows[1:], rows)):
            continue
        handed_on = {m[1] for _, m in rows[:-1]}
        rest = [line for j, line in enumerate(body) if not rows[0][0] <= j <= rows[-1][0]]
        if any(re.search(rf"\b{v}\b", line) for v in handed_on for line in rest):
            continue
        first, last = rows[0][1], rows[-1][1]
        body = body[:rows[0][0]] + [f"{last[1]} = self.{attribute}({first[4]}, train)"] + body[rows[-1][0] + 1:]
    return body


def _text(instance: Instance, calls: dict[str, str]) -> tuple[list[str], list[str]]:
    """(setup lines, body lines) of an instance, its children written as their constructors."""
    ctx: Context = instance.ctx
    setup = []
    for line in ctx.setup:
        if line.startswith(CONTAINER):
            attribute = line.split()[1]
            module = instance.module.get_submodule(ctx.submodules[attribute])
            line = f"self.{attribute} = {_render_container(module, ctx.containers[attribute], calls, '')}"
        for token, call in calls.items():
            line = line.replace(token, call)
        attribute = line.removeprefix("self.").split(" = ", 1)[0]
        if attribute in ctx.flax_names:
            line = _named(line, ctx.flax_names[attribute])
        setup.append(line)
    return setup, _collapse_chains(instance, list(ctx.body))


def _named(line: str, name: str) -> str:
    """`self.layers_0 = layers.Conv2d(...)` -> `... layers.Conv2d(..., name='0')`: the Flax name of a submodule
    whose torch name is no Python attribute, so that the variables nest as the state_dict does."""
    depth = 0
    for i in range(len(line) - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(line[i], 0)
        if depth == 0:
            break
    inside = line[i + 1:-1]
    return f"{line[:-1]}{', ' if inside.strip() else ''}name={name!r})"


# -- literals that differ between instances -------------------------------------------------------------------
def _is_literal(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, float)) and not isinstance(node.value, complex)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return _is_literal(node.operand)
    return isinstance(node, (ast.Tuple, ast.List)) and bool(node.elts) and all(_is_literal(e) for e in node.elts)


GENERATED_DEFAULTS: dict[str, dict[str, object]] = {}  # the field defaults of the classes generated so far


def _defaults(callee: str) -> dict[str, object]:
    """The keyword defaults of a jaxcnn layer or function ('layers.Conv2d' -> {'stride': 1, ...}) or of a
    class generated before."""
    if callee in GENERATED_DEFAULTS:
        return GENERATED_DEFAULTS[callee]
    target = getattr(layers, callee.removeprefix("layers."), None) if callee.startswith("layers.") else None
    if isinstance(target, type) and dataclasses.is_dataclass(target):
        return {f.name: f.default for f in dataclasses.fields(target) if f.default is not dataclasses.MISSING}
    if callable(target):
        return {k: p.default for k, p in inspect.signature(target).parameters.items()
                if p.default is not inspect.Parameter.empty}
    return {}


def _parameters(callee: str) -> list[str]:
    """The parameter names of a jaxcnn layer or function, in order (fields for a module class)."""
    target = getattr(layers, callee.removeprefix("layers."), None) if callee.startswith("layers.") else None
    if isinstance(target, type) and dataclasses.is_dataclass(target):
        return [f.name for f in dataclasses.fields(target) if f.name not in ("parent", "name")]
    if callable(target):
        return list(inspect.signature(target).parameters)
    if callee == "self.param":
        return ["name", "init", "shape"]
    if callee == "self.variable":
        return ["collection", "name", "init", "shape", "dtype"]
    return ["shape", *(f"dim{i}" for i in range(1, 8))] if callee.endswith(".reshape") else []


class _Literals(ast.NodeVisitor):
    """The literals of a text, each named from where it stands ('conv1_stride'), and each call by its place
    ('conv1'), with the defaults of the keywords it could take."""

    def __init__(self, arguments: dict[str, list[str]]):
        self.found: dict[str, ast.AST] = {}
        self.argument: dict[str, str] = {}  # literal name -> the argument it is ('in_channels')
        self.calls: dict[str, tuple[ast.Call, dict]] = {}
        self.owner: list[str] = []
        self.arguments = arguments

    def visit_Assign(self, node: ast.Assign) -> None:
        target = node.targets[0]
        self.owner = [target.attr if isinstance(target, ast.Attribute) else ast.unparse(target)]
        self.visit(node.value)

    def visit_Call(self, node: ast.Call) -> None:
        callee = ast.unparse(node.func)
        names = self.arguments.get(callee) or _parameters(callee)
        self.calls.setdefault("_".join(self.owner), (node, _defaults(callee)))
        for i, arg in enumerate(node.args):
            self._visit_or_take(arg, names[i] if i < len(names) else f"arg{i}")
        for keyword_ in node.keywords:
            self._visit_or_take(keyword_.value, keyword_.arg or "kwargs")
        self.visit(node.func)

    def visit_List(self, node: ast.List) -> None:
        if _is_literal(node):
            return self._take(node, "value")
        for i, element in enumerate(node.elts):
            self.owner.append(str(i))
            self.visit(element)
            self.owner.pop()

    def visit_If(self, node: ast.If) -> None:
        first = node.body[0]
        self.owner = []
        if _is_literal(node.test):  # `if True:` of a merged tail; `if train:` of a module traced once per mode
            self._take(node.test, "with_" + (ast.unparse(first.targets[0]) if isinstance(first, ast.Assign)
                                             else "tail"))
        for statement in node.body + node.orelse:
            self.visit(statement)

    def visit_Dict(self, node: ast.Dict) -> None:
        for key, value in zip(node.keys, node.values):
            self.owner.append(str(ast.literal_eval(key)) if isinstance(key, ast.Constant) else "item")
            self.visit(value)
            self.owner.pop()

    def generic_visit(self, node: ast.AST) -> None:
        if _is_literal(node):
            return self._take(node, "value")
        super().generic_visit(node)

    def _visit_or_take(self, node: ast.AST, name: str) -> None:
        if _is_literal(node):
            self._take(node, name)
        else:
            self.visit(node)

    def _take(self, node: ast.AST, argument: str) -> None:
        name = "_".join([*self.owner, argument])
        unique, n = name, 2
        while unique in self.found:
            unique, n = f"{name}{n}", n + 1
        self.found[unique] = node
        self.argument[unique] = argument


def _literals(text: str, arguments) -> _Literals:
    visitor = _Literals(arguments)
    visitor.visit(ast.parse(text))
    return visitor


def _shape(tree: ast.AST) -> str:
    """The tree's dump with its literals blanked out and the literal keywords of jaxcnn's layers (which the
    handlers leave out at their defaults) dropped: equal for texts that differ only in those."""
    class Blank(ast.NodeTransformer):
        def visit_Call(self, node):
            defaults = _defaults(ast.unparse(node.func))
            node.keywords = [k for k in node.keywords if not (k.arg in defaults and _is_literal(k.value))]
            return self.generic_visit(node)

        def visit(self, node):
            return ast.Name("_literal_") if _is_literal(node) else super().visit(node)
    return ast.dump(Blank().visit(tree))


def _like(default, sample):
    """A layer's default in the form the other instances give the value: (1, 1) for 1 beside (2, 2)."""
    if isinstance(sample, tuple) and not isinstance(default, tuple):
        return (default,) * len(sample)
    return default


def _program(setup: list[str], body: list[str], signature: str) -> str:
    setup_lines = [f"    {line}" for text in setup for line in text.split("\n")] or ["    pass"]
    return "\n".join(["def setup(self):", *setup_lines, f"def __call__({signature}):", *[f"    {line}" for line in body]])


# -- grouping instances into classes ----------------------------------------------------------------------------
def _values(found: list[_Literals]) -> list[dict[str, object]]:
    """Per instance, its literal values by name; a keyword one instance leaves at its default gets the default."""
    values = [{name: ast.literal_eval(node) for name, node in f.found.items()} for f in found]
    values = [{k: tuple(v) if isinstance(v, list) else v for k, v in own.items()} for own in values]
    names = list(dict.fromkeys(n for own in values for n in own))
    for own, f in zip(values, found):
        for name in names:
            if name not in own:
                owner, _, keyword_ = _split(name, f)
                sample = next(o[name] for o in values if name in o)
                own[name] = _like(f.calls[owner][1][keyword_], sample)
    return values


def _split(name: str, found: _Literals) -> tuple[str, str, str]:
    """'conv2_stride' -> ('conv2', '_', 'stride'): the call it belongs to and the keyword."""
    for owner in sorted(found.calls, key=len, reverse=True):
        if name.startswith(f"{owner}_") and name[len(owner) + 1:] in found.calls[owner][1]:
            return owner, "_", name[len(owner) + 1:]
    raise KeyError(name)


def _fields(group: list[Instance], found: list[_Literals]) -> tuple[list[tuple[str, str]], dict, list]:
    """The fields of a class made of `group`: (name, annotation) each, {literal name: field}, and per instance
    its field values."""
    values = _values(found)
    names = list(values[0])
    vectors: dict[tuple, str] = {}
    columns = {}
    for name in names:
        column = tuple(repr(own[name]) for own in values)
        if len(set(column)) > 1:
            columns[name] = column
            vectors.setdefault(column, name)
    arguments = {**found[0].argument, **{k: v for f in found for k, v in f.argument.items()}}
    short = {v: arguments.get(v, v) for v in vectors.values()}
    taken, fields, field_of = set(), [], {}
    for column, name in vectors.items():
        sample = values[0][name]
        bare = short[name] if list(short.values()).count(short[name]) == 1 else name
        bare = _attribute_named(group, [own[name] for own in values]) or bare
        field_of[column] = identifier(bare if bare not in taken else name, taken)
        fields.append((field_of[column], type(sample).__name__))
    positions = {name: field_of[column] for name, column in columns.items()}
    by_instance = [{field_of[c]: own[vectors[c]] for c in vectors} for own in values]
    return _with_defaults(fields, by_instance), positions, by_instance


def _with_defaults(fields: list[tuple[str, str]], by_instance: list[dict]) -> list[tuple[str, str]]:
    """Each field's most common value, where most uses share it, as its default (written after the
    fields without one; a use gives only what differs from the defaults)."""
    plain, defaulted = [], []
    for name, annotation in fields:
        column = [repr(own[name]) for own in by_instance]
        common = max(set(column), key=lambda v: (column.count(v), -column.index(v)))
        if column.count(common) > max(1, len(column) // 2):
            defaulted.append((name, f"{annotation} = {common}"))
        else:
            plain.append((name, annotation))
    return plain + defaulted


def _attribute_named(group: list[Instance], values: list) -> str | None:
    """An attribute of the torch modules whose values across the group are `values` (torchvision's `stride`)."""
    first = vars(group[0].module)
    for name in sorted(first):
        if name.startswith("_") or not isinstance(first[name], (int, float, tuple)):
            continue
        if [getattr(i.module, name, None) for i in group] == values and type(first[name]) is type(values[0]):
            return name
    return None


def _substitute(text: str, found: _Literals, positions: dict[str, str]) -> str:
    """`text` with each literal of a field replaced by `self.<field>`, and each keyword it leaves at its default
    added as `keyword=self.<field>`."""
    lines = text.split("\n")
    edits = []
    added: dict[int, tuple[ast.Call, list[str]]] = {}  # per call, the keywords it is given
    for name, field in positions.items():
        node = found.found.get(name)
        if node is not None:
            edits.append((node.lineno, node.end_col_offset, node.col_offset, f"self.{field}"))
        else:
            owner, _, keyword_ = _split(name, found)
            call = found.calls[owner][0]
            added.setdefault(id(call), (call, []))[1].append(f"{keyword_}=self.{field}")
    for call, keywords in added.values():  # `Block()` gets `Block(c=self.c)`, `Block(a)` gets `Block(a, c=self.c)`
        separator = ", " if call.args or call.keywords else ""
        edits.append((call.end_lineno, call.end_col_offset - 1, call.end_col_offset - 1,
                      separator + ", ".join(keywords)))
    for line, end, start, new in sorted(edits, reverse=True):
        row = lines[line - 1]
        lines[line - 1] = row[:start] + new + row[end:]
    return "\n".join(lines)


def _parts(program: str) -> tuple[str, str, list[str]]:
    setup, call = program.split("\ndef __call__(", 1)
    signature, *body = call.split("\n")
    return setup, signature, body


def _tail(long: str, short: str) -> list[str] | None:
    """The lines that `long`'s body has before its return where `short` returns at once, when the two are
    the same code otherwise (literals apart)."""
    (setup_a, sig_a, body_a), (setup_b, sig_b, body_b) = _parts(long), _parts(short)
    n = len(body_b) - 1
    if len(body_a) <= len(body_b) or sig_a != sig_b or _shape(ast.parse(setup_a)) != _shape(ast.parse(setup_b)):
        return None
    prefix_a, prefix_b = ("\n".join(line[4:] for line in body[:n]) or "pass" for body in (body_a, body_b))
    try:
        same = prefix_a == prefix_b or _shape(ast.parse(prefix_a)) == _shape(ast.parse(prefix_b))
    except SyntaxError:  # the prefix ends inside a block (`if ...:` of a class merged before)
        return None
    return body_a[n:] if same else None


def _merge_tails(shapes: dict[str, list[int]], programs: list[str]) -> None:
    """Two classes of one torch class where one does more before returning (MobileNet's residual add) become
    one, with a bool field choosing (`if self.use_res_connect:`)."""
    keys = list(shapes)
    for long_key in keys:
        for short_key in keys:
            if long_key == short_key or long_key not in shapes or short_key not in shapes:
                continue
            tail = _tail(programs[shapes[long_key][0]], programs[shapes[short_key][0]])
            if tail is None:
                continue
            for k in shapes[long_key] + shapes[short_key]:  # each long one keeps its own tail (its literals)
                setup, signature, body = _parts(programs[k])
                long_one = k in shapes[long_key]
                keep = len(body) - len(tail) if long_one else len(body) - 1
                head, short_return = body[:keep], _parts(programs[shapes[short_key][0]])[2][-1]
                own_tail = body[keep:] if long_one else tail
                merged = head + [f"    if {long_one}:"] + [f"    {line}" for line in own_tail] + [short_return]
                programs[k] = "\n".join([setup, f"def __call__({signature}", *merged])
            shapes[long_key] += shapes.pop(short_key)


def _variant_name(base: str, first: Instance, other: Instance, used: set[str]) -> str:
    mine, theirs = set(other.ctx.submodules), set(first.ctx.submodules)
    camel = lambda names: "".join(n.title().replace("_", "") for n in sorted(names))  # noqa: E731
    name = f"{base}With{camel(mine - theirs)}" if mine > theirs else \
        f"{base}Without{camel(theirs - mine)}" if mine < theirs else base
    n, unique = 2, name
    while unique in used:
        unique, n = f"{name}{n}", n + 1
    return unique


def resolve(root: Instance, root_body_end: list[str]) -> list[FlaxClass]:
    """The generated classes, children before parents, the root's last. Sets each instance's `call`.
    root_body_end: the lines that end the root's __call__ (its outputs made channels-last, the return)."""
    GENERATED_DEFAULTS.clear()
    everything = instances(root)
    pending = {id(i): i for i in everything}
    classes: list[FlaxClass] = []
    used: set[str] = {"layers", "nn", "jax", "jnp", "ClassVar"}
    arguments: dict[str, list[str]] = {}
    while pending:
        ready = [i for i in pending.values() if all(id(c) not in pending for c in i.children.values())]
        torch_class = type(ready[0].module)
        group = [i for i in pending.values() if type(i.module) is torch_class]
        if any(any(id(c) in pending for c in i.children.values()) for i in group):
            group = [i for i in ready if type(i.module) is torch_class]
        programs = []
        for instance in group:
            setup, body = _text(instance, {t: c.call for t, c in instance.children.items()})
            if instance is root:
                body += root_body_end
            else:
                body.append(f"return {_structure(instance.output)}")
            signature = ", ".join(["self", *instance.inputs, "train: bool = False"])
            programs.append(_program(setup, body, signature))
        shapes: dict[str, list[int]] = {}
        for k, text in enumerate(programs):
            key = _shape(ast.parse(text)) + repr([(l.perm, l.flat_from) for l in group[k].layouts])
            shapes.setdefault(key, []).append(k)
        _merge_tails(shapes, programs)
        ordered = sorted(shapes.values(), key=lambda members: -len(members))  # the most used keeps the name
        first = group[ordered[0][0]]
        for members in ordered:
            base = class_name(torch_class.__name__)
            name = base if base not in used else _variant_name(base, first, group[members[0]], used)
            used.add(name)
            subset = [group[k] for k in members]
            found = [_literals(programs[k], arguments) for k in members]
            fields, positions, values = _fields(subset, found)
            arguments[name] = [f for f, _ in fields]
            text = _substitute(programs[members[0]], found[0], positions)
            classes.append(FlaxClass(name, torch_class, fields, text))
            for instance, own in zip(subset, values):
                defaults = {f: a.split(" = ", 1)[1] for f, a in fields if " = " in a}
                GENERATED_DEFAULTS[name] = {f: ast.literal_eval(v) for f, v in defaults.items()}
                given = [f"{k}={v!r}" for k, v in own.items() if defaults.get(k) != repr(v)]
                instance.call = f"{name}({', '.join(given)})"
                del pending[id(instance)]
    return classes


def _structure(output) -> str:
    if isinstance(output, (tuple, list)):
        names = ", ".join(v.var for v in output)
        return f"({names},)" if isinstance(output, tuple) and len(output) == 1 else \
            f"({names})" if isinstance(output, tuple) else f"[{names}]"
    return output.var
