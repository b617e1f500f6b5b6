"""The generated model.py: one linen class per torch submodule class (parity.port._classes), the top class
last, named after the torch class; and how it is made a module of its own (importable, pickled, inspected)."""

import hashlib
import linecache
import re
import sys
import types
from pathlib import Path

from parity.port._classes import FlaxClass

HEADER = '''"""Flax {api}port of torch `{cls}`{origin}, written by `python -m parity port` (parity.port).

Channels-last: input {input}, output {output}. `parity.port.load(directory)` loads it with its weights
(torch_weights.json beside it maps each torch state_dict key to its Flax variable).
"""

{math}from typing import ClassVar

{imports}'''

TOP_DOC = {
    "linen": '''    """`{cls}` on channels-last input: x {input} -> {output}. train: batch statistics (apply with
    mutable=['batch_stats']) and dropout (rngs={{'dropout': key}}).{train}"""

    INPUT_SHAPE: ClassVar[tuple] = {input_shape!r}
''',
    "nnx": '''    """`{cls}` on channels-last input: x {input} -> {output}. As torch's, `net.train()` updates
    the BatchNorm statistics in place and turns dropout on (the 'dropout' stream of its rngs), `net.eval()`
    reads them; the port hands it over in eval mode.{train}"""

    INPUT_SHAPE: ClassVar[tuple] = {input_shape!r}
''',
}


def _shape(shape: tuple[int, ...], batch: int) -> str:
    return "(" + ", ".join("N" if i == 0 and d == batch else str(d) for i, d in enumerate(shape)) + ")"


WIDTH = 116


def wrap(line: str, depth_limit: int = 0) -> list[str]:
    """A line longer than WIDTH broken at the commas of its first call (and where that is not enough, at those of
    the lists in it), continued under its opening bracket."""
    if len(line) <= WIDTH or "(" not in line:
        return [line]
    start = line.index("(") + 1
    pieces, depth, last = [], 0, start
    for i, char in enumerate(line[start:], start):
        depth += char in "([{"
        depth -= char in ")]}"
        if char == "," and 0 <= depth <= depth_limit:
            pieces.append(line[last:i + 1].strip())
            last = i + 1
    pieces.append(line[last:].strip())
    lines, current = [], line[:start] + pieces[0]
    for piece in pieces[1:]:
        if len(current) + 1 + len(piece) > WIDTH:
            lines.append(current)
            current = " " * start + piece
        else:
            current += " " + piece
    lines.append(current)
    if depth_limit == 0 and any(len(l) > WIDTH for l in lines):
        return wrap(line, 1)
    return lines


def _methods(text: str) -> str:
    """The methods' text indented into a class, a blank line between them, an empty setup left out."""
    first, call = text.split("\ndef __call__(", 1)
    first = first.rstrip("\n")
    parts = [] if first.strip() == "def setup(self):\n    pass" else [first]
    parts.append("def __call__(" + call)
    return "\n\n".join("\n".join(wrapped for line in part.split("\n")
                                  for wrapped in (wrap(f"    {line}") if line else [""])) for part in parts)


def _class(flax_class: FlaxClass, doc: str, api: str) -> str:
    fields = "".join(f"    {name}: {annotation}\n" for name, annotation in flax_class.fields) if api == "linen" else ""
    base = "nn.Module" if api == "linen" else "layers.Sequential" if flax_class.sequence else "nnx.Module"
    return (f"\n\nclass {flax_class.name}({base}):\n{doc}" + (f"\n{fields}" if fields else "")
            + "\n" + _methods(flax_class.methods) + "\n")


def write(classes: list[FlaxClass], origin: str, input_shape: tuple[int, ...],
          output_shapes: list[tuple[int, ...]], train_output_shapes: list[tuple[int, ...]] | None = None,
          api: str = "linen") -> str:
    """model.py's text. input_shape: the channels-last example shape; output_shapes: channels-last too;
    train_output_shapes: those of train mode, where forward returns other outputs there; api: 'linen' or 'nnx'
    (the classes' methods already NNX's, parity.port._nnx)."""
    batch = input_shape[0]
    shown_in = _shape(input_shape, batch)
    shown_out = ", ".join(_shape(s, batch) for s in output_shapes)
    top = classes[-1]
    code = "\n".join(c.methods for c in classes)
    imports = "".join(line for used, line in (("jax.", "import jax\n"), ("jnp.", "import jax.numpy as jnp\n"))
                      if re.search(rf"\b{re.escape(used)}", code))
    imports += "from flax import linen as nn\n" if api == "linen" else "from flax import nnx\n"
    imports += f"\nfrom {'jaxcnn' if api == 'linen' else 'jaxcnn.nnx'} import layers\n" if "layers." in code else ""
    constants = [name for name in ("inf", "nan") if re.search(rf"(?<![\w.'\"]){name}\b", code)]  # repr(float)
    math = f"from math import {', '.join(constants)}\n" if constants else ""
    text = HEADER.format(cls=top.torch_class.__name__, origin=f" ({origin})" if origin else "", input=shown_in,
                         output=shown_out, imports=imports, math=math, api="" if api == "linen" else "NNX ")
    for flax_class in classes[:-1]:
        text += _class(flax_class, f'    """torch `{flax_class.torch_class.__name__}`."""\n', api)
    train = "" if train_output_shapes is None else (
        "\n    In train mode it returns " + ", ".join(_shape(s, batch) for s in train_output_shapes) + " (as torch's "
        "forward does)" + ("; init with\n    train=True to create the layers that only train mode runs."
                           if api == "linen" else "."))
    doc = TOP_DOC[api].format(cls=top.torch_class.__name__, input=shown_in, output=shown_out,
                              input_shape=input_shape, train=train)
    return text + _class(top, doc, api)


def instantiate(source: str, class_name: str, module_name: str, path: str | Path | None = None) -> type:
    """Executes model.py's text as the module `module_name` (in sys.modules, so that its classes pickle and
    `inspect.getsource` finds them; its lines shown in tracebacks); returns its class `class_name`.
    path: the file it was read from (else the source is kept in linecache under a name of its own)."""
    filename = str(path) if path is not None else f"<{module_name}>"
    if path is None:
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(module_name)
    module.__file__ = filename
    sys.modules[module_name] = module
    exec(compile(source, filename, "exec"), module.__dict__)
    return getattr(module, class_name)


def module_name(directory: str | Path) -> str:
    """The stable name a written port is imported under: the same directory, the same name."""
    directory = Path(directory).resolve()
    slug = re.sub(r"\W", "_", directory.name)
    return f"parity_port_{slug}_{hashlib.sha1(str(directory).encode()).hexdigest()[:8]}"
