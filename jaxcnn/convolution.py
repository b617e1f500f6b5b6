"""Convolution written by hand (notebooks 000 and 004): explicit patches, and a Linear over patches.

Both compute what Conv2d computes (a cross-correlation), so they can be checked
against `jax.lax.conv_general_dilated`.
"""

import jax
import jax.numpy as jnp

from jaxcnn.arithmetic import conv_output_size
from jaxcnn.functional import Size, per_axis as _per_axis
from jaxcnn.layers import Linear


def _as_batch(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, jax.Array, bool]:
    """A 2-D image and a 2-D kernel (the notebooks' case) become (1, H, W, 1) and (kh, kw, 1, 1)."""
    x, kernel = jnp.asarray(x), jnp.asarray(kernel)
    single = x.ndim == 2
    if single:
        x = x[None, :, :, None]
    if kernel.ndim == 2:
        kernel = kernel[:, :, None, None]
    if x.ndim != 4 or kernel.ndim != 4 or kernel.shape[2] != x.shape[-1]:
        raise ValueError(f"need x (H, W) or (N, H, W, C) and kernel (kh, kw) or (kh, kw, C, O); "
                         f"got x {tuple(x.shape)}, kernel {tuple(kernel.shape)}")
    return x, kernel, single


def extract_patches(x: jax.Array, kernel_size: Size, stride: Size = 1, padding: Size = 0,
                    dilation: Size = 1) -> jax.Array:
    """Every window a convolution sees: x (N, H, W, C) -> (N, H_out, W_out, kh, kw, C)."""
    (kh, kw), (sh, sw) = _per_axis(kernel_size, 2, "kernel_size"), _per_axis(stride, 2, "stride")
    (ph, pw), (dh, dw) = _per_axis(padding, 2, "padding"), _per_axis(dilation, 2, "dilation")
    ho, wo = conv_output_size(tuple(x.shape[1:3]), (kh, kw), (sh, sw), (ph, pw), (dh, dw))
    x = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    rows = (jnp.arange(ho) * sh)[:, None] + jnp.arange(kh) * dh  # (ho, kh): input row of each tap
    cols = (jnp.arange(wo) * sw)[:, None] + jnp.arange(kw) * dw  # (wo, kw)
    return x[:, rows[:, None, :, None], cols[None, :, None, :], :]


def conv2d_by_hand(x: jax.Array, kernel: jax.Array, stride: Size = 1, padding: Size = 0,
                   dilation: Size = 1) -> jax.Array:
    """Sum over each window of window * kernel.

    x (H, W) with kernel (kh, kw) -> (H_out, W_out); or x (N, H, W, C) with
    kernel (kh, kw, C, O) -> (N, H_out, W_out, O).
    """
    x, kernel, single = _as_batch(x, kernel)
    patches = extract_patches(x, kernel.shape[:2], stride, padding, dilation)
    y = jnp.einsum("nhwijc,ijco->nhwo", patches, kernel.astype(patches.dtype))
    return y[0, :, :, 0] if single else y


def conv2d_as_linear(x: jax.Array, kernel: jax.Array, stride: Size = 1, padding: Size = 0,
                     dilation: Size = 1) -> jax.Array:
    """Notebook 004's Linear(9, 1, bias=False) applied to every flattened 3x3 patch, for any kernel.

    Shapes as `conv2d_by_hand`."""
    x, kernel, single = _as_batch(x, kernel)
    kh, kw, c, o = kernel.shape
    patches = extract_patches(x, (kh, kw), stride, padding, dilation)
    flat = patches.reshape(*patches.shape[:3], kh * kw * c)
    linear = Linear(kh * kw * c, o, bias=False)
    y = linear.apply({"params": {"kernel": kernel.reshape(kh * kw * c, o).astype(flat.dtype)}}, flat)
    return y[0, :, :, 0] if single else y
