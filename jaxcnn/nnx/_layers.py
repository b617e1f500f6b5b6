"""torch's layers as Flax NNX modules on channels-last arrays: torch's arguments, Flax's parameter shapes.

Each layer holds its parameters as attributes (`conv.kernel`, `bn.mean`) and computes with the functions of
`jaxcnn.functional` and `jaxcnn.pooling`, the ones jaxcnn's linen layers call: one copy of torch's arithmetic.
Like torch modules, and NNX's own layers, a new layer is in training mode; `train()` and `eval()` (or
`nnx.view(net, deterministic=..., use_running_average=...)`) switch Dropout and BatchNorm.
"""

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcnn.functional import (Size, batch_norm, check_conv_arguments, check_conv_input, conv, conv_padding,
                               dropout, flatten, initializers, linear, per_axis, use_banded)
from jaxcnn.pooling import adaptive_avg_pool, adaptive_max_pool, avg_pool, max_pool


def _value(param: nnx.Param | None) -> jax.Array | None:
    return None if param is None else param[...]


class ConvNd(nnx.Module):
    """torch.nn.Conv{1,2,3}d on channels-last input; the arguments are torch's.

    Arguments:
        weight_init: 'torch' (torch's default, U(+-1/sqrt(fan_in)) for kernel and bias) or 'flax' (LeCun
            normal kernel, zero bias). implementation: 'auto', 'xla' or 'banded', as jaxcnn.layers.ConvNd's.
        rngs: stream 'params' draws the kernel, then the bias.
    Attributes:
        kernel: nnx.Param (*kernel_size, in_channels // groups, out_channels) (torch's weight, as HWIO).
        bias: nnx.Param (out_channels,), or None (bias=False).
    """
    spatial_dims = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Size, stride: Size = 1,
                 padding: Size | str = 0, dilation: Size = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", *, weight_init: str = "torch", implementation: str = "auto",
                 rngs: nnx.Rngs):
        n = self.spatial_dims
        check_conv_arguments(in_channels, out_channels, groups, padding_mode)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = per_axis(kernel_size, n, "kernel_size")
        self.stride, self.dilation = per_axis(stride, n, "stride"), per_axis(dilation, n, "dilation")
        self.padding, self.padding_mode, self.implementation = padding, padding_mode, implementation
        self.pads = tuple(conv_padding(padding, self.kernel_size, self.stride, self.dilation))
        kernel_init, bias_init = initializers(weight_init, in_channels // groups * math.prod(self.kernel_size))
        self.kernel = nnx.Param(kernel_init(rngs.params(), (*self.kernel_size, in_channels // groups, out_channels)))
        self.bias = nnx.Param(bias_init(rngs.params(), (out_channels,))) if bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        """x (N, *spatial, in_channels) -> (N, *spatial_out, out_channels), spatial_out as
        `jaxcnn.conv_output_size` gives it."""
        layer = type(self).__name__
        check_conv_input(layer, x, self.in_channels, self.kernel_size, self.pads, self.dilation)
        banded = use_banded(layer, self.implementation, self.in_channels, self.out_channels, self.groups,
                            x.shape[1:-1])
        return conv(x, self.kernel[...], _value(self.bias), self.stride, self.pads, self.dilation, self.groups,
                    self.padding_mode, banded=banded)


class Conv1d(ConvNd):
    """torch.nn.Conv1d: x (N, W, C_in) -> (N, W_out, C_out)."""
    spatial_dims = 1


class Conv2d(ConvNd):
    """torch.nn.Conv2d: x (N, H, W, C_in) -> (N, H_out, W_out, C_out)."""
    spatial_dims = 2


class Conv3d(ConvNd):
    """torch.nn.Conv3d: x (N, D, H, W, C_in) -> (N, D_out, H_out, W_out, C_out)."""
    spatial_dims = 3


class Linear(nnx.Module):
    """torch.nn.Linear: x (..., in_features) -> (..., out_features).

    Arguments:
        weight_init: 'torch' or 'flax', as ConvNd's. rngs: stream 'params' draws the kernel, then the bias.
    Attributes:
        kernel: nnx.Param (in_features, out_features) (torch's weight, transposed). bias: (out_features,) or None.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, weight_init: str = "torch",
                 rngs: nnx.Rngs):
        self.in_features, self.out_features = in_features, out_features
        kernel_init, bias_init = initializers(weight_init, in_features)
        self.kernel = nnx.Param(kernel_init(rngs.params(), (in_features, out_features)))
        self.bias = nnx.Param(bias_init(rngs.params(), (out_features,))) if bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        return linear("Linear", x, self.kernel[...], _value(self.bias))


class Flatten(nnx.Module):
    """torch.nn.Flatten on channels-last data: x (N, *spatial, C) -> (N, prod(spatial) * C), in (H, W, C) order.

    torch flattens in (C, H, W) order; `jaxcnn.load_torch_weights` permutes the weights of the first Linear
    after a Flatten, so no transpose is needed here.
    """

    def __call__(self, x: jax.Array) -> jax.Array:
        return flatten(x)


class BatchNorm(nnx.Module):
    """torch.nn.BatchNorm{1,2,3}d over the last (channel) axis, with torch's momentum and unbiased running
    variance (`jaxcnn.functional.batch_norm`): x (N, ..., num_features) -> the same shape.

    Attributes:
        scale, bias: nnx.Param (num_features,) (torch's weight and bias).
        mean, var: nnx.BatchStat (num_features,) (torch's running_mean and running_var), updated in place by
            each training-mode call; read, not written, after `eval()` (use_running_average=True).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, *,
                 axis_name: str | None = None, use_running_average: bool = False):
        self.num_features, self.eps, self.momentum, self.axis_name = num_features, eps, momentum, axis_name
        self.use_running_average = use_running_average
        self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))

    def set_view(self, use_running_average: bool | None = None):
        """For `nnx.view`: use_running_average=True reads the running statistics (eval mode)."""
        if use_running_average is not None:
            self.use_running_average = use_running_average

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.shape[-1] != self.num_features:
            raise ValueError(f"BatchNorm expects {self.num_features} channels on the last axis, "
                             f"got shape {tuple(x.shape)}")
        train = not self.use_running_average
        y, mean, var = batch_norm(x, self.scale[...], self.bias[...], self.mean[...], self.var[...], train,
                                  self.momentum, self.eps, self.axis_name)
        if train:
            self.mean[...], self.var[...] = mean, var
        return y


class Dropout(nnx.Module):
    """torch.nn.Dropout: in training mode zeroes with probability `rate` and scales the rest by 1/(1-rate);
    after `eval()` (deterministic=True) the identity. `broadcast_dims`: axes the mask is shared along
    (torch's Dropout2d: the spatial axes, (1, 2) in NHWC).

    Arguments:
        rngs: the layer keeps its own stream, forked from rngs' 'dropout' (else 'default'), as nnx.Dropout does:
            each training-mode call draws that stream's next key.
    Under `nnx.capture(net, nnx.Intermediate)` the keep-mask is sown as 'keep', so that a check can replay the
    very same mask in torch (as jaxcnn.layers.Dropout sows it into linen's 'intermediates').
    """

    def __init__(self, rate: float = 0.5, *, broadcast_dims: Sequence[int] = (), deterministic: bool = False,
                 rngs: nnx.Rngs | nnx.RngStream):
        self.rate, self.broadcast_dims, self.deterministic = rate, tuple(broadcast_dims), deterministic
        self.rngs = rngs["dropout"].fork() if isinstance(rngs, nnx.Rngs) else rngs.fork()

    def set_view(self, deterministic: bool | None = None):
        """For `nnx.view`: deterministic=True turns dropout off (eval mode)."""
        if deterministic is not None:
            self.deterministic = deterministic

    def __call__(self, x: jax.Array, *, deterministic: bool | None = None) -> jax.Array:
        """deterministic: overrides the mode for this call (False: on whatever the mode, as F.dropout(x,
        training=True) is)."""
        if self.deterministic if deterministic is None else deterministic:
            return x
        y, keep = dropout(x, self.rate, self.rngs, self.broadcast_dims)
        if keep is not None and hasattr(self, "__captures__"):  # only inside nnx.capture: sow() else warns
            self.sow(nnx.Intermediate, "keep", keep)
        return y


class MaxPool(nnx.Module):
    """torch.nn.MaxPool{1,2,3}d: x (N, *spatial, C) -> (N, *pooled, C); stride defaults to kernel_size (not to
    1, as Flax's pools do), `jaxcnn.pool_output_size` gives the pooled size."""

    def __init__(self, kernel_size: Size, stride: Size | None = None, padding: Size = 0, dilation: Size = 1,
                 ceil_mode: bool = False):
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode

    def __call__(self, x: jax.Array) -> jax.Array:
        return max_pool(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)


class AvgPool(nnx.Module):
    """torch.nn.AvgPool{1,2,3}d: x (N, *spatial, C) -> (N, *pooled, C); stride defaults to kernel_size,
    count_include_pad and divisor_override as torch's."""

    def __init__(self, kernel_size: Size, stride: Size | None = None, padding: Size = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: int | None = None):
        self.kernel_size, self.stride, self.padding, self.ceil_mode = kernel_size, stride, padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def __call__(self, x: jax.Array) -> jax.Array:
        return avg_pool(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad,
                        self.divisor_override)


class AdaptiveAvgPool(nnx.Module):
    """torch.nn.AdaptiveAvgPool{1,2,3}d: x (N, *spatial, C) -> (N, *output_size, C), torch's bins."""

    def __init__(self, output_size: Size):
        self.output_size = output_size

    def __call__(self, x: jax.Array) -> jax.Array:
        return adaptive_avg_pool(x, self.output_size)


class AdaptiveMaxPool(nnx.Module):
    """torch.nn.AdaptiveMaxPool{1,2,3}d: x (N, *spatial, C) -> (N, *output_size, C), torch's bins."""

    def __init__(self, output_size: Size):
        self.output_size = output_size

    def __call__(self, x: jax.Array) -> jax.Array:
        return adaptive_max_pool(x, self.output_size)


class Sequential(nnx.List):
    """torch.nn.Sequential: its layers (modules, or functions such as jax.nn.relu) indexed as torch's,
    `net.features[3]`, and applied in order; their variables' paths are torch's ('features', 3, 'kernel' for
    'features.3.weight').

    Arguments:
        *layers: the layers, as nn.Sequential(*layers) takes them.
    """

    def __init__(self, *layers: Callable[[jax.Array], jax.Array]):
        super().__init__(layers)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x -> the last layer's output."""
        for layer in self:
            x = layer(x)
        return x
