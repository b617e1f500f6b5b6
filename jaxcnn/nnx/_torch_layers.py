"""More torch layers as NNX modules, the ones ported networks use beyond the course's: ConvTranspose, LayerNorm,
GroupNorm, PReLU, StochasticDepth, and `Buffer` (a tensor torch registers with register_buffer).

Their arithmetic is jaxcnn.torch_layers' and jaxcnn.transposed's functions, which jaxcnn's linen layers call too.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcnn.functional import per_axis
from jaxcnn.torch_layers import Shape, group_norm, layer_norm, prelu, stochastic_depth
from jaxcnn.transposed import Size, conv_transpose


class Buffer(nnx.Variable):
    """A tensor that torch registers with `register_buffer` (a filter, an index table): state, not a parameter,
    so that `nnx.state(net, nnx.Param)` leaves it out as torch's `parameters()` does."""


class ConvTransposeNd(nnx.Module):
    """torch.nn.ConvTranspose{1,2,3}d: x (N, *spatial, in_channels) -> (N, *spatial_out, out_channels).

    Attributes:
        kernel: nnx.Param (*kernel_size, out_channels // groups, in_channels). bias: (out_channels,) or None.
    """
    spatial_dims = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Size, stride: Size = 1, padding: Size = 0,
                 output_padding: Size = 0, groups: int = 1, bias: bool = True, dilation: Size = 1, *,
                 rngs: nnx.Rngs):
        kernel_size = per_axis(kernel_size, self.spatial_dims, "kernel_size")
        self.in_channels, self.stride, self.padding, self.output_padding = in_channels, stride, padding, output_padding
        self.groups, self.dilation = groups, dilation
        bound = 1.0 / math.sqrt(out_channels // groups * math.prod(kernel_size))  # torch's fan_in
        uniform = lambda shape: jax.random.uniform(rngs.params(), shape, jnp.float32, -bound, bound)  # noqa: E731
        self.kernel = nnx.Param(uniform((*kernel_size, out_channels // groups, in_channels)))
        self.bias = nnx.Param(uniform((out_channels,))) if bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        n = self.spatial_dims
        if x.ndim != n + 2 or x.shape[-1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} takes channels-last (N, *{n} spatial, {self.in_channels}) "
                             f"input, got {tuple(x.shape)}")
        bias = None if self.bias is None else self.bias[...]
        return conv_transpose(x, self.kernel[...], bias, self.stride, self.padding, self.output_padding, self.groups,
                              self.dilation)


class ConvTranspose1d(ConvTransposeNd):
    spatial_dims = 1


class ConvTranspose2d(ConvTransposeNd):
    spatial_dims = 2


class ConvTranspose3d(ConvTransposeNd):
    spatial_dims = 3


class LayerNorm(nnx.Module):
    """torch.nn.LayerNorm over the last axes: x (..., *normalized_shape) -> the same shape.

    Attributes: scale (torch's weight) and bias, nnx.Param normalized_shape, where elementwise_affine (and bias).
    """

    def __init__(self, normalized_shape: Shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True):
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps = eps
        self.scale = nnx.Param(jnp.ones(self.normalized_shape)) if elementwise_affine else None
        self.bias = nnx.Param(jnp.zeros(self.normalized_shape)) if elementwise_affine and bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        return layer_norm(x, self.normalized_shape, *(None if p is None else p[...] for p in (self.scale, self.bias)),
                          self.eps)


class GroupNorm(nnx.Module):
    """torch.nn.GroupNorm on channels-last (N, *spatial, C). Attributes: scale (torch's weight), bias (C,)."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True):
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, eps
        self.scale = nnx.Param(jnp.ones((num_channels,))) if affine else None
        self.bias = nnx.Param(jnp.zeros((num_channels,))) if affine else None

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.shape[-1] != self.num_channels:
            raise ValueError(f"GroupNorm expects {self.num_channels} channels last, got {tuple(x.shape)}")
        return group_norm(x, self.num_groups, *(None if p is None else p[...] for p in (self.scale, self.bias)),
                          self.eps)


class PReLU(nnx.Module):
    """torch.nn.PReLU on channels-last input. Attribute: weight, nnx.Param (num_parameters,), set to `init`."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25):
        self.weight = nnx.Param(jnp.full((num_parameters,), init, jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return prelu(x, self.weight[...])


class StochasticDepth(nnx.Module):
    """torchvision.ops.StochasticDepth: in training mode keeps each sample ('row') or the whole batch ('batch')
    with probability 1 - rate, the kept scaled by 1 / (1 - rate); the identity after `eval()`.

    Arguments:
        rngs: the layer keeps its own stream, forked from rngs' 'dropout', as jaxcnn.nnx.Dropout does.
    Under `nnx.capture(net, nnx.Intermediate)` the keep mask is sown as 'keep' (a check replays it in torch).
    """

    def __init__(self, rate: float, mode: str = "row", *, deterministic: bool = False,
                 rngs: nnx.Rngs | nnx.RngStream):
        if mode not in ("row", "batch"):
            raise ValueError(f"mode must be 'row' or 'batch', got {mode!r}")
        self.rate, self.mode, self.deterministic = rate, mode, deterministic
        self.rngs = rngs["dropout"].fork() if isinstance(rngs, nnx.Rngs) else rngs.fork()

    def set_view(self, deterministic: bool | None = None):
        """For `nnx.view`: deterministic=True turns it off (eval mode)."""
        if deterministic is not None:
            self.deterministic = deterministic

    def __call__(self, x: jax.Array, *, deterministic: bool | None = None) -> jax.Array:
        """deterministic: overrides the mode for this call (False: on whatever the mode, as
        `stochastic_depth(x, p, mode, training=True)` is)."""
        if self.deterministic if deterministic is None else deterministic:
            return x
        y, keep = stochastic_depth(x, self.rate, self.mode, self.rngs)
        if keep is not None and hasattr(self, "__captures__"):  # only inside nnx.capture: sow() else warns
            self.sow(nnx.Intermediate, "keep", keep)
        return y
