"""Notebook 003's sun data set (`dataset_reg`): its folder layout read as a `train.data.dataset.Dataset`, and a generator.

The layout (the notebook's `SunDataset`):

    DIR/train/format.json   {"00000.png": [x, y], ...}: image file name (in that folder) -> the sun's centre
    DIR/train/00000.png ...
    DIR/test/format.json    the same for the test split
    DIR/test/00000.png ...

Images may be of any format PIL opens; each is converted to RGB (`Image.open(f).convert('RGB')`). Targets are
in pixels, x the column and y the row, with pixel (row i, column j) centred at [x, y] = [j, i]: a disc centred on
that pixel has target [j, i]; [0, 0] is the centre of the top-left pixel, [-0.5, -0.5] its outer corner.
The course never published its data, so `make` writes one in this layout (`python -m train.sun make-data`).
"""

import argparse
import concurrent.futures
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from jaxcnn import files
from train.data.dataset import DataError, Dataset

SPLITS = ("train", "test")
INDEX = "format.json"
LAYOUT = (f"a sun data set is DIR/train/{INDEX} and DIR/test/{INDEX}, each a JSON object from an image file name "
          "(in that folder) to the sun's [x, y] in pixels")
THREADS = min(8, os.cpu_count() or 1)
# The sun's radius as a fraction of the side: one for all suns, under a dark (dusk) sky, so that notebook 003's net
# learns it as the notebook did: a test MSE of 3.5 px^2 after its 5 epochs (README; the notebook's: 7.4). With radii
# of size/32..size/8 it was still at ~170 px^2 after 450 steps, where one radius reaches ~10.
RADIUS = 1 / 16


def _read_index(folder: Path) -> list[tuple[str, list]]:
    """The (file name, target) pairs of `folder`/format.json."""
    path = folder / INDEX
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder: {LAYOUT}")
    if not path.is_file():
        raise DataError(f"{folder} has no {INDEX}: {LAYOUT}")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is not valid JSON ({err})") from err
    if not isinstance(entries, dict):
        raise DataError(f"{path} holds a JSON {type(entries).__name__}, not an object from image file names "
                             "to [x, y]")
    if not entries:
        raise DataError(f"{path} lists no images")
    return list(entries.items())  # in the file's order


def _target(path: Path, name: str, value) -> tuple[float, float]:
    ok = (isinstance(value, list) and len(value) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))
    if not ok:
        raise DataError(f"{path}: the target of {name} is {json.dumps(value)}, not two finite numbers [x, y]")
    return float(value[0]), float(value[1])


def _open(path: Path) -> np.ndarray:
    """The image at `path` as uint8 (H, W, 3), or a DataError naming it and PIL's reason."""
    if not path.is_file():
        raise DataError(f"{path.parent / INDEX} lists {path.name}, which is not in {path.parent}")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except Exception as err:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError...
        raise DataError(f"{path}: PIL cannot open it ({type(err).__name__}: {err})") from err


def _load_split(folder: Path, pool: concurrent.futures.Executor) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, H, W, 3) and float32 targets (N, 2) of one split folder."""
    entries = _read_index(folder)
    targets = np.array([_target(folder / INDEX, name, value) for name, value in entries], np.float32)
    first = _open(folder / entries[0][0])
    images = np.empty((len(entries), *first.shape), np.uint8)
    images[0] = first

    def put(i: int) -> None:
        pixels = _open(folder / entries[i][0])
        if pixels.shape != first.shape:
            raise DataError(f"{folder}: {entries[0][0]} is {first.shape[1]}x{first.shape[0]} but {entries[i][0]} "
                                 f"is {pixels.shape[1]}x{pixels.shape[0]} (width x height): the images of a split "
                                 "must share one size")
        images[i] = pixels

    futures = [pool.submit(put, i) for i in range(1, len(entries))]
    try:
        for future in futures:  # in file order, so the error reported is the first file's
            future.result()
    finally:
        for future in futures:
            future.cancel()
    return images, targets


def load(data_dir: str | Path) -> Dataset:
    """Notebook 003's folder as a Dataset named "sun".

    Arguments:
        data_dir: the folder holding train/format.json and test/format.json (this module's docstring).
    Returns:
        A Dataset: uint8 images (N, H, W, 3) and float32 targets (N, 2), format.json's [x, y] in its order.
    Raises DataError naming the missing or bad file and why.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir} is not a folder: {LAYOUT}")
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:  # PIL decodes without the GIL
        (train_images, train_targets), (test_images, test_targets) = (_load_split(data_dir / s, pool) for s in SPLITS)
    return Dataset("sun", train_images, train_targets, test_images, test_targets)


def render(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[float]]:
    """One scene: a sky gradient, maybe a darker ground band, and a bright anti-aliased sun disc fully inside.

    Arguments:
        rng: the scene's random numbers (sky and ground colours, sun colour and centre).
        size: the image side in pixels.
    Returns:
        uint8 pixels (size, size, 3) and the disc's centre [x, y] (column, row; pixel (i, j) is at [j, i]),
        rounded to 1/100 pixel (the disc is drawn at the rounded centre, so the target is exact).
    """
    top, bottom = rng.uniform([6, 18, 48], [66, 90, 114]), rng.uniform([36, 48, 66], [102, 108, 120])  # dusk
    t = np.linspace(0.0, 1.0, size)[:, None]
    scene = np.repeat(((1 - t) * top + t * bottom)[:, None, :], size, axis=1)  # (size, size, 3) float
    if rng.random() < 0.5:
        ground = size - int(rng.uniform(0.08, 0.3) * size)
        scene[ground:] = rng.uniform([12, 18, 6], [54, 60, 42])
    radius = size * RADIUS
    low, high = radius + 0.5, size - 1.5 - radius  # the disc and its half-pixel edge stay inside
    cx, cy = (round(float(v), 2) for v in rng.uniform(low, high, 2))
    sun = np.array([255.0, rng.uniform(230, 255), rng.uniform(150, 230)])
    rows = slice(max(0, int(cy - radius - 1)), min(size, int(cy + radius + 3)))
    cols = slice(max(0, int(cx - radius - 1)), min(size, int(cx + radius + 3)))
    yy, xx = np.mgrid[rows, cols]
    alpha = np.clip(radius + 0.5 - np.hypot(xx - cx, yy - cy), 0.0, 1.0)[..., None]
    scene[rows, cols] = (1 - alpha) * scene[rows, cols] + alpha * sun
    return np.rint(scene).astype(np.uint8), [cx, cy]


def _write_png(path: Path, pixels: np.ndarray) -> None:
    with files.atomic_target(path) as tmp:
        Image.fromarray(pixels, "RGB").save(tmp, format="PNG", compress_level=1)


def make(out: str | Path, train: int = 10000, test: int = 1000, seed: int = 0, size: int = 256) -> Path:
    """Writes a synthetic sun data set in notebook 003's layout: out/train/00000.png ..., out/test/00000.png ...,
    then each split's format.json ({name: [x, y]}), last and atomically, so that an interrupted run never leaves
    a format.json listing missing files.

    Arguments:
        out: the folder to write (created; it must not hold a data set already).
        train, test: how many images each split gets (at least 1).
        seed: a non-negative integer; the same seed writes identical files.
        size: the images' side in pixels (at least 8): each is size x size RGB.
    Returns:
        `out`. Raises DataError where `out` already holds a data set or an argument is out of range.
    """
    out = Path(out)
    if size < 8 or min(train, test) < 1 or seed < 0:
        raise DataError(f"make needs size >= 8, train and test >= 1 and seed >= 0, not size={size}, "
                             f"train={train}, test={test}, seed={seed}")
    for split in SPLITS:
        if (out / split / INDEX).exists():
            raise DataError(f"{out} already holds a data set ({out / split / INDEX} exists): choose another "
                                 "folder or remove it")
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        for number, (split, count) in enumerate(zip(SPLITS, (train, test))):
            folder = out / split
            folder.mkdir(parents=True, exist_ok=True)
            width = max(5, len(str(count - 1)))

            def one(i: int, number=number, folder=folder, width=width) -> tuple[str, list[float]]:
                pixels, centre = render(np.random.default_rng([seed, number, i]), size)
                name = f"{i:0{width}d}.png"
                _write_png(folder / name, pixels)
                return name, centre

            index = dict(pool.map(one, range(count)))
            lines = (f"{json.dumps(name)}: {json.dumps(centre)}" for name, centre in index.items())
            files.write_text(folder / INDEX, "{\n" + ",\n".join(lines) + "\n}\n")  # one image a line
    return out


def _at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is not {'positive' if minimum == 1 else f'>= {minimum}'}")
        return value
    return parse


def make_data_main(argv=None) -> int:
    """`python -m train.sun make-data --out DIR [--train N] [--test N] [--seed S] [--size PX]`; returns the exit
    status (1, with one `error:` line on stderr, where the folder holds a data set or cannot be written)."""
    parser = argparse.ArgumentParser(prog="python -m train.sun make-data", description="Write a synthetic sun data "
                                     "set in notebook 003's layout: DIR/{train,test}/format.json and their PNGs.")
    parser.add_argument("--out", required=True, type=Path, help="the folder to write (must not hold a data set)")
    parser.add_argument("--train", type=_at_least(1), default=10000, help="training images (default 10000)")
    parser.add_argument("--test", type=_at_least(1), default=1000, help="test images (default 1000)")
    parser.add_argument("--seed", type=_at_least(0), default=0, help="the random seed: the same seed, the same files")
    parser.add_argument("--size", type=_at_least(8), default=256, help="image side in pixels (default 256)")
    args = parser.parse_args(argv)
    try:
        out = make(args.out, args.train, args.test, args.seed, args.size)
    except (DataError, OSError) as err:
        print(f"error: {files.error_line(err)}", file=sys.stderr)
        return 1
    print(f"wrote {args.train} train and {args.test} test images ({args.size}x{args.size} RGB PNG) to {out}")
    return 0
