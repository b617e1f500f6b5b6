"""port(): a torch nn.Module -> generated Flax source, the module built from it, and the converted weights."""

import dataclasses
import importlib.util
import inspect
import itertools
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import linen as nn
from flax.traverse_util import flatten_dict

from parity import io
from parity.port import _emit, _functions, _modules, _source  # noqa: F401  (the handlers register themselves)
from parity.port._layout import Layout
from parity.port._trace import PortError, trace
from parity.port._weights import load_state_dict

_COUNTER = itertools.count()


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
    by_key = {w.key: w for w in weights}
    unused = [k for k in state if k not in by_key]
    if unused:
        raise PortError("the module holds weights that its forward never uses (torch.fx traced no call to them): "
                        f"{', '.join(unused)}; remove them from the module or load the state_dict without them")
    return [by_key[k] for k in state]


def build(module: torch.nn.Module, example_input: Any) -> Ported:
    """Traces `module` on `example_input` (NCHW, or (N, C, L) / (N, C, D, H, W); a tensor or array) and builds
    its Flax port. Raises PortError (every unsupported operation, each with its line of the user's source)."""
    example = torch.as_tensor(np.asarray(example_input, np.float32))
    traced = trace(module, example)
    ctx, inputs, output = _emit.run(traced, Layout.channels_last)
    if len(inputs) != 1:
        raise PortError(f"{type(module).__name__}.forward takes {len(inputs)} inputs; parity.port ports networks "
                        "of one input tensor")
    values = list(output) if isinstance(output, (tuple, list)) else [output]
    if not all(isinstance(v, _emit.Value) for v in values):
        raise PortError("forward must return a tensor or a tuple/list of tensors")
    ctx.node = None
    names = [ctx.channels_last(v) for v in values]
    structure = names[0] if not isinstance(output, (tuple, list)) else \
        ("(" + ", ".join(names) + ("," if len(names) == 1 else "") + ")" if isinstance(output, tuple)
         else "[" + ", ".join(names) + "]")
    state = module.state_dict()
    weights = _ordered(ctx.weights, state)
    input_shape = Layout.channels_last(example.ndim).flax_shape(tuple(example.shape))
    outputs = [(n, Layout.channels_last(v.rank).flax_shape(v.shape)) for n, v in zip(names, values)]
    source = _source.write(ctx, type(module).__name__, _origin(module), inputs[0], input_shape, outputs, structure,
                           weights)
    cls = _source.instantiate(source, _source.class_name(type(module).__name__),
                              f"<parity.port {type(module).__name__} {next(_COUNTER)}>")
    flax_module = cls()
    variables = load_state_dict(flax_module, state)
    _check_variables(flax_module, variables, input_shape)
    return Ported(source, flax_module, variables, tuple(example.shape))


def _check_variables(model: nn.Module, variables: dict, input_shape: tuple[int, ...]) -> None:
    """The generated module's own variables (from init) are exactly the converted ones, shape for shape."""
    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    shapes = jax.eval_shape(lambda: model.init(rngs, jnp.zeros(input_shape, jnp.float32)))
    expected = {k: tuple(v.shape) for k, v in flatten_dict(dict(shapes)).items()}
    got = {k: tuple(v.shape) for k, v in flatten_dict(variables).items()}
    if expected != got:
        raise PortError(f"internal error: the generated module's variables {expected} differ from the converted "
                        f"weights {got}; please report this with your module")


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
    """Writes model.py and variables.safetensors (Flax variables, '/'-joined keys) into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.py").write_text(ported.source)
    io.save_flax(ported.variables, directory / "variables.safetensors")


def load(directory: str | Path) -> tuple[nn.Module, dict]:
    """(module, variables) from a directory written by `python -m parity port`: imports its model.py."""
    directory = Path(directory)
    path = directory / "model.py"
    if not path.is_file():
        raise FileNotFoundError(f"{directory} holds no model.py: write one with `python -m parity port ... --out "
                                f"{directory}`")
    spec = importlib.util.spec_from_file_location(f"parity_port_{next(_COUNTER)}", path)
    generated = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generated)
    classes = [c for c in vars(generated).values()
               if isinstance(c, type) and issubclass(c, nn.Module) and hasattr(c, "TORCH_WEIGHTS")]
    if len(classes) != 1:
        raise PortError(f"{path} defines {len(classes)} ported modules; expected exactly one")
    return classes[0](), io.load_flax(directory / "variables.safetensors")
