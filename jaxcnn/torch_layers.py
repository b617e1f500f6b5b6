"""More layers with torch semantics on channels-last arrays: LayerNorm, GroupNorm, PReLU, stochastic depth,
F.interpolate and F.pad, as the networks parity.port ports use them (ConvNeXt, ShuffleNet, EfficientNet, U-Nets).

As in jaxcnn.layers, each takes its torch namesake's arguments; the parameters keep torch's shapes (the norms'
weight is Flax's 'scale').
"""

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax import lax

Shape = int | Sequence[int]


def _tuple(shape: Shape) -> tuple[int, ...]:
    return (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)


def layer_norm(x: jax.Array, normalized_shape: Shape, weight=None, bias=None, eps: float = 1e-5) -> jax.Array:
    """torch.nn.functional.layer_norm: normalises over the last len(normalized_shape) axes of `x`.

    Arguments:
        x: (..., *normalized_shape); weight, bias: normalized_shape or None.
    Returns:
        (x - mean) / sqrt(biased variance + eps) * weight + bias, shaped like x.
    """
    shape = _tuple(normalized_shape)
    if tuple(x.shape[x.ndim - len(shape):]) != shape:
        raise ValueError(f"layer_norm over {shape} needs input ending in it, got {tuple(x.shape)}")
    axes = tuple(range(x.ndim - len(shape), x.ndim))
    mean = x.mean(axes, keepdims=True)
    var = jnp.square(x - mean).mean(axes, keepdims=True)
    y = (x - mean) * lax.rsqrt(var + eps)
    y = y * weight if weight is not None else y
    return y + bias if bias is not None else y


class LayerNorm(nn.Module):
    """torch.nn.LayerNorm over the last axes (after ConvNeXt's permute to channels-last: the channels).

    Params (when elementwise_affine): scale (torch's weight) and, when bias, bias, both normalized_shape.
    x: (..., *normalized_shape) -> the same shape.
    """
    normalized_shape: Shape
    eps: float = 1e-5
    elementwise_affine: bool = True
    bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = _tuple(self.normalized_shape)
        weight = self.param("scale", nn.initializers.ones_init(), shape) if self.elementwise_affine else None
        bias = self.param("bias", nn.initializers.zeros_init(), shape) if self.elementwise_affine and self.bias \
            else None
        return layer_norm(x, shape, weight, bias, self.eps)


def group_norm(x: jax.Array, num_groups: int, weight=None, bias=None, eps: float = 1e-5) -> jax.Array:
    """torch.nn.functional.group_norm on channels-last (N, *spatial, C): the C channels in `num_groups`
    consecutive groups, each normalised over its channels and all spatial positions (biased variance).

    Arguments:
        x: (N, *spatial, C), C divisible by num_groups; weight, bias: (C,) or None.
    Returns:
        x's shape.
    """
    c = x.shape[-1]
    if c % num_groups:
        raise ValueError(f"group_norm: {c} channels do not split into {num_groups} groups")
    g = x.reshape(*x.shape[:-1], num_groups, c // num_groups)
    axes = (*range(1, x.ndim - 1), x.ndim)
    mean = g.mean(axes, keepdims=True)
    var = jnp.square(g - mean).mean(axes, keepdims=True)
    y = ((g - mean) * lax.rsqrt(var + eps)).reshape(x.shape)
    y = y * weight if weight is not None else y
    return y + bias if bias is not None else y


class GroupNorm(nn.Module):
    """torch.nn.GroupNorm on channels-last (N, *spatial, C). Params (when affine): scale (torch's weight), bias
    (C,)."""
    num_groups: int
    num_channels: int
    eps: float = 1e-5
    affine: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.shape[-1] != self.num_channels:
            raise ValueError(f"GroupNorm {self.name!r} expects {self.num_channels} channels last, got {x.shape}")
        c = (self.num_channels,)
        weight = self.param("scale", nn.initializers.ones_init(), c) if self.affine else None
        bias = self.param("bias", nn.initializers.zeros_init(), c) if self.affine else None
        return group_norm(x, self.num_groups, weight, bias, self.eps)


def prelu(x: jax.Array, weight: jax.Array) -> jax.Array:
    """torch.nn.functional.prelu on channels-last (N, ..., C): x where x > 0, else weight * x, the weight (C,)
    (or (1,): one for all channels) along the last axis."""
    if weight.size != 1 and (x.ndim < 2 or x.shape[-1] != weight.size):
        raise ValueError(f"prelu: {weight.size} weights for input {tuple(x.shape)} (channels last)")
    return jnp.where(x > 0, x, weight.reshape(-1) * x)


class PReLU(nn.Module):
    """torch.nn.PReLU: param weight (num_parameters,), initialised to `init`; channels-last input."""
    num_parameters: int = 1
    init: float = 0.25

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        weight = self.param("weight", nn.initializers.constant(self.init), (self.num_parameters,))
        return prelu(x, weight)


class StochasticDepth(nn.Module):
    """torchvision.ops.StochasticDepth: when train, keeps each sample ('row') or the whole batch ('batch') with
    probability 1 - rate, the kept scaled by 1 / (1 - rate); the identity otherwise.

    Needs the rng 'dropout'. The keep mask ((N, 1, ..., 1) or (1, ..., 1)) is sown into 'intermediates' under
    'keep', as jaxcnn.layers.Dropout's, so that a check can replay it in torch.
    """
    rate: float
    mode: str = "row"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if not train:
            return x
        y, keep = stochastic_depth(x, self.rate, self.mode, lambda: self.make_rng("dropout"))
        if keep is not None:
            self.sow("intermediates", "keep", keep)
        return y


def stochastic_depth(x: jax.Array, rate: float, mode: str, key) -> tuple[jax.Array, jax.Array | None]:
    """torchvision.ops.stochastic_depth in training mode: each sample ('row') or the whole batch ('batch') kept
    with probability 1 - rate, the kept scaled by 1 / (1 - rate).

    Arguments:
        x: (N, ...). key: called for the mask's key only when one is drawn (0 < rate < 1).
    Returns:
        (y shaped like x, the keep mask drawn ((N, 1, ..., 1) or (1, ..., 1)), or None where none was).
    """
    if mode not in ("row", "batch"):
        raise ValueError(f"mode must be 'row' or 'batch', got {mode!r}")
    if rate == 0.0:
        return x, None
    shape = (x.shape[0] if mode == "row" else 1,) + (1,) * (x.ndim - 1)
    if rate == 1.0:
        return x * jnp.zeros(shape, x.dtype), None
    keep = jax.random.bernoulli(key(), 1.0 - rate, shape)
    return x * (keep.astype(x.dtype) / jnp.asarray(1.0 - rate, x.dtype)), keep


# -- F.interpolate: torch's CPU index arithmetic (float32, as torch computes it for float32 input) ------------
def _scale(in_size: int, out_size: int, scale: float | None) -> np.float32:
    """torch's compute_scales_value: 1 / scale_factor when one is given, else in / out."""
    return np.float32(1.0 / scale) if scale is not None and scale > 0 else np.float32(in_size) / np.float32(out_size)


def _nearest(in_size: int, out_size: int, scale: float | None, exact: bool) -> np.ndarray:
    dst = np.arange(out_size)
    if not exact and out_size == in_size:
        return dst
    if not exact and out_size == 2 * in_size:
        return dst >> 1
    s = _scale(in_size, out_size, scale)
    src = ((dst + 0.5) * np.float64(s)).astype(np.float32) if exact else dst.astype(np.float32) * s
    return np.minimum(np.floor(src).astype(np.int64), in_size - 1)


def _linear(in_size: int, out_size: int, scale: float | None, align_corners: bool):
    """(index0, index1, lambda0, lambda1) of torch's compute_source_index_and_lambda."""
    dst = np.arange(out_size).astype(np.float32)
    if out_size == in_size:
        i = np.arange(out_size)
        return i, i, np.ones(out_size, np.float32), np.zeros(out_size, np.float32)
    if align_corners:
        s = np.float32(in_size - 1) / np.float32(out_size - 1) if out_size > 1 else np.float32(0)
        src = s * dst
    else:
        src = np.maximum(_scale(in_size, out_size, scale) * (dst + np.float32(0.5)) - np.float32(0.5), np.float32(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    l1 = np.clip(src - i0.astype(np.float32), np.float32(0), np.float32(1))
    i1 = i0 + (i0 < in_size - 1)
    return i0, i1, np.float32(1) - l1, l1


def _per_spatial(value, n: int) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


def interpolate(x: jax.Array, size: Shape | None = None, scale_factor: float | Sequence[float] | None = None,
                mode: str = "nearest", align_corners: bool | None = None,
                recompute_scale_factor: bool | None = None) -> jax.Array:
    """torch.nn.functional.interpolate on channels-last (N, *spatial, C), with torch's exact source indices.

    Arguments:
        size or scale_factor (per spatial axis or one for all), as torch's; mode: 'nearest', 'nearest-exact',
        'linear', 'bilinear', 'trilinear' (align_corners True or False, the linear modes only).
    Returns:
        (N, *out, C): out = size, or floor(in * scale_factor).
    """
    n = x.ndim - 2
    spatial = x.shape[1:-1]
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate needs exactly one of size and scale_factor")
    linear = mode in ("linear", "bilinear", "trilinear")
    if not linear and mode not in ("nearest", "nearest-exact"):
        raise ValueError(f"interpolate: mode {mode!r} is not supported")
    if align_corners is not None and not linear:
        raise ValueError("align_corners goes with the linear modes only")
    if size is not None:
        out, scales = [int(s) for s in _per_spatial(size, n)], [None] * n
    else:
        factors = [float(f) for f in _per_spatial(scale_factor, n)]
        out = [math.floor(i * f) for i, f in zip(spatial, factors)]
        scales = [None] * n if recompute_scale_factor else factors
    for axis in reversed(range(n)):  # the last spatial axis first, as torch's kernels weigh
        in_size, a = spatial[axis], axis + 1
        if linear:
            i0, i1, l0, l1 = _linear(in_size, out[axis], scales[axis], bool(align_corners))
            shape = (-1,) + (1,) * (x.ndim - 1 - a)
            x = jnp.take(x, i0, a) * l0.reshape(shape).astype(x.dtype) \
                + jnp.take(x, i1, a) * l1.reshape(shape).astype(x.dtype)
        else:
            x = jnp.take(x, _nearest(in_size, out[axis], scales[axis], mode == "nearest-exact"), a)
    return x


def pad(x: jax.Array, widths: Sequence[tuple[int, int]], mode: str = "constant", value: float = 0.0) -> jax.Array:
    """torch.nn.functional.pad with the widths given per axis of `x` as it is held: ((before, after), ...).

    mode: 'constant' (`value`; negative widths crop, as in torch), 'reflect', 'replicate', 'circular'.
    """
    widths = [(int(lo), int(hi)) for lo, hi in widths]
    if mode == "constant":
        return lax.pad(x, jnp.asarray(value, x.dtype), [(lo, hi, 0) for lo, hi in widths])
    numpy_mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}.get(mode)
    if numpy_mode is None or any(lo < 0 or hi < 0 for lo, hi in widths):
        raise ValueError(f"pad: mode {mode!r} with widths {widths} is not supported")
    return jnp.pad(x, widths, mode=numpy_mode)
