"""python -m train.bench.loop: per-step jit vs lax.scan for one training step on this backend.

Times LeNet-5 (batch 100, Adam, random uint8 images) run as one jitted call per step, as a scan with the
batch gathered inside the loop (unrolled or not), as a scan over pre-gathered batches, and forward+backward
alone both ways. Compile time is excluded; each variant runs --steps steps once after a warm-up run.
--conv xla makes LeNet-5's convolutions XLA convolutions instead of jaxcnn's banded dots: the while loop is
slow with them, not with dots.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import jaxcnn
from train.trainer.optimizers import torch_adam
from train.trainer.step import epoch_order, init_state, make_train_step
from train.trainer.timing import timed


def measure(steps: int = 120, batch: int = 100, conv: str = "auto") -> dict[str, float]:
    """Milliseconds per step of each variant; conv 'auto' (banded on CPU) or 'xla' (LeNet-5's conv_implementation)."""
    model, tx = jaxcnn.create_model("lenet5_mnist", conv_implementation=conv), torch_adam(1e-3)
    step = make_train_step(model, tx, "raw")
    rng = np.random.default_rng(0)
    n = steps * batch
    images = jnp.asarray(rng.integers(0, 256, (n, 28, 28, 1)).astype(np.uint8))
    labels = jnp.asarray(rng.integers(0, 10, n).astype(np.int32))
    order = jnp.asarray(epoch_order(0, 1, n, batch))
    key = jax.random.PRNGKey(0)
    batches = (images[order], labels[order])
    every = jnp.arange(batch)

    def grads_only(state, b):
        g = jax.grad(lambda p: jnp.mean(model.apply({"params": p}, b[0].astype(jnp.float32)) ** 2))(state.params)
        return state, jax.tree_util.tree_leaves(g)[0].sum()

    one_step, one_grad = jax.jit(step, donate_argnums=0), jax.jit(grads_only)

    def per_step(state):
        for idx in order:
            state, loss = one_step(state, images, labels, idx, key)
        return loss

    def per_step_grads(state):
        for i in range(steps):
            state, value = one_grad(state, (batches[0][i], batches[1][i]))
        return value

    scans = {u: jax.jit(lambda s, u=u: jax.lax.scan(lambda c, i: step(c, images, labels, i, key), s, order,
                                                      unroll=u)[1]) for u in (1, 4)}
    scan_batches = jax.jit(lambda s: jax.lax.scan(lambda c, b: step(c, b[0], b[1], every, key), s, batches)[1])
    scan_grads = jax.jit(lambda s: jax.lax.scan(grads_only, s, batches)[1])
    variants = {"per-step jit": per_step, "scan, gather in loop": scans[1], "scan, gather in loop, unroll=4": scans[4],
                "scan over pre-gathered batches": scan_batches, "per-step forward+backward only": per_step_grads,
                "scan forward+backward only": scan_grads}
    results = {}
    for name, fn in variants.items():
        jax.block_until_ready(fn(init_state(model, tx, key)))  # compile and warm up
        state = init_state(model, tx, key)
        results[name] = 1000 * timed(lambda: fn(state))[1] / steps
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.bench.loop", description=__doc__)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--conv", choices=["auto", "xla"], default="auto")
    args = parser.parse_args(argv)
    print(f"{jax.default_backend()}, {jax.device_count()} device(s), {args.steps} steps of batch 100, "
          f"{args.conv} convolutions:")
    for name, ms in measure(args.steps, conv=args.conv).items():
        print(f"  {name:34s} {ms:7.1f} ms/step")


if __name__ == "__main__":
    main()
