"""torch.nn.ConvTranspose{1,2,3}d and F.conv_transpose{1,2,3}d on channels-last arrays."""

import math
from typing import Sequence, Union

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

Size = Union[int, Sequence[int]]
_SPATIAL = {1: "W", 2: "HW", 3: "DHW"}


def _per_axis(value: Size, n: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def conv_transpose(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None, stride: Size = 1,
                   padding: Size = 0, output_padding: Size = 0, groups: int = 1, dilation: Size = 1) -> jax.Array:
    """torch's transposed convolution (the gradient of a convolution with respect to its input).

    Arguments:
        x: (N, *spatial, C_in).
        kernel: (*kernel_size, C_out // groups, C_in): torch's weight (C_in, C_out // groups, *kernel_size) with
            its axes reversed, as a Conv's is. bias: (C_out,) or None.
    Returns:
        (N, *spatial_out, C_out), spatial_out = (in - 1) * stride - 2 * padding + dilation * (k - 1)
        + output_padding + 1.
    """
    n = x.ndim - 2
    k = kernel.shape[:n]
    stride, padding, dilation = _per_axis(stride, n), _per_axis(padding, n), _per_axis(dilation, n)
    output_padding = _per_axis(output_padding, n)
    per_group, c_in = kernel.shape[n], kernel.shape[n + 1]
    # (*k, C_out/g, g, C_in/g) -> (*k, C_in/g, g, C_out/g): the kernel of the convolution of the dilated input
    forward = kernel.reshape(*k, per_group, groups, c_in // groups)
    forward = jnp.transpose(forward, (*range(n), n + 2, n + 1, n)).reshape(*k, c_in // groups, groups * per_group)
    forward = jnp.flip(forward, axis=tuple(range(n)))
    pads = [(d * (s - 1) - p, d * (s - 1) - p + o) for s, p, d, o in zip(k, padding, dilation, output_padding)]
    crop = [(max(0, -lo), max(0, -hi)) for lo, hi in pads]
    spec = _SPATIAL[n]
    y = lax.conv_general_dilated(x, forward.astype(x.dtype), (1,) * n, [(max(0, lo), max(0, hi)) for lo, hi in pads],
                                 lhs_dilation=stride, rhs_dilation=dilation,
                                 dimension_numbers=(f"N{spec}C", f"{spec}IO", f"N{spec}C"), feature_group_count=groups)
    y = y[(slice(None), *(slice(lo, y.shape[1 + i] - hi) for i, (lo, hi) in enumerate(crop)))]
    return y if bias is None else y + bias.astype(y.dtype)


class ConvTransposeNd(nn.Module):
    """torch.nn.ConvTranspose{1,2,3}d on channels-last input: x (N, *spatial, in_channels) -> (N, *spatial_out,
    out_channels). Params: kernel (*kernel_size, out_channels // groups, in_channels), bias (out_channels,)."""
    in_channels: int
    out_channels: int
    kernel_size: Size
    stride: Size = 1
    padding: Size = 0
    output_padding: Size = 0
    groups: int = 1
    bias: bool = True
    dilation: Size = 1
    spatial_dims: int = 2

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n = self.spatial_dims
        kernel_size = _per_axis(self.kernel_size, n)
        if x.ndim != n + 2 or x.shape[-1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} {self.name!r} takes channels-last (N, *{n} spatial, "
                             f"{self.in_channels}) input, got {tuple(x.shape)}")
        bound = 1.0 / math.sqrt(self.out_channels // self.groups * math.prod(kernel_size))  # torch's fan_in
        init = lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -bound, bound)  # noqa: E731
        kernel = self.param("kernel", init, (*kernel_size, self.out_channels // self.groups, self.in_channels))
        bias = self.param("bias", init, (self.out_channels,)) if self.bias else None
        return conv_transpose(x, kernel, bias, self.stride, self.padding, self.output_padding, self.groups,
                              self.dilation)


class ConvTranspose1d(ConvTransposeNd):
    spatial_dims: int = 1


class ConvTranspose2d(ConvTransposeNd):
    spatial_dims: int = 2


class ConvTranspose3d(ConvTransposeNd):
    spatial_dims: int = 3
