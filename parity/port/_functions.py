"""Handlers of torch functions and Tensor methods: activations, element-wise arithmetic, reshapes, concatenation,
reductions, functional pools and dropout, and a module's own parameters and buffers (get_attr)."""

import operator

import torch
import torch.nn.functional as F

from parity.port._emit import Context, Unsupported, Value, Values, handles
from parity.port._layout import Layout


def _same(ctx: Context, value: Value) -> Value:
    return ctx.out(value.var, value.layout)


def _unary(ctx: Context, value: Value, template: str) -> Value:
    """An element-wise function: any layout goes through unchanged."""
    return ctx.out(template.format(value.var), value.layout)


@handles(torch.relu, torch.relu_, F.relu, F.relu_, methods=("relu", "relu_"))
def relu(ctx, input, inplace=False):
    return _unary(ctx, input, "jax.nn.relu({})")


@handles(F.relu6)
def relu6(ctx, input, inplace=False):
    return _unary(ctx, input, "jax.nn.relu6({})")


@handles(F.leaky_relu, F.leaky_relu_)
def leaky_relu(ctx, input, negative_slope=0.01, inplace=False):
    return _unary(ctx, input, f"jax.nn.leaky_relu({{}}, negative_slope={float(negative_slope)!r})")


@handles(F.elu, F.elu_)
def elu(ctx, input, alpha=1.0, inplace=False):
    return _unary(ctx, input, f"jax.nn.elu({{}}, alpha={float(alpha)!r})")


@handles(F.gelu, methods=("gelu",))
def gelu(ctx, input, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise Unsupported(f"approximate={approximate!r}")
    return _unary(ctx, input, f"jax.nn.gelu({{}}, approximate={approximate == 'tanh'})")  # torch's default: exact


@handles(F.silu)
def silu(ctx, input, inplace=False):
    return _unary(ctx, input, "jax.nn.silu({})")


@handles(F.hardswish)
def hardswish(ctx, input, inplace=False):
    return _unary(ctx, input, "jax.nn.hard_swish({})")


@handles(F.hardsigmoid)
def hardsigmoid(ctx, input, inplace=False):
    return _unary(ctx, input, "jax.nn.hard_sigmoid({})")


@handles(torch.sigmoid, F.sigmoid, methods=("sigmoid",))
def sigmoid(ctx, input):
    return _unary(ctx, input, "jax.nn.sigmoid({})")


@handles(torch.tanh, F.tanh, methods=("tanh",))
def tanh(ctx, input):
    return _unary(ctx, input, "jnp.tanh({})")


@handles(operator.neg, torch.neg, methods=("neg",))
def neg(ctx, input):
    return _unary(ctx, input, "-{}")


def _along_features(ctx: Context, value: Value, dim, function: str) -> Value:
    """`jax.nn.<function>(x, axis=...)` along torch's `dim`, for a function that commutes with permuting that axis
    (so a flattened channels-last tensor stays as it is when `dim` is its features)."""
    if dim is None:
        raise Unsupported(f"{function} needs dim= (torch's implicit dim is deprecated)")
    if value.layout.flat_from is not None and dim % 2 == 1:
        return ctx.out(f"jax.nn.{function}({value.var}, axis=1)", value.layout)  # all features: order does not matter
    if value.layout.flat_from is not None:
        value = Value(ctx.torch_order(value), Layout.same(value.rank), value.shape, value.dtype)
    return ctx.out(f"jax.nn.{function}({value.var}, axis={value.layout.axis(dim)})", value.layout)


@handles(torch.softmax, F.softmax, methods=("softmax",))
def softmax(ctx, input, dim=None, _stacklevel=3, dtype=None):
    return _along_features(ctx, input, dim, "softmax")


@handles(torch.log_softmax, F.log_softmax, methods=("log_softmax",))
def log_softmax(ctx, input, dim=None, _stacklevel=3, dtype=None):
    return _along_features(ctx, input, dim, "log_softmax")


@handles(methods=("contiguous",))
def contiguous(ctx, input, memory_format=None):
    return _same(ctx, input)


# -- element-wise arithmetic with broadcasting ------------------------------------------------------------------
def broadcast(ctx: Context, operands: list) -> tuple[list[str], Layout]:
    """The operands of an element-wise operation in one layout, torch's right-aligned broadcasting kept."""
    rank = len(ctx.result_shape())
    tensors = [o for o in operands if isinstance(o, Value)]
    layouts = {t.layout for t in tensors}
    if len(layouts) == 1 and all(t.rank == rank for t in tensors):
        target = layouts.pop()
    else:
        full = [t.layout for t in tensors if t.rank == rank]
        target = next((l for l in full if not l.is_torch and l.flat_from is None), Layout.same(rank))
    exprs = []
    for o in operands:
        if not isinstance(o, Value):
            exprs.append(repr(o))
        elif o.rank == rank:
            exprs.append(ctx.convert(o, target))
        elif o.rank == 0 or target.is_torch:
            exprs.append(ctx.torch_order(o))
        else:  # lower rank: aligned to torch's trailing axes, then permuted like the rest
            shape = (1,) * (rank - o.rank) + o.shape
            moved = [p for p in target.perm if shape[p] != 1]
            if moved == sorted(moved):  # only size-1 axes move (a (C, 1, 1) layer scale): a reshape says it all
                exprs.append(f"{ctx.torch_order(o)}.reshape({target.flax_shape(shape)})")
            else:
                exprs.append(f"jnp.transpose({ctx.torch_order(o)}.reshape({shape}), {target.perm})")
    return exprs, target


def _binary(symbol: str):
    def handler(ctx, input, other, alpha=1, rounding_mode=None):
        if alpha != 1:
            raise Unsupported(f"alpha={alpha}")
        if rounding_mode is not None and symbol != "/" or rounding_mode not in (None, "floor", "trunc"):
            raise Unsupported(f"rounding_mode={rounding_mode!r}")
        (a, b), layout = broadcast(ctx, [input, other])
        if rounding_mode == "trunc":
            return ctx.out(f"jnp.trunc({a} / {b})", layout)
        return ctx.out(f"{a} {'//' if rounding_mode == 'floor' else symbol} {b}", layout)
    return handler


handles(operator.add, torch.add, methods=("add", "add_"))(_binary("+"))
handles(operator.sub, torch.sub, methods=("sub", "sub_"))(_binary("-"))
handles(operator.mul, torch.mul, methods=("mul", "mul_"))(_binary("*"))
handles(operator.truediv, torch.div, methods=("div", "div_"))(_binary("/"))


@handles(methods=("expand_as",))
def expand_as(ctx, input, other):
    (a, b), layout = broadcast(ctx, [input, other])
    return ctx.out(f"jnp.broadcast_to({a}, {b}.shape)", layout)


@handles(torch.cat, torch.concat, torch.concatenate)
def cat(ctx, tensors, dim=0, axis=None):
    dim = dim if axis is None else axis
    first = tensors[0].layout
    target = first if first.flat_from is None else Layout.same(first.rank)
    if isinstance(tensors, Values) and all(t.layout == target for t in tensors):  # forward's list, of any length
        return ctx.out(f"jnp.concatenate({tensors.var}, axis={target.axis(dim)})", target)
    names = ", ".join(ctx.convert(t, target) for t in tensors)
    return ctx.out(f"jnp.concatenate([{names}], axis={target.axis(dim)})", target)


# -- reshapes ---------------------------------------------------------------------------------------------------
def reshape_to_result(ctx: Context, value: Value) -> Value:
    """A reshape to the node's (example) shape; the batch axis stays symbolic where the reshape keeps it.

    A channels-last tensor flattened to (N, F) stays as it is (its features in (*spatial, C) order, which the
    Linear it feeds absorbs); any other reshape works in torch's order."""
    shape = ctx.result_shape()
    if shape == value.shape:
        return _same(ctx, value)
    keeps_batch = bool(shape) and bool(value.shape) and shape[0] == value.shape[0]
    if value.rank >= 3 and value.layout == Layout.channels_last(value.rank) and len(shape) == 2 and keeps_batch:
        flax_shape = value.layout.flax_shape(value.shape)
        return ctx.out(f"{value.var}.reshape({value.var}.shape[0], {shape[1]})", Layout.flat(flax_shape[1:]))
    var = ctx.torch_order(value)
    dims = [f"{var}.shape[0]" if keeps_batch else "-1"] + [str(d) for d in shape[1:]]  # -1: the batch merged with other axes follows any batch size
    return ctx.out(f"{var}.reshape({', '.join(dims)}{',' if len(dims) == 1 else ''})", Layout.same(len(shape)))


# view / reshape / flatten themselves: parity.port._tensor_ops (which falls back on reshape_to_result)


# -- reductions -------------------------------------------------------------------------------------------------
def _reduce(function: str):
    def handler(ctx, input, dim=None, keepdim=False, dtype=None, axis=None):
        dim = dim if axis is None else axis
        if dim is None:
            return ctx.out(f"jnp.{function}({input.var})", Layout.same(0))
        dims = {d % input.rank for d in ((dim,) if isinstance(dim, int) else dim)}
        value = input
        if input.layout.flat_from is not None and not dims >= {1}:
            value = Value(ctx.torch_order(input), Layout.same(input.rank), input.shape, input.dtype)
        layout = value.layout if value.layout.flat_from is None else Layout.same(2)
        axes = tuple(sorted(layout.axis(d) for d in dims))
        out = layout if keepdim else layout.without(dims)
        return ctx.out(f"jnp.{function}({value.var}, axis={axes}{', keepdims=True' if keepdim else ''})", out)
    return handler


handles(torch.mean, methods=("mean",))(_reduce("mean"))
handles(torch.sum, methods=("sum",))(_reduce("sum"))


# -- functional pools and dropout -------------------------------------------------------------------------------
def _spatial_input(ctx: Context, value: Value, n: int, what: str) -> str:
    if value.rank != n + 2:
        raise Unsupported(f"{what} on a {value.rank}-D input: only batched (N, C, *{n} spatial) input is supported")
    return ctx.channels_last(value)


def _pool_call(function: str, x: str, kernel_size, **keywords) -> str:
    """`layers.<function>(x, kernel_size, ...)`, the keywords only where they differ from torch's defaults."""
    def norm(v):
        v = tuple(v) if isinstance(v, (list, tuple)) else v
        return v[0] if isinstance(v, tuple) and len(set(v)) == 1 else v

    kernel = norm(kernel_size)
    defaults = {"stride": kernel, "padding": 0, "dilation": 1, "ceil_mode": False, "count_include_pad": True,
                "divisor_override": None}
    shown = [f"{k}={norm(v)!r}" for k, v in keywords.items()
             if norm(v) != defaults[k] and not (k == "stride" and v in (None, [], ()))]
    return f"layers.{function}({', '.join([x, repr(kernel), *shown])})"


def max_pool(n: int):
    def handler(ctx, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
        if return_indices:
            raise Unsupported("return_indices=True")
        x = _spatial_input(ctx, input, n, f"max_pool{n}d")
        return ctx.out(_pool_call("max_pool", x, kernel_size, stride=stride, padding=padding, dilation=dilation,
                                  ceil_mode=ceil_mode), Layout.channels_last(input.rank))
    return handler


def avg_pool(n: int):
    def handler(ctx, input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                divisor_override=None):
        x = _spatial_input(ctx, input, n, f"avg_pool{n}d")
        return ctx.out(_pool_call("avg_pool", x, kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
                                  count_include_pad=count_include_pad, divisor_override=divisor_override),
                       Layout.channels_last(input.rank))
    return handler


def adaptive_pool(kind: str, n: int):
    def handler(ctx, input, output_size, return_indices=False):
        if return_indices:
            raise Unsupported("return_indices=True")
        x = _spatial_input(ctx, input, n, f"adaptive_{kind}_pool{n}d")
        sizes = (output_size,) * n if isinstance(output_size, int) else tuple(output_size)
        sizes = tuple(input.shape[2 + i] if s is None else int(s) for i, s in enumerate(sizes))
        return ctx.out(f"layers.adaptive_{kind}_pool({x}, {sizes})", Layout.channels_last(input.rank))
    return handler


for _n in (1, 2, 3):
    handles(getattr(F, f"max_pool{_n}d"), getattr(torch, f"max_pool{_n}d"))(max_pool(_n))
    handles(getattr(F, f"avg_pool{_n}d"))(avg_pool(_n))
    handles(getattr(F, f"adaptive_avg_pool{_n}d"))(adaptive_pool("avg", _n))
    handles(getattr(F, f"adaptive_max_pool{_n}d"))(adaptive_pool("max", _n))
handles(torch.avg_pool1d)(avg_pool(1))  # torch.* spellings that exist beside the F.* ones
handles(torch.adaptive_avg_pool1d)(adaptive_pool("avg", 1))


def dropout_call(ctx: Context, input: Value, rate: float, name: str, torch_path: str, mode: str,
                 shared: tuple[int, ...] = ()) -> Value:
    """A jaxcnn Dropout (its mask sown for replay), on when `mode` says: 'train' (the module's train flag),
    'always', 'never'; its mask shared along the torch axes `shared` (Dropout2d's spatial axes)."""
    if mode == "never" or rate == 0:
        return _same(ctx, input)
    held = tuple(sorted(input.layout.perm.index(a) for a in shared))
    broadcast = f", broadcast_dims={held}" if held else ""
    module = ctx.submodule(torch_path, f"layers.Dropout({float(rate)!r}{broadcast})", name)
    ctx.dropouts[ctx.node.name] = (module.removeprefix("self."), input.layout)
    return ctx.out(f"{module}({input.var}, {'train' if mode == 'train' else 'True'})", input.layout)


@handles(F.dropout)
def dropout(ctx, input, p=0.5, training=True, inplace=False):
    mode = ctx.traced.functional_dropout[ctx.node.name]
    return dropout_call(ctx, input, p, ctx.node.name, f"<F.dropout {ctx.node.name}>", mode)


@handles("get_attr")
def get_attr(ctx, target):
    tensor = ctx.traced.graph_module.get_parameter(target) if _is_parameter(ctx, target) else \
        ctx.traced.graph_module.get_buffer(target)
    shape = tuple(tensor.shape)
    is_parameter = isinstance(tensor, torch.nn.Parameter)
    dtype = "" if tensor.dtype.is_floating_point else \
        ", bool" if tensor.dtype == torch.bool else ", jnp.int32"  # an index table
    name = ctx.submodule(target, lambda n: f"self.param({n!r}, nn.initializers.zeros_init(), {shape})"
                         if is_parameter else f"self.variable('buffers', {n!r}, jnp.zeros, {shape}{dtype})")
    owner, _, leaf = target.rpartition(".")
    persistent = leaf not in ctx.traced.module.get_submodule(owner)._non_persistent_buffers_set
    # not in the state_dict: kept with the port; torch's int64 index tables are int32 in Flax and int64 again back
    kind = "constant" if not (is_parameter or persistent) else "index" if tensor.dtype == torch.int64 else "copy"
    ctx.add_weight(target, f"{'params' if is_parameter else 'buffers'}/{name.removeprefix('self.')}", kind, shape)
    var = name if is_parameter else f"{name}.value"
    return Value(var, Layout.same(len(shape)), shape, tensor.dtype)


def _is_parameter(ctx: Context, target: str) -> bool:
    return target in dict(ctx.traced.graph_module.named_parameters())
