"""Layers with torch semantics on channels-last (NHWC, NWC, NDHWC) arrays.

Each layer takes the arguments of its torch namesake (explicit padding, stride
defaults, eps, momentum meaning), so a network reads like the notebook that
defined it. Parameters are Flax-shaped: conv kernels (*kernel_size, in/groups,
out), Linear kernels (in, out). Nothing here knows torch's memory layout; the
converters in `parity.checks.convert` do.
"""

import math
from typing import Sequence, Union

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

from jaxcnn.arithmetic import pool_output_size
from jaxcnn.banded import banded_conv2d, prefer_banded
from jaxcnn.tiles import tiled_max, tiled_mean

Size = Union[int, Sequence[int]]
_PADDING_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
_SPATIAL = {1: "W", 2: "HW", 3: "DHW"}


def _per_axis(value: Size, n: int, what: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    value = tuple(int(v) for v in value)
    if len(value) != n:
        raise ValueError(f"{what} needs {n} values (one per spatial axis), got {value}")
    return value


def torch_uniform(fan_in: int):
    """torch's default init for Conv/Linear weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    (kaiming_uniform with a=sqrt(5) reduces to this bound for the weights.)
    """
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def _initializers(init: str, fan_in: int):
    if init == "torch":
        return torch_uniform(fan_in), torch_uniform(fan_in)
    if init == "flax":
        return nn.initializers.lecun_normal(), nn.initializers.zeros_init()
    raise ValueError(f"init must be 'torch' or 'flax', got {init!r}")


def conv_padding(padding: Union[Size, str], kernel: Sequence[int], stride: Sequence[int],
                 dilation: Sequence[int]) -> list[tuple[int, int]]:
    """torch's padding argument as (low, high) pairs per spatial axis.

    'same' puts the odd extra element at the end, as torch does (stride must be 1).
    """
    n = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return [(0, 0)] * n
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError("padding='same' is not supported for strided convolutions (torch refuses it too)")
            totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
            return [(t // 2, t - t // 2) for t in totals]
        raise ValueError(f"padding must be an int, a tuple, 'same' or 'valid', got {padding!r}")
    pads = _per_axis(padding, n, "padding")
    if any(p < 0 for p in pads):
        raise ValueError(f"padding must be >= 0, got {pads}")
    return [(p, p) for p in pads]


def _check_channels_last(layer: nn.Module, x: jax.Array, spatial: int, channels: int) -> None:
    if x.ndim != spatial + 2 or x.shape[-1] != channels:
        axes = ", ".join(_SPATIAL[spatial])
        raise ValueError(f"{type(layer).__name__} {layer.name!r} expects input (N, {axes}, C={channels}) "
                         f"(channels last), got shape {tuple(x.shape)}")


class ConvNd(nn.Module):
    """torch.nn.Conv{1,2,3}d on channels-last input.

    x: (N, *spatial, in_channels) -> (N, *spatial_out, out_channels), with
    spatial_out from `jaxcnn.conv_output_size`. Params: kernel
    (*kernel_size, in_channels // groups, out_channels), bias (out_channels,).

    implementation: 'xla' (lax.conv_general_dilated), 'banded' (2-D, groups=1 only: one matrix product
    over blocks of output columns, `jaxcnn.banded`, which XLA:CPU runs several times faster when the
    channels are few), or 'auto': banded on CPU for 2-D convolutions with at most
    `jaxcnn.banded.MAX_CHANNELS` input and output channels on maps of at most `MAX_PIXELS` (32x32), else
    xla. Same sums, another order.
    """
    in_channels: int
    out_channels: int
    kernel_size: Size
    stride: Size = 1
    padding: Union[Size, str] = 0
    dilation: Size = 1
    groups: int = 1
    bias: bool = True
    padding_mode: str = "zeros"
    weight_init: str = "torch"
    spatial_dims: int = 2
    implementation: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n = self.spatial_dims
        kernel_size = _per_axis(self.kernel_size, n, "kernel_size")
        stride = _per_axis(self.stride, n, "stride")
        dilation = _per_axis(self.dilation, n, "dilation")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"in_channels={self.in_channels} and out_channels={self.out_channels} "
                             f"must both be divisible by groups={self.groups}")
        if self.padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {sorted(_PADDING_MODES)}, got {self.padding_mode!r}")
        _check_channels_last(self, x, n, self.in_channels)
        fan_in = self.in_channels // self.groups * math.prod(kernel_size)
        kernel_init, bias_init = _initializers(self.weight_init, fan_in)
        kernel = self.param("kernel", kernel_init, (*kernel_size, self.in_channels // self.groups, self.out_channels))
        pads = conv_padding(self.padding, kernel_size, stride, dilation)
        for axis, (size, (lo, hi), k, d) in enumerate(zip(x.shape[1:-1], pads, kernel_size, dilation)):
            if size + lo + hi < d * (k - 1) + 1:
                raise ValueError(f"{type(self).__name__} {self.name!r}: spatial axis {axis} of input {tuple(x.shape)} "
                                 f"is smaller than the kernel span {d * (k - 1) + 1} (padding {lo}+{hi})")
        bias = self.param("bias", bias_init, (self.out_channels,)) if self.bias else None
        return conv(x, kernel, bias, stride, pads, dilation, self.groups, self.padding_mode,
                    banded=self._banded(x.shape[1:-1]))

    def _banded(self, spatial: tuple[int, ...]) -> bool:
        if self.implementation == "auto":
            return prefer_banded(self.in_channels, self.out_channels, self.groups, spatial)
        if self.implementation == "banded":
            if self.spatial_dims != 2 or self.groups != 1:
                raise ValueError(f"{type(self).__name__} {self.name!r}: implementation='banded' needs a 2-D "
                                 f"convolution with groups=1, got {self.spatial_dims}-D, groups={self.groups}")
            return True
        if self.implementation == "xla":
            return False
        raise ValueError(f"implementation must be 'auto', 'xla' or 'banded', got {self.implementation!r}")


def conv(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None, stride: Size = 1,
         padding: Union[Size, str, Sequence[tuple[int, int]]] = 0, dilation: Size = 1, groups: int = 1,
         padding_mode: str = "zeros", banded: bool = False) -> jax.Array:
    """torch.nn.functional.conv{1,2,3}d on channels-last arrays (what ConvNd computes with its parameters).

    Arguments:
        x: (N, *spatial, C_in).
        kernel: (*kernel_size, C_in // groups, C_out); bias: (C_out,) or None.
        padding: torch's (an int per axis, 'same', 'valid') or (low, high) pairs per axis.
        banded: the 2-D groups=1 matrix-product form (jaxcnn.banded) instead of lax.conv_general_dilated.
    Returns:
        (N, *spatial_out, C_out).
    """
    n = x.ndim - 2
    kernel_size = tuple(kernel.shape[:n])
    stride, dilation = _per_axis(stride, n, "stride"), _per_axis(dilation, n, "dilation")
    pads = [tuple(p) for p in padding] if isinstance(padding, (list, tuple)) and padding and \
        isinstance(padding[0], (list, tuple)) else conv_padding(padding, kernel_size, stride, dilation)
    if padding_mode != "zeros":
        x = jnp.pad(x, [(0, 0), *pads, (0, 0)], mode=_PADDING_MODES[padding_mode])
        pads = [(0, 0)] * n
    if banded:
        y = banded_conv2d(x, kernel.astype(x.dtype), stride, pads, dilation)
    else:
        spec = _SPATIAL[n]
        y = lax.conv_general_dilated(x, kernel.astype(x.dtype), stride, pads, rhs_dilation=dilation,
                                     dimension_numbers=(f"N{spec}C", f"{spec}IO", f"N{spec}C"),
                                     feature_group_count=groups)
    return y if bias is None else y + bias.astype(y.dtype)


class Conv1d(ConvNd):
    """torch.nn.Conv1d: x (N, W, C_in) -> (N, W_out, C_out)."""
    spatial_dims: int = 1


class Conv2d(ConvNd):
    """torch.nn.Conv2d: x (N, H, W, C_in) -> (N, H_out, W_out, C_out)."""
    spatial_dims: int = 2


class Conv3d(ConvNd):
    """torch.nn.Conv3d: x (N, D, H, W, C_in) -> (N, D_out, H_out, W_out, C_out)."""
    spatial_dims: int = 3


class Linear(nn.Module):
    """torch.nn.Linear: x (..., in_features) -> (..., out_features). Params: kernel (in, out), bias (out,)."""
    in_features: int
    out_features: int
    bias: bool = True
    weight_init: str = "torch"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear {self.name!r} expects (..., {self.in_features}) input, got shape {tuple(x.shape)}")
        kernel_init, bias_init = _initializers(self.weight_init, self.in_features)
        kernel = self.param("kernel", kernel_init, (self.in_features, self.out_features))
        y = jnp.dot(x, kernel.astype(x.dtype))
        if self.bias:
            y = y + self.param("bias", bias_init, (self.out_features,)).astype(y.dtype)
        return y


class Flatten(nn.Module):
    """nn.Flatten on channels-last data: (N, *spatial, C) -> (N, prod(spatial) * C), in (H, W, C) order.

    torch flattens in (C, H, W) order; `parity.checks.convert` permutes the weights of
    the first Linear after a Flatten, so no transpose is needed here.
    """

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))  # not -1: a batch of 0 has no size to infer from


class BatchNorm(nn.Module):
    """torch.nn.BatchNorm{1,2,3}d over the last (channel) axis.

    Train mode normalises with the biased batch variance and updates
    running = (1 - momentum) * running + momentum * batch, storing the unbiased
    variance, exactly as torch does (torch's momentum=0.1 is Flax's 0.9). bfloat16 or float16 input is
    normalised in float32 (its statistics too) and returned in its own dtype.
    Params: scale, bias (C,); batch_stats: mean, var (C,).
    """
    num_features: int
    eps: float = 1e-5
    momentum: float = 0.1
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        c = self.num_features
        if x.shape[-1] != c:
            raise ValueError(f"BatchNorm {self.name!r} expects {c} channels on the last axis, got shape {tuple(x.shape)}")
        scale = self.param("scale", nn.initializers.ones_init(), (c,))
        bias = self.param("bias", nn.initializers.zeros_init(), (c,))
        running_mean = self.variable("batch_stats", "mean", jnp.zeros, (c,), jnp.float32)
        running_var = self.variable("batch_stats", "var", jnp.ones, (c,), jnp.float32)
        given, x = x.dtype, x.astype(jnp.promote_types(x.dtype, jnp.float32))  # statistics in float32 at least
        if train:
            axes = tuple(range(x.ndim - 1))
            mean = x.mean(axes)
            if self.axis_name is not None:
                mean = lax.pmean(mean, self.axis_name)
            var = jnp.square(x - mean).mean(axes)
            count = math.prod(x.shape[:-1])
            if self.axis_name is not None:
                var = lax.pmean(var, self.axis_name)
                count *= lax.psum(1, self.axis_name)
            if not self.is_initializing():
                m = self.momentum
                running_mean.value = (1 - m) * running_mean.value + m * mean
                running_var.value = (1 - m) * running_var.value + m * var * (count / max(count - 1, 1))
        else:
            mean, var = running_mean.value, running_var.value
        y = _normalized(x, mean, var, scale, bias, self.eps)
        return y.astype(given) if given != x.dtype else y


def _normalized(x: jax.Array, mean, var, scale, bias, eps: float) -> jax.Array:
    """BatchNorm's arithmetic over the last axis: (x - mean) / sqrt(var + eps) * scale + bias."""
    return (x - mean) * (lax.rsqrt(var + eps) * scale) + bias


def normalize_over_batch(x: jax.Array, weight=None, bias=None, eps: float = 1e-5) -> jax.Array:
    """torch.nn.functional.batch_norm with batch statistics and no running ones, on channels-last x (N, ..., C):
    each channel normalised over every other axis with the biased variance, then scaled and shifted (C,)."""
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axes)
    var = jnp.square(x - mean).mean(axes)
    return _normalized(x, mean, var, 1 if weight is None else weight, 0 if bias is None else bias, eps)


def _pool_geometry(x: jax.Array, kernel_size: Size, stride: Size | None, padding: Size, dilation: Size,
                   ceil_mode: bool, name: str):
    n = x.ndim - 2
    if n < 1:
        raise ValueError(f"{name} expects (N, *spatial, C) input, got shape {tuple(x.shape)}")
    k = _per_axis(kernel_size, n, "kernel_size")
    s = k if stride is None else _per_axis(stride, n, "stride")
    p = _per_axis(padding, n, "padding")
    d = _per_axis(dilation, n, "dilation")
    if any(p_ > k_ // 2 for p_, k_ in zip(p, k)):
        raise ValueError(f"{name}: padding {p} must be at most half the kernel size {k} (torch's rule)")
    out = pool_output_size(tuple(x.shape[1:-1]), k, s, p, d, ceil_mode)
    # High padding reaches the end of the last window (ceil_mode) or is p (floor mode).
    pads = [(p_, max(p_, (o - 1) * s_ + d_ * (k_ - 1) + 1 - size - p_))
            for size, o, k_, s_, p_, d_ in zip(x.shape[1:-1], out, k, s, p, d)]
    return (1, *k, 1), (1, *s, 1), [(0, 0), *pads, (0, 0)], (1, *d, 1), out


def _tiled(window, strides, pads, dilation, out, x) -> bool:
    """Non-overlapping windows without padding: the reshape path of jaxcnn.tiles applies."""
    return (window == strides and set(dilation) == {1} and all(p == (0, 0) for p in pads[1:-1])
            and all(o * k <= size for o, k, size in zip(out, window[1:-1], x.shape[1:-1])))


def max_pool(x: jax.Array, kernel_size: Size, stride: Size | None = None, padding: Size = 0,
             dilation: Size = 1, ceil_mode: bool = False) -> jax.Array:
    """torch.nn.functional.max_pool{1,2,3}d on (N, *spatial, C); stride defaults to kernel_size."""
    window, strides, pads, dil, out = _pool_geometry(x, kernel_size, stride, padding, dilation, ceil_mode, "max_pool")
    if _tiled(window, strides, pads, dil, out, x):
        return tiled_max(x, window[1:-1])
    y = lax.reduce_window(x, -jnp.inf, lax.max, window, strides, pads, window_dilation=dil)
    return y[(slice(None), *(slice(0, o) for o in out))]


def avg_pool(x: jax.Array, kernel_size: Size, stride: Size | None = None, padding: Size = 0,
             ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: int | None = None) -> jax.Array:
    """torch.nn.functional.avg_pool{1,2,3}d on (N, *spatial, C); stride defaults to kernel_size.

    The divisor counts the explicit padding when count_include_pad, never the
    part of a ceil_mode window that runs past the padding (torch's rule).
    """
    window, strides, pads, dil, out = _pool_geometry(x, kernel_size, stride, padding, 1, ceil_mode, "avg_pool")
    if _tiled(window, strides, pads, dil, out, x):
        return tiled_mean(x, window[1:-1], divisor_override)
    total = lax.reduce_window(x, 0.0, lax.add, window, strides, pads)
    if divisor_override:
        y = total / divisor_override
    else:
        ones = jnp.ones((1, *x.shape[1:-1], 1), x.dtype)
        if count_include_pad:  # padding counts, the ceil_mode overhang does not
            ones = jnp.pad(ones, [(lo, lo) for lo, _ in pads], constant_values=1)
            count_pads = [(0, hi - lo) for lo, hi in pads]
        else:
            count_pads = pads
        y = total / lax.reduce_window(ones, 0.0, lax.add, window, strides, count_pads)
    return y[(slice(None), *(slice(0, o) for o in out))]


def _adaptive_pool(x: jax.Array, output_size: Size, reduce) -> jax.Array:
    n = x.ndim - 2
    for axis, o in enumerate(_per_axis(output_size, n, "output_size"), start=1):
        size = x.shape[axis]
        if size % o == 0:
            x = reduce(x.reshape(*x.shape[:axis], o, size // o, *x.shape[axis + 1:]), axis + 1, False)
        else:
            bins = [reduce(lax.slice_in_dim(x, (i * size) // o, -(-((i + 1) * size) // o), axis=axis), axis, True)
                    for i in range(o)]
            x = jnp.concatenate(bins, axis=axis)
    return x


def adaptive_avg_pool(x: jax.Array, output_size: Size) -> jax.Array:
    """torch.nn.functional.adaptive_avg_pool{1,2,3}d on (N, *spatial, C).

    Bin i of an axis of length n pooled to o spans [floor(i*n/o), ceil((i+1)*n/o)).
    """
    return _adaptive_pool(x, output_size, lambda a, axis, keep: a.mean(axis, keepdims=keep))


def adaptive_max_pool(x: jax.Array, output_size: Size) -> jax.Array:
    """torch.nn.functional.adaptive_max_pool{1,2,3}d on (N, *spatial, C), with adaptive_avg_pool's bins."""
    return _adaptive_pool(x, output_size, lambda a, axis, keep: a.max(axis, keepdims=keep))


class MaxPool(nn.Module):
    """torch.nn.MaxPool{1,2,3}d: stride defaults to kernel_size (not to 1, as Flax's pools do)."""
    kernel_size: Size
    stride: Size | None = None
    padding: Size = 0
    dilation: Size = 1
    ceil_mode: bool = False

    def __call__(self, x: jax.Array) -> jax.Array:
        return max_pool(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)


class AvgPool(nn.Module):
    """torch.nn.AvgPool{1,2,3}d: stride defaults to kernel_size; count_include_pad as in torch."""
    kernel_size: Size
    stride: Size | None = None
    padding: Size = 0
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int | None = None

    def __call__(self, x: jax.Array) -> jax.Array:
        return avg_pool(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                        self.count_include_pad, self.divisor_override)


class AdaptiveAvgPool(nn.Module):
    """torch.nn.AdaptiveAvgPool{1,2,3}d with torch's bins, for any input size."""
    output_size: Size

    def __call__(self, x: jax.Array) -> jax.Array:
        return adaptive_avg_pool(x, self.output_size)


class AdaptiveMaxPool(nn.Module):
    """torch.nn.AdaptiveMaxPool{1,2,3}d with torch's bins, for any input size."""
    output_size: Size

    def __call__(self, x: jax.Array) -> jax.Array:
        return adaptive_max_pool(x, self.output_size)


class Dropout(nn.Module):
    """torch.nn.Dropout: when train, zeroes with probability `rate` and scales the rest by 1/(1-rate).
    `broadcast_dims`: axes the mask is shared along (torch's Dropout2d, which drops whole channels: the spatial
    axes, (1, 2) in NHWC).

    Needs the rng 'dropout'. The kept-mask is sown into the 'intermediates'
    collection (under 'keep') when that collection is mutable, so a check can
    replay the very same mask in torch.
    """
    rate: float = 0.5
    broadcast_dims: tuple[int, ...] = ()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if not train or self.rate == 0.0:
            return x
        if self.rate == 1.0:
            return jnp.zeros_like(x)
        shape = tuple(1 if axis in self.broadcast_dims else n for axis, n in enumerate(x.shape))
        keep = jax.random.bernoulli(self.make_rng("dropout"), 1.0 - self.rate, shape)
        self.sow("intermediates", "keep", keep)
        return jnp.where(keep, x / (1.0 - self.rate), 0).astype(x.dtype)

from jaxcnn.attention import scaled_dot_product_attention  # noqa: E402,F401
from jaxcnn.containers import ModuleDict, ModuleList, Sequential  # noqa: E402,F401  (the port's containers)
from jaxcnn.transposed import (ConvTranspose1d, ConvTranspose2d, ConvTranspose3d,  # noqa: E402,F401
                               conv_transpose)
from jaxcnn.torch_layers import (GroupNorm, LayerNorm, PReLU, StochasticDepth, group_norm,  # noqa: E402,F401
                                 interpolate, layer_norm, pad, prelu)
