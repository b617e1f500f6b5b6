"""Handlers of resampling and padding: F.interpolate and nn.Upsample (nearest, nearest-exact, (bi/tri)linear,
torch's exact source indices: jaxcnn.torch_layers.interpolate), F.pad and the padding modules."""

import torch.nn.functional as F
from torch import nn

from parity.port._emit import Context, Unsupported, Value, handles
from parity.port._layout import Layout

_MODES = ("nearest", "nearest-exact", "linear", "bilinear", "trilinear")


def resampled(ctx: Context, input: Value, size, scale_factor, mode, align_corners, recompute_scale_factor) -> Value:
    """`layers.interpolate(x, ...)` on the channels-last input, torch's arguments where not their defaults."""
    if mode not in _MODES:
        raise Unsupported(f"mode={mode!r}: only {', '.join(_MODES)} are supported")
    if input.rank < 3:
        raise Unsupported(f"a {input.rank}-D input: interpolate takes (N, C, *spatial)")
    args = [ctx.channels_last(input)]
    for key, value, default in (("size", size, None), ("scale_factor", scale_factor, None), ("mode", mode, "nearest"),
                                ("align_corners", align_corners, None),
                                ("recompute_scale_factor", recompute_scale_factor, None)):
        value = tuple(value) if isinstance(value, list) else value
        if value != default:
            args.append(f"{key}={value!r}")
    return ctx.out(f"layers.interpolate({', '.join(args)})", Layout.channels_last(input.rank))


@handles(F.interpolate, F.upsample)
def interpolate(ctx, input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    if antialias:
        raise Unsupported("antialias=True")
    return resampled(ctx, input, size, scale_factor, mode, align_corners, recompute_scale_factor)


@handles(nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d)
def upsample(ctx, m, input):
    return resampled(ctx, input, m.size, m.scale_factor, m.mode, m.align_corners,
                     getattr(m, "recompute_scale_factor", None))


def padded(ctx: Context, input: Value, pad, mode: str, value) -> Value:
    """`layers.pad(x, widths, ...)`: torch's (last axis first) pairs as widths per axis of the array as held."""
    if len(pad) % 2 or len(pad) // 2 > input.rank:
        raise Unsupported(f"pad={tuple(pad)} for a {input.rank}-D tensor")
    if mode not in ("constant", "reflect", "replicate", "circular"):
        raise Unsupported(f"mode={mode!r}")
    layout = input.layout if input.layout.flat_from is None else Layout.same(input.rank)
    by_dim = {input.rank - 1 - i: (int(pad[2 * i]), int(pad[2 * i + 1])) for i in range(len(pad) // 2)}
    widths = tuple(by_dim.get(p, (0, 0)) for p in layout.perm)
    keywords = (f", mode={mode!r}" if mode != "constant" else "") + \
        (f", value={float(value)!r}" if mode == "constant" and value not in (None, 0, 0.0) else "")
    return ctx.out(f"layers.pad({ctx.convert(input, layout)}, {widths!r}{keywords})", layout)


@handles(F.pad)
def pad(ctx, input, pad, mode="constant", value=None):
    return padded(ctx, input, pad, mode, value)


def _pad_module(mode: str):
    def handler(ctx, m, input):
        return padded(ctx, input, m.padding, mode, getattr(m, "value", None))
    return handler


for _n in (1, 2, 3):
    for _prefix, _mode in (("ConstantPad", "constant"), ("ZeroPad", "constant"), ("ReflectionPad", "reflect"),
                           ("ReplicationPad", "replicate"), ("CircularPad", "circular")):
        if hasattr(nn, f"{_prefix}{_n}d"):
            handles(getattr(nn, f"{_prefix}{_n}d"))(_pad_module(_mode))
