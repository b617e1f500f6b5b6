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
    n = len(m.kernel_size)
    if input.rank != n + 2:
        raise Unsupported(f"a {input.rank}-D input: only batched (N, C, *{n} spatial) input is supported")
    ones, zeros = (1,) * n, (0,) * n
    padding = m.padding if isinstance(m.padding, str) else tuple(m.padding)
    args = _arguments(m.in_channels, m.out_channels, kernel_size=(tuple(m.kernel_size), None),
                      stride=(tuple(m.stride), ones), padding=(padding, zeros), dilation=(tuple(m.dilation), ones),
                      groups=(m.groups, 1), bias=(m.bias is not None, True), padding_mode=(m.padding_mode, "zeros"))
    name = ctx.submodule(ctx.node.target, f"layers.Conv{n}d({args})")
    path = name.removeprefix("self.")
    ctx.add_weight(f"{ctx.node.target}.weight", f"params/{path}/kernel", "kernel", m.weight.shape)
    if m.bias is not None:
        ctx.add_weight(f"{ctx.node.target}.bias", f"params/{path}/bias", "copy", m.bias.shape)
    return ctx.out(f"{name}({ctx.channels_last(input)})", Layout.channels_last(input.rank))


@handles(nn.Linear)
def linear(ctx: Context, m, input: Value) -> Value:
    flatten_from = input.layout.flat_from
    decided = ctx.linear_inputs.setdefault(ctx.node.target, input.layout if flatten_from else None)
    if decided is not None and decided != input.layout:
        raise Unsupported("the same Linear is fed by flattens of differently shaped tensors")
    x = input.var if flatten_from else ctx.torch_order(input)
    name = ctx.submodule(ctx.node.target, f"layers.Linear({_arguments(m.in_features, m.out_features, bias=(m.bias is not None, True))})")
    path = name.removeprefix("self.")
    ctx.add_weight(f"{ctx.node.target}.weight", f"params/{path}/kernel", "kernel", m.weight.shape, flatten_from)
    if m.bias is not None:
        ctx.add_weight(f"{ctx.node.target}.bias", f"params/{path}/bias", "copy", m.bias.shape)
    return ctx.out(f"{name}({x})", Layout.same(input.rank))


@handles(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
def batch_norm(ctx: Context, m, input: Value) -> Value:
    if m.momentum is None:
        raise Unsupported("momentum=None (a cumulative moving average); jaxcnn's BatchNorm takes a momentum")
    if not m.affine or not m.track_running_stats:
        raise Unsupported("affine=False or track_running_stats=False; only the default BatchNorm is supported")
    x = ctx.torch_order(input) if input.rank == 2 else ctx.channels_last(input)
    name = ctx.submodule(ctx.node.target, f"layers.BatchNorm({_arguments(m.num_features, eps=(m.eps, 1e-5), momentum=(m.momentum, 0.1))})")
    path, key = name.removeprefix("self."), ctx.node.target
    for leaf, flax in (("weight", "params/{}/scale"), ("bias", "params/{}/bias"), ("running_mean", "batch_stats/{}/mean"),
                       ("running_var", "batch_stats/{}/var")):
        ctx.add_weight(f"{key}.{leaf}", flax.format(path), "copy", (m.num_features,))
    ctx.add_weight(f"{key}.num_batches_tracked", None, "dropped", ())
    layout = Layout.same(2) if input.rank == 2 else Layout.channels_last(input.rank)
    return ctx.out(f"{name}({x}, train)", layout)


@handles(nn.Dropout)
def dropout(ctx: Context, m, input: Value) -> Value:
    return fn.dropout_call(ctx, input, m.p, None, ctx.node.target, "train")


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
