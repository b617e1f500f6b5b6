"""port(): a torch nn.Module -> generated Flax source, the module built from it, and the converted weights."""

import copy
import dataclasses
import inspect
import itertools
import json
import os
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import linen as nn
from flax.traverse_util import flatten_dict

from parity.checks import io
from parity.port import _classes, _emit, _extra, _functions, _modules, _nest, _source  # noqa: F401  (handlers register)
from parity.port._layout import Layout
from parity.port._trace import PortError
from parity.port._weights import load_state_dict

_COUNTER = itertools.count()
TABLES = "torch_weights.json"


@dataclasses.dataclass(frozen=True)
class Ported:
    """The port of one torch module: model.py's `source`, the linen `module` built from it, its `variables`."""
    source: str
    module: nn.Module
    variables: dict
    input_shape_nchw: tuple[int, ...]


def _origin(module: torch.nn.Module) -> str:
    try:
        return os.path.basename(inspect.getsourcefile(type(module)) or "")
    except TypeError:
        return ""


def _ordered(weights: list[_emit.Weight], state: dict) -> list[_emit.Weight]:
    """The rows in the state_dict's order; a weight that forward never reads (an encoder's unused classifier) is a
    row of kind 'unused' that Flax keeps no copy of (see _weights.numpy_state_dict for the way back)."""
    by_key = {w.key: w for w in weights}
    unused = [k for k in state if k not in by_key]
    if unused:
        warnings.warn(f"the module holds weights that its forward never uses: {', '.join(unused)}; the port keeps no "
                      "copy of them (the way back to torch writes the originals where given, else zeros)",
                      stacklevel=3)
    return [by_key[k] if k in by_key else _emit.Weight(k, None, "unused", tuple(state[k].shape)) for k in state]


def build(module: torch.nn.Module, example_input: Any) -> Ported:
    """Traces `module` on `example_input` and builds its Flax port: one class per torch submodule class.

    Arguments:
        module: the torch module (not changed; its current weights are converted).
        example_input: an input in torch's layout, (N, C, H, W) (or (N, C, L), (N, C, D, H, W)); a tensor or
            array. It fixes the shapes the port is traced with; any batch size works afterwards.
    Returns:
        Ported: the source of model.py, the linen module built from it, its variables and the input shape.
    Raises:
        PortError: every operation the port does not support (each with its line of the user's source), a
            forward that branches on the mode or on tensor values, an input the module cannot take.
    """
    example = torch.as_tensor(np.asarray(example_input, np.float32))
    own = copy.deepcopy(module).cpu().float()
    root = _nest.port_instance(own, "", (example,), [Layout.channels_last(example.ndim)])
    if len(root.inputs) != 1:
        raise PortError(f"{type(module).__name__}.forward takes {len(root.inputs)} inputs; parity.port ports "
                        "networks of one input tensor")
    try:
        return _written(module, own, root, example)
    except PortError:
        raise
    except Exception as err:  # the port's own fault past tracing: never a bare traceback
        raise PortError(f"internal error of the port writing {type(module).__name__} ({type(err).__name__}: {err}); "
                        "please report it with your module") from err


def _written(module: torch.nn.Module, own: torch.nn.Module, root: _nest.Instance, example: torch.Tensor) -> Ported:
    """The source, class and variables of a traced tree (`build`'s second half)."""
    ctx = root.ctx
    ctx.node = None
    body_end, output = _returns(ctx, root.output)
    values = _emit.flat_outputs(output)
    train_values = _emit.flat_outputs(root.output.train) if isinstance(root.output, _emit.ModeOutputs) else None
    state = module.state_dict()
    rows = _nest.weights(root)
    weights = _ordered([w for w in rows if w.kind != "constant"], state)
    constants = {w.flax_path: (w.key, own.get_buffer(w.key).numpy()) for w in rows if w.kind == "constant"}
    classes = _classes.resolve(root, body_end)
    input_shape = Layout.channels_last(example.ndim).flax_shape(tuple(example.shape))
    shapes = lambda values: [Layout.channels_last(v.rank).flax_shape(v.shape) for v in values]  # noqa: E731
    source = _source.write(classes, _origin(module), input_shape, shapes(values),
                           train_values and shapes(train_values))
    name = f"parity_port_{classes[-1].name}_{next(_COUNTER)}"
    cls = _tabled(_source.instantiate(source, classes[-1].name, name), _table(weights),
                  tuple(_nest.dropouts(root)), constants,
                  any(i.traced.train is not None for i in _nest.instances(root)), getattr(state, "_metadata", None))
    flax_module = cls()
    variables = load_state_dict(flax_module, state)
    _check_variables(flax_module, variables, input_shape)
    return Ported(source, flax_module, variables, tuple(example.shape))


def _returns(ctx: _emit.Context, output: Any) -> tuple[list[str], Any]:
    """The lines that end the ported network's __call__: its outputs made channels-last and returned, where the
    outputs differ by mode (_emit.ModeOutputs) a return per mode; and the eval-mode outputs."""
    if not isinstance(output, _emit.ModeOutputs):
        return [f"return {_channels_last(ctx, output)}"], output
    ctx.body, ctx._converted = list(output.train_body), {}
    train_lines = [*ctx.body, f"return {_channels_last(ctx, output.train)}"]
    ctx.body, ctx._converted = list(output.eval_body), {}
    eval_return = f"return {_channels_last(ctx, output.eval)}"
    ctx.body = [*output.head, "if train:", *_emit.indent(train_lines), *ctx.body]
    return [eval_return], output.eval


def _channels_last(ctx: _emit.Context, output: Any) -> str:
    """The expression of `output` (a Value, or a tuple or list of them) made channels-last: lines in ctx.body."""
    return _classes.structure(output, [ctx.channels_last(v) for v in _emit.flat_outputs(output)])


def _table(weights: list[_emit.Weight]) -> tuple:
    return tuple((w.key, w.flax_path, w.kind, w.shape, w.flatten_from) for w in weights)


def _tabled(cls: type, weights: tuple, dropouts: tuple, constants: dict, train_branches: bool,
            metadata: dict | None = None) -> type:
    """The class with its tables: TORCH_WEIGHTS, per torch state_dict key (torch's order) the Flax variable, its
    layout change, its torch shape and, for a Linear after a flatten, the channels-last (*spatial, C) its
    features come from; TORCH_DROPOUTS, per dropout of torch's graph, the Flax module drawing its mask and the
    layout of its input (to replay the masks in torch); TORCH_CONSTANTS, per Flax variable of a buffer that is
    not in the state_dict (registered with persistent=False: BlurPool's filter), its torch name and value;
    TORCH_TRAIN_BRANCHES: some forward runs other operations in train mode (written `if train:`); TORCH_METADATA:
    the state_dict's `_metadata`, the version of each module's layout (that MNASNet's load_state_dict reads)."""
    cls.TORCH_WEIGHTS = tuple(tuple(tuple(v) if isinstance(v, list) else v for v in row) for row in weights)
    cls.TORCH_DROPOUTS = tuple((tuple(ref), flax, tuple(perm), flat and tuple(flat))
                               for ref, flax, perm, flat in dropouts)
    cls.TORCH_CONSTANTS = {path: (key, np.asarray(value)) for path, (key, value) in constants.items()}
    cls.TORCH_TRAIN_BRANCHES = bool(train_branches)
    cls.TORCH_METADATA = {prefix: dict(entry) for prefix, entry in (metadata or {}).items()}
    return cls


def _check_variables(model: nn.Module, variables: dict, input_shape: tuple[int, ...]) -> None:
    """The generated module's own variables (from init) are exactly the converted ones, shape for shape."""
    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    expected = {}
    for train in (False, True) if type(model).TORCH_TRAIN_BRANCHES else (False,):  # train-only layers: aux heads
        shapes = jax.eval_shape(lambda: model.init(rngs, jnp.zeros(input_shape, jnp.float32), train=train))
        expected |= {k: tuple(v.shape) for k, v in flatten_dict(dict(shapes)).items()}
    got = {k: tuple(v.shape) for k, v in flatten_dict(variables).items()}
    if expected != got:
        path = "/".join
        lines = [f"  only the module declares {path(k)} {v}" for k, v in expected.items() if k not in got] + \
            [f"  only the weights hold {path(k)} {v}" for k, v in got.items() if k not in expected] + \
            [f"  {path(k)}: the module declares {v}, the weights hold {got[k]}" for k, v in expected.items()
             if k in got and got[k] != v]
        raise PortError("internal error: the generated module's variables differ from the converted weights "
                        "(please report this with your module):\n" + "\n".join(lines[:20]) +
                        (f"\n  ... and {len(lines) - 20} more" if len(lines) > 20 else ""))


def port(module: torch.nn.Module, example_input: Any) -> tuple[nn.Module, dict]:
    """A torch nn.Module as a Flax linen module computing the same function on channels-last input.

    Arguments:
        module: the torch module (its current weights are converted; it is not changed).
        example_input: an input in torch's layout, (N, C, H, W) (or (N, C, L), (N, C, D, H, W)): it fixes the
            shapes the port is traced with (any batch size works afterwards).
    Returns:
        (flax_module, variables): flax_module.apply(variables, x_channels_last, train=False) equals
        module.eval()(x) with its channels moved last; variables = {'params': ..., 'batch_stats': ...}.
    Raises:
        PortError: operations the port does not support, all of them, each with its line of the source.
    """
    ported = build(module, example_input)
    return ported.module, ported.variables


def save(ported: Ported, directory: str | Path) -> None:
    """Writes model.py, torch_weights.json (the tables of `_tabled`) and variables.safetensors (Flax variables,
    '/'-joined keys) into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cls = type(ported.module)
    (directory / "model.py").write_text(ported.source)
    constants = {path: {"key": key, "dtype": str(value.dtype), "value": value.tolist()}
                 for path, (key, value) in cls.TORCH_CONSTANTS.items()}
    tables = {"class": cls.__name__, "weights": cls.TORCH_WEIGHTS, "dropouts": cls.TORCH_DROPOUTS,
              "constants": constants, "train_branches": cls.TORCH_TRAIN_BRANCHES,
              "metadata": cls.TORCH_METADATA}
    (directory / TABLES).write_text(json.dumps(tables, indent=1))
    io.save_flax(ported.variables, directory / "variables.safetensors")


def load(directory: str | Path) -> tuple[nn.Module, dict]:
    """(module, variables) from a directory written by `python -m parity port` or `save`.

    Its model.py is imported as a module of a name that stays the same for the same directory (so its classes
    pickle, and `inspect.getsource` and tracebacks show its lines).
    Raises:
        FileNotFoundError: the directory lacks model.py or torch_weights.json (written by an older port).
    """
    directory = Path(directory)
    path = directory / "model.py"
    for needed in (path, directory / TABLES):
        if not needed.is_file():
            raise FileNotFoundError(f"{directory} holds no {needed.name}: write it with `python -m parity port ... "
                                    f"--out {directory}`")
    tables = json.loads((directory / TABLES).read_text())
    cls = _source.instantiate(path.read_text(), tables["class"], _source.module_name(directory), path.resolve())
    constants = {path: (c["key"], np.asarray(c["value"], c["dtype"])) for path, c in tables.get("constants", {}).items()}
    cls = _tabled(cls, tables["weights"], tables["dropouts"], constants, tables.get("train_branches", False),
                  tables.get("metadata"))
    return cls(), io.load_flax(directory / "variables.safetensors")
