"""Layers with torch semantics on channels-last (NHWC, NWC, NDHWC) arrays, as Flax linen modules.

Each layer takes the arguments of its torch namesake (explicit padding, stride
defaults, eps, momentum meaning), so a network reads like the notebook that
defined it. Parameters are Flax-shaped: conv kernels (*kernel_size, in/groups,
out), Linear kernels (in, out). The arithmetic is `jaxcnn.functional`'s and
`jaxcnn.pooling`'s, which jaxcnn's NNX layers (`jaxcnn.nnx`) call too. Nothing
here knows torch's memory layout; `jaxcnn.interchange` does.
"""

import math
from typing import Union

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxcnn.functional import (Size, batch_norm, check_conv_arguments, check_conv_input, conv,  # noqa: F401
                               conv_padding, dropout, flatten, initializers, linear, normalize_over_batch,
                               per_axis, torch_uniform, use_banded)
from jaxcnn.pooling import adaptive_avg_pool, adaptive_max_pool, avg_pool, max_pool  # noqa: F401  (re-exported)


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
        n, layer = self.spatial_dims, f"{type(self).__name__} {self.name!r}"
        kernel_size = per_axis(self.kernel_size, n, "kernel_size")
        stride = per_axis(self.stride, n, "stride")
        dilation = per_axis(self.dilation, n, "dilation")
        check_conv_arguments(self.in_channels, self.out_channels, self.groups, self.padding_mode)
        pads = conv_padding(self.padding, kernel_size, stride, dilation)
        check_conv_input(layer, x, self.in_channels, kernel_size, pads, dilation)
        fan_in = self.in_channels // self.groups * math.prod(kernel_size)
        kernel_init, bias_init = initializers(self.weight_init, fan_in)
        kernel = self.param("kernel", kernel_init, (*kernel_size, self.in_channels // self.groups, self.out_channels))
        bias = self.param("bias", bias_init, (self.out_channels,)) if self.bias else None
        banded = use_banded(layer, self.implementation, self.in_channels, self.out_channels, self.groups,
                            x.shape[1:-1])
        return conv(x, kernel, bias, stride, pads, dilation, self.groups, self.padding_mode, banded=banded)


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
        kernel_init, bias_init = initializers(self.weight_init, self.in_features)
        kernel = self.param("kernel", kernel_init, (self.in_features, self.out_features))
        bias = self.param("bias", bias_init, (self.out_features,)) if self.bias else None
        return linear(f"Linear {self.name!r}", x, kernel, bias)


class Flatten(nn.Module):
    """nn.Flatten on channels-last data: (N, *spatial, C) -> (N, prod(spatial) * C), in (H, W, C) order.

    torch flattens in (C, H, W) order; `jaxcnn.interchange` permutes the weights of
    the first Linear after a Flatten, so no transpose is needed here.
    """

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return flatten(x)


class BatchNorm(nn.Module):
    """torch.nn.BatchNorm{1,2,3}d over the last (channel) axis (`jaxcnn.functional.batch_norm`).

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
        y, mean, var = batch_norm(x, scale, bias, running_mean.value, running_var.value, train, self.momentum,
                                  self.eps, self.axis_name)
        if train and not self.is_initializing():
            running_mean.value, running_var.value = mean, var
        return y


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
        if not train:
            return x
        y, keep = dropout(x, self.rate, lambda: self.make_rng("dropout"), self.broadcast_dims)
        if keep is not None:
            self.sow("intermediates", "keep", keep)
        return y


from jaxcnn.attention import scaled_dot_product_attention  # noqa: E402,F401
from jaxcnn.containers import ModuleDict, ModuleList, Sequential  # noqa: E402,F401  (the port's containers)
from jaxcnn.transposed import (ConvTranspose1d, ConvTranspose2d, ConvTranspose3d,  # noqa: E402,F401
                               conv_transpose)
from jaxcnn.torch_layers import (GroupNorm, LayerNorm, PReLU, StochasticDepth, group_norm,  # noqa: E402,F401
                                 interpolate, layer_norm, pad, prelu)
