"""Handlers of torch.nn leaf modules: each becomes a jaxcnn layer in `setup` (those with weights, and Dropout)
or a function call in `__call__` (activations, pools, Flatten)."""

from torch import nn

from parity.port import _functions as fn, _tensor_ops
from parity.port._emit import Context, Unsupported, Value, handles
from parity.port._layout import Layout


def _arguments(*positional, **keywords) -> str:
    """Constructor arguments, keywords only where they differ from the default given with them."""
    parts = [repr(p) for p in positional]
    for key, (value, default) in keywords.items():
        value = tuple(value) if isinstance(value, list) else value
        if value != default:
            parts.append(f"{key}={value!r}")
    return ", ".join(parts)


@handles(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def conv(ctx: Context, m, input: Value) -> Value:
    padding = m.padding if isinstance(m.padding, str) else tuple(m.padding)
    key = ctx.node.target
    return conv_layer(ctx, key, None, f"{key}.weight", m.bias is not None and f"{key}.bias", tuple(m.weight.shape),
                      input, tuple(m.stride), padding, tuple(m.dilation), m.groups, m.padding_mode)


def conv_layer(ctx: Context, torch_path: str, name: str | None, weight_key: str, bias_key: str | bool,
               weight_shape: tuple, input: Value, stride, padding, dilation, groups: int,
               padding_mode: str = "zeros") -> Value:
    """A jaxcnn Conv{n}d holding the torch weights `weight_key` (O, I / groups, *kernel) and `bias_key` (or none)."""
    n = len(weight_shape) - 2
    if input.rank != n + 2:
        raise Unsupported(f"a {input.rank}-D input: only batched (N, C, *{n} spatial) input is supported")
    ones, zeros = (1,) * n, (0,) * n
    out_channels, per_group, *kernel = weight_shape
    args = _arguments(per_group * groups, out_channels, kernel_size=(tuple(kernel), None), stride=(stride, ones),
                      padding=(padding, zeros), dilation=(dilation, ones), groups=(groups, 1),
                      bias=(bool(bias_key), True), padding_mode=(padding_mode, "zeros"))
    layer = ctx.submodule(torch_path, f"layers.Conv{n}d({args})", name)
    path = layer.removeprefix("self.")
    ctx.add_weight(weight_key, f"params/{path}/kernel", "kernel", weight_shape)
    if bias_key:
        ctx.add_weight(bias_key, f"params/{path}/bias", "copy", (out_channels,))
    return ctx.out(f"{layer}({ctx.channels_last(input)})", Layout.channels_last(input.rank))


@handles(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def conv_transpose(ctx: Context, m, input: Value, output_size=None) -> Value:
    if output_size is not None:
        raise Unsupported("output_size (give output_padding in the constructor instead)")
    if m.padding_mode != "zeros":
        raise Unsupported(f"padding_mode={m.padding_mode!r}")
    n, key = m.weight.ndim - 2, ctx.node.target
    if input.rank != n + 2:
        raise Unsupported(f"a {input.rank}-D input: only batched (N, C, *{n} spatial) input is supported")
    ones, zeros = (1,) * n, (0,) * n
    in_channels, per_group, *kernel = m.weight.shape
    args = _arguments(in_channels, per_group * m.groups, kernel_size=(tuple(kernel), None),
                      stride=(m.stride, ones), padding=(m.padding, zeros), output_padding=(m.output_padding, zeros),
                      groups=(m.groups, 1), bias=(m.bias is not None, True), dilation=(m.dilation, ones))
    layer = ctx.submodule(key, f"layers.ConvTranspose{n}d({args})")
    path = layer.removeprefix("self.")
    ctx.add_weight(f"{key}.weight", f"params/{path}/kernel", "kernel", tuple(m.weight.shape))
    if m.bias is not None:
        ctx.add_weight(f"{key}.bias", f"params/{path}/bias", "copy", (per_group * m.groups,))
    return ctx.out(f"{layer}({ctx.channels_last(input)})", Layout.channels_last(input.rank))


@handles(nn.Linear)
def linear(ctx: Context, m, input: Value) -> Value:
    key = ctx.node.target
    return linear_layer(ctx, key, None, f"{key}.weight", m.bias is not None and f"{key}.bias", tuple(m.weight.shape),
                        input)


def linear_layer(ctx: Context, torch_path: str, name: str | None, weight_key: str, bias_key: str | bool,
                 weight_shape: tuple, input: Value) -> Value:
    """A jaxcnn Linear holding the torch weights `weight_key` (out, in) and `bias_key`; fed by a channels-last
    flatten, its kernel takes the flatten's feature order (the same weights always fed alike)."""
    out_features, in_features = weight_shape
    flatten_from = input.layout.flat_from
    decided = ctx.linear_inputs.setdefault(weight_key, input.layout if flatten_from else None)
    if decided is not None and decided != input.layout:
        raise Unsupported("the same Linear is fed by flattens of differently shaped tensors")
    x = input.var if flatten_from else ctx.torch_order(input)
    layer = ctx.submodule(torch_path, f"layers.Linear({_arguments(in_features, out_features, bias=(bool(bias_key), True))})",
                          name)
    path = layer.removeprefix("self.")
    ctx.add_weight(weight_key, f"params/{path}/kernel", "kernel", weight_shape, flatten_from)
    if bias_key:
        ctx.add_weight(bias_key, f"params/{path}/bias", "copy", (out_features,))
    return ctx.out(f"{layer}({x})", Layout.same(input.rank))


@handles(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
def batch_norm(ctx: Context, m, input: Value) -> Value:
    if m.momentum is None:
        raise Unsupported("momentum=None (a cumulative moving average); jaxcnn's BatchNorm takes a momentum")
    if not m.affine or not m.track_running_stats:
        raise Unsupported("affine=False or track_running_stats=False; only the default BatchNorm is supported")
    key = ctx.node.target
    keys = {leaf: f"{key}.{leaf}" for leaf in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    return batch_norm_layer(ctx, key, None, keys, m.num_features, m.eps, m.momentum, input)


def batch_norm_layer(ctx: Context, torch_path: str, name: str | None, keys: dict[str, str], num_features: int,
                     eps: float, momentum: float, input: Value) -> Value:
    """A jaxcnn BatchNorm holding the torch weights `keys` (weight, bias, running_mean, running_var and, where the
    module has one, num_batches_tracked, which Flax keeps no copy of)."""
    args = _arguments(num_features, eps=(float(eps), 1e-5), momentum=(float(momentum), 0.1))
    layer = ctx.submodule(torch_path, f"layers.BatchNorm({args})", name)
    path = layer.removeprefix("self.")
    for leaf, flax in (("weight", "params/{}/scale"), ("bias", "params/{}/bias"), ("running_mean", "batch_stats/{}/mean"),
                       ("running_var", "batch_stats/{}/var")):
        ctx.add_weight(keys[leaf], flax.format(path), "copy", (num_features,))
    if "num_batches_tracked" in keys:
        ctx.add_weight(keys["num_batches_tracked"], None, "dropped", ())
    x = ctx.torch_order(input) if input.rank == 2 else ctx.channels_last(input)
    layout = Layout.same(2) if input.rank == 2 else Layout.channels_last(input.rank)
    return ctx.out(f"{layer}({x}, train)", layout)


@handles(nn.Dropout)
def dropout(ctx: Context, m, input: Value) -> Value:
    return fn.dropout_call(ctx, input, m.p, None, ctx.node.target, "train")


def _channel_dropout(rank: int):
    """Dropout1d / 2d / 3d: whole channels of an (N, C, *spatial) input (rank `rank`), the mask shared along
    the spatial axes."""
    def handler(ctx: Context, m, input: Value) -> Value:
        if input.rank != rank:
            raise Unsupported(f"{type(m).__name__} of a {input.rank}-d input (the port takes (N, C, *spatial))")
        return fn.dropout_call(ctx, input, m.p, None, ctx.node.target, "train", tuple(range(2, rank)))
    return handler


for _rank, _module in ((3, nn.Dropout1d), (4, nn.Dropout2d), (5, nn.Dropout3d)):
    handles(_module)(_channel_dropout(_rank))


def _activation(function, **attributes):
    """A module that is `function` with some of its attributes as arguments."""
    def handler(ctx: Context, m, input: Value) -> Value:
        return function(ctx, input, **{arg: getattr(m, attr) for arg, attr in attributes.items()})
    return handler


for _module, _handler in {
    nn.ReLU: _activation(fn.relu), nn.ReLU6: _activation(fn.relu6), nn.SiLU: _activation(fn.silu),
    nn.LeakyReLU: _activation(fn.leaky_relu, negative_slope="negative_slope"),
    nn.ELU: _activation(fn.elu, alpha="alpha"), nn.GELU: _activation(fn.gelu, approximate="approximate"),
    nn.Hardswish: _activation(fn.hardswish), nn.Hardsigmoid: _activation(fn.hardsigmoid),
    nn.Sigmoid: _activation(fn.sigmoid), nn.Tanh: _activation(fn.tanh),
    nn.Softmax: _activation(fn.softmax, dim="dim"), nn.LogSoftmax: _activation(fn.log_softmax, dim="dim"),
    nn.Identity: lambda ctx, m, input: ctx.out(input.var, input.layout),
    nn.Flatten: _activation(_tensor_ops.flatten, start_dim="start_dim", end_dim="end_dim"),
}.items():
    handles(_module)(_handler)


def _pool(handler, *attributes):
    def module_handler(ctx: Context, m, input: Value) -> Value:
        return handler(ctx, input, *(getattr(m, a, None) for a in attributes))
    return module_handler


for _n in (1, 2, 3):
    handles(getattr(nn, f"MaxPool{_n}d"))(_pool(fn.max_pool(_n), "kernel_size", "stride", "padding", "dilation",
                                                "ceil_mode", "return_indices"))
    handles(getattr(nn, f"AvgPool{_n}d"))(_pool(fn.avg_pool(_n), "kernel_size", "stride", "padding", "ceil_mode",
                                                "count_include_pad", "divisor_override"))
    handles(getattr(nn, f"AdaptiveAvgPool{_n}d"))(_pool(fn.adaptive_pool("avg", _n), "output_size"))
    handles(getattr(nn, f"AdaptiveMaxPool{_n}d"))(_pool(fn.adaptive_pool("max", _n), "output_size", "return_indices"))
