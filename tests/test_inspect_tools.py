"""jaxcnn.inspect on random weights: shapes, layouts, the guided-ReLU rule, and equality with torch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import linen as nn

from jaxcnn import inspect as tools
import jaxcnn
from parity.checks import check, referee, saliency, suite
from tests import helpers, spec


def mnist_cnn(seed: int = 0):
    model = jaxcnn.create_model("mnist_cnn")
    return model, model.init(jax.random.key(seed), jnp.zeros((1, 28, 28, 1)))


def test_make_grid_lays_out_like_torchvision():
    images = np.arange(5 * 3 * 4 * 2, dtype=np.float32).reshape(5, 3, 4, 2)
    grid = tools.make_grid(images, nrow=2, padding=1, pad_value=-7, normalize=False)
    assert grid.shape == (3 * (3 + 1) + 1, 2 * (4 + 1) + 1, 2)
    np.testing.assert_array_equal(grid[1:4, 1:5], images[0])
    np.testing.assert_array_equal(grid[5:8, 6:10], images[3])  # row 1, column 1
    np.testing.assert_array_equal(grid[9:12, 1:5], images[4])
    assert np.all(grid[0] == -7) and np.all(grid[9:12, 6:10] == -7)  # padding and the empty last cell


def test_make_grid_normalises_each_image():
    images = np.stack([np.full((2, 2, 1), 3.0), np.array([[[1.0], [2.0]], [[3.0], [5.0]]])])
    grid = tools.make_grid(images, padding=0)
    np.testing.assert_allclose(grid[:, :2, 0], 0.0)  # a constant image
    np.testing.assert_allclose(grid[:, 2:, 0], [[0.0, 0.25], [0.5, 1.0]])
    together = tools.make_grid(images, padding=0, scale_each=False)
    np.testing.assert_allclose(together[:, :2, 0], 0.5)
    with pytest.raises(ValueError, match=r"\(N, H, W, C\) images, got shape \(2, 2, 1\)"):
        tools.make_grid(images[0])


def test_filter_images_index_the_kernel():
    kernel = np.random.default_rng(0).standard_normal((3, 5, 4, 6))  # (kh, kw, in, out)
    filters = tools.filter_images(kernel)
    assert filters.shape == (6, 3, 5, 4)
    assert filters[5, 2, 1, 3] == kernel[2, 1, 3, 5]
    channels = tools.channel_filter_images(kernel)
    assert channels.shape == (6 * 4, 3, 5, 1)
    assert channels[5 * 4 + 3, 2, 1, 0] == kernel[2, 1, 3, 5]  # filter 5, input channel 3


def test_activations_are_the_layer_outputs():
    model, variables = mnist_cnn()
    x = jax.random.normal(jax.random.key(1), (2, 28, 28, 1))
    conv = jaxcnn.Conv2d(1, 32, 3, padding=1).apply({"params": variables["params"]["conv_stack_0"]}, x)
    got = tools.activations(model, variables, x, ["conv_stack_0", "conv_stack_1"])
    np.testing.assert_allclose(got["conv_stack_0"], conv, rtol=1e-6)
    np.testing.assert_allclose(got["conv_stack_1"], jaxcnn.max_pool(conv, 2), rtol=1e-6)
    assert tools.activations(model, variables, x, "conv_stack_3").shape == (2, 14, 14, 32)
    assert tools.conv_layers(model) == ["conv_stack_0", "conv_stack_3"]
    with pytest.raises(ValueError, match=r"no layer named \['conv9'\] in MnistCNN; its layers: \['conv_stack_0'"):
        tools.activations(model, variables, x, "conv9")


def test_features_feed_the_classifier():
    model, variables = mnist_cnn()
    x = jax.random.normal(jax.random.key(1), (3, 28, 28, 1))
    embedding = tools.features(model, variables, x)
    last = variables["params"]["conv_stack_9"]
    assert embedding.shape == (3, 100) and bool(jnp.all(embedding >= 0))  # after a ReLU
    np.testing.assert_allclose(embedding @ last["kernel"] + last["bias"], model.apply(variables, x), rtol=1e-5,
                               atol=1e-6)
    conv_only = jaxcnn.create_model("conv_relu_conv")
    conv_vars = conv_only.init(jax.random.key(0), jnp.zeros((1, 28, 28, 3)))
    with pytest.raises(ValueError, match="has no Linear layer"):
        tools.features(conv_only, conv_vars, jnp.zeros((1, 28, 28, 3)))


def test_nearest_neighbours_match_brute_force():
    rng = np.random.default_rng(0)
    bank = rng.standard_normal((50, 4, 4, 1)).astype(np.float32)
    indices, distances = tools.nearest_neighbours(bank[7], bank, 5)
    brute = np.argsort(np.linalg.norm(bank.reshape(50, -1) - bank[7].reshape(-1), axis=1))[:5]
    np.testing.assert_array_equal(indices, brute)
    assert indices[0] == 7 and distances[0] == pytest.approx(0.0, abs=1e-3)
    assert bool(jnp.all(jnp.diff(distances) >= 0))
    with pytest.raises(ValueError, match=r"k must be in 1\.\.50"):
        tools.nearest_neighbours(bank[0], bank, 51)


def test_guided_relu_passes_positive_gradients_where_the_input_was_positive():
    x = jnp.array([-2.0, -0.5, 0.0, 0.5, 1.0, 2.0])
    w = jnp.array([1.0, -1.0, 3.0, -2.0, 0.5, 4.0])
    guided = jax.grad(lambda x: jnp.sum(w * tools.guided_relu(x)))(x)
    np.testing.assert_array_equal(guided, jnp.where(x > 0, jnp.maximum(w, 0.0), 0.0))
    np.testing.assert_array_equal(tools.guided_relu(x), jax.nn.relu(x))  # the forward is a ReLU


def test_guided_model_swaps_the_activation_field_only():
    model = jaxcnn.create_model("mnist_cnn")
    swapped = tools.guided_model(model)
    assert swapped.act is tools.guided_relu and swapped.clone(act=jax.nn.relu) == model
    assert tools.guided_model(jaxcnn.create_model("lenet5_mnist")).act is jax.nn.tanh

    class OwnNet(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.relu(nn.Dense(3)(x))

    with pytest.raises(ValueError, match="`act` field.*OwnNet has none"):
        tools.guided_model(OwnNet())


def test_guided_backprop_leaves_networks_without_relu_alone():
    model = jaxcnn.create_model("lenet5_mnist")
    variables = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    x = jax.random.uniform(jax.random.key(1), (2, 28, 28, 1), maxval=255.0)
    np.testing.assert_array_equal(tools.guided_backprop(model, variables, x, jnp.array([3, 4])),
                                  tools.input_gradients(model, variables, x, jnp.array([3, 4])))


def test_saliency_shapes_and_definition():
    model, variables = mnist_cnn()
    x = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
    classes = jnp.array([0, 3, 9, 3])
    grads = tools.input_gradients(model, variables, x, classes)
    assert grads.shape == x.shape
    np.testing.assert_array_equal(tools.gradient_saliency(model, variables, x, classes), jnp.abs(grads).max(-1))
    one = jax.grad(lambda image: model.apply(variables, image[None])[0, 9])(x[2])
    np.testing.assert_allclose(grads[2], one, rtol=1e-5, atol=1e-7)  # each image alone
    guided = tools.guided_backprop(model, variables, x, classes)
    assert guided.shape == x.shape and not np.allclose(guided, grads)


def test_occlusion_masks_and_map():
    masks = tools.occlusion_masks(6, 5, 3, 2)
    assert masks.shape == (2 * 2, 6, 5) and bool(jnp.all(masks.sum((1, 2)) == 9))
    assert bool(masks[3, 2:5, 2:5].all()) and int(masks[3].sum()) == 9  # bottom-right position
    model, variables = mnist_cnn()
    image = jax.random.normal(jax.random.key(1), (28, 28, 1))
    occluded = tools.occlusion(model, variables, image, 4, size=8, stride=5, fill=-1.0, batch_size=3)
    assert occluded.shape == (5, 5)
    by_hand = image.at[5:13, 10:18].set(-1.0)
    np.testing.assert_allclose(occluded[1, 2], jax.nn.softmax(model.apply(variables, by_hand[None])[0])[4], rtol=1e-5)
    with pytest.raises(ValueError, match="patch size must be in 1..28"):
        tools.occlusion(model, variables, image, 4, size=29, stride=1)


def test_class_model_ascends_the_class_score():
    model, variables = mnist_cnn()
    start = model.apply(variables, jnp.zeros((1, 28, 28, 1)))[0]
    images = tools.class_models(model, variables, [2, 7], (28, 28, 1), steps=30, blur_every=10, clip_every=10,
                                value_range=(-1.0, 1.0))
    assert images.shape == (2, 28, 28, 1) and float(jnp.abs(images).max()) <= 1.0
    scores = model.apply(variables, images)
    assert scores[0, 2] > start[2] and scores[1, 7] > start[7]
    assert bool(jnp.all(tools.class_model(model, variables, 2, (28, 28, 1), steps=0) == 0))


def test_blur_same_keeps_size_and_constants():
    constant = jnp.full((9, 7, 3), 0.25)
    np.testing.assert_allclose(tools.blur_same(constant), constant, rtol=1e-6)
    impulse = jnp.zeros((9, 9, 1)).at[4, 4, 0].set(1.0)
    np.testing.assert_allclose(tools.blur_same(impulse)[2:7, 2:7, 0], jaxcnn.GAUSSIAN_BLUR, rtol=1e-6)


# The registry classifiers with a torch original; inputs without near-kinks (see parity.checks.training.near_kinks).
CLASSIFIERS = [name for name in jaxcnn.list_models() if name != "conv_relu_conv"]


# The fast set: ReLU and max pools, BatchNorm and dropout, tanh and average pools, a regression; the rest slow,
# AlexNet and the VGGs among them (test_inspect_photo draws AlexNet's saliency on a photo in the fast set).
SALIENCY_FAST = ("mnist_cnn", "cnn_bn_dropout", "lenet5_classic", "sun_regressor")


@pytest.mark.parametrize("name", spec.fast_only(CLASSIFIERS, SALIENCY_FAST))
def test_saliency_and_guided_backprop_equal_torch(name):
    kwargs, size = suite.gradient_settings(name)
    size = 32 if name.startswith("vgg") else size  # VGG at its smallest input, 32x32: a quarter of the time
    module, model, variables, x = helpers.random_pair(name, 0, batch=2, kink_free=False, size=size, **kwargs)
    classes = np.array([1, 0])
    exact_module, exact_x = referee.float64_copy(module), x.astype(np.float64)  # the float64 referee
    with check.exact_numerics():
        for guided in (False, True):
            theirs = check.to_nhwc(saliency.input_gradients(module, x, classes, guided=guided))
            exact = check.to_nhwc(saliency.input_gradients(exact_module, exact_x, classes, guided=guided))
            ours = tools.input_gradients(model, variables, check.to_nhwc(x), classes, guided_relus=guided)
            verdict = referee.judge(np.asarray(ours), theirs, exact, 1e-5)
            assert verdict.ok, (name, guided, str(verdict))
        theirs = saliency.gradient_saliency(module, x, classes)
        exact = saliency.gradient_saliency(exact_module, exact_x, classes)
        ours = tools.gradient_saliency(model, variables, check.to_nhwc(x), classes)
        assert referee.judge(np.asarray(ours), theirs, exact, 1e-5).ok


def test_guided_hooks_leave_the_torch_module_as_it_was():
    module, _, _, x = helpers.random_pair("alexnet", 0, batch=1)
    saliency.input_gradients(module, x, [3], guided=True)
    relus = [m for m in module.modules() if isinstance(m, torch.nn.ReLU)]
    assert all(m.inplace for m in relus) and not any(m._backward_hooks for m in relus)


@pytest.mark.parametrize("name,size,stride", [("mnist_cnn", 7, 3), ("lenet5_mnist", 5, 4), ("cnn_bn_dropout", 6, 5),
                                              pytest.param("vgg16_bn", 16, 16, marks=pytest.mark.slow)])
def test_occlusion_equals_torch(name, size, stride):
    module, model, variables, x = helpers.random_pair(name, 0, batch=1)
    with check.exact_numerics():
        theirs = saliency.occlusion(module, x[0], 1, size, stride, fill=0.0)
        ours = tools.occlusion(model, variables, check.to_nhwc(x)[0], 1, size, stride)
    assert ours.shape == theirs.shape
    assert check.relative_difference(np.asarray(ours), theirs) <= 1e-5
