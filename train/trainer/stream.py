"""Data streamed from disk: an image folder (train.data.folder) through train.data.pipeline's grain loaders, each host
reading its own shard, its batches placed on the devices two ahead of the step that takes them.

    stream = FolderData.scan("photos/", image_size=224)
    runner = StreamRunner(trainer)
    state, losses = runner.train_epoch(state, stream.train_batches(batch_size, seed, epoch), key)
"""

import collections
import dataclasses
import time
from typing import Callable, Iterable, Iterator

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from train.data import folder as folder_data, pipeline
from train.trainer.data_parallel import Trainer
from train.trainer.step import make_batch_step, make_eval

PREFETCH = 2  # batches on the devices ahead of the step


@dataclasses.dataclass(frozen=True)
class FolderData:
    """An image folder as the trainer takes it: what train.trainer.fit.setup asks of a data set (`image_shape`,
    `num_outputs`, `regression`, `train_labels`, `subset`) and the two loaders."""
    name: str
    classes: tuple[str, ...]
    train: tuple[tuple[str, int], ...]
    test: tuple[tuple[str, int], ...]
    image_size: int
    workers: int = 2
    skipped: tuple = ()

    @classmethod
    def scan(cls, data_dir, image_size: int, val_fraction: float | None = None, seed: int = 0,
             skip_bad: bool = False, workers: int = 2) -> "FolderData":
        found = folder_data.scan(data_dir, val_fraction, seed, skip_bad)
        records = lambda pairs: tuple((str(path), label) for path, label in pairs)  # noqa: E731
        return cls("folder", tuple(found.classes), records(found.train), records(found.val), image_size, workers,
                   tuple(found.skipped))

    regression = False

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, 3)

    @property
    def num_outputs(self) -> int:
        return len(self.classes)

    @property
    def train_labels(self) -> np.ndarray:
        return np.array([label for _, label in self.train], np.int32)

    @property
    def test_labels(self) -> np.ndarray:
        return np.array([label for _, label in self.test], np.int32)

    def subset(self, train: int | None = None, test: int | None = None) -> "FolderData":
        return dataclasses.replace(self, train=self.train[:train], test=self.test[:test])

    def train_batches(self, batch_size: int, seed: int, epoch: int, augment: bool = True) -> pipeline.Batches:
        """This host's part of epoch `epoch`'s global batches: uint8 (batch_size / hosts, S, S, 3), labels."""
        return pipeline.train_loader(self.train, self.image_size, batch_size, seed, epoch, self.workers,
                                     jax.process_index(), jax.process_count(), augment)

    def test_batches(self, batch_size: int) -> pipeline.Batches:
        return pipeline.eval_loader(self.test, self.image_size, batch_size, self.workers, jax.process_index(),
                                    jax.process_count())


def prefetched(batches: Iterable, put: Callable, size: int = PREFETCH) -> Iterator:
    """`put(batch)` of each batch, `size` of them placed before the first is handed out (device transfers are
    asynchronous: the next batches travel while a step runs)."""
    queue = collections.deque()
    for batch in batches:
        queue.append(put(batch))
        if len(queue) > size:
            yield queue.popleft()
    while queue:
        yield queue.popleft()


@dataclasses.dataclass
class StreamRunner:
    """A Trainer's step and evaluation on batches that arrive from a loader (parallel 'sharding': the batch split
    over the devices of every host, each host giving its own rows)."""
    trainer: Trainer

    def __post_init__(self):
        t = self.trainer
        if t.parallel != "sharding":
            raise ValueError("streamed data runs with --parallel sharding (pmap keeps the data set on the devices)")
        self.batch_sharding = NamedSharding(t.mesh, P("data"))
        step = make_batch_step(t.model, t.tx, t.preprocess, micro_batches=t.micro_batches,
                               label_smoothing=t.label_smoothing, loss=t.loss, augment=t.augment,
                               compute_dtype=t.compute_dtype, frozen=t.frozen)
        self._step = jax.jit(step, donate_argnums=0)
        self._evals = {}

    def compile(self, state, key, batch_size: int) -> dict[str, float]:
        """Compiles the step and the evaluation of global batches of batch_size ahead of time: {"train", "eval"}
        seconds."""
        shaped = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype, sharding=self.batch_sharding)  # noqa: E731
        images, labels = shaped((batch_size, *self.image_shape), np.uint8), shaped((batch_size,), np.int32)
        seconds = {}
        start = time.perf_counter()
        self._step = self._step.lower(state, images, labels, key).compile()
        seconds["train"], start = time.perf_counter() - start, time.perf_counter()
        self._evals[batch_size] = self._eval(batch_size).lower(state, images, labels,
                                                               shaped((batch_size,), np.bool_)).compile()
        seconds["eval"] = time.perf_counter() - start
        return seconds

    def put(self, batch: tuple[np.ndarray, np.ndarray]):
        """This host's rows of a global batch -> arrays split over every device of every host."""
        return tuple(jax.make_array_from_process_local_data(self.batch_sharding, np.asarray(a)) for a in batch)

    def train_epoch(self, state, batches: Iterable, key, on_losses=None) -> tuple:
        """Runs one step per batch; returns (state, the steps' device losses)."""
        losses = []
        for images, labels in prefetched(batches, self.put):
            state, loss = self._step(state, images, labels, key)
            losses.append(loss)
            if on_losses:
                on_losses(1, loss)
        return state, losses

    def evaluate(self, state, batches: Iterable, batch_size: int) -> tuple[float, float]:
        """(mean loss, accuracy) over every batch; a short last batch is padded to batch_size and masked."""
        loss_sum, correct, count = 0.0, 0, 0
        rows = batch_size // jax.process_count()
        for images, labels in batches:
            pad = rows - len(labels)
            valid = np.arange(rows) < len(labels)
            images = np.concatenate([images, np.zeros((pad, *self.image_shape), np.uint8)])
            labels = np.concatenate([labels, np.zeros(pad, np.int32)])
            total, right, n = self._eval(batch_size)(state, *self.put((images, labels, valid)))
            loss_sum, correct, count = loss_sum + float(total), correct + int(right), count + int(n)
        return loss_sum / count, correct / count

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.trainer.model.input_shape)

    def _eval(self, batch_size: int):
        """The jitted evaluation of one global batch: (loss sum, correct, valid rows)."""
        if batch_size not in self._evals:
            t = self.trainer
            evaluate = make_eval(t.model, t.preprocess, chunk=batch_size, loss=t.loss, compute_dtype=t.compute_dtype)
            self._evals[batch_size] = jax.jit(lambda state, x, y, valid: (*evaluate(state, x, y, valid), valid.sum()))
        return self._evals[batch_size]
