"""The CPU speed-ups keep the numerics: reshape pooling (with torch's first-maximum gradient), banded
convolutions and micro-batched gradients."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st

import jaxcnn
from jax import lax
from jaxcnn.banded import banded_conv2d, block_width
from parity.checks import check
from train.bench import layers as layerbench
from train.trainer.optimizers import torch_sgd
from train.trainer.step import init_state, make_train_step


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


@pytest.mark.parametrize("name", [pytest.param("mnist_cnn", marks=pytest.mark.slow), "cnn_bn_dropout"])
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


@pytest.mark.slow
def test_layerbench_smoke(capsys):

    layerbench.main(["--repeats", "1"])
    out = capsys.readouterr().out
    assert "mnist_cnn conv2 xla kernel gradient" in out and "lenet5 conv1 banded forward" in out
    assert "jaxcnn tiled: gradient" in out


@st.composite
def banded_cases(draw):
    pairs = lambda low, high: st.tuples(st.integers(low, high), st.integers(low, high))  # noqa: E731
    (kh, kw), stride, dilation = draw(pairs(1, 5)), draw(pairs(1, 3)), draw(pairs(1, 2))
    padding = draw(st.tuples(pairs(0, 2), pairs(0, 2)))
    h = draw(st.integers(max(1, dilation[0] * (kh - 1) + 1 - sum(padding[0])), 12))
    w = draw(st.integers(max(1, dilation[1] * (kw - 1) + 1 - sum(padding[1])), 30))
    x_shape = (draw(st.integers(1, 3)), h, w, draw(st.integers(1, 4)))
    return x_shape, (kh, kw, draw(st.integers(1, 5))), stride, padding, dilation


@settings(max_examples=3, deadline=None, derandomize=True)  # each example compiles; 4 explicit ones besides
@given(banded_cases())
@example(((4, 28, 28, 1), (5, 5, 6), (1, 1), ((2, 2), (2, 2)), (1, 1)))  # LeNet-5's conv1 and conv2
@example(((4, 14, 14, 6), (5, 5, 16), (1, 1), ((0, 0), (0, 0)), (1, 1)))
@example(((2, 9, 31, 2), (3, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)))  # 31 one-column blocks: the reshaped windows
@example(((2, 9, 60, 2), (3, 2, 3), (1, 2), ((0, 0), (1, 1)), (1, 2)))  # 5 blocks of 6 columns, stride 2
def test_banded_convolution_equals_xla_values_and_gradients(case):
    x_shape, (kh, kw, cout), stride, padding, dilation = case
    rng = np.random.default_rng(sum(x_shape))
    with jax.enable_x64(True):
        x = jnp.asarray(rng.standard_normal(x_shape))
        kernel = jnp.asarray(rng.standard_normal((kh, kw, x_shape[-1], cout)))

        def xla(x, k):
            return lax.conv_general_dilated(x, k, stride, padding, rhs_dilation=dilation,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

        expected, expected_vjp = jax.vjp(xla, x, kernel)
        got, got_vjp = jax.vjp(lambda x, k: banded_conv2d(x, k, stride, padding, dilation), x, kernel)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
        g = jnp.asarray(rng.standard_normal(expected.shape))
        for a, b in zip(got_vjp(g), expected_vjp(g)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def _uses_xla_conv(layer, x) -> bool:
    variables = jax.eval_shape(layer.init, jax.random.key(0), x)  # shapes: the path is chosen at trace time
    return "conv_general_dilated" in str(jax.make_jaxpr(layer.apply)(variables, x))


def test_auto_takes_the_banded_path_for_few_channels_on_cpu():
    assert block_width(28) == 7 and block_width(10) == 5 and block_width(13) == 1
    assert not _uses_xla_conv(jaxcnn.Conv2d(1, 6, 5, padding=2), jnp.zeros((2, 28, 28, 1)))  # LeNet-5
    assert not _uses_xla_conv(jaxcnn.Conv2d(6, 16, 5), jnp.zeros((2, 14, 14, 6)))
    assert not _uses_xla_conv(jaxcnn.Conv2d(3, 6, 3), jnp.zeros((2, 32, 32, 3)))  # cifar_conv_mlp
    assert _uses_xla_conv(jaxcnn.Conv2d(32, 32, 3, padding=1), jnp.zeros((2, 14, 14, 32)))  # mnist_cnn's conv2
    assert _uses_xla_conv(jaxcnn.Conv2d(8, 4, 3, padding=1), jnp.zeros((2, 64, 64, 8)))  # sun_regressor's conv3
    assert _uses_xla_conv(jaxcnn.Conv2d(1, 6, 5, implementation="xla"), jnp.zeros((2, 28, 28, 1)))
    assert _uses_xla_conv(jaxcnn.Conv2d(4, 4, 3, groups=2), jnp.zeros((2, 9, 9, 4)))
    assert _uses_xla_conv(jaxcnn.Conv1d(1, 6, 5), jnp.zeros((2, 28, 1)))


@pytest.mark.parametrize("layer,x_shape,message", [
    (jaxcnn.Conv1d(1, 6, 5, implementation="banded"), (2, 28, 1), "2-D convolution with groups=1, got 1-D"),
    (jaxcnn.Conv2d(4, 4, 3, groups=2, implementation="banded"), (2, 9, 9, 4), "groups=2"),
    (jaxcnn.Conv2d(1, 6, 5, implementation="fast"), (2, 28, 28, 1), "'auto', 'xla' or 'banded', got 'fast'"),
])
def test_conv_implementation_errors_name_the_problem(layer, x_shape, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        layer.init(jax.random.key(0), jnp.zeros(x_shape))
