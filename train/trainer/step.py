"""Pure training and evaluation steps (train.trainer.data_parallel runs them data-parallel).

The dataset lives on the devices as uint8 images (N, H, W, C) with int32 labels (N,) or float32 regression
targets (N, K) — or arrives batch by batch from a streaming loader (train.trainer.stream); a step gathers, augments and
preprocesses its images inside the jitted function, and updates the state with the model's loss (cross-entropy,
or torch's MSELoss)."""

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax import struct

from jaxcnn.config import LOSSES
from jaxcnn.preprocess import preprocessor
from train.data.augment import augment_batch
from train.trainer.finetune import frozen_apply


# Measured on this project's 2-core CPU (python -m parity.bench --micro-batches K): mnist_cnn batch 64
# 12.8 ms/step whole, 11.4 in 2 parts, 10.0 in 4; more parts leave too little work per part. LeNet-5, whose
# convolutions are dots (multi-threaded already): 5.0 whole, 4.9 in 2 parts, 5.2 in 4, so it is not split.
CPU_MICRO_BATCHES = 4
AUGMENT_STREAM = 0x617567  # folded into a step's dropout key for its augmentation draws


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


def example_losses(kind: str, outputs: jax.Array, targets: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Per-example losses (N,), whose batch mean is torch's loss: CrossEntropyLoss(label_smoothing=...) for
    kind 'cross_entropy' (targets: int labels (N,)); MSELoss for 'mse' (targets: (N, K) like the outputs; each
    example's mean over its K values, so the batch mean is the mean over all N * K)."""
    if kind == "cross_entropy":
        return cross_entropy(outputs, targets, label_smoothing)
    if kind == "mse":
        return jnp.mean(jnp.square(outputs - targets).reshape(outputs.shape[0], -1), axis=-1)
    raise ValueError(f"unknown loss {kind!r}; choose one of {LOSSES}")


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


COMPUTE_DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}


def make_apply(model: nn.Module, compute_dtype: str = "float32", frozen: frozenset = frozenset()) -> Callable:
    """model.apply computing in `compute_dtype`: for 'bfloat16' the parameters and inputs are cast down (the
    parameters themselves, their gradients and the optimizer state stay float32; BatchNorm normalises in float32)
    and the outputs cast up to float32, so the loss is float32. The BatchNorms of `frozen` modules run in eval
    mode (train.trainer.finetune.frozen_apply)."""
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"unknown compute dtype {compute_dtype!r}; choose one of {sorted(COMPUTE_DTYPES)}")
    low = COMPUTE_DTYPES[compute_dtype]
    model_apply = frozen_apply(model, frozen)

    def apply(variables, x, **kwargs):
        if low is not None:
            variables = {**variables, "params": jax.tree_util.tree_map(lambda p: p.astype(low), variables["params"])}
            x = x.astype(low)
        out = model_apply(variables, x, **kwargs)
        if low is None:
            return out
        up = lambda y: y.astype(jnp.float32)  # noqa: E731
        return (up(out[0]), out[1]) if kwargs.get("mutable") else up(out)

    return apply


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, preprocess: str | Callable,
                    **options) -> Callable:
    """(state, images_u8, labels, indices, key) -> (state, loss): one step on images[indices] (the data set
    on the devices; options: make_batch_step's)."""
    batch_step = make_batch_step(model, tx, preprocess, **options)

    def step(state: TrainState, images, labels, indices, key):
        return batch_step(state, images[indices], labels[indices], key)

    return step


def make_batch_step(model: nn.Module, tx: optax.GradientTransformation, preprocess: str | Callable,
                    axis_name: str | None = None, micro_batches: int = 1, label_smoothing: float = 0.0,
                    loss: str = "cross_entropy", augment: str = "none", compute_dtype: str = "float32",
                    frozen: frozenset = frozenset()) -> Callable:
    """(state, batch_u8, labels, key) -> (state, loss): one step on a batch of uint8 images (N, H, W, C).

    preprocess: a jaxcnn.PREPROCESS name, or a function of uint8 pixels (jaxcnn.preprocess.preprocessor).
    loss: 'cross_entropy' (labels (N,)) or 'mse' (targets (N, K)); see example_losses. augment: see train.data.augment
    (drawn from the step's key, before preprocessing). compute_dtype, frozen: see make_apply (frozen parameters
    are the optimizer's business: train.trainer.finetune.grouped).

    With axis_name (pmap), gradients, loss and batch statistics are averaged over that axis.
    micro_batches > 1 computes the batch's gradient as the sum of that many independent parts (the same
    mean gradient, summed in another order): XLA:CPU runs a convolution on one core, but independent
    parts of one program in parallel. Models with BatchNorm always take the whole batch (its statistics
    are over the batch).
    """
    prep = preprocess if callable(preprocess) else preprocessor(preprocess)
    apply = make_apply(model, compute_dtype, frozen)

    def split_gradients(params, x, y, dropout_key):
        def part_loss(params, x, y, key):
            outputs = apply({"params": params}, x, train=True, rngs={"dropout": key})
            return example_losses(loss, outputs, y, label_smoothing).sum()

        parts = [jax.value_and_grad(part_loss)(params, xs, ys, jax.random.fold_in(dropout_key, i))
                 for i, (xs, ys) in enumerate(zip(jnp.split(x, micro_batches), jnp.split(y, micro_batches)))]
        value = sum(v for v, _ in parts) / x.shape[0]
        grads = jax.tree_util.tree_map(lambda *g: sum(g) / x.shape[0], *(g for _, g in parts))
        return value, grads

    def step(state: TrainState, images, labels, key):
        dtype = jax.tree_util.tree_leaves(state.params)[0].dtype  # float32, or float64 under jax x64
        dropout_key = jax.random.fold_in(key, state.step)
        if axis_name is not None:
            dropout_key = jax.random.fold_in(dropout_key, jax.lax.axis_index(axis_name))
        batch = augment_batch(augment, images, jax.random.fold_in(dropout_key, AUGMENT_STREAM))
        x = prep(batch.astype(dtype))  # uint8 -> float32 is exact: the same pixels as prep(batch) in float32
        y = labels.astype(dtype) if loss == "mse" else labels

        def loss_fn(params):
            outputs, new = apply({"params": params, "batch_stats": state.batch_stats}, x, train=True,
                                 mutable=["batch_stats"], rngs={"dropout": dropout_key})
            return example_losses(loss, outputs, y, label_smoothing).mean(), new.get("batch_stats", state.batch_stats)

        if micro_batches > 1 and not state.batch_stats and x.shape[0] % micro_batches == 0:
            (value, grads), batch_stats = split_gradients(state.params, x, y, dropout_key), state.batch_stats
        else:
            (value, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        if axis_name is not None:
            grads, value, batch_stats = jax.lax.pmean((grads, value, batch_stats), axis_name)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(state.step + 1, params, batch_stats, opt_state), value

    return step


EVAL_CHUNK_VALUES = 1 << 24  # input values per evaluation chunk: 1000 MNIST images, 85 of notebook 003's 256x256x3


def eval_chunk(n: int, image_shape: tuple[int, ...]) -> int:
    """Images per evaluation chunk: at most 1000 and EVAL_CHUNK_VALUES input values, and no more than n."""
    return max(1, min(1000, n, EVAL_CHUNK_VALUES // math.prod(image_shape)))


def make_eval(model: nn.Module, preprocess: str | Callable, chunk: int = 1000, loss: str = "cross_entropy",
              compute_dtype: str = "float32") -> Callable:
    """(state, images_u8, labels[, valid]) -> (loss sum, correct count), in chunks of `chunk` images (padding
    masked, and the rows that `valid` (N,) bool marks False: a streamed batch's padding).

    loss 'mse': the sum of each example's mean squared error (over N: the MSE of the split); correct is 0."""
    prep = preprocess if callable(preprocess) else preprocessor(preprocess)
    apply = make_apply(model, compute_dtype)

    def evaluate(state: TrainState, images, labels, valid=None):
        n = images.shape[0]
        padded = math.ceil(n / chunk) * chunk
        images = jnp.pad(images, [(0, padded - n)] + [(0, 0)] * (images.ndim - 1))
        labels = jnp.pad(labels, [(0, padded - n)] + [(0, 0)] * (labels.ndim - 1))
        valid = jnp.arange(padded) < n if valid is None else jnp.pad(valid, (0, padded - n))

        def one(batch):
            x, y, ok = batch
            outputs = apply({"params": state.params, "batch_stats": state.batch_stats}, prep(x))
            dtype = outputs.dtype
            total = jnp.where(ok, example_losses(loss, outputs, y.astype(dtype) if loss == "mse" else y), 0.0).sum()
            correct = jnp.sum(ok & (outputs.argmax(-1) == y)) if loss == "cross_entropy" else jnp.int32(0)
            return total, correct

        losses, correct = jax.lax.map(one, (images.reshape(-1, chunk, *images.shape[1:]),
                                            labels.reshape(-1, chunk, *labels.shape[1:]), valid.reshape(-1, chunk)))
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
