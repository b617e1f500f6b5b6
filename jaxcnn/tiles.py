"""Pooling over non-overlapping windows (stride = kernel, no padding) as reshapes, which XLA:CPU runs far
faster than reduce_window, whose max-pool gradient (select_and_scatter) dominated a training step.

The max keeps torch's gradient rule: a window's gradient goes to its first maximum (row-major), where
jnp.max's own gradient would split it among ties (common on MNIST's constant background).
"""

import functools
import itertools

import jax
import jax.numpy as jnp


def _windows(x: jax.Array, kernel: tuple[int, ...]) -> tuple[jax.Array, tuple[int, ...]]:
    """(N, *spatial, C) -> (N, o1, k1, o2, k2, ..., C), cropping what no window covers (torch's floor mode)."""
    out = tuple(size // k for size, k in zip(x.shape[1:-1], kernel))
    x = x[(slice(None), *(slice(0, o * k) for o, k in zip(out, kernel)))]
    shape = [x.shape[0]]
    for o, k in zip(out, kernel):
        shape += [o, k]
    return x.reshape(*shape, x.shape[-1]), tuple(range(2, 2 * len(kernel) + 1, 2))


def tiled_mean(x: jax.Array, kernel: tuple[int, ...], divisor: int | None = None) -> jax.Array:
    """Average over each window (sum / divisor, default the window size): (N, *spatial, C) -> (N, *out, C)."""
    windows, axes = _windows(x, kernel)
    total = windows.sum(axis=axes)
    return total / (divisor or functools.reduce(lambda a, b: a * b, kernel))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def tiled_max(x: jax.Array, kernel: tuple[int, ...]) -> jax.Array:
    """Maximum of each window: (N, *spatial, C) -> (N, *spatial // kernel, C)."""
    windows, axes = _windows(x, kernel)
    return windows.max(axis=axes)


def _tiled_max_fwd(x, kernel):
    y = tiled_max(x, kernel)
    return y, (x, y)


def _tiled_max_bwd(kernel, residuals, g):
    x, y = residuals
    windows, axes = _windows(x, kernel)
    taken = jnp.zeros(y.shape, bool)
    parts = {}
    for offsets in itertools.product(*(range(k) for k in kernel)):  # row-major, like torch's scan of a window
        at = [slice(None)] * windows.ndim
        for axis, offset in zip(axes, offsets):
            at[axis] = offset
        hit = (windows[tuple(at)] == y) & ~taken
        taken = taken | hit
        parts[offsets] = jnp.where(hit, g, jnp.zeros((), g.dtype))

    def assemble(prefix, depth):
        if depth == len(kernel):
            return parts[prefix]
        return jnp.stack([assemble(prefix + (i,), depth + 1) for i in range(kernel[depth])], axis=2 + depth)

    grad = assemble((), 0).reshape(x.shape[0], *(o * k for o, k in zip(y.shape[1:-1], kernel)), x.shape[-1])
    pads = [(0, 0), *((0, size - o * k) for size, o, k in zip(x.shape[1:-1], y.shape[1:-1], kernel)), (0, 0)]
    return (jnp.pad(grad, pads),)


tiled_max.defvjp(_tiled_max_fwd, _tiled_max_bwd)
