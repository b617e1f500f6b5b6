"""Handlers of LayerNorm and GroupNorm (modules and functions) and PReLU: jaxcnn.torch_layers, their weights
copied (torch's `weight` is Flax's 'scale' for the norms, as for BatchNorm)."""

import torch.nn.functional as F
from torch import nn

from parity.port._emit import Context, Unsupported, Value, handles
from parity.port._layout import Layout


def _last_dims(ctx: Context, value: Value, n: int) -> tuple[str, Layout]:
    """`value` held with its last `n` torch axes last, in order (its layout where it already is)."""
    layout = value.layout
    tail = tuple(range(value.rank - n, value.rank))
    if layout.flat_from is not None or layout.perm[value.rank - n:] != tail:
        head = [p for p in layout.perm if p not in tail] if layout.flat_from is None else list(range(value.rank - n))
        layout = Layout((*head, *tail))
    return ctx.convert(value, layout), layout


def _weights(ctx: Context, m, path: str, names: dict, shape) -> None:
    for torch_name, flax_name in names.items():
        if getattr(m, torch_name, None) is not None:
            ctx.add_weight(f"{ctx.node.target}.{torch_name}", f"params/{path}/{flax_name}", "copy", shape)


def _optional(ctx: Context, value) -> str:
    if value is not None and not isinstance(value, Value):
        raise Unsupported(f"a weight that is not a tensor ({value!r})")
    return "None" if value is None else ctx.torch_order(value)


@handles(nn.LayerNorm)
def layer_norm_module(ctx, m, input):
    shape = tuple(m.normalized_shape)
    x, layout = _last_dims(ctx, input, len(shape))
    args = [repr(shape)] + ([f"eps={m.eps!r}"] if m.eps != 1e-5 else []) + \
        (["elementwise_affine=False"] if not m.elementwise_affine else []) + \
        (["bias=False"] if m.elementwise_affine and m.bias is None else [])
    name = ctx.submodule(ctx.node.target, f"layers.LayerNorm({', '.join(args)})")
    _weights(ctx, m, name.removeprefix("self."), {"weight": "scale", "bias": "bias"}, shape)
    return ctx.out(f"{name}({x})", layout)


@handles(F.layer_norm)
def layer_norm(ctx, input, normalized_shape, weight=None, bias=None, eps=1e-5):
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    x, layout = _last_dims(ctx, input, len(shape))
    w, b = _optional(ctx, weight), _optional(ctx, bias)
    return ctx.out(f"layers.layer_norm({x}, {shape!r}, {w}, {b}, eps={float(eps)!r})", layout)


def _channels_last(ctx: Context, value: Value, what: str) -> str:
    if value.rank < 2:
        raise Unsupported(f"{what} of a {value.rank}-D tensor: it needs (N, C, ...)")
    return ctx.channels_last(value)


@handles(nn.GroupNorm)
def group_norm_module(ctx, m, input):
    x = _channels_last(ctx, input, "GroupNorm")
    args = [repr(m.num_groups), repr(m.num_channels)] + ([f"eps={m.eps!r}"] if m.eps != 1e-5 else []) + \
        (["affine=False"] if not m.affine else [])
    name = ctx.submodule(ctx.node.target, f"layers.GroupNorm({', '.join(args)})")
    _weights(ctx, m, name.removeprefix("self."), {"weight": "scale", "bias": "bias"}, (m.num_channels,))
    return ctx.out(f"{name}({x})", Layout.channels_last(input.rank))


@handles(F.group_norm)
def group_norm(ctx, input, num_groups, weight=None, bias=None, eps=1e-5):
    x = _channels_last(ctx, input, "group_norm")
    w, b = _optional(ctx, weight), _optional(ctx, bias)
    return ctx.out(f"layers.group_norm({x}, {num_groups!r}, {w}, {b}, eps={float(eps)!r})",
                   Layout.channels_last(input.rank))


@handles(nn.PReLU)
def prelu_module(ctx, m, input):
    x = _channels_last(ctx, input, "PReLU") if m.num_parameters > 1 else input.var
    init = float(m.init) if hasattr(m, "init") else 0.25
    args = ([repr(m.num_parameters)] if m.num_parameters != 1 else []) + ([f"init={init!r}"] if init != 0.25 else [])
    name = ctx.submodule(ctx.node.target, f"layers.PReLU({', '.join(args)})")
    path = name.removeprefix("self.")
    ctx.add_weight(f"{ctx.node.target}.weight", f"params/{path}/weight", "copy", (m.num_parameters,))
    layout = Layout.channels_last(input.rank) if m.num_parameters > 1 else input.layout
    return ctx.out(f"{name}({x})", layout)


@handles(F.prelu)
def prelu(ctx, input, weight):
    many = weight.shape != (1,) and weight.rank > 0
    x = _channels_last(ctx, input, "prelu") if many else input.var
    layout = Layout.channels_last(input.rank) if many else input.layout
    return ctx.out(f"layers.prelu({x}, {ctx.torch_order(weight)})", layout)
