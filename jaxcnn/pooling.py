"""torch's pools on channels-last (N, *spatial, C) arrays, as pure functions: stride defaults to the kernel size
(not to 1, as Flax's pools do), explicit padding, ceil_mode, count_include_pad and adaptive bins as torch's.
jaxcnn's linen pool layers (`jaxcnn.layers`) and its NNX ones (`jaxcnn.nnx`) call these.
"""

import jax
import jax.numpy as jnp
from jax import lax

from jaxcnn.arithmetic import pool_output_size
from jaxcnn.functional import Size, per_axis
from jaxcnn.tiles import tiled_max, tiled_mean


def _pool_geometry(x: jax.Array, kernel_size: Size, stride: Size | None, padding: Size, dilation: Size,
                   ceil_mode: bool, name: str):
    n = x.ndim - 2
    if n < 1:
        raise ValueError(f"{name} expects (N, *spatial, C) input, got shape {tuple(x.shape)}")
    k = per_axis(kernel_size, n, "kernel_size")
    s = k if stride is None else per_axis(stride, n, "stride")
    p = per_axis(padding, n, "padding")
    d = per_axis(dilation, n, "dilation")
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
    for axis, o in enumerate(per_axis(output_size, n, "output_size"), start=1):
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
