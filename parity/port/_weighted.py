"""Handlers of the functional forms of layers with weights: F.batch_norm, F.conv1d/2d/3d, F.linear.

Where the weights are the module's own parameters and buffers (timm's BatchNormAct2d, a Conv2d subclass that
pads first), the port declares the jaxcnn layer holding them, its weights mapped from the module's keys. Where
they are computed in forward (weight standardisation), the layer is written as a jaxcnn function of the arrays."""

import torch
import torch.nn.functional as F

from parity.port._emit import FUNCTIONS, Attribute, Context, Unsupported, Value, handles
from parity.port._layout import Layout
from parity.port._modules import _arguments


def _value(ctx: Context, weight) -> Value | None:
    """A weight as a Value: an Attribute declared as the plain parameter or buffer it is (parity.port get_attr)."""
    return FUNCTIONS["get_attr"](ctx, weight.target) if isinstance(weight, Attribute) else weight


def _owned(*weights) -> bool:
    """Every weight given is a parameter or buffer of the module itself (None: not given)."""
    return all(w is None or isinstance(w, Attribute) for w in weights)


def _layer(ctx: Context, key: Attribute, function: str, constructor: str) -> str:
    """The layer holding `key`'s weights, declared once; named after the module holding them, else `function`."""
    name = key.owner.rpartition(".")[2] or function
    return ctx.submodule(f"<F.{function} {key.target}>", constructor, name)


def _drop_counter(ctx: Context, owner: str) -> None:
    """BatchNorm's num_batches_tracked, which the Flax layer keeps no copy of."""
    module = ctx.traced.module.get_submodule(owner)
    if isinstance(getattr(module, "num_batches_tracked", None), torch.Tensor):
        ctx.add_weight(f"{owner}.num_batches_tracked" if owner else "num_batches_tracked", None, "dropped", ())


@handles(F.batch_norm, attributes=True)
def batch_norm(ctx, input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
               eps=1e-5):
    if running_mean is None and running_var is None:
        if not training:
            raise Unsupported("no running statistics and training=False")
        return _over_batch(ctx, input, _value(ctx, weight), _value(ctx, bias), eps)
    if not _owned(running_mean, running_var, weight, bias) or weight is None or bias is None:
        raise Unsupported("running statistics, weight or bias computed in forward, or affine=False")
    if training:
        raise Unsupported("batch statistics in eval mode too (training=True whatever the module's mode)")
    if momentum is None:
        raise Unsupported("momentum=None (a cumulative moving average); jaxcnn's BatchNorm takes a momentum")
    n = running_mean.tensor.shape[0]
    args = _arguments(n, eps=(float(eps), 1e-5), momentum=(float(momentum), 0.1))
    layer = _layer(ctx, running_mean, "batch_norm", f"layers.BatchNorm({args})")
    path = layer.removeprefix("self.")
    for attribute, variable in ((weight, "params/{}/scale"), (bias, "params/{}/bias"),
                                (running_mean, "batch_stats/{}/mean"), (running_var, "batch_stats/{}/var")):
        ctx.add_weight(attribute.target, variable.format(path), "copy", (n,))
    _drop_counter(ctx, running_mean.owner)
    x = ctx.torch_order(input) if input.rank == 2 else ctx.channels_last(input)
    layout = Layout.same(2) if input.rank == 2 else Layout.channels_last(input.rank)
    return ctx.out(f"{layer}({x}, train)", layout)


def _over_batch(ctx: Context, input: Value, weight: Value | None, bias: Value | None, eps: float) -> Value:
    """F.batch_norm with batch statistics and no running ones: each channel (torch axis 1) normalised over the rest
    (timm's weight standardisation normalises a kernel so)."""
    x = ctx.channels_last(input)
    w, b = (ctx.torch_order(v) if v is not None else "None" for v in (weight, bias))
    return ctx.out(f"layers.normalize_over_batch({x}, {w}, {b}, eps={float(eps)!r})", Layout.channels_last(input.rank))


def _conv(n: int):
    def handler(ctx, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        if input.rank != n + 2:
            raise Unsupported(f"a {input.rank}-D input: only batched (N, C, *{n} spatial) input is supported")
        x, layout = ctx.channels_last(input), Layout.channels_last(input.rank)
        ones, zeros = (1,) * n, (0,) * n
        stride, dilation = _per_axis(stride, n), _per_axis(dilation, n)
        padding = padding if isinstance(padding, str) else _per_axis(padding, n)
        if _owned(weight, bias):
            out_channels, per_group, *kernel = weight.tensor.shape
            args = _arguments(per_group * groups, out_channels, kernel_size=(tuple(kernel), None),
                              stride=(stride, ones), padding=(padding, zeros), dilation=(dilation, ones),
                              groups=(groups, 1), bias=(bias is not None, True))
            layer = _layer(ctx, weight, "conv", f"layers.Conv{n}d({args})")
            path = layer.removeprefix("self.")
            ctx.add_weight(weight.target, f"params/{path}/kernel", "kernel", tuple(weight.tensor.shape))
            if bias is not None:
                ctx.add_weight(bias.target, f"params/{path}/bias", "copy", tuple(bias.tensor.shape))
            return ctx.out(f"{layer}({x})", layout)
        kernel = ctx.convert(_value(ctx, weight), Layout((*range(2, n + 2), 1, 0)))  # (O, I, *k) -> (*k, I, O)
        b = ctx.torch_order(_value(ctx, bias)) if bias is not None else "None"
        return ctx.out(f"layers.conv({x}, {kernel}, {b}, stride={stride}, padding={padding!r}, dilation={dilation}, "
                       f"groups={groups})", layout)
    return handler


def _per_axis(value, n: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


for _n, _function in ((1, F.conv1d), (2, F.conv2d), (3, F.conv3d)):
    handles(_function, attributes=True)(_conv(_n))


@handles(F.linear, attributes=True)
def linear(ctx, input, weight, bias=None):
    if _owned(weight, bias):
        out_features, in_features = weight.tensor.shape
        flatten_from = input.layout.flat_from
        decided = ctx.linear_inputs.setdefault(weight.target, input.layout if flatten_from else None)
        if decided is not None and decided != input.layout:
            raise Unsupported("the same weights are fed by flattens of differently shaped tensors")
        x = input.var if flatten_from else ctx.torch_order(input)
        args = _arguments(in_features, out_features, bias=(bias is not None, True))
        layer = _layer(ctx, weight, "linear", f"layers.Linear({args})")
        path = layer.removeprefix("self.")
        ctx.add_weight(weight.target, f"params/{path}/kernel", "kernel", (out_features, in_features), flatten_from)
        if bias is not None:
            ctx.add_weight(bias.target, f"params/{path}/bias", "copy", (out_features,))
        return ctx.out(f"{layer}({x})", Layout.same(input.rank))
    x, w = ctx.torch_order(input), ctx.torch_order(_value(ctx, weight))
    b = f" + {ctx.torch_order(_value(ctx, bias))}" if bias is not None else ""
    return ctx.out(f"{x} @ {w}.T{b}", Layout.same(input.rank))
