"""A user's own photos in torchvision's ImageFolder layout, scanned into labelled file lists (`scan` -> `Folders`).

Two layouts:

    DIR/train/<class>/...   and   DIR/val/<class>/...     the splits as given
    DIR/<class>/...                                      with a val fraction: each class split by a seeded draw

Classes and files are found as torchvision's `ImageFolder` finds them: the class names are the sub-folders'
names in plain `sorted` order (so "C" < "a" and "10" < "9"), a class's label its index in that list; a class's
files are every file under its folder, sub-folders included (`sorted(os.walk(..., followlinks=True))`, then each
folder's sorted names), whose name ends in one of `EXTENSIONS` (any case); other files are ignored.

Every image is checked at scan time, on a thread pool, with PIL's `Image.open(f).verify()`: that reads the header
(and a PNG's every chunk and checksum), so non-images, empty files, misnamed files and broken PNGs are found, in
0.05-0.15 ms a file. It does not decode the pixels: a JPEG cut short passes. Decoding costs far more (measured on a
2-core machine: 0.4 ms a 320x240 JPEG; a 5 MB 12-megapixel one 86 ms, 43 ms at the 1/8 scale JPEG allows), so
minutes for a big folder of photos: it is left to `full_check=True` (JPEGs at 1/8 scale). Otherwise such a file
raises a DataError naming it when the loader (`train.data.pipeline.decode`) reaches it.
"""

import concurrent.futures
import dataclasses
import math
import os
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from jaxcnn import files
from train.data.dataset import DataError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
SPLITS = ("train", "val")
THREADS = min(16, 4 * (os.cpu_count() or 1))
LAYOUT = ("expected DIR/train/<class>/* and DIR/val/<class>/* (one folder of images per class in each), or "
          "DIR/<class>/* with --val-fraction F to split each class")
SHOWN = 5


@dataclasses.dataclass(frozen=True)
class Folders:
    """The labelled images of a scanned folder.

    Arguments:
        classes: the class names, index = label.
        train, val: (image file, label) pairs, by label, then in file order.
        skipped: (file, PIL's reason) of each unreadable image left out (with skip_bad).
    """
    classes: tuple[str, ...]
    train: list[tuple[Path, int]]
    val: list[tuple[Path, int]]
    skipped: list[tuple[Path, str]]


def find_classes(folder: Path) -> list[str]:
    """The class folder names in `folder`, as torchvision's `ImageFolder.find_classes` sorts them."""
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())


def class_files(folder: Path) -> list[Path]:
    """The image files under one class folder, sub-folders included, as torchvision's `make_dataset` orders them."""
    return [Path(root) / name for root, _, names in sorted(os.walk(folder, followlinks=True))
            for name in sorted(names) if name.lower().endswith(EXTENSIONS)]


def check_image(path: Path, full: bool = False) -> str | None:
    """None if PIL reads `path`'s header and structure (`full`: and decodes its pixels), else PIL's reason."""
    try:
        with Image.open(path) as image:
            image.verify()
        if full:
            with Image.open(path) as image:
                image.draft("RGB", (1, 1))
                image.load()
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ... for a broken file
        return (files.error_line(err) or type(err).__name__).replace(f" {str(path)!r}", "")
    return None


def _read_split(folder: Path, split: str | None) -> dict[str, list[Path]]:
    where = f"the {split} split ({folder})" if split else str(folder)
    classes = find_classes(folder)
    if not classes:
        raise DataError(f"{where} has no class folders: {LAYOUT}")
    found = {name: class_files(folder / name) for name in classes}
    for name, images in found.items():
        if not images:
            raise DataError(f"class {name!r} of {where} has no images (files ending in {', '.join(EXTENSIONS)}): "
                                 f"add some to {folder / name} or remove that folder")
    return found


def _drop_bad(splits: dict[str, dict[str, list[Path]]], skip_bad: bool, full_check: bool,
              data_dir: Path) -> list[tuple[Path, str]]:
    """Checks every image; removes the bad ones from `splits` (with skip_bad) and returns them with PIL's reasons."""
    every = [path for split in splits.values() for images in split.values() for path in images]
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        reasons = list(pool.map(lambda path: check_image(path, full_check), every))
    bad = {path: reason for path, reason in zip(every, reasons) if reason is not None}
    if bad and not skip_bad:
        shown = "; ".join(f"{path} ({reason})" for path, reason in list(bad.items())[:SHOWN])
        more = f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
        raise DataError(f"{len(bad)} unreadable image{'s' * (len(bad) > 1)} in {data_dir}: {shown}{more}: remove "
                             "or replace them, or pass --skip-bad to leave them out")
    for split, found in splits.items():
        for name, images in found.items():
            if all(path in bad for path in images):
                where = f"the {split} split" if split in SPLITS else str(data_dir)
                raise DataError(f"class {name!r} of {where} has no readable images: all {len(images)} were "
                                     f"left out (the first, {images[0]}: {bad[images[0]]}); add readable ones")
            images[:] = [path for path in images if path not in bad]
    return list(bad.items())


def split_class(images: list[Path], name: str, val_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """One class's images drawn into (train, val), each in file order.

    The draw is seeded by (seed, the class name's CRC-32): it does not change when other classes are added. The
    val split takes round(n * val_fraction) images, at least one and at most n - 1.
    """
    n = len(images)
    if n < 2:
        raise DataError(f"class {name!r} has 1 image ({images[0]}): --val-fraction needs at least 2 per class "
                             "(one for each split); add images or remove that folder")
    count = min(max(round(n * val_fraction), 1), n - 1)
    rng = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8", "surrogateescape"))])
    chosen = set(rng.permutation(n)[:count].tolist())
    return ([path for i, path in enumerate(images) if i not in chosen],
            [path for i, path in enumerate(images) if i in chosen])


def scan(data_dir: str | Path, val_fraction: float | None = None, seed: int = 0, skip_bad: bool = False,
         full_check: bool = False) -> Folders:
    """The classes and labelled images of an ImageFolder tree (the layouts: this module's docstring).

    Arguments:
        data_dir: DIR.
        val_fraction: None for DIR/train and DIR/val; else the share (0 < f < 1) of each class drawn from
            DIR/<class> into val, stratified, at least one image per class in each split.
        seed: the draw's seed (only with val_fraction): the same seed, the same split.
        skip_bad: leave out unreadable images (listed in `skipped`) instead of raising.
        full_check: decode every image too (catches JPEGs cut short; slow, see the module docstring).

    Returns:
        Folders, labels the index of the class in `classes`.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir} does not exist or is not a folder: {LAYOUT}")
    has_splits = [split for split in SPLITS if (data_dir / split).is_dir()]
    if val_fraction is None:
        if len(has_splits) < 2:
            lacks = " and ".join(f"{split}/" for split in SPLITS if split not in has_splits)
            flat = [name for name in find_classes(data_dir) if name not in SPLITS]
            hint = (f"; it has class folders ({', '.join(flat[:SHOWN])}{', ...' * (len(flat) > SHOWN)}) directly: "
                    "give --val-fraction F to split them") if flat and not has_splits else ""
            raise DataError(f"{data_dir} has no {lacks}: {LAYOUT}{hint}")
        splits = {split: _read_split(data_dir / split, split) for split in SPLITS}
        for split, other in (SPLITS, SPLITS[::-1]):
            missing = sorted(set(splits[other]) - set(splits[split]))
            if missing:
                raise DataError(f"class {missing[0]!r} is in {data_dir / other} but missing from the {split} "
                                     f"split: add {data_dir / split / missing[0]} with images of it"
                                     + (f" (and {len(missing) - 1} more classes)" if len(missing) > 1 else ""))
    else:
        if not (isinstance(val_fraction, (int, float)) and 0 < val_fraction < 1 and math.isfinite(val_fraction)):
            raise DataError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")
        if len(has_splits) == 2:
            raise DataError(f"{data_dir} has train/ and val/ folders: drop --val-fraction to use them as they are")
        if has_splits:
            raise DataError(f"{data_dir} has a {has_splits[0]}/ folder, which --val-fraction would take for a "
                                 f"class: give {data_dir / has_splits[0]} as the folder to split, or add "
                                 f"{data_dir / SPLITS[has_splits[0] == 'train']} and drop --val-fraction")
        splits = {"all": _read_split(data_dir, None)}
    skipped = _drop_bad(splits, skip_bad, full_check, data_dir)
    if val_fraction is None:
        found_train, found_val = splits["train"], splits["val"]
    else:
        drawn = {name: split_class(images, name, val_fraction, seed) for name, images in splits["all"].items()}
        found_train, found_val = ({name: pair[i] for name, pair in drawn.items()} for i in (0, 1))
    classes = tuple(sorted(found_train))

    def labelled(found: dict[str, list[Path]]) -> list[tuple[Path, int]]:
        return [(path, label) for label, name in enumerate(classes) for path in found[name]]
    return Folders(classes, labelled(found_train), labelled(found_val), skipped)
