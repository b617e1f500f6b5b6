"""Matplotlib figures for train.inspect: image grids, heat maps next to their image, rows of images."""

from pathlib import Path

import numpy as np

from jaxcnn.files import atomic_target
from jaxcnn.inspect import make_grid


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    """Written to a temporary name and renamed: a PNG is either complete or absent."""
    with atomic_target(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
    _pyplot().close(fig)


def _show(ax, image: np.ndarray, title: str = "", cmap: str = "gray", **kwargs) -> None:
    """One image: grey (H, W) or (H, W, 1) through `cmap`; RGB as uint8 pixels, or floats scaled to [0, 1]."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.dtype != np.uint8:
        image = image.astype(np.float32)
        if image.ndim == 3 and (image.min() < 0 or image.max() > 1):  # RGB floats: imshow takes [0, 1] only
            image = (image - image.min()) / max(float(image.max() - image.min()), 1e-12)
    ax.imshow(image, cmap=cmap if image.ndim == 2 else None, **kwargs)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def grid_figure(images: np.ndarray, path: Path, title: str, nrow: int = 8, padding: int = 1,
                cmap: str = "gray") -> None:
    """(N, H, W, C) images, each min-max scaled, in a grid with `nrow` per row (pad value 1: white lines)."""
    grid = make_grid(images, nrow=nrow, padding=padding, pad_value=1.0)
    plt = _pyplot()
    rows, cols = grid.shape[:2]
    fig, ax = plt.subplots(figsize=(max(4.0, min(14.0, cols / 12)), max(3.0, min(14.0, rows / 12)) + 0.4))
    _show(ax, grid, title, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    _save(fig, path)


def maps_figure(image: np.ndarray, maps: list[tuple], path: Path, title: str) -> None:
    """The input image, then each (title, map, colormap[, extent]) beside it with a colour bar.

    Signed one-channel maps get limits symmetric around 0; colour maps are scaled to [0, 1] around 0.
    extent (left, right, bottom, top) places a coarser map on the image's pixel grid.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 1 + len(maps), figsize=(3.2 * (1 + len(maps)), 3.4))
    _show(axes[0], image, "input", interpolation="nearest")
    height, width = np.asarray(image).shape[:2]
    for ax, (name, values, cmap, *extent) in zip(axes[1:], maps):
        values = np.asarray(values, np.float32)
        rgb = values.ndim == 3 and values.shape[-1] == 3
        largest = max(float(np.abs(values).max()), 1e-12)
        limits = {} if rgb or values.min() >= 0 else {"vmin": -largest, "vmax": largest}
        if rgb:
            values = 0.5 + values / (2 * largest)
        _show(ax, values, name, cmap=cmap, interpolation="nearest", extent=extent[0] if extent else None, **limits)
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
        if not rgb:
            fig.colorbar(ax.images[0], ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def occlusion_extent(size: int, stride: int, map_shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """(left, right, bottom, top) placing an occlusion map on its image: each value sits at its patch's centre."""
    first = (size - 1) / 2
    return (first - stride / 2, first + (map_shape[1] - 0.5) * stride, first + (map_shape[0] - 0.5) * stride,
            first - stride / 2)


def rows_figure(rows: list[tuple[str, np.ndarray, list[str]]], path: Path, title: str) -> None:
    """One row per (label, images (K, H, W, C), per-image titles)."""
    plt = _pyplot()
    cols = max(len(images) for _, images, _ in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.3 * cols, 1.6 * len(rows) + 0.4), squeeze=False)
    for r, (label, images, titles) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            if c < len(images):
                _show(ax, images[c], titles[c], interpolation="nearest")
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(label, fontsize=9)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)
