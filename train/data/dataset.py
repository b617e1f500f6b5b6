"""The in-memory image data set every reader returns and every trainer takes (`Dataset`), and its errors."""

import dataclasses
import hashlib
from pathlib import Path

import numpy as np


class DataError(RuntimeError):
    """A data file is missing, corrupt, or not what the dataset needs; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Both splits of an image data set, as a trainer takes them.

    Arguments:
        train_images, test_images: uint8 (N, H, W, C), the same (H, W, C) in both splits.
        train_labels, test_labels: int32 class indices (N,) for a classifier, or float32 regression targets
            (N, K) (notebook 003's sun: K = 2, the sun's x, y in pixels).
        classes: the class names, index = label (None for regression targets).
    """
    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...] | None = None

    def __post_init__(self):
        for split in ("train", "test"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if images.ndim != 4 or images.dtype != np.uint8:
                raise DataError(f"{self.name}: {split} images must be uint8 (N, H, W, C), got {images.dtype} "
                                f"{images.shape}")
            if len(images) != len(labels):
                raise DataError(f"{self.name}: {len(images)} {split} images but {len(labels)} labels")
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise DataError(f"{self.name}: train images are {self.train_images.shape[1:]} (H, W, C) but test images "
                            f"{self.test_images.shape[1:]}")
        if self.regression == (self.classes is not None):
            raise DataError(f"{self.name}: integer labels need class names, float targets none")

    @property
    def regression(self) -> bool:
        """Whether the labels are float regression targets (N, K) rather than class indices."""
        return bool(np.issubdtype(self.train_labels.dtype, np.floating))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of every image."""
        return tuple(self.train_images.shape[1:])

    @property
    def num_outputs(self) -> int:
        """What a model of this data set outputs per image: the number of classes, or of regression targets."""
        return self.train_labels.shape[1] if self.regression else len(self.classes)

    def subset(self, train: int | None = None, test: int | None = None) -> "Dataset":
        """The first `train` / `test` examples of each split (for quick runs and tests)."""
        return dataclasses.replace(self, train_images=self.train_images[:train], train_labels=self.train_labels[:train],
                                   test_images=self.test_images[:test], test_labels=self.test_labels[:test])


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
