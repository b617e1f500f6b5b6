"""`Trainer`: runs epochs of train.trainer.step's pure steps data-parallel — jit with NamedSharding on a 1-D 'data' mesh,
or pmap with pmean — one jitted call per step ('step') or `lax.scan` over chunks of steps ('scan')."""

import dataclasses
import functools
import time
from typing import Callable

import jax
import numpy as np
import optax
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from train.trainer.step import (CPU_MICRO_BATCHES, TrainState, eval_chunk, make_eval, make_train_step, runs_xla_convolutions,
                        seeded_state)


@dataclasses.dataclass
class Trainer:
    """Runs epochs of `train_step` data-parallel over `devices` (default: every device of every process).

    parallel: 'sharding' (jit + NamedSharding on a 1-D 'data' mesh) or 'pmap' (pmap + pmean).
    loop: 'step' (one jitted call per step), 'scan' (lax.scan over `chunk` steps per call), or 'auto': scan,
        except on CPU for a model that `runs_xla_convolutions`.
    micro_batches: see make_train_step; None picks CPU_MICRO_BATCHES on a one-device CPU for a model that
        `runs_xla_convolutions`, else 1.
    """
    model: nn.Module
    tx: optax.GradientTransformation
    preprocess: str | Callable  # a jaxcnn.PREPROCESS name or jaxcnn.preprocess.preprocessor's function
    parallel: str = "sharding"
    loop: str = "auto"
    chunk: int = 100
    devices: list | None = None
    micro_batches: int | None = None
    label_smoothing: float = 0.0  # of the training loss (evaluation reports plain cross-entropy)
    loss: str = "cross_entropy"  # or "mse": train.trainer.step.example_losses
    augment: str = "none"  # train.data.augment.AUGMENTATIONS
    compute_dtype: str = "float32"  # or "bfloat16": make_apply
    frozen: frozenset = frozenset()  # modules whose BatchNorms run in eval mode (train.trainer.finetune)

    def __post_init__(self):
        if self.parallel not in ("sharding", "pmap"):
            raise ValueError(f"parallel must be 'sharding' or 'pmap', got {self.parallel!r}")
        if self.loop not in ("auto", "step", "scan"):
            raise ValueError(f"loop must be 'auto', 'step' or 'scan', got {self.loop!r}")
        self.devices = self.devices or jax.devices()
        if self.loop == "auto" or self.micro_batches is None:  # traces the model: only when a choice is left
            slow_convolutions = self.devices[0].platform == "cpu" and runs_xla_convolutions(self.model)
        if self.loop == "auto":
            self.loop = "step" if slow_convolutions else "scan"
        self.mesh = Mesh(np.asarray(self.devices), ("data",))
        self.replicated = NamedSharding(self.mesh, P())
        self.sharded = NamedSharding(self.mesh, P("data"))
        if self.micro_batches is None:
            self.micro_batches = CPU_MICRO_BATCHES if slow_convolutions and len(self.devices) == 1 else 1
        step = make_train_step(self.model, self.tx, self.preprocess,
                               axis_name="data" if self.parallel == "pmap" else None, micro_batches=self.micro_batches,
                               label_smoothing=self.label_smoothing, loss=self.loss, augment=self.augment,
                               compute_dtype=self.compute_dtype, frozen=self.frozen)
        self._make_eval = functools.partial(make_eval, self.model, self.preprocess, loss=self.loss,
                                            compute_dtype=self.compute_dtype)
        self._evals = {}
        if self.parallel == "pmap":
            self._step = jax.pmap(step, axis_name="data", devices=self.devices, donate_argnums=0)
            self._scan = jax.pmap(self._scanned(step), axis_name="data", devices=self.devices, donate_argnums=0)
        else:
            self._step = jax.jit(step, donate_argnums=0)
            self._scan = jax.jit(self._scanned(step), donate_argnums=0)

    @staticmethod
    def _scanned(step):
        def run(state, images, labels, indices, key):
            return jax.lax.scan(lambda s, idx: step(s, images, labels, idx, key), state, indices)
        return run

    @property
    def num_devices(self) -> int:
        return len(self.devices)

    def put_replicated(self, tree):
        """Host values -> every device (identical on every process)."""
        if self.parallel == "pmap":  # a leading device axis, one copy per device
            stacked = NamedSharding(self.mesh, P("data"))
            return jax.tree_util.tree_map(
                lambda a: jax.device_put(np.broadcast_to(np.asarray(a), (self.num_devices, *np.shape(a))), stacked),
                tree)
        return jax.tree_util.tree_map(
            lambda a: jax.make_array_from_callback(np.shape(a), self.replicated, lambda idx, a=a: np.asarray(a)[idx]),
            tree)

    def put_indices(self, indices: np.ndarray):
        """(..., global_batch) indices -> split along the batch axis over the devices."""
        if indices.shape[-1] % self.num_devices:
            raise ValueError(f"batch size {indices.shape[-1]} is not divisible by the {self.num_devices} devices")
        if self.parallel == "pmap":
            split = np.moveaxis(indices.reshape(*indices.shape[:-1], self.num_devices, -1), -2, 0)
            return jax.device_put(np.ascontiguousarray(split), NamedSharding(self.mesh, P("data")))
        spec = P(*([None] * (indices.ndim - 1)), "data")
        sharding = NamedSharding(self.mesh, spec)
        return jax.make_array_from_callback(indices.shape, sharding, lambda idx: indices[idx])

    def init_state(self, seed: int) -> tuple[TrainState, jax.Array]:
        """`seeded_state(seed)` as one compiled program, replicated on every device."""
        build = functools.partial(seeded_state, self.model, self.tx)
        sharding = None if self.parallel == "pmap" else self.replicated
        lowered = jax.jit(build, out_shardings=sharding).lower(np.int32(seed))
        # Runs once: LLVM's -O1 compiles it 2.4x faster on XLA:CPU (lenet5_mnist 4.8 -> 2.0 s), same values.
        options = {"xla_backend_optimization_level": 1} if self.devices[0].platform == "cpu" else {}
        state_and_key = lowered.compile(compiler_options=options)(np.int32(seed))
        if self.parallel == "pmap":
            return self.put_replicated(jax.device_get(state_and_key))
        return state_and_key

    def replicate_state(self, state: TrainState) -> TrainState:
        return self.put_replicated(jax.device_get(state))

    def unreplicate(self, tree):
        """Device state -> host numpy (one copy)."""
        if self.parallel == "pmap":
            return jax.tree_util.tree_map(lambda a: np.asarray(a[0]), jax.device_get(tree))
        return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))

    def compile(self, state, images, labels, key, batch_size: int, steps_per_epoch: int | None = None,
                test: tuple | None = None) -> dict[str, float]:
        """Compiles ahead of time the programs an epoch of `steps_per_epoch` steps runs (None: all of them):
        the step, the scan of `chunk` steps, and evaluation on `test` (images, labels) when given.

        Returns {"train": seconds, "eval": seconds}.
        """
        start = time.perf_counter()
        scans = self.loop == "scan" and (steps_per_epoch is None or steps_per_epoch >= self.chunk)
        steps = not scans or steps_per_epoch is None or steps_per_epoch % self.chunk
        if steps:
            indices = self.put_indices(np.zeros((batch_size,), np.int32))
            self._step = self._step.lower(state, images, labels, indices, key).compile()
        if scans:
            block = self.put_indices(np.zeros((self.chunk, batch_size), np.int32))
            self._scan = self._scan.lower(state, images, labels, block, key).compile()
        seconds = {"train": time.perf_counter() - start, "eval": 0.0}
        if test is not None:
            start = time.perf_counter()
            arguments = self._eval_arguments(state, *test)
            self._evals[arguments[1].shape] = self._eval_for(arguments[1].shape).lower(*arguments).compile()
            seconds["eval"] = time.perf_counter() - start
        return seconds

    def compiled_step_text(self) -> str:
        """The optimized XLA program of one training step (after `compile`)."""
        return self._step.as_text()

    def _eval_for(self, images_shape: tuple[int, ...]) -> Callable:
        """The jitted evaluation of a split of this shape (its chunk size follows from the shape)."""
        if images_shape not in self._evals:
            chunk = eval_chunk(images_shape[0], images_shape[1:])
            self._evals[images_shape] = jax.jit(self._make_eval(chunk=chunk))
        return self._evals[images_shape]

    def host_losses(self, losses: list) -> np.ndarray:
        """The per-step losses returned by train_steps, as one float64 host array."""
        arrays = [np.asarray(jax.device_get(l), np.float64) for l in losses]
        if self.parallel == "pmap":  # pmean'd: every device holds the same value
            arrays = [a[0] for a in arrays]
        return np.concatenate([a.reshape(-1) for a in arrays]) if arrays else np.zeros(0)

    def train_steps(self, state, images, labels, order: np.ndarray, key, on_losses=None):
        """Runs the steps of `order` ((steps, batch) indices); calls on_losses(device losses) per call."""
        losses = []
        if self.loop == "step":
            for indices in order:
                state, loss = self._step(state, images, labels, self.put_indices(indices), key)
                losses.append(loss)
                if on_losses:
                    on_losses(1, loss)
        else:
            for start in range(0, len(order), self.chunk):
                block = order[start:start + self.chunk]
                if len(block) < self.chunk:  # the tail runs step by step: no recompilation for a shorter scan
                    for indices in block:
                        state, loss = self._step(state, images, labels, self.put_indices(indices), key)
                        losses.append(loss)
                        if on_losses:
                            on_losses(1, loss)
                    continue
                state, block_losses = self._scan(state, images, labels, self.put_indices(block), key)
                losses.append(block_losses)
                if on_losses:
                    on_losses(len(block), block_losses)
        return state, losses

    def evaluate(self, state, images, labels) -> tuple[float, float | None]:
        """(mean loss, accuracy) over the whole split; for loss 'mse', (MSE, None)."""
        state, images, labels = self._eval_arguments(state, images, labels)
        loss_sum, correct = self._eval_for(images.shape)(state, images, labels)
        n = labels.shape[0]
        return float(loss_sum) / n, (float(correct) / n if self.loss == "cross_entropy" else None)

    def _eval_arguments(self, state, images, labels) -> tuple:
        if self.parallel == "pmap":  # one copy of the pmap layout's leading device axis
            state = jax.tree_util.tree_map(lambda a: a[0], state)
            images, labels = images[0], labels[0]
        return state, images, labels
