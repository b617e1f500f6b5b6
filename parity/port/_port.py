"""port(): a torch nn.Module -> generated Flax source, the module built from it, and the converted weights."""

import copy
import dataclasses
import inspect
import itertools
import os
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import linen as nn, nnx
from flax.traverse_util import flatten_dict

from parity.port import _classes, _emit, _extra, _functions, _modules, _nest, _nnx, _source  # noqa: F401  (handlers register)
from parity.port._nnx_view import ShapesOnly, fill
from parity.port._layout import Layout
from parity.port._trace import PortError
from parity.port._weights import load_state_dict

_COUNTER = itertools.count()
APIS = ("nnx", "linen")


@dataclasses.dataclass(frozen=True)
class Ported:
    """The port of one torch module: model.py's `source` and the module built from it: an NNX network holding its
    weights (`variables` its nnx.state), or a linen `module` and its `variables`."""
    source: str
    module: nn.Module | nnx.Module
    variables: Any
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


def build(module: torch.nn.Module, example_input: Any, api: str = "nnx") -> Ported:
    """Traces `module` on `example_input` and builds its Flax port: one class per torch submodule class.

    Arguments:
        module: the torch module (not changed; its current weights are converted).
        example_input: an input in torch's layout, (N, C, H, W) (or (N, C, L), (N, C, D, H, W)); a tensor or
            array. It fixes the shapes the port is traced with; any batch size works afterwards.
        api: 'nnx' (Flax NNX, as Flax recommends for new code: attributes and state paths torch's) or 'linen'.
    Returns:
        Ported: the source of model.py, the module built from it (NNX: holding its weights, in eval mode;
        linen: with its variables) and the input shape.
    Raises:
        PortError: every operation the port does not support (each with its line of the user's source), a
            forward that branches on the mode or on tensor values, an input the module cannot take.
    """
    if api not in APIS:
        raise ValueError(f"api must be one of {APIS}, got {api!r}")
    example = torch.as_tensor(np.asarray(example_input, np.float32))
    own = copy.deepcopy(module).cpu().float()
    root = _nest.port_instance(own, "", (example,), [Layout.channels_last(example.ndim)])
    if len(root.inputs) != 1:
        raise PortError(f"{type(module).__name__}.forward takes {len(root.inputs)} inputs; parity.port ports "
                        "networks of one input tensor")
    try:
        return _written(module, own, root, example, api)
    except PortError:
        raise
    except Exception as err:  # the port's own fault past tracing: never a bare traceback
        raise PortError(f"internal error of the port writing {type(module).__name__} ({type(err).__name__}: {err}); "
                        "please report it with your module") from err


def _written(module: torch.nn.Module, own: torch.nn.Module, root: _nest.Instance, example: torch.Tensor,
             api: str) -> Ported:
    """The source, class and variables of a traced tree (`build`'s second half)."""
    ctx = root.ctx
    ctx.node = None
    body_end, output = _returns(ctx, root.output)
    values = _emit.flat_outputs(output)
    train_values = _emit.flat_outputs(root.output.train) if isinstance(root.output, _emit.ModeOutputs) else None
    state = module.state_dict()
    rows = _nest.weights(root, api)
    weights = _ordered([w for w in rows if w.kind != "constant"], state)
    constants = {w.flax_path: (w.key, own.get_buffer(w.key).numpy()) for w in rows if w.kind == "constant"}
    classes = _classes.resolve(root, body_end)
    if api == "nnx":
        generated = {c.name for c in classes}
        classes = [dataclasses.replace(c, methods=_nnx.methods(c, generated)) for c in classes]
    input_shape = Layout.channels_last(example.ndim).flax_shape(tuple(example.shape))
    shapes = lambda values: [Layout.channels_last(v.rank).flax_shape(v.shape) for v in values]  # noqa: E731
    source = _source.write(classes, _origin(module), input_shape, shapes(values),
                           train_values and shapes(train_values), api)
    name = f"parity_port_{classes[-1].name}_{next(_COUNTER)}"
    cls = _tabled(_source.instantiate(source, classes[-1].name, name), _table(weights),
                  tuple(_nest.dropouts(root, api)), constants,
                  any(i.traced.train is not None for i in _nest.instances(root)), getattr(state, "_metadata", None))
    if api == "nnx":
        net = network(cls, load_state_dict(cls, state))
        return Ported(source, net, nnx.state(net), tuple(example.shape))
    flax_module = cls()
    variables = load_state_dict(flax_module, state)
    _check_variables(flax_module, variables, input_shape)
    return Ported(source, flax_module, variables, tuple(example.shape))


def network(cls: type, variables: dict, seed: int = 0) -> nnx.Module:
    """The ported NNX network of class `cls` holding `variables` (its converted weights, nested by state path), in
    eval mode; built without drawing its weights (nnx.eval_shape), its dropout streams from `seed`.
    Raises PortError where the class's variables and the weights differ (the port's own fault)."""
    values = {"/".join(k): v for k, v in flatten_dict(variables).items()}
    net, problems = fill(nnx.eval_shape(lambda: cls(rngs=ShapesOnly())), values, seed)
    if problems:
        _variables_differ(problems)
    net.eval()
    return net


def _variables_differ(lines: list[str]) -> None:
    raise PortError("internal error: the generated module's variables differ from the converted weights "
                    "(please report this with your module):\n" + "\n".join(lines[:20]) +
                    (f"\n  ... and {len(lines) - 20} more" if len(lines) > 20 else ""))


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
        _variables_differ([f"  only the module declares {path(k)} {v}" for k, v in expected.items() if k not in got] +
                          [f"  only the weights hold {path(k)} {v}" for k, v in got.items() if k not in expected] +
                          [f"  {path(k)}: the module declares {v}, the weights hold {got[k]}"
                           for k, v in expected.items() if k in got and got[k] != v])


def port(module: torch.nn.Module, example_input: Any, api: str = "nnx") -> tuple[nn.Module | nnx.Module, Any]:
    """A torch nn.Module as a Flax module computing the same function on channels-last input.

    Arguments:
        module: the torch module (its current weights are converted; it is not changed).
        example_input: an input in torch's layout, (N, C, H, W) (or (N, C, L), (N, C, D, H, W)): it fixes the
            shapes the port is traced with (any batch size works afterwards).
        api: 'nnx' (default) or 'linen'.
    Returns:
        NNX: (net, nnx.state(net)): `net(x_channels_last)` equals module.eval()(x) with its channels moved last
        (net comes in eval mode; net.train() as torch's module.train()).
        linen: (flax_module, variables): flax_module.apply(variables, x_channels_last, train=False) equals it;
        variables = {'params': ..., 'batch_stats': ...}.
    Raises:
        PortError: operations the port does not support, all of them, each with its line of the source.
    """
    ported = build(module, example_input, api)
    return ported.module, ported.variables
