"""Grain input pipelines over (image file, label) records (`train.data.folder.scan`): decoding and augmentation on
worker processes, batches of uint8 images (B, H, W, 3) and int32 labels (B,). Normalisation is left to the devices.

    train_loader  one epoch in a seeded order; torchvision's training transform (the classification reference):
                  RandomResizedCrop(size, scale=(0.08, 1), ratio=(3/4, 4/3)), bilinear, then RandomHorizontalFlip()
    eval_loader   every image in file order; Resize(int(size * 256 / 224)), bilinear, then CenterCrop(size)

Images are decoded with PIL and converted to RGB, as torchvision's `pil_loader` does (EXIF orientation ignored).
Determinism: the order of an epoch is a permutation drawn from (seed, epoch) alone, the same on every host; an
example's draws come from a numpy Generator seeded by (seed, epoch, its index in `records`). So the same (seed,
epoch) gives the same batches whatever the number of workers, and a run resumed at batch k (`first_batch=k`)
sees what the uninterrupted one would have.

Hosts: the global batch is `batch_size` examples; of `shard_count` hosts, host `shard_index` yields rows
[shard_index * b, (shard_index + 1) * b) of each global batch, b = batch_size // shard_count. The hosts' batches,
concatenated in host order, are the one-host batch.

Workers: grain's `mp_prefetch` spawns `num_workers` processes (so a script needs `if __name__ == "__main__":`)
for each pass over a loader; worker w makes batches w, w + num_workers, ..., handed back in order. Each imports
grain, which imports jax, but starts no JAX backend. On a busy 2-core machine one worker gave its first batch
after 2 s, two after 4-5 s; stopping them took 1 s. `num_workers=0` runs in this process. Moving the batches onto
the devices (and prefetching them there) is the trainer's part.
"""

import dataclasses
import gc
import math
from pathlib import Path
from typing import Iterator, Sequence

import grain
import numpy as np
from absl import flags
from PIL import Image

from train.data.dataset import DataError


SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
ATTEMPTS = 10
EVAL_RESIZE = 256 / 224
THREADS = 2  # threads making batches in each process (PIL's decoding and resizing release the GIL)
BUFFER = 4  # batches each process keeps ready
_ORDER, _EXAMPLE = 0, 1  # keep the order's and the examples' seeds apart

Records = Sequence[tuple[Path, int]]


def decode(path: str | Path) -> np.ndarray:
    """An image file as uint8 (H, W, 3) RGB; DataError naming the file when PIL cannot decode it."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ... for a damaged file
        raise DataError(f"{path} cannot be decoded ({type(err).__name__}: {err}): remove or replace it (the "
                             "scan's check reads headers only; train.data.folder.scan(..., full_check=True) decodes "
                             "every image and finds all such files before training)") from err


def crop_params(height: int, width: int, rng: np.random.Generator, scale=SCALE,
                ratio=RATIO) -> tuple[int, int, int, int]:
    """torchvision's `RandomResizedCrop.get_params`, drawing from `rng`: (top, left, h, w) of the window. Up to 10
    attempts at an area uniform in scale * height * width and a log-uniform aspect ratio (w / h), the first that
    fits placed at a uniform offset; else the central crop, its ratio clamped to `ratio`."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(ATTEMPTS):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (H, W, 3) -> (size, size, 3): the window of `crop_params`, resized bilinearly by PIL."""
    top, left, h, w = crop_params(image.shape[0], image.shape[1], rng)
    window = np.ascontiguousarray(image[top:top + h, left:left + w])
    return np.asarray(Image.fromarray(window).resize((size, size), Image.Resampling.BILINEAR))


def random_flip(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 (H, W, C) mirrored left-right with probability 1/2 (one draw from rng), else as it is."""
    return image[:, ::-1] if rng.random() < 0.5 else image


def resize_shorter(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, 3) -> its shorter side `size`, the other int(size * long / short) (torchvision's Resize(int))."""
    h, w = image.shape[:2]
    new_h, new_w = (int(size * h / w), size) if w <= h else (size, int(size * w / h))
    if (new_h, new_w) == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR))


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, C), H, W >= size -> its centre (size, size, C), offsets rounded as torchvision's CenterCrop."""
    h, w = image.shape[:2]
    top, left = int(round((h - size) / 2)), int(round((w - size) / 2))
    return image[top:top + size, left:left + size]


def eval_transform(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, 3) -> (size, size, 3): shorter side to int(size * 256 / 224), then the centre crop."""
    return centre_crop(resize_shorter(image, int(size * EVAL_RESIZE)), size)


def train_transform(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (H, W, 3) -> (size, size, 3): random_resized_crop, then random_flip, drawing from rng in that order."""
    return random_flip(random_resized_crop(image, size, rng), rng)


def epoch_order(count: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of range(count) that epoch `epoch` of a run seeded `seed` visits."""
    return np.random.default_rng([seed, epoch, _ORDER]).permutation(count)


def example_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The Generator the augmentation of record `index` draws from in epoch `epoch`."""
    return np.random.default_rng([seed, epoch, _EXAMPLE, index])


@dataclasses.dataclass(frozen=True)
class TrainExample:
    """Record index -> (uint8 (size, size, 3), int32 label), augmented (or eval-transformed) on a worker."""
    records: tuple[tuple[str, int], ...]
    size: int
    seed: int
    epoch: int
    augment: bool

    def __call__(self, index: int) -> tuple[np.ndarray, np.int32]:
        path, label = self.records[index]
        image = decode(path)
        image = (train_transform(image, self.size, example_rng(self.seed, self.epoch, int(index))) if self.augment
                 else eval_transform(image, self.size))
        return np.ascontiguousarray(image), np.int32(label)


@dataclasses.dataclass(frozen=True)
class EvalBatch:
    """A list of record indices -> (uint8 (n, size, size, 3), int32 (n,)), n >= 0, eval-transformed."""
    records: tuple[tuple[str, int], ...]
    size: int

    def __call__(self, indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
        images = np.zeros((len(indices), self.size, self.size, 3), np.uint8)
        for row, index in enumerate(indices):
            images[row] = eval_transform(decode(self.records[index][0]), self.size)
        return images, np.array([self.records[i][1] for i in indices], np.int32)


class Batches:
    """An epoch's batches, `len()` of them; each `iter()` runs the pipeline afresh, its workers till it ends."""

    def __init__(self, dataset: grain.MapDataset, count: int, num_workers: int):
        self.count, self.workers = count, num_workers
        self.dataset = dataset.to_iter_dataset(grain.ReadOptions(num_threads=THREADS, prefetch_buffer_size=BUFFER))
        if num_workers > 0:
            self.dataset = self.dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers,
                                                                                 per_worker_buffer_size=BUFFER))

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if self.workers and not flags.FLAGS.is_parsed():
            # grain 0.2.18 starts its workers only after reading an absl flag, which absl refuses before a program
            # parses them (absl.app does; this project's argparse CLIs do not): mark them parsed, all at defaults
            flags.FLAGS.mark_as_parsed()
        iterator = iter(self.dataset)
        try:
            for images, labels in iterator:  # copied out of the workers' shared memory, which is then freed
                yield np.array(images), np.array(labels)
        finally:
            iterator.close()
            del iterator
            gc.collect()  # grain's iterators hold a batch in shared memory in a reference cycle till collected


def _prepare(records: Records, batch_size: int, shard_index: int, shard_count: int) -> tuple[tuple, int]:
    """(records as picklable (str, int) pairs, the per-host batch)."""
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} is not in 0..{shard_count - 1}")
    if batch_size < shard_count or batch_size % shard_count:
        raise ValueError(f"the global batch {batch_size} must be a positive multiple of the {shard_count} hosts")
    if not records:
        raise DataError("no images to load")
    return tuple((str(path), int(label)) for path, label in records), batch_size // shard_count


def train_loader(records: Records, image_size: int, batch_size: int, seed: int, epoch: int, num_workers: int = 2,
                 shard_index: int = 0, shard_count: int = 1, augment: bool = True, first_batch: int = 0) -> Batches:
    """One training epoch of `records`, this host's part (the module docstring: order, hosts, workers).

    Arguments:
        records: (image file, label) pairs.
        image_size: the side of the square images out.
        batch_size: the global batch, a multiple of shard_count; the last partial batch is dropped.
        seed, epoch: non-negative; they alone decide the order and the augmentation.
        augment: False: eval_transform instead of the random crop and flip (the order is still shuffled).
        first_batch: start at this batch of the epoch (a resumed run).

    Returns:
        Batches of (uint8 (batch_size // shard_count, image_size, image_size, 3), int32 (batch_size // shard_count,)).
    """
    records, per_host = _prepare(records, batch_size, shard_index, shard_count)
    if min(seed, epoch, first_batch) < 0:
        raise ValueError(f"seed, epoch and first_batch must be non-negative, got {seed}, {epoch}, {first_batch}")
    steps = len(records) // batch_size
    order = epoch_order(len(records), seed, epoch)[:steps * batch_size].reshape(steps, shard_count, per_host)
    mine = order[first_batch:, shard_index].reshape(-1).tolist()
    dataset = grain.MapDataset.source(mine).map(TrainExample(records, image_size, seed, epoch, augment))
    return Batches(dataset.batch(per_host, drop_remainder=True), max(steps - first_batch, 0), num_workers)


def eval_loader(records: Records, image_size: int, batch_size: int, num_workers: int = 2, shard_index: int = 0,
                shard_count: int = 1) -> Batches:
    """Every image of `records` in file order, eval-transformed, this host's part: its rows of each global batch of
    `batch_size` consecutive records, as in train_loader. The last global batch is partial, so each host's last
    batch is smaller, possibly empty (0, image_size, image_size, 3), and every host yields ceil(N / batch_size).

    Returns:
        Batches of (uint8 (n, image_size, image_size, 3), int32 (n,)), n <= batch_size // shard_count.
    """
    records, per_host = _prepare(records, batch_size, shard_index, shard_count)
    starts = range(0, len(records), batch_size)
    groups = [list(range(min(start + shard_index * per_host, len(records)),
                         min(start + (shard_index + 1) * per_host, len(records)))) for start in starts]
    dataset = grain.MapDataset.source(groups).map(EvalBatch(records, image_size))
    return Batches(dataset, len(groups), num_workers)
