"""torch's layer arithmetic on channels-last arrays, as pure functions of the input and the parameters.

The one copy of it: jaxcnn's linen layers (`jaxcnn.layers`) and its NNX layers (`jaxcnn.nnx`) hold the
parameters and call these, so a linen network and its NNX twin compute the same operations in the same order.
Each function takes its torch namesake's arguments (explicit padding, torch's BatchNorm momentum, torch's
default initialisation); shapes are Flax's: conv kernels (*kernel_size, in/groups, out), Linear kernels (in, out).
"""

import math
from typing import Callable, Sequence, Union

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

from jaxcnn.banded import banded_conv2d, prefer_banded

Size = Union[int, Sequence[int]]
PADDING_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
SPATIAL = {1: "W", 2: "HW", 3: "DHW"}


def per_axis(value: Size, n: int, what: str) -> tuple[int, ...]:
    """An int or a tuple of `n` ints as a tuple of `n` ints (ValueError naming `what` for another length)."""
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


def initializers(init: str, fan_in: int):
    """(kernel initializer, bias initializer) of `init`: 'torch' (torch_uniform for both) or 'flax' (LeCun
    normal kernels, zero biases); each is called as init(key, shape, dtype)."""
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
    pads = per_axis(padding, n, "padding")
    if any(p < 0 for p in pads):
        raise ValueError(f"padding must be >= 0, got {pads}")
    return [(p, p) for p in pads]


def check_conv_arguments(in_channels: int, out_channels: int, groups: int, padding_mode: str) -> None:
    """torch's (and jaxcnn's) rules for a convolution's arguments; ValueError naming the one broken."""
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"in_channels={in_channels} and out_channels={out_channels} "
                         f"must both be divisible by groups={groups}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {sorted(PADDING_MODES)}, got {padding_mode!r}")


def check_conv_input(layer: str, x: jax.Array, in_channels: int, kernel_size: Sequence[int],
                     pads: Sequence[tuple[int, int]], dilation: Sequence[int]) -> None:
    """ValueError, naming `layer` ("Conv2d 'conv1'"), unless x is (N, *spatial, in_channels) with every padded
    spatial axis at least the kernel's span."""
    n = len(kernel_size)
    if x.ndim != n + 2 or x.shape[-1] != in_channels:
        axes = ", ".join(SPATIAL[n])
        raise ValueError(f"{layer} expects input (N, {axes}, C={in_channels}) (channels last), "
                         f"got shape {tuple(x.shape)}")
    for axis, (size, (lo, hi), k, d) in enumerate(zip(x.shape[1:-1], pads, kernel_size, dilation)):
        if size + lo + hi < d * (k - 1) + 1:
            raise ValueError(f"{layer}: spatial axis {axis} of input {tuple(x.shape)} "
                             f"is smaller than the kernel span {d * (k - 1) + 1} (padding {lo}+{hi})")


def use_banded(layer: str, implementation: str, in_channels: int, out_channels: int, groups: int,
               spatial: tuple[int, ...]) -> bool:
    """Whether a convolution computes by `jaxcnn.banded` on an input map of size `spatial`: 'banded' (2-D,
    groups=1 only, else a ValueError naming `layer`), 'xla' never, 'auto' where `prefer_banded` says so."""
    if implementation == "auto":
        return prefer_banded(in_channels, out_channels, groups, spatial)
    if implementation == "banded":
        if len(spatial) != 2 or groups != 1:
            raise ValueError(f"{layer}: implementation='banded' needs a 2-D convolution with groups=1, "
                             f"got {len(spatial)}-D, groups={groups}")
        return True
    if implementation == "xla":
        return False
    raise ValueError(f"implementation must be 'auto', 'xla' or 'banded', got {implementation!r}")


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
    stride, dilation = per_axis(stride, n, "stride"), per_axis(dilation, n, "dilation")
    pads = [tuple(p) for p in padding] if isinstance(padding, (list, tuple)) and padding and \
        isinstance(padding[0], (list, tuple)) else conv_padding(padding, kernel_size, stride, dilation)
    if padding_mode != "zeros":
        x = jnp.pad(x, [(0, 0), *pads, (0, 0)], mode=PADDING_MODES[padding_mode])
        pads = [(0, 0)] * n
    if banded:
        y = banded_conv2d(x, kernel.astype(x.dtype), stride, pads, dilation)
    else:
        spec = SPATIAL[n]
        y = lax.conv_general_dilated(x, kernel.astype(x.dtype), stride, pads, rhs_dilation=dilation,
                                     dimension_numbers=(f"N{spec}C", f"{spec}IO", f"N{spec}C"),
                                     feature_group_count=groups)
    return y if bias is None else y + bias.astype(y.dtype)


def linear(layer: str, x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """torch.nn.functional.linear with a Flax kernel: x (..., in) @ kernel (in, out) + bias (out,) -> (..., out);
    a ValueError naming `layer` ("Linear 'fc'") for input that does not end in `in`."""
    if x.ndim < 1 or x.shape[-1] != kernel.shape[0]:
        raise ValueError(f"{layer} expects (..., {kernel.shape[0]}) input, got shape {tuple(x.shape)}")
    y = jnp.dot(x, kernel.astype(x.dtype))
    return y if bias is None else y + bias.astype(y.dtype)


def flatten(x: jax.Array) -> jax.Array:
    """nn.Flatten on channels-last data: (N, *spatial, C) -> (N, prod(spatial) * C), in (H, W, C) order."""
    return x.reshape(x.shape[0], math.prod(x.shape[1:]))  # not -1: a batch of 0 has no size to infer from


def _normalized(x: jax.Array, mean, var, scale, bias, eps: float) -> jax.Array:
    """BatchNorm's arithmetic over the last axis: (x - mean) / sqrt(var + eps) * scale + bias."""
    return (x - mean) * (lax.rsqrt(var + eps) * scale) + bias


def batch_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, running_mean: jax.Array, running_var: jax.Array,
               train: bool, momentum: float = 0.1, eps: float = 1e-5, axis_name: str | None = None
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """torch.nn.functional.batch_norm over the last (channel) axis, with torch's running statistics.

    Train mode normalises with the biased batch variance (averaged over `axis_name`'s devices when given) and
    moves running = (1 - momentum) * running + momentum * batch, the variance unbiased, as torch does (torch's
    momentum=0.1 is Flax's 0.9). bfloat16 or float16 input is normalised in float32, statistics too, and comes
    back in its own dtype.

    Arguments:
        x: (N, ..., C); scale, bias, running_mean, running_var: (C,).
    Returns:
        (y shaped like x, new running mean, new running var); in eval mode the running statistics unchanged.
    """
    given, x = x.dtype, x.astype(jnp.promote_types(x.dtype, jnp.float32))  # statistics in float32 at least
    if train:
        axes = tuple(range(x.ndim - 1))
        mean = x.mean(axes)
        if axis_name is not None:
            mean = lax.pmean(mean, axis_name)
        var = jnp.square(x - mean).mean(axes)
        count = math.prod(x.shape[:-1])
        if axis_name is not None:
            var = lax.pmean(var, axis_name)
            count *= lax.psum(1, axis_name)
        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var = (1 - momentum) * running_var + momentum * var * (count / max(count - 1, 1))
    else:
        mean, var = running_mean, running_var
    y = _normalized(x, mean, var, scale, bias, eps)
    return (y.astype(given) if given != x.dtype else y), running_mean, running_var


def normalize_over_batch(x: jax.Array, weight=None, bias=None, eps: float = 1e-5) -> jax.Array:
    """torch.nn.functional.batch_norm with batch statistics and no running ones, on channels-last x (N, ..., C):
    each channel normalised over every other axis with the biased variance, then scaled and shifted (C,)."""
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axes)
    var = jnp.square(x - mean).mean(axes)
    return _normalized(x, mean, var, 1 if weight is None else weight, 0 if bias is None else bias, eps)


def dropout(x: jax.Array, rate: float, key: Callable[[], jax.Array], broadcast_dims: Sequence[int] = ()
            ) -> tuple[jax.Array, jax.Array | None]:
    """torch.nn.functional.dropout in training mode: zeroes with probability `rate`, scales the rest by
    1/(1-rate); the mask shared along `broadcast_dims` (Dropout2d's whole channels: the spatial axes).

    Arguments:
        x: any shape. key: called for the mask's key only when one is drawn (0 < rate < 1).
    Returns:
        (y shaped like x, the boolean keep-mask drawn, or None where none was).
    """
    if rate == 0.0:
        return x, None
    if rate == 1.0:
        return jnp.zeros_like(x), None
    shape = tuple(1 if axis in broadcast_dims else n for axis, n in enumerate(x.shape))
    keep = jax.random.bernoulli(key(), 1.0 - rate, shape)
    return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype), keep
