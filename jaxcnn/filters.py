"""The fixed (hand-crafted) filters of the course, applied as a bias-free Conv2d with padding 0.

Kernels are (kh, kw) numpy arrays; `apply_filter` takes a (H, W) image or a
(N, H, W, 1) batch and cross-correlates it, exactly as the notebooks' Conv2d.
"""

import jax
import jax.numpy as jnp
import numpy as np


GAUSSIAN_BLUR = np.array([[1, 4, 7, 4, 1],
                          [4, 16, 26, 16, 4],
                          [7, 26, 41, 26, 7],
                          [4, 16, 26, 16, 4],
                          [1, 4, 7, 4, 1]], np.float32) / 273
SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)
SOBEL_Y = SOBEL_X.T.copy()
SHARPEN = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], np.float32)


def apply_filter(image: jax.Array, kernels: np.ndarray) -> jax.Array:
    """Conv2d(1, O, k, bias=False) with fixed weights.

    image (H, W) -> (H', W') for one (kh, kw) kernel, (H', W', O) for a stack
    (O, kh, kw); a batch (N, H, W, 1) -> (N, H', W', O).
    """
    image = jnp.asarray(image, jnp.float32)
    stack = np.asarray(kernels, np.float32)
    one_kernel = stack.ndim == 2
    if one_kernel:
        stack = stack[None]
    single = image.ndim == 2
    x = image[None, :, :, None] if single else image
    if x.ndim != 4 or x.shape[-1] != 1:
        raise ValueError(f"apply_filter needs a (H, W) image or a (N, H, W, 1) batch, got {tuple(image.shape)}")
    hwio = jnp.asarray(stack.transpose(1, 2, 0)[:, :, None, :])
    y = jax.lax.conv_general_dilated(x, hwio, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if single:
        y = y[0]
        return y[..., 0] if one_kernel else y
    return y


def gaussian_blur(image: jax.Array) -> jax.Array:
    """5x5 Gaussian (weights /273, summing to 1): (H, W) -> (H-4, W-4)."""
    return apply_filter(image, GAUSSIAN_BLUR)


def sobel(image: jax.Array) -> jax.Array:
    """Horizontal and vertical Sobel gradients as Conv2d(1, 2, 3): (H, W) -> (H-2, W-2, 2), channels (x, y)."""
    return apply_filter(image, np.stack([SOBEL_X, SOBEL_Y]))


def sharpen(image: jax.Array) -> jax.Array:
    """3x3 sharpen kernel of notebook 000: (H, W) -> (H-2, W-2)."""
    return apply_filter(image, SHARPEN)
