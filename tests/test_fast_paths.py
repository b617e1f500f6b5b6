"""The CPU speed-ups keep the numerics: reshape pooling (with torch's first-maximum gradient) and
micro-batched gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch.nn.functional as F

import jaxcnn
from jax import lax
from parity import check
from train.optimizers import torch_sgd
from train.step import init_state, make_train_step


@pytest.mark.parametrize("shape,kernel", [((3, 8, 9, 4), 2), ((2, 7, 7, 3), 3), ((2, 6, 6, 2), (2, 3))])
def test_tiled_max_pool_sends_the_gradient_to_the_first_maximum_like_torch(shape, kernel):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, shape).astype(np.float32)  # many exact ties in every window
    y, vjp = jax.vjp(lambda x: jaxcnn.max_pool(x, kernel), x)
    g = rng.standard_normal(y.shape).astype(np.float32)
    xt = check.to_torch(check.to_nchw(x)).requires_grad_(True)
    yt = F.max_pool2d(xt, kernel)
    yt.backward(check.to_torch(check.to_nchw(g)))
    np.testing.assert_array_equal(y, check.to_nhwc(yt))
    np.testing.assert_array_equal(vjp(g)[0], check.to_nhwc(xt.grad))


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_tiled_pools_equal_reduce_window(ndim):
    rng = np.random.default_rng(ndim)
    x = jnp.asarray(rng.standard_normal((2, *([7] * ndim), 3)), jnp.float32)
    window = (1, *([2] * ndim), 1)
    slices = (slice(None), *([slice(0, 3)] * ndim))
    expected_max = lax.reduce_window(x, -jnp.inf, lax.max, window, window, "VALID")
    expected_mean = lax.reduce_window(x, 0.0, lax.add, window, window, "VALID") / 2 ** ndim
    np.testing.assert_array_equal(jaxcnn.max_pool(x, 2), expected_max[slices])
    np.testing.assert_allclose(jaxcnn.avg_pool(x, 2), expected_mean[slices], rtol=1e-6)
    grad = jax.grad(lambda x: jnp.sum(jaxcnn.max_pool(x, 2) ** 2))(x)
    assert np.count_nonzero(np.asarray(grad)) == 2 * 3 ** ndim * 3  # one maximum per window; the 7th row unseen


@pytest.mark.parametrize("name", ["mnist_cnn", "cnn_bn_dropout"])
def test_micro_batched_step_equals_whole_batch(name):
    model = jaxcnn.create_model(name, **({"in_channels": 1, "input_size": 28} if name == "cnn_bn_dropout" else {}))
    tx = torch_sgd(0.05)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, (64, 28, 28, 1)).astype(np.uint8))
    labels = jnp.asarray(rng.integers(0, 10, 64).astype(np.int32))
    indices = jnp.arange(32)
    results = []
    for parts in (1, 4):
        step = jax.jit(make_train_step(model, tx, "normalize", micro_batches=parts))
        state, loss = step(init_state(model, tx, jax.random.PRNGKey(0)), images, labels, indices, jax.random.key(1))
        results.append((state, float(loss)))
    (whole, whole_loss), (split, split_loss) = results
    if name == "cnn_bn_dropout":  # BatchNorm: statistics over the whole batch, so never split
        assert split_loss == whole_loss
        return
    assert split_loss == pytest.approx(whole_loss, rel=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(whole.params), jax.tree_util.tree_leaves(split.params)):
        assert np.max(np.abs(np.asarray(a) - np.asarray(b))) <= 1e-6 * max(1.0, float(np.max(np.abs(a))))


def test_layerbench_smoke(capsys):
    from train import layerbench

    layerbench.main(["--repeats", "1"])
    out = capsys.readouterr().out
    assert "mnist_cnn conv2 kernel gradient" in out and "jaxcnn tiled: gradient" in out
