"""One Flax class per torch submodule class: the instances of a class whose code differs only in literals
(channels, strides) share a class whose fields are those literals; instances that trace to other code get a
class of their own, named after what they have more (`BottleneckWithDownsample`) or numbered."""

import ast
import dataclasses
import keyword
import re

import torch

from parity.port import _literals as lit
from parity.port._context import CONTAINER, Context
from parity.port._nest import Instance, instances

_CHAIN = re.compile(r"^(\w+) = self\.(\w+)\[(\d+)\]\((\w+)(, train)?\)$")


@dataclasses.dataclass
class FlaxClass:
    """A generated class: its name, the torch class it ports, its fields ((name, annotation) each), its
    methods' text (`def setup(self): ...` and `def __call__(...): ...`, unindented) and whether it is a sequence."""
    name: str
    torch_class: type
    fields: list[tuple[str, str]]
    methods: str
    sequence: bool = False  # its submodules are torch's entries '0', '1', ... (Context.sequence_like)


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


def _text(instance: Instance, calls: dict[str, str], end: list[str]) -> tuple[list[str], list[str]]:
    """(setup lines, body lines ending with `end`, its return) of an instance, its children written as their
    constructors."""
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
    return setup, _collapse_chains(instance, list(ctx.body) + end)


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


def _program(setup: list[str], body: list[str], signature: str) -> str:
    setup_lines = [f"    {line}" for text in setup for line in text.split("\n")] or ["    pass"]
    return "\n".join(["def setup(self):", *setup_lines, f"def __call__({signature}):", *[f"    {line}" for line in body]])


# -- grouping instances into classes ----------------------------------------------------------------------------
def _parts(program: str) -> tuple[str, str, list[str]]:
    setup, call = program.split("\ndef __call__(", 1)
    signature, *body = call.split("\n")
    return setup, signature, body


def _tail(long: str, short: str) -> list[str] | None:
    """The lines that `long`'s body has before its return where `short` returns at once, when the two are
    the same code otherwise (literals apart)."""
    (setup_a, sig_a, body_a), (setup_b, sig_b, body_b) = _parts(long), _parts(short)
    n = len(body_b) - 1
    if len(body_a) <= len(body_b) or sig_a != sig_b or lit.code_shape(ast.parse(setup_a)) != lit.code_shape(ast.parse(setup_b)):
        return None
    prefix_a, prefix_b = ("\n".join(line[4:] for line in body[:n]) or "pass" for body in (body_a, body_b))
    try:
        same = prefix_a == prefix_b or lit.code_shape(ast.parse(prefix_a)) == lit.code_shape(ast.parse(prefix_b))
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
    if len(mine ^ theirs) > 2:  # (a DenseBlock of 24 layers rather than one of 6) by its number of submodules
        name = f"{base}Of{len(mine)}"
    n, unique = 2, name
    while unique in used:
        unique, n = f"{name}{n}", n + 1
    return unique


def resolve(root: Instance, root_body_end: list[str]) -> list[FlaxClass]:
    """The generated classes, children before parents, the root's last. Sets each instance's `call`.
    root_body_end: the lines that end the root's __call__ (its outputs made channels-last, the return)."""
    lit.GENERATED_DEFAULTS.clear()
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
            end = root_body_end if instance is root else [f"return {structure(instance.output)}"]
            setup, body = _text(instance, {t: c.call for t, c in instance.children.items()}, end)
            signature = ", ".join(["self", *instance.inputs, "train: bool = False"])
            programs.append(_program(setup, body, signature))
        shapes: dict[str, list[int]] = {}
        for k, text in enumerate(programs):
            key = lit.code_shape(ast.parse(text)) + repr([_layout_key(l) for l in group[k].layouts])
            shapes.setdefault(key, []).append(k)
        _merge_tails(shapes, programs)
        ordered = sorted(shapes.values(), key=lambda members: -len(members))  # the most used keeps the name
        first = group[ordered[0][0]]
        while ordered:
            members = ordered.pop(0)
            found = [lit.literals(programs[k], arguments) for k in members]
            try:
                fields, positions, values = lit.fields([group[k] for k in members], found)
            except KeyError:  # literals that one instance has and another lacks, not at a default: apart
                by_names: dict[frozenset, list[int]] = {}
                for k, f in zip(members, found):
                    by_names.setdefault(frozenset(f.found), []).append(k)
                if len(by_names) == 1:
                    raise
                ordered[:0] = list(by_names.values())
                continue
            base = class_name(torch_class.__name__)
            name = base if base not in used else _variant_name(base, first, group[members[0]], used)
            used.add(name)
            subset = [group[k] for k in members]
            arguments[name] = [f for f, _ in fields]
            text = lit.substitute(programs[members[0]], found[0], positions)
            classes.append(FlaxClass(name, torch_class, fields, text, group[members[0]].ctx.sequence_like()))
            for instance, own in zip(subset, values):
                defaults = {f: a.split(" = ", 1)[1] for f, a in fields if " = " in a}
                lit.GENERATED_DEFAULTS[name] = {f: ast.literal_eval(v) for f, v in defaults.items()}
                given = [f"{k}={v!r}" for k, v in own.items() if defaults.get(k) != repr(v)]
                instance.call = f"{name}({', '.join(given)})"
                del pending[id(instance)]
    return classes


def _layout_key(layout) -> tuple:
    """An input's layout as the classes compare it; a list input by the layouts its tensors have, whatever its
    length (a DenseLayer's list of features grows from one layer to the next; its code is the same)."""
    if isinstance(layout, (list, tuple)):
        return ("list", tuple(sorted({_layout_key(l) for l in layout})))
    return layout.perm, layout.flat_from


def structure(output, names: list[str] | None = None) -> str:
    """The expression of an output (a Value, or a tuple or list of them): its names, or `names` in its place."""
    names = names or [v.var for v in (output if isinstance(output, (tuple, list)) else [output])]
    if isinstance(output, (tuple, list)):
        joined = ", ".join(names)
        return f"({joined},)" if isinstance(output, tuple) and len(output) == 1 else \
            f"({joined})" if isinstance(output, tuple) else f"[{joined}]"
    return names[0]
