"""2-D convolution as one matrix product over blocks of output columns ("banded" convolution).

XLA:CPU runs convolutions with few output channels slowly: LeNet-5's Conv2d(1, 6, 5) forward took 4.8 ms
for a batch of 100 (5 GFLOP/s) and the input gradient of its Conv2d(6, 16, 5) 3.1 ms
(`python -m train.bench.layers`). Here the convolution is a dot that XLA's matrix library runs at full speed:

    out[n, h, b*B + o, p] = sum_{i, v, c} x[n, h*s + i*d, b*B*s + v, c] * T[i, v, c, o, p]

with T[i, v, c, o, p] = kernel[i, j, c, p] where v = o*s + j*d, and zero elsewhere: one small banded matrix
(kh * span * C_in, B * C_out) shared by every block of B output columns, span = (B-1)*s + (kw-1)*d + 1
input columns. The multiplications by T's zeros cost span / kw times the direct FLOPs (2.2x for 5x5
kernels in blocks of 7) and are exact: the result is the direct convolution's sum in another order. The
gradients are dots and overlap-adds of the same shapes, by autodiff.

One difference from XLA's convolution: a non-finite input value meets T's zeros, so inf or nan in the
input turns the whole block of B output columns that sees it into nan.
"""

import functools
import math

import numpy as np
import jax
import jax.numpy as jnp
from jax import lax

MAX_CHANNELS = 16  # 'auto' takes this path on CPU when in and out channels are both at most this,
MAX_PIXELS = 32 * 32  # and the input map has at most this many pixels (python -m train.bench.layers)
MAX_BLOCK = 8


def block_width(out_width: int) -> int:
    """Output columns per block: the largest divisor of out_width up to MAX_BLOCK (LeNet-5: 28 -> 7, 10 -> 5)."""
    return max(b for b in range(1, min(out_width, MAX_BLOCK) + 1) if out_width % b == 0)


def prefer_banded(in_channels: int, out_channels: int, groups: int, spatial: tuple[int, ...]) -> bool:
    """Where 'auto' takes the banded path: 2-D, ungrouped, few channels, MNIST/CIFAR-sized maps, a CPU backend.

    Measured with `python -m train.bench.layers` (ms forward / input gradient / kernel gradient, XLA vs banded):
    LeNet-5 conv1 3.9/5.9/1.2 vs 0.8/1.2/1.3, conv2 1.1/4.4/1.3 vs 1.0/0.9/1.3, cifar_conv_mlp's 3 -> 6 on
    32x32 2.1/3.0/1.7 vs 0.7/0.9/0.9. Not taken: 32 channels (mnist_cnn conv1 1 -> 32: kernel gradient 0.9
    vs 6.1) or larger maps (sun_regressor's 8 -> 4 on 64x64: input gradient 4.4 vs 16.6).
    """
    return (len(spatial) == 2 and groups == 1 and max(in_channels, out_channels) <= MAX_CHANNELS
            and math.prod(spatial) <= MAX_PIXELS and jax.default_backend() == "cpu")


def _selector(kw: int, span: int, block: int, stride: int, dilation: int) -> np.ndarray:
    """(kw, span, block) 0/1: kernel column j feeds output column o from input column o*stride + j*dilation."""
    sel = np.zeros((kw, span, block), np.float32)
    for j in range(kw):
        sel[j, np.arange(block) * stride + j * dilation, np.arange(block)] = 1
    return sel


def _blocks(rows: jax.Array, count: int, step: int, span: int) -> jax.Array:
    """(N, H, kh, W, C) -> (N, H, count, kh, span, C): windows of `span` columns starting every `step`.

    A few windows are sliced one by one. More are built from ceil(span / step) reshaped slices, so that the
    gradient (the overlap-add) is a few pads rather than one per window: 45 -> 17 ms for an 8 -> 4 conv on
    64x64 at batch 32, where LeNet-5 (4 and 2 windows) is ~0.3 ms/step faster with the slices.
    """
    if count <= 4:
        return jnp.stack([rows[:, :, :, b * step: b * step + span] for b in range(count)], axis=2)
    parts = -(-span // step)
    need = (count + parts - 1) * step
    rows = jnp.pad(rows, [(0, 0)] * 3 + [(0, max(0, need - rows.shape[3])), (0, 0)])
    n, h, kh, _, c = rows.shape
    pieces = [rows[:, :, :, q * step: (q + count) * step].reshape(n, h, kh, count, step, c) for q in range(parts)]
    windows = jnp.concatenate(pieces, axis=4)[:, :, :, :, :span]
    return jnp.moveaxis(windows, 3, 2)


def banded_conv2d(x: jax.Array, kernel: jax.Array, stride=(1, 1), padding=((0, 0), (0, 0)),
                  dilation=(1, 1)) -> jax.Array:
    """torch's Conv2d (zero padding, groups=1, no bias) on channels-last input.

    Arguments:
        x: (N, H, W, C_in).
        kernel: (kh, kw, C_in, C_out).
        stride, dilation: (s_h, s_w), (d_h, d_w).
        padding: ((top, bottom), (left, right)), zeros.

    Returns:
        (N, H_out, W_out, C_out), H_out = (H + top + bottom - d_h*(kh-1) - 1) // s_h + 1 (and W_out alike).
    """
    kh, kw, cin, cout = kernel.shape
    if x.ndim != 4 or x.shape[-1] != cin:
        raise ValueError(f"banded_conv2d expects x (N, H, W, {cin}) for kernel {tuple(kernel.shape)}, "
                         f"got {tuple(x.shape)}")
    stride, dilation = tuple(map(int, stride)), tuple(map(int, dilation))
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)
    return _banded_conv2d(x, kernel, stride, padding, dilation)


# One compiled computation: called eagerly (a model's init, a notebook's apply), its ~30 small operations
# would otherwise each be compiled on their own (LeNet-5's first eager apply 2.7 -> 1.8 s, input gradient
# 6.0 -> 4.1 s on a 2-core CPU); under an outer jit it is inlined.
@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _banded_conv2d(x: jax.Array, kernel: jax.Array, stride, padding, dilation) -> jax.Array:
    kh, kw, cin, cout = kernel.shape
    (sh, sw), (dh, dw) = stride, dilation
    x = jnp.pad(x, [(0, 0), *padding, (0, 0)])
    n, h, w, _ = x.shape
    out_h, out_w = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"banded_conv2d: padded input {(h, w)} is smaller than the kernel span "
                         f"{(dh * (kh - 1) + 1, dw * (kw - 1) + 1)}")
    block = block_width(out_w)
    span = (block - 1) * sw + dw * (kw - 1) + 1
    rows = jnp.stack([x[:, i * dh: i * dh + sh * (out_h - 1) + 1: sh] for i in range(kh)], axis=2)
    blocks = _blocks(rows, out_w // block, block * sw, span)  # (N, H_out, blocks, kh, span, C_in)
    selector = jnp.asarray(_selector(kw, span, block, sw, dw), kernel.dtype)
    banded = jnp.einsum("jvo,ijcp->ivcop", selector, kernel, precision=lax.Precision.HIGHEST)
    # A 2-D product: its kernel gradient is then one (K, M) x (M, N) product, which XLA:CPU runs faster than
    # the 3-axis contraction autodiff makes of a 4-D one (LeNet-5 step 5.2 vs 5.9 ms).
    y = jnp.dot(blocks.reshape(-1, kh * span * cin), banded.reshape(kh * span * cin, block * cout).astype(x.dtype))
    return y.reshape(n, out_h, out_w, cout)
