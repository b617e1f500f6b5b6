"""Handlers of the functional forms of layers with weights: F.batch_norm, F.conv1d/2d/3d, F.linear,
F.conv_transpose1d/2d/3d (always as the jaxcnn function of its weights).

Where the weights are the module's own parameters and buffers (timm's BatchNormAct2d, a Conv2d subclass that
pads first), the port declares the jaxcnn layer holding them, its weights mapped from the module's keys. Where
they are computed in forward (weight standardisation), the layer is written as a jaxcnn function of the arrays."""

import torch
import torch.nn.functional as F

from parity.port._emit import FUNCTIONS, Attribute, Context, Unsupported, Value, handles
from parity.port._layout import Layout
from parity.port._modules import batch_norm_layer, conv_layer, linear_layer


def _value(ctx: Context, weight) -> Value | None:
    """A weight as a Value: an Attribute declared as the plain parameter or buffer it is (parity.port get_attr)."""
    return FUNCTIONS["get_attr"](ctx, weight.target) if isinstance(weight, Attribute) else weight


def _owned(*weights) -> bool:
    """Every weight given is a parameter or buffer of the module itself (None: not given)."""
    return all(w is None or isinstance(w, Attribute) for w in weights)


def _own_parameters(*weights) -> bool:
    """Every weight given is a parameter of the module itself (a buffer, a filter fixed at init, is an array)."""
    return all(w is None or isinstance(w, Attribute) and isinstance(w.tensor, torch.nn.Parameter) for w in weights)


def _name(key: Attribute, function: str) -> tuple[str, str]:
    """(the torch path the layer stands for, its Flax name): the module holding `key`, else the function's name."""
    return f"<F.{function} {key.target}>", key.owner.rpartition(".")[2] or function


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
    keys = {"weight": weight.target, "bias": bias.target, "running_mean": running_mean.target,
            "running_var": running_var.target}
    owner = running_mean.owner
    if isinstance(getattr(ctx.traced.module.get_submodule(owner), "num_batches_tracked", None), torch.Tensor):
        keys["num_batches_tracked"] = f"{owner}.num_batches_tracked" if owner else "num_batches_tracked"
    return batch_norm_layer(ctx, *_name(running_mean, "batch_norm"), keys, running_mean.tensor.shape[0], eps, momentum,
                            input)


def _over_batch(ctx: Context, input: Value, weight: Value | None, bias: Value | None, eps: float) -> Value:
    """F.batch_norm with batch statistics and no running ones: each channel (torch axis 1) normalised over the rest
    (timm's weight standardisation normalises a kernel so)."""
    x = ctx.channels_last(input)
    w, b = (ctx.torch_order(v) if v is not None else "None" for v in (weight, bias))
    return ctx.out(f"layers.normalize_over_batch({x}, {w}, {b}, eps={float(eps)!r})", Layout.channels_last(input.rank))


def _conv(n: int):
    def handler(ctx, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        stride, dilation = _per_axis(stride, n), _per_axis(dilation, n)
        padding = padding if isinstance(padding, str) else _per_axis(padding, n)
        if _own_parameters(weight, bias):
            return conv_layer(ctx, *_name(weight, "conv"), weight.target, bias is not None and bias.target,
                              tuple(weight.tensor.shape), input, stride, padding, dilation, groups)
        if input.rank != n + 2:
            raise Unsupported(f"a {input.rank}-D input: only batched (N, C, *{n} spatial) input is supported")
        kernel = ctx.convert(_value(ctx, weight), Layout((*range(2, n + 2), 1, 0)))  # (O, I, *k) -> (*k, I, O)
        b = ctx.torch_order(_value(ctx, bias)) if bias is not None else "None"
        return ctx.out(f"layers.conv({ctx.channels_last(input)}, {kernel}, {b}, stride={stride}, padding={padding!r}, "
                       f"dilation={dilation}, groups={groups})", Layout.channels_last(input.rank))
    return handler


def _per_axis(value, n: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


for _n, _function in ((1, F.conv1d), (2, F.conv2d), (3, F.conv3d)):
    handles(_function, attributes=True)(_conv(_n))


@handles(F.linear, attributes=True)
def linear(ctx, input, weight, bias=None):
    if _own_parameters(weight, bias):
        return linear_layer(ctx, *_name(weight, "linear"), weight.target, bias is not None and bias.target,
                            tuple(weight.tensor.shape), input)
    x, w = ctx.torch_order(input), ctx.torch_order(_value(ctx, weight))
    b = f" + {ctx.torch_order(_value(ctx, bias))}" if bias is not None else ""
    return ctx.out(f"{x} @ {w}.T{b}", Layout.same(input.rank))


def _conv_transpose(n: int):
    def handler(ctx, input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
        if input.rank != n + 2:
            raise Unsupported(f"a {input.rank}-D input: only batched (N, C, *{n} spatial) input is supported")
        kernel = ctx.convert(_value(ctx, weight), Layout((*range(2, n + 2), 1, 0)))  # (I, O/g, *k) -> (*k, O/g, I)
        b = ctx.torch_order(_value(ctx, bias)) if bias is not None else "None"
        per_axis = [_per_axis(v, n) for v in (stride, padding, output_padding, dilation)]
        return ctx.out(f"layers.conv_transpose({ctx.channels_last(input)}, {kernel}, {b}, stride={per_axis[0]}, "
                       f"padding={per_axis[1]}, output_padding={per_axis[2]}, groups={groups}, "
                       f"dilation={per_axis[3]})", Layout.channels_last(input.rank))
    return handler


for _n, _function in ((1, F.conv_transpose1d), (2, F.conv_transpose2d), (3, F.conv_transpose3d)):
    handles(_function, attributes=True)(_conv_transpose(_n))
