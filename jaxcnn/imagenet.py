"""ImageNet as torchvision's pretrained classifiers see it: the 1000 class names and the photo preprocessing.

    x = jaxcnn.imagenet.IMAGENET("cat.jpg")          # (224, 224, 3) float32, normalised, channels-last
    for index, name, p in jaxcnn.imagenet.top_k(logits, jaxcnn.imagenet.CATEGORIES):
        print(f"{name}: {p:.3f}")
"""

import dataclasses
import json
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np

# torchvision's ImageNet-1k category names (torchvision.models._meta._IMAGENET_CATEGORIES), index order.
CATEGORIES: tuple[str, ...] = tuple(
    resources.files("jaxcnn").joinpath("data/imagenet_classes.txt").read_text().splitlines())
_INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """torchvision's `ImageClassification` transform on a PIL image: the shorter side resized to `resize`
    (PIL's antialiased `interpolation`), a centred `crop` x `crop`, values /255, then (v - mean) / std per channel.

    Calling it on a photo (a path or a PIL image; any mode, converted to RGB) returns (crop, crop, 3) float32.
    """
    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"

    def __post_init__(self):
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {_INTERPOLATIONS}, got {self.interpolation!r}")
        if not 0 < self.crop <= self.resize:
            raise ValueError(f"need 0 < crop <= resize, got crop {self.crop}, resize {self.resize}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Preprocessing":
        fields = json.loads(text)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})

    def resized_and_cropped(self, photo) -> np.ndarray:
        """The photo after resize and centre crop, before normalisation: (crop, crop, 3) uint8."""
        from PIL import Image

        image = photo if isinstance(photo, Image.Image) else open_photo(photo)
        image = image.convert("RGB")
        width, height = image.size
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.resize, int(self.resize * long / short)  # torchvision's rounding
        size = (new_short, new_long) if width <= height else (new_long, new_short)
        image = image.resize(size, getattr(Image.Resampling, self.interpolation.upper()))
        top, left = int(round((size[1] - self.crop) / 2.0)), int(round((size[0] - self.crop) / 2.0))
        return np.asarray(image.crop((left, top, left + self.crop, top + self.crop)), np.uint8)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """(..., 3) uint8 pixels -> float32 (v / 255 - mean) / std."""
        return ((np.asarray(pixels, np.float32) / 255.0 - np.float32(self.mean)) / np.float32(self.std)).astype(
            np.float32)

    def __call__(self, photo) -> np.ndarray:
        return self.normalize(self.resized_and_cropped(photo))


IMAGENET = Preprocessing()


def open_photo(path: str | Path):
    """A JPEG/PNG (any format PIL reads) as a PIL image; a ValueError naming the file when it is not one."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such photo: {path}")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{path} is not an image PIL can read (a JPEG or PNG): {err}") from err
    return image


def top_k(logits, classes: Sequence[str] | None = None, k: int = 5) -> list[tuple[int, str, float]]:
    """The k most probable classes of one image's logits (num_classes,): [(index, name, probability)], most
    probable first; names from `classes` (their index when None)."""
    logits = np.asarray(logits, np.float64).reshape(-1)
    if classes is not None and len(classes) != logits.size:
        raise ValueError(f"{len(classes)} class names for {logits.size} outputs")
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [(int(i), classes[i] if classes is not None else str(int(i)), float(probabilities[i])) for i in order]
