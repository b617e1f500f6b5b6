"""Every registry network: configuration, parameter counts, shapes, input errors, train-mode API."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn
from parity.originals import torch_models
from tests import helpers, spec


def test_registry_lists_the_fourteen_networks():
    assert jaxcnn.list_models() == sorted(spec.PARAMS | spec.TORCHVISION_PARAMS)


def test_import_does_not_pull_torch():
    code = "import sys, jaxcnn; print(sorted(jaxcnn.list_models())); assert 'torch' not in sys.modules"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "lenet5_mnist" in out.stdout


def test_unknown_model_and_kwarg_errors_list_valid_choices():
    with pytest.raises(KeyError, match="available: .*lenet5_mnist"):
        jaxcnn.create_model("lenet6")
    with pytest.raises(TypeError, match=r"num_clases.*accepts .*num_classes"):
        jaxcnn.create_model("mnist_cnn", num_clases=3)


@pytest.mark.parametrize("name", jaxcnn.list_models())
def test_parameter_count_equals_spec_and_torch(name):
    model = jaxcnn.create_model(name)
    ours = jaxcnn.summary(model).total_params
    torch_count = sum(p.numel() for p in helpers.shapes_only(name).parameters())
    assert ours == torch_count == (spec.PARAMS | spec.TORCHVISION_PARAMS)[name]


@pytest.mark.parametrize("name", jaxcnn.list_models())
def test_state_dict_keys_of_torch_original_equal_spec(name):
    assert set(helpers.shapes_only(name).state_dict()) == spec.state_dict_keys(name)


@pytest.mark.parametrize("name", jaxcnn.list_models())
def test_output_shapes_of_spec_inputs(name):
    model = jaxcnn.create_model(name)
    default = (2, model.input_shape[-1], *model.input_shape[:-1])
    for in_nchw, out in spec.IO.get(name, [(default, None)]):
        x = jax.ShapeDtypeStruct((in_nchw[0], *in_nchw[2:], in_nchw[1]), jnp.float32)
        variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
        y = jax.eval_shape(model.apply, variables, x)
        if out is not None:
            assert y.shape == ((out[0], *out[2:], out[1]) if len(out) == 4 else out)


@pytest.mark.parametrize("name", jaxcnn.list_models())
def test_wrong_input_shape_names_the_expected_shape(name):
    model = jaxcnn.create_model(name)
    h, w, c = model.input_shape
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, h, w, c)))  # shapes: VGG's 138M free

    def apply(shape):
        return jax.eval_shape(model.apply, variables, jax.ShapeDtypeStruct(shape, jnp.float32))

    with pytest.raises(ValueError, match=rf"expects NHWC input of shape \(N, .*{c}\).*NCHW"):
        apply((1, c, h, w) if c != w else (1, c, h, w + 1))
    with pytest.raises(ValueError, match=rf"expects NHWC input of shape \(N, .*{c}\), got \(1, {h}, {w}, {c + 1}\)"):
        apply((1, h, w, c + 1))
    if model.fixed_size:
        with pytest.raises(ValueError, match=rf"\(N, {h}, {w}, {c}\), got \(1, {h + 4}, {w}, {c}\)"):
            apply((1, h + 4, w, c))
    assert apply((2, h, w, c)).shape[0] == 2  # the right layout goes through


@pytest.mark.parametrize("name", jaxcnn.list_models())
def test_kwargs_change_the_configuration(name):
    model = jaxcnn.create_model(name, in_channels=2)
    assert model.input_shape[-1] == 2
    fields = {f for f in ("num_classes", "out_channels") if hasattr(model, f)}
    field = fields.pop()
    model = jaxcnn.create_model(name, **{field: 7})
    x = jnp.zeros((1, *model.input_shape))
    y = jax.eval_shape(lambda: model.apply(model.init(jax.random.key(0), x), x))
    assert y.shape[-1] == 7


@pytest.mark.parametrize("name,affine_without_act", [pytest.param("lenet5_mnist", True, marks=pytest.mark.slow),
                                                     ("cnn_bn_dropout", True),
                                                     pytest.param("mnist_cnn", False,  # max-pools
                                                                  marks=pytest.mark.slow)])
def test_act_kwarg_swaps_the_nonlinearity_and_nothing_else(name, affine_without_act):
    model = jaxcnn.create_model(name)
    swapped = jaxcnn.create_model(name, act=jax.nn.gelu)
    x = jax.random.normal(jax.random.key(1), (2, *model.input_shape))
    variables = model.init(jax.random.key(0), x)
    assert jax.tree_util.tree_structure(swapped.init(jax.random.key(0), x)) == jax.tree_util.tree_structure(variables)
    assert not np.allclose(model.apply(variables, x), swapped.apply(variables, x))
    if affine_without_act:  # every nonlinearity goes through `act`: without it the network is affine in x
        identity = jaxcnn.create_model(name, act=lambda a: a)
        a, b = identity.apply(variables, x[:1]), identity.apply(variables, x[1:])
        np.testing.assert_allclose(identity.apply(variables, (x[:1] + x[1:]) / 2), (a + b) / 2, rtol=1e-4, atol=1e-4)


def test_input_size_kwarg_resizes_the_first_linear():
    model = jaxcnn.create_model("lenet5_mnist", input_size=32)
    assert model.input_shape == (32, 32, 1)
    assert jaxcnn.summary(model).total_params == sum(
        p.numel() for p in torch_models.create("lenet5_mnist", input_size=32).parameters())


def test_train_mode_updates_batch_stats_and_uses_dropout():
    model = jaxcnn.create_model("cnn_bn_dropout")
    x = jax.random.normal(jax.random.key(1), (8, *model.input_shape))
    variables = model.init(jax.random.key(0), x)
    y_eval = model.apply(variables, x)
    assert jnp.array_equal(y_eval, model.apply(variables, x)), "inference is deterministic"
    run = lambda key: model.apply(variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": key})
    (y1, state1), (y2, _) = run(jax.random.key(1)), run(jax.random.key(2))
    assert not jnp.allclose(y1, y2), "different dropout keys give different masks"
    before, after = variables["batch_stats"]["conv_1"], state1["batch_stats"]["conv_1"]
    assert jnp.array_equal(before["mean"], jnp.zeros(32)) and jnp.array_equal(before["var"], jnp.ones(32))
    h = _first_conv(model, variables, x)  # what BatchNorm conv_1 normalises
    n = h.size // h.shape[-1]
    # torch: running = 0.9 * running + 0.1 * batch, with the unbiased variance
    np.testing.assert_allclose(after["mean"], 0.1 * h.mean((0, 1, 2)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(after["var"], 0.9 + 0.1 * h.var((0, 1, 2)) * n / (n - 1), rtol=1e-5)


def _first_conv(model, variables, x):
    conv = jaxcnn.Conv2d(model.in_channels, 32, 3, bias=False)
    return conv.apply({"params": variables["params"]["conv_0"]}, x)


def test_models_without_batchnorm_train_with_the_same_call():
    model = jaxcnn.create_model("mnist_cnn")
    x = jnp.ones((2, *model.input_shape))
    variables = model.init(jax.random.key(0), x)
    y, state = model.apply(variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(0)})
    assert y.shape == (2, 10) and not state


def test_summary_lists_layers_with_output_shapes_and_params():
    table = jaxcnn.summary(jaxcnn.create_model("lenet5_classic"))
    rows = {name: (layer, shape, n) for name, layer, shape, n in table.rows}
    assert rows["conv1"] == ("Conv2d", (1, 28, 28, 6), 156)
    assert rows["conv2"] == ("Conv2d", (1, 10, 10, 16), 2416)
    assert rows["fc1"] == ("Linear", (1, 120), 48120)
    text = str(table)
    assert "Total params: 61,706" in text and "[-1, 14, 14, 6]" in text


@pytest.mark.parametrize("name", ["lenet5_mnist", pytest.param("mnist_cnn", marks=pytest.mark.slow),
                                  pytest.param("cnn_bn_dropout", marks=pytest.mark.slow)])
def test_integer_bool_and_half_pixels_compute_what_float32_pixels_do(name):
    """Issue 15: one rule for every registry network: such inputs become float32 (the kernels stay float32)."""
    model = jaxcnn.create_model(name)
    pixels = np.random.default_rng(0).integers(0, 256, (2, *model.input_shape))
    variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, *model.input_shape)))
    apply = jax.jit(model.apply)  # one compile per input dtype, not one per operation
    reference = apply(variables, jnp.asarray(pixels, jnp.float32))
    for dtype in (jnp.uint8, jnp.int32, jnp.float16, jnp.bfloat16):  # 0..255 is exact in all four
        y = apply(variables, jnp.asarray(pixels, dtype))
        assert y.dtype == jnp.float32 and jnp.array_equal(y, reference), dtype
    as_bool = apply(variables, jnp.asarray(pixels > 127))
    np.testing.assert_array_equal(as_bool, apply(variables, jnp.asarray(pixels > 127, jnp.float32)))


@pytest.mark.parametrize("name", spec.registry())
def test_a_batch_of_zero_gives_an_empty_output(name):
    model = jaxcnn.create_model(name)
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *model.input_shape)))
    y = jax.eval_shape(model.apply, variables, jax.ShapeDtypeStruct((0, *model.input_shape), jnp.float32))
    assert y.shape[0] == 0
