"""Pure training and evaluation steps, and the data-parallel ways to run them.

The dataset lives on the devices as uint8; a step receives batch indices,
gathers and preprocesses its images inside the jitted function, and updates
the state. `Trainer` runs an epoch either as one jitted call per step
('step') or as `lax.scan` over chunks of steps ('scan'), data-parallel with
jit + NamedSharding on a 1-D 'data' mesh, or with pmap + pmean.
"""

import dataclasses
import functools
import math
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxcnn.preprocess import PREPROCESS


# Measured on this project's 2-core CPU (python -m parity.bench --micro-batches K): mnist_cnn batch 64
# 12.8 ms/step whole, 11.4 in 2 parts, 10.0 in 4; more parts leave too little work per part. LeNet-5, whose
# convolutions are dots (multi-threaded already): 5.0 whole, 4.9 in 2 parts, 5.2 in 4, so it is not split.
CPU_MICRO_BATCHES = 4


@struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any


def variables_of(state: TrainState) -> dict:
    """The model variables a state holds: {'params': ...} and, for a model with BatchNorm, 'batch_stats'."""
    return {"params": state.params} | ({"batch_stats": state.batch_stats} if state.batch_stats else {})


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Per-example cross-entropy: torch's CrossEntropyLoss(label_smoothing=...) before its mean (the target
    (1 - label_smoothing) on the label plus label_smoothing / classes on every class)."""
    if label_smoothing:
        targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype), label_smoothing)
        return optax.softmax_cross_entropy(logits, targets)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def init_state(model: nn.Module, tx: optax.GradientTransformation, key: jax.Array) -> TrainState:
    """A fresh state: the model's variables drawn from `key`, the optimizer's initial state."""
    variables = model.init(key, jnp.zeros((1, *model.input_shape), jnp.float32))
    params = variables["params"]
    return TrainState(jnp.zeros((), jnp.int32), params, variables.get("batch_stats", {}), tx.init(params))


def seeded_state(model: nn.Module, tx: optax.GradientTransformation, seed: jax.Array) -> tuple[TrainState, jax.Array]:
    """(fresh state, dropout key) of a run's seed: PRNGKey(seed) split into the init and dropout keys.

    Meant to run under one jit: eagerly, each random initialiser would compile a program of its own.
    """
    init_key, dropout_key = jax.random.split(jax.random.PRNGKey(seed))
    return init_state(model, tx, init_key), dropout_key


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, preprocess: str,
                    axis_name: str | None = None, micro_batches: int = 1, label_smoothing: float = 0.0) -> Callable:
    """(state, images_u8, labels, indices, key) -> (state, loss): one step on images[indices].

    With axis_name (pmap), gradients, loss and batch statistics are averaged over that axis.
    micro_batches > 1 computes the batch's gradient as the sum of that many independent parts (the same
    mean gradient, summed in another order): XLA:CPU runs a convolution on one core, but independent
    parts of one program in parallel. Models with BatchNorm always take the whole batch (its statistics
    are over the batch).
    """
    prep = PREPROCESS[preprocess]

    def split_gradients(params, x, y, dropout_key):
        def part_loss(params, x, y, key):
            logits = model.apply({"params": params}, x, train=True, rngs={"dropout": key})
            return cross_entropy(logits, y, label_smoothing).sum()

        parts = [jax.value_and_grad(part_loss)(params, xs, ys, jax.random.fold_in(dropout_key, i))
                 for i, (xs, ys) in enumerate(zip(jnp.split(x, micro_batches), jnp.split(y, micro_batches)))]
        loss = sum(value for value, _ in parts) / x.shape[0]
        grads = jax.tree_util.tree_map(lambda *g: sum(g) / x.shape[0], *(g for _, g in parts))
        return loss, grads

    def step(state: TrainState, images, labels, indices, key):
        dtype = jax.tree_util.tree_leaves(state.params)[0].dtype  # float32, or float64 under jax x64
        x, y = prep(images[indices]).astype(dtype), labels[indices]
        dropout_key = jax.random.fold_in(key, state.step)
        if axis_name is not None:
            dropout_key = jax.random.fold_in(dropout_key, jax.lax.axis_index(axis_name))

        def loss_fn(params):
            logits, new = model.apply({"params": params, "batch_stats": state.batch_stats}, x, train=True,
                                      mutable=["batch_stats"], rngs={"dropout": dropout_key})
            return cross_entropy(logits, y, label_smoothing).mean(), new.get("batch_stats", state.batch_stats)

        if micro_batches > 1 and not state.batch_stats and x.shape[0] % micro_batches == 0:
            (loss, grads), batch_stats = split_gradients(state.params, x, y, dropout_key), state.batch_stats
        else:
            (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        if axis_name is not None:
            grads, loss, batch_stats = jax.lax.pmean((grads, loss, batch_stats), axis_name)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(state.step + 1, params, batch_stats, opt_state), loss

    return step


def make_eval(model: nn.Module, preprocess: str, chunk: int = 1000) -> Callable:
    """(state, images_u8, labels) -> (loss sum, correct count), in chunks of `chunk` (padding masked)."""
    prep = PREPROCESS[preprocess]

    def evaluate(state: TrainState, images, labels):
        n = images.shape[0]
        padded = math.ceil(n / chunk) * chunk
        images = jnp.pad(images, [(0, padded - n)] + [(0, 0)] * (images.ndim - 1))
        labels = jnp.pad(labels, (0, padded - n), constant_values=-1)

        def one(batch):
            x, y = batch
            logits = model.apply({"params": state.params, "batch_stats": state.batch_stats}, prep(x))
            valid = y >= 0
            loss = jnp.where(valid, cross_entropy(logits, jnp.maximum(y, 0)), 0.0).sum()
            return loss, jnp.sum(valid & (logits.argmax(-1) == y))

        losses, correct = jax.lax.map(one, (images.reshape(-1, chunk, *images.shape[1:]), labels.reshape(-1, chunk)))
        return losses.sum(), correct.sum()

    return evaluate


def runs_xla_convolutions(model: nn.Module) -> bool:
    """Whether the model's forward pass has an XLA convolution (its small convolutions may be dots instead:
    jaxcnn.banded). On XLA:CPU such a step is ~10x slower inside lax.scan (mnist_cnn batch 64: 12 vs
    134 ms/step) and runs each convolution on one core, which micro-batches spread over the cores."""
    x = jax.ShapeDtypeStruct((1, *model.input_shape), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)  # no eager key: no compilation
    return "conv_general_dilated" in str(jax.make_jaxpr(model.apply)(variables, x))


def epoch_order(seed: int, epoch: int, n: int, batch_size: int) -> np.ndarray:
    """(steps, batch_size) indices: the notebooks' per-epoch random permutation; a last partial batch is dropped
    (so no step ever recompiles). The same (seed, epoch) gives the same order, on every host."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    steps = n // batch_size
    return order[: steps * batch_size].reshape(steps, batch_size).astype(np.int32)


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
    preprocess: str
    parallel: str = "sharding"
    loop: str = "auto"
    chunk: int = 100
    devices: list | None = None
    micro_batches: int | None = None
    label_smoothing: float = 0.0  # of the training loss (evaluation reports plain cross-entropy)

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
                               label_smoothing=self.label_smoothing)
        evaluate = make_eval(self.model, self.preprocess)
        if self.parallel == "pmap":
            self._step = jax.pmap(step, axis_name="data", devices=self.devices, donate_argnums=0)
            self._scan = jax.pmap(self._scanned(step), axis_name="data", devices=self.devices, donate_argnums=0)
            self._eval = jax.jit(evaluate)
        else:
            self._step = jax.jit(step, donate_argnums=0)
            self._scan = jax.jit(self._scanned(step), donate_argnums=0)
            self._eval = jax.jit(evaluate)

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
            self._eval = self._eval.lower(*self._eval_arguments(state, *test)).compile()
            seconds["eval"] = time.perf_counter() - start
        return seconds

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

    def evaluate(self, state, images, labels) -> tuple[float, float]:
        """(mean loss, accuracy) over the whole split."""
        state, images, labels = self._eval_arguments(state, images, labels)
        loss_sum, correct = self._eval(state, images, labels)
        n = labels.shape[0]
        return float(loss_sum) / n, float(correct) / n

    def _eval_arguments(self, state, images, labels) -> tuple:
        if self.parallel == "pmap":  # one copy of the pmap layout's leading device axis
            state = jax.tree_util.tree_map(lambda a: a[0], state)
            images, labels = images[0], labels[0]
        return state, images, labels
