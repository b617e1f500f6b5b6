"""The literals of generated code (channels, strides, slice bounds) that differ between the instances of one torch
class: found and named where they stand (`conv1_stride`), compared, and made the fields of the shared Flax class."""

import ast
import dataclasses
import inspect

from jaxcnn import layers
from parity.port._context import identifier
from parity.port._nest import Instance


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


def literals(text: str, arguments) -> _Literals:
    visitor = _Literals(arguments)
    visitor.visit(ast.parse(text))
    return visitor


def code_shape(tree: ast.AST) -> str:
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


def fields(group: list[Instance], found: list[_Literals]) -> tuple[list[tuple[str, str]], dict, list]:
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


def substitute(text: str, found: _Literals, positions: dict[str, str]) -> str:
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
