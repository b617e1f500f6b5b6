"""Image grids (torchvision.utils.make_grid for NHWC arrays) and conv kernels laid out as images."""

import math

import numpy as np


def make_grid(images, nrow: int = 8, padding: int = 2, pad_value: float = 0.0, normalize: bool = True,
              scale_each: bool = True) -> np.ndarray:
    """(N, H, W, C) -> (rows * (H + padding) + padding, cols * (W + padding) + padding, C), rows = ceil(N / nrow).

    Like torchvision's make_grid: images left to right, `nrow` per row, `padding` pixels of `pad_value`
    around each. normalize: min-max scale to [0, 1], per image with scale_each, else over all images
    (a constant image becomes 0). The padding keeps `pad_value` (not scaled).
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4:
        raise ValueError(f"make_grid needs (N, H, W, C) images, got shape {images.shape}")
    if nrow < 1 or padding < 0:
        raise ValueError(f"nrow must be >= 1 and padding >= 0, got nrow={nrow}, padding={padding}")
    if normalize:
        axes = (1, 2, 3) if scale_each else (0, 1, 2, 3)
        low = images.min(axis=axes, keepdims=True)
        span = images.max(axis=axes, keepdims=True) - low
        images = np.where(span > 0, (images - low) / np.where(span > 0, span, 1), 0.0)
    n, h, w, c = images.shape
    cols = min(nrow, n)
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + padding) + padding, cols * (w + padding) + padding, c), pad_value, np.float32)
    for index, image in enumerate(images):
        top, left = padding + (index // nrow) * (h + padding), padding + (index % nrow) * (w + padding)
        grid[top:top + h, left:left + w] = image
    return grid


def filter_images(kernel) -> np.ndarray:
    """A Conv2d kernel (kh, kw, in, out) as `out` images (out, kh, kw, in): the first layer's filters in colour."""
    kernel = np.asarray(kernel)
    if kernel.ndim != 4:
        raise ValueError(f"a Conv2d kernel is (kh, kw, in, out), got shape {kernel.shape}")
    return kernel.transpose(3, 0, 1, 2)


def channel_filter_images(kernel) -> np.ndarray:
    """A Conv2d kernel (kh, kw, in, out) as out * in one-channel images (out * in, kh, kw, 1).

    Row-major by output filter: make_grid(..., nrow=in) puts one filter per row, one input channel per column.
    """
    images = filter_images(kernel)  # (out, kh, kw, in)
    out, kh, kw, cin = images.shape
    return images.transpose(0, 3, 1, 2).reshape(out * cin, kh, kw, 1)
