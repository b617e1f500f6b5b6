"""The numeric facts of ARCHITECTURES.md: hand convolution, filters, pooling, padding, shapes, quiz answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jaxcnn import layers
import jaxcnn
from parity.checks import check, convert

BINARY = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]], np.float32)
X_KERNEL = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], np.float32)
IMG_000 = np.array([[218, 237, 255, 157, 94], [143, 50, 18, 156, 128], [173, 61, 137, 101, 131],
                    [106, 30, 123, 36, 240], [35, 86, 85, 242, 46]], np.float32)
SHARPENED_000 = [[-209, -508, 376], [-85, 382, 45], [-226, 327, -526]]


def lax_conv(x, kernel, stride=1, padding=0, dilation=1):
    """The reference: a bias-free jaxcnn.Conv2d, i.e. lax.conv_general_dilated."""
    kh, kw, c, o = kernel.shape
    conv = jaxcnn.Conv2d(c, o, (kh, kw), stride, padding, dilation, bias=False)
    return conv.apply({"params": {"kernel": kernel}}, x)


@pytest.mark.parametrize("hand", [jaxcnn.conv2d_by_hand, jaxcnn.conv2d_as_linear])
def test_hand_convolutions_give_the_notebook_numbers(hand):
    np.testing.assert_array_equal(hand(BINARY, X_KERNEL), [[4, 3, 4], [2, 4, 3], [2, 3, 4]])
    np.testing.assert_array_equal(hand(IMG_000, jaxcnn.SHARPEN), SHARPENED_000)
    torch_out = F.conv2d(torch.tensor(IMG_000)[None, None], torch.tensor(jaxcnn.SHARPEN)[None, None])
    np.testing.assert_array_equal(torch_out[0, 0].numpy(), SHARPENED_000)


@pytest.mark.parametrize("hand", [jaxcnn.conv2d_by_hand, jaxcnn.conv2d_as_linear])
@pytest.mark.parametrize("stride,padding,dilation", [(1, 0, 1), (2, 1, 1), ((1, 3), (2, 0), 1), (1, 2, 2), (3, 0, (2, 1))])
def test_hand_convolutions_equal_lax_conv(hand, stride, padding, dilation, rng):
    x = rng.standard_normal((2, 11, 13, 3)).astype(np.float32)
    kernel = rng.standard_normal((3, 4, 3, 5)).astype(np.float32)
    want = lax_conv(x, kernel, stride, padding, dilation)
    got = hand(x, kernel, stride, padding, dilation)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_sharpen_filter_reproduces_notebook_000():
    np.testing.assert_array_equal(jaxcnn.sharpen(IMG_000), SHARPENED_000)


def test_gaussian_blur_sums_to_one_and_keeps_a_constant_image_constant():
    assert jaxcnn.GAUSSIAN_BLUR.shape == (5, 5)
    assert abs(float(jaxcnn.GAUSSIAN_BLUR.sum()) - 1.0) < 1e-6
    np.testing.assert_allclose(jaxcnn.gaussian_blur(np.full((12, 9), 37.0)), np.full((8, 5), 37.0), rtol=1e-6)
    assert jaxcnn.gaussian_blur(np.zeros((300, 451))).shape == (296, 447)  # the cat photo of notebook 004


def test_gaussian_blur_smooths_noise():
    noise = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    assert float(jnp.std(jaxcnn.gaussian_blur(noise))) < 0.5 * float(np.std(noise))


def test_sobel_is_zero_on_a_constant_image_and_finds_a_step_edge():
    np.testing.assert_array_equal(jaxcnn.sobel(np.full((6, 7), 5.0)), np.zeros((4, 5, 2)))
    step = np.zeros((6, 8), np.float32)
    step[:, 4:] = 1.0  # vertical edge between columns 3 and 4
    gx, gy = np.moveaxis(np.asarray(jaxcnn.sobel(step)), -1, 0)
    # a window touching the edge sees (1 + 2 + 1) on its right column and nothing on its left
    np.testing.assert_array_equal(gx, np.tile([0, 0, 4, 4, 0, 0], (4, 1)))
    np.testing.assert_array_equal(gy, np.zeros((4, 6)))
    gx_t, gy_t = np.moveaxis(np.asarray(jaxcnn.sobel(step.T)), -1, 0)
    np.testing.assert_array_equal(gy_t, np.tile([0, 0, 4, 4, 0, 0], (4, 1)).T)
    np.testing.assert_array_equal(gx_t, np.zeros((6, 4)))


def test_filters_apply_to_batches_as_conv2d_1_to_O():
    batch = np.random.default_rng(1).standard_normal((3, 10, 10, 1)).astype(np.float32)
    out = jaxcnn.apply_filter(batch, np.stack([jaxcnn.SOBEL_X, jaxcnn.SOBEL_Y]))
    assert out.shape == (3, 8, 8, 2)
    np.testing.assert_allclose(out[1], jaxcnn.sobel(batch[1, :, :, 0]), rtol=1e-6)


def test_pooling_values_of_notebook_004():
    x = jnp.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], jnp.float32)[None, :, :, None]
    np.testing.assert_array_equal(jaxcnn.MaxPool(2, 2).apply({}, x)[0, :, :, 0], [[6, 8], [3, 4]])
    np.testing.assert_array_equal(jaxcnn.AvgPool(2, 2).apply({}, x)[0, :, :, 0], [[3.25, 5.25], [2, 2]])
    np.testing.assert_array_equal(jaxcnn.max_pool(x, 2), jaxcnn.MaxPool(2, 2).apply({}, x))  # stride = kernel


def test_stride_that_skips_the_last_column():
    x = np.ones((1, 7, 7, 1), np.float32)
    x[:, :, -1] = 99
    y = lax_conv(x, np.ones((3, 3, 1, 1), np.float32), stride=3)
    np.testing.assert_array_equal(y[0, :, :, 0], np.full((2, 2), 9.0))


def test_explicit_padding_equals_implicit_padding(rng):
    x = rng.standard_normal((1, 5, 5, 1)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 1, 2)).astype(np.float32)
    by_hand = lax_conv(np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), kernel, padding=0)
    assert by_hand.shape == (1, 5, 5, 2)
    np.testing.assert_array_equal(by_hand, lax_conv(x, kernel, padding=1))


@pytest.mark.parametrize("stride,padding,size", [(1, 1, 5), (2, 0, 2), (2, 2, 4)])
def test_stride_padding_demo_of_notebook_000(stride, padding, size):
    conv = jaxcnn.Conv2d(1, 2, 3, stride, padding)
    x = jnp.asarray(IMG_000)[None, :, :, None]
    assert conv.apply(conv.init(jax.random.key(0), x), x).shape == (1, size, size, 2)
    assert jaxcnn.conv_output_size(5, 3, stride, padding) == size


def _torch_pair(torch_layer, flax_layer, x_nchw):
    """Outputs of a torch layer and the same-config jaxcnn layer with converted weights."""
    return check.compare_layer(torch_layer, flax_layer, convert.torch_to_flax(torch_layer, flax_layer, x_nchw.shape),
                               x_nchw)


@pytest.mark.parametrize("torch_layer,flax_layer,x_shape,out_shape", [
    (torch.nn.Conv2d(64, 32, 1), jaxcnn.Conv2d(64, 32, 1), (1, 64, 56, 56), (1, 32, 56, 56)),
    (torch.nn.Conv1d(16, 33, 3, stride=2), jaxcnn.Conv1d(16, 33, 3, stride=2), (20, 16, 50), (20, 33, 24)),
    (torch.nn.Conv3d(16, 33, 3, stride=2), jaxcnn.Conv3d(16, 33, 3, stride=2), (20, 16, 10, 50, 100),
     (20, 33, 4, 24, 49)),
    (torch.nn.Conv3d(16, 33, (3, 5, 2), stride=(2, 1, 1), padding=(4, 2, 0)),
     jaxcnn.Conv3d(16, 33, (3, 5, 2), stride=(2, 1, 1), padding=(4, 2, 0)), (20, 16, 10, 50, 100),
     (20, 33, 8, 50, 99)),
])
def test_1x1_conv1d_conv3d_shapes_and_values_of_notebook_004(torch_layer, flax_layer, x_shape, out_shape):
    """The notebook's shapes on its whole batch (shapes only), the values on two of its inputs."""
    torch.manual_seed(0)
    result = _torch_pair(torch_layer, flax_layer, torch.randn(2, *x_shape[1:]))
    assert result.torch_shape == (2, *out_shape[2:], out_shape[1])
    assert result.ok, result
    whole = jax.ShapeDtypeStruct((x_shape[0], *x_shape[2:], x_shape[1]), jnp.float32)  # NHWC
    variables = jax.eval_shape(flax_layer.init, jax.random.key(0), whole)
    assert jax.eval_shape(flax_layer.apply, variables, whole).shape == (out_shape[0], *out_shape[2:], out_shape[1])


@pytest.mark.parametrize("make", [
    lambda m: m.Conv2d(4, 6, 3, stride=2, padding=(1, 2), dilation=(2, 1), groups=2),
    lambda m: m.Conv2d(4, 4, (2, 5), padding="same", groups=4, bias=False),
    lambda m: m.Conv2d(3, 5, 4, padding="same", dilation=3),
    lambda m: m.Conv2d(3, 5, 3, padding="valid", stride=3),
    lambda m: m.Conv2d(3, 5, 3, padding=2, padding_mode="reflect"),
    lambda m: m.Conv2d(3, 5, 3, padding=(1, 2), padding_mode="replicate"),
    lambda m: m.Conv2d(3, 5, 3, padding=1, padding_mode="circular"),
    lambda m: m.Conv1d(3, 6, 4, padding="same", groups=3),
])
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's note on asymmetric 'same'
def test_conv_configurations_equal_torch(make):
    torch.manual_seed(0)
    torch_layer = make(torch.nn)
    flax_layer = make(layers)
    x = torch.randn((2, torch_layer.in_channels, *(11,) * (torch_layer.weight.ndim - 2)))
    result = _torch_pair(torch_layer, flax_layer, x)
    assert result.ok, result


@pytest.mark.parametrize("torch_pool,flax_pool", [
    (torch.nn.MaxPool2d(3, 2), layers.MaxPool(3, 2)),
    (torch.nn.MaxPool2d(3, 2, padding=1, ceil_mode=True), layers.MaxPool(3, 2, padding=1, ceil_mode=True)),
    (torch.nn.MaxPool2d((2, 3), (1, 2), dilation=2), layers.MaxPool((2, 3), (1, 2), dilation=2)),
    (torch.nn.AvgPool2d(3, 2, padding=1), layers.AvgPool(3, 2, padding=1)),
    (torch.nn.AvgPool2d(3, 2, padding=1, count_include_pad=False), layers.AvgPool(3, 2, padding=1, count_include_pad=False)),
    (torch.nn.AvgPool2d(3, 2, padding=1, ceil_mode=True), layers.AvgPool(3, 2, padding=1, ceil_mode=True)),
    (torch.nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False), layers.AvgPool(2, ceil_mode=True, count_include_pad=False)),
    (torch.nn.AvgPool2d(3, divisor_override=2), layers.AvgPool(3, divisor_override=2)),
    (torch.nn.AdaptiveAvgPool2d((7, 7)), layers.AdaptiveAvgPool((7, 7))),
    (torch.nn.AdaptiveAvgPool2d((3, 5)), layers.AdaptiveAvgPool((3, 5))),
    (torch.nn.MaxPool1d(2), layers.MaxPool(2)),
])
def test_pool_configurations_equal_torch(torch_pool, flax_pool):
    x = torch.randn((2, 3, 11, 11)) if not isinstance(torch_pool, torch.nn.MaxPool1d) else torch.randn(2, 3, 11)
    result = check.compare_layer(torch_pool, flax_pool, {}, x)
    assert result.ok, result


def test_padding_for_the_cases_of_notebook_002():
    cases = [((8, 16), (3, 3), (1, 1)), ((8, 16), (5, 5), (2, 2)), ((8, 16), (7, 7), (3, 3)),
             ((8, 16), (9, 9), (4, 4)), ((8, 16), (3, 5), (1, 2)), ((22, 30), (3, 3), (8, 8)),
             ((7, 15), (4, 4), (1, 1)), ((9, 17), (2, 2), (1, 1))]
    for wanted, kernel, padding in cases:
        assert jaxcnn.padding_for(wanted, (8, 16), kernel) == padding
        out = torch.nn.Conv2d(3, 10, kernel, padding=padding)(torch.ones(4, 3, 8, 16))
        assert tuple(out.shape) == (4, 10, *wanted)
    assert jaxcnn.padding_for(8, 8, 3) == 1


def test_padding_for_says_when_no_padding_fits():
    with pytest.raises(ValueError, match="no symmetric padding turns length 8 into 9 with k=3"):
        jaxcnn.padding_for(9, 8, 3)  # needs 2p = 3


def test_conv_output_size_formula_and_errors():
    assert jaxcnn.conv_output_size(28, 5, 1, 2) == 28
    assert jaxcnn.conv_output_size((10, 50, 100), (3, 5, 2), (2, 1, 1), (4, 2, 0)) == (8, 50, 99)
    assert jaxcnn.conv_output_size(50, 3, 2) == 24
    assert jaxcnn.conv_output_size(7, 3, 1, 0, 3) == 1
    with pytest.raises(ValueError, match="shorter than the kernel span 5"):
        jaxcnn.conv_output_size(4, 5)
    assert jaxcnn.pool_output_size(5, 2, ceil_mode=True) == 3
    assert jaxcnn.pool_output_size(5, 2) == 2


def test_quiz_answers_of_notebook_002():
    assert jaxcnn.conv_params(16, 1, 5) == 401  # one neuron of a 5x5 conv over 16 channels
    calls = jaxcnn.trace_layers(jaxcnn.create_model("lenet5_mnist"), (1, 28, 28, 1))[1]
    first_conv = next(c for c in calls if c.path == ("conv1",))
    assert int(np.prod(first_conv.output_shape[1:])) == 4704
    size, blocks = 32, 0
    while size >= 2:
        size, blocks = jaxcnn.pool_output_size(jaxcnn.conv_output_size(size, 3, 1, 1), 2), blocks + 1
    assert blocks == 5


def test_flatten_three_ways_and_the_channels_last_order():
    x = torch.rand(2, 3, 4, 5)
    three = [x.reshape(2, -1), x.flatten(start_dim=1, end_dim=-1), torch.nn.Flatten()(x)]
    for other in three[1:]:
        assert torch.equal(three[0], other)
    nhwc = check.to_nhwc(x)
    np.testing.assert_array_equal(jaxcnn.Flatten().apply({}, check.to_nchw(nhwc)), three[0].numpy())
    np.testing.assert_array_equal(jaxcnn.Flatten().apply({}, nhwc), x.permute(0, 2, 3, 1).reshape(2, -1).numpy())


def test_conv_layer_errors_name_the_problem():
    conv = jaxcnn.Conv2d(3, 8, 3)
    with pytest.raises(ValueError, match=r"expects input \(N, H, W, C=3\).*got shape \(1, 3, 8, 8\)"):
        conv.init(jax.random.key(0), jnp.zeros((1, 3, 8, 8)))
    with pytest.raises(ValueError, match="not supported for strided"):
        jaxcnn.Conv2d(3, 8, 3, stride=2, padding="same").init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
    with pytest.raises(ValueError, match="smaller than the kernel span 5"):
        jaxcnn.Conv2d(3, 8, 5).init(jax.random.key(0), jnp.zeros((1, 4, 8, 3)))
    with pytest.raises(ValueError, match=r"Linear 'fc' expects \(\.\.\., 400\)"):
        jaxcnn.Linear(400, 10, name="fc").init(jax.random.key(0), jnp.zeros((2, 256)))
