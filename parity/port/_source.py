"""The generated model.py: a linen module named after the torch class, explicit submodules in `setup`, a
`__call__` in the order of the torch forward, and the tables parity.port reads (weights, dropouts)."""

import keyword
import linecache
import re
import types

from parity.port._emit import Context, Weight

HEADER = '''"""Flax port of torch `{cls}`{origin}, written by `python -m parity port` (parity.port).

Channels-last, as jaxcnn: input {input}, output {output}. Load the weights with
`parity.port.load(directory)`, or from a torch state_dict with `parity.port.load_state_dict({name}(), state)`.
"""

from typing import ClassVar

{imports}'''

CLASS = '''

class {name}(nn.Module):
    """`{cls}` on channels-last input: x {input} -> {output}.

    train: BatchNorm uses batch statistics (apply with mutable=['batch_stats']) and Dropout is on (rngs={{'dropout':
    key}}). TORCH_WEIGHTS (below): per torch state_dict key, the Flax variable, its layout change, its torch shape
    and, for a Linear after a flatten, the channels-last (*spatial, C) its features come from. TORCH_DROPOUTS: per
    dropout of the torch graph, the Flax Dropout and the layout of its input (to replay its masks in torch).
    """

    INPUT_SHAPE: ClassVar[tuple] = {input_shape!r}
{setup}
    def __call__(self, {arg}, train: bool = False):
{body}
        return {result}

    TORCH_WEIGHTS: ClassVar[tuple] = ({weights})
    TORCH_DROPOUTS: ClassVar[tuple] = ({dropouts})
'''


def class_name(torch_class: str) -> str:
    name = re.sub(r"\W", "_", torch_class)
    return name if name.isidentifier() and not keyword.iskeyword(name) else f"Ported{name}"


def _shape(shape: tuple[int, ...], batch: int) -> str:
    return "(" + ", ".join("N" if i == 0 and d == batch else str(d) for i, d in enumerate(shape)) + ")"


def _row(w: Weight) -> str:
    return f"\n        ({w.key!r}, {w.flax_path!r}, {w.kind!r}, {w.shape!r}, {w.flatten_from!r}),"


def write(ctx: Context, torch_class: str, origin: str, arg: str, input_shape: tuple[int, ...],
          outputs: list[tuple[str, tuple[int, ...]]], structure: str, weights: list[Weight]) -> str:
    """model.py's text. input_shape: channels-last example shape; outputs: (name, channels-last shape) each;
    structure: the return expression over those names."""
    batch = input_shape[0]
    shown_in = _shape(input_shape, batch)
    shown_out = ", ".join(_shape(s, batch) for _, s in outputs)
    dropouts = "".join(f"\n        ({node!r}, {module!r}, {layout.perm!r}, {layout.flat_from!r}),"
                       for node, (module, layout) in ctx.dropouts.items())
    setup = "\n    def setup(self):\n" + "".join(f"        {line}\n" for line in ctx.setup) if ctx.setup else ""
    weights = "".join(_row(w) for w in weights) + "\n    " if weights else ""
    dropouts = dropouts + "\n    " if dropouts else ""
    code = "\n".join(ctx.setup + ctx.body)
    imports = "".join(line for used, line in (("jax.", "import jax\n"), ("jnp.", "import jax.numpy as jnp\n"))
                      if used in code) + "from flax import linen as nn\n"
    imports += "\nfrom jaxcnn import layers\n" if "layers." in code else ""
    return HEADER.format(cls=torch_class, origin=f" ({origin})" if origin else "", input=shown_in,
                         output=shown_out, name=class_name(torch_class), imports=imports) + CLASS.format(
        name=class_name(torch_class), cls=torch_class, input=shown_in, output=shown_out, input_shape=input_shape,
        weights=weights, dropouts=dropouts, setup=setup, arg=arg,
        body="".join(f"        {line}\n" for line in ctx.body).rstrip("\n"), result=structure)


def instantiate(source: str, name: str, filename: str):
    """Executes model.py's text as a module of its own (its lines shown in tracebacks); returns its class `name`."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(filename)
    module.__file__ = filename
    exec(compile(source, filename, "exec"), module.__dict__)
    return getattr(module, name)
