"""python -m train.bench.layers: where a mnist_cnn / LeNet-5 training step spends its time on this backend.

Milliseconds for the forward, input gradient and kernel gradient of each conv layer (XLA's convolution and
jaxcnn's banded matrix product), the max pool's forward and gradient (XLA's reduce_window vs jaxcnn's
reshape pool), and Adam's update, each jitted alone.
"""

import argparse
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jaxcnn.banded import banded_conv2d
from jaxcnn.tiles import tiled_max
from train.trainer.timing import timed

LAYERS = {"mnist_cnn conv1": ((64, 28, 28, 1), (3, 3, 1, 32), 1),
          "mnist_cnn conv2": ((64, 14, 14, 32), (3, 3, 32, 32), 1),
          "lenet5 conv1": ((100, 28, 28, 1), (5, 5, 1, 6), 2), "lenet5 conv2": ((100, 14, 14, 6), (5, 5, 6, 16), 0),
          "cifar_conv_mlp conv": ((64, 32, 32, 3), (3, 3, 3, 6), 0),
          "sun_regressor conv3": ((32, 64, 64, 8), (3, 3, 8, 4), 1)}


def _ms(fn, *args, repeats: int) -> float:
    fn = jax.jit(fn)
    jax.block_until_ready(fn(*args))
    _, seconds = timed(lambda: [fn(*args) for _ in range(repeats)])
    return 1000 * seconds / repeats


def measure(repeats: int = 50) -> dict[str, float]:
    rng = np.random.default_rng(0)
    results = {}
    for (name, (x_shape, w_shape, pad)), implementation in itertools.product(LAYERS.items(), ("xla", "banded")):
        x, w = (jnp.asarray(rng.standard_normal(s), jnp.float32) for s in (x_shape, w_shape))

        def conv(x, w, pad=pad, implementation=implementation):
            if implementation == "banded":
                return banded_conv2d(x, w, (1, 1), [(pad, pad)] * 2)
            return lax.conv_general_dilated(x, w, (1, 1), [(pad, pad)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC"))

        g = conv(x, w)
        label = f"{name} {implementation}"
        results[f"{label} forward"] = _ms(conv, x, w, repeats=repeats)
        results[f"{label} input gradient"] = _ms(lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0], x, w, g,
                                                 repeats=repeats)
        results[f"{label} kernel gradient"] = _ms(lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0], x, w, g,
                                                  repeats=repeats)
    x = jnp.asarray(rng.standard_normal((64, 28, 28, 32)), jnp.float32)
    pools = {"reduce_window": lambda x: lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID"),
             "jaxcnn tiled": lambda x: tiled_max(x, (2, 2))}
    for name, pool in pools.items():
        results[f"max pool 2x2 on (64,28,28,32), {name}: forward"] = _ms(pool, x, repeats=repeats)
        results[f"max pool 2x2 on (64,28,28,32), {name}: gradient"] = _ms(
            lambda x, pool=pool: jax.vjp(pool, x)[1](pool(x))[0], x, repeats=repeats)
    params = {"w": jnp.ones((1568, 100)), "v": jnp.ones((3, 3, 32, 32))}
    tx = optax.adam(1e-3)
    results["Adam update (mnist_cnn-sized)"] = _ms(lambda p, o: optax.apply_updates(p, tx.update(p, o, p)[0]),
                                                   params, tx.init(params), repeats=repeats)
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.bench.layers", description=__doc__)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    print(f"{jax.default_backend()}, {jax.device_count()} device(s):")
    for name, ms in measure(args.repeats).items():
        print(f"  {name:58s} {ms:7.2f} ms")


if __name__ == "__main__":
    main()
