"""jaxcnn's NNX networks: written as their torch originals (attribute paths = state_dict keys, torch's parameter
counts), computing what their linen twins compute from the same weights, their variables converting both ways.

Their parity with torch (forward, gradients, train-mode BatchNorm, optimizer steps) is in test_parity.py and
test_training_parity.py, parametrized by api."""

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxcnn
from jaxcnn import layers
from jaxcnn.interchange import kernel_to_flax
from tests import helpers, spec

ROOT = Path(__file__).resolve().parents[1]
# Outputs of both APIs in both modes: BatchNorm with dropout in the fast set; the rest slow,
# the 60-140M-parameter networks at small inputs (their pools adapt).
FAST = ("cnn_bn_dropout",)
SMALL = {"alexnet": dict(input_size=64), "vgg16": dict(input_size=32), "vgg16_bn": dict(input_size=32),
         "vgg19": dict(input_size=32), "vgg19_bn": dict(input_size=32)}


def _leaves_equal(a, b) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _abstract(name: str, **kwargs):
    """The NNX network's structure and shapes, no weights drawn (VGG's 138M parameters take seconds)."""
    return nnx.eval_shape(lambda: jaxcnn.create_model(name, api="nnx", rngs=nnx.Rngs(0), **kwargs))


@pytest.mark.parametrize("name", spec.registry())
def test_nnx_paths_are_the_torch_originals_attributes_and_state_dict_keys(name):
    net = _abstract(name)
    torch_state = helpers.shapes_only(name).state_dict()  # meta device: keys and shapes
    keys = jaxcnn.nnx.state_dict_keys(net)
    assert sorted(keys.values()) == sorted(k for k in torch_state if not k.endswith("num_batches_tracked"))
    assert len(set(keys.values())) == len(keys)  # one to one
    for path, key in keys.items():  # each path is an attribute path: net.features[3].kernel
        variable = functools.reduce(lambda m, k: m[k] if isinstance(k, int) else getattr(m, k), path, net)
        torch_shape = tuple(torch_state[key].shape)
        expected = np.shape(kernel_to_flax(np.broadcast_to(np.float32(0), torch_shape))) \
            if path[-1] == "kernel" else torch_shape
        assert variable.shape == expected, (path, key)
    parameters = jaxcnn.count_params(nnx.state(net, nnx.Param))
    assert parameters == {**spec.PARAMS, **spec.TORCHVISION_PARAMS}[name]  # torch's trainable parameters
    assert jaxcnn.linen_twin(net) == jaxcnn.create_model(name)


def test_the_registry_networks_read_as_their_torch_originals():
    net = _abstract("vgg16_bn")
    assert isinstance(net.features, jaxcnn.nnx.Sequential) and isinstance(net.features[3], jaxcnn.nnx.Conv2d)
    assert isinstance(net.features[1], jaxcnn.nnx.BatchNorm) and net.features[2] is nnx.relu
    assert isinstance(net.classifier[5], jaxcnn.nnx.Dropout) and net.classifier[6].bias.shape == (1000,)
    bare = _abstract("cifar_conv_mlp")  # a bare nn.Sequential: the network is one, '0.weight' is net[0].kernel
    assert len(bare) == 6 and bare[0].kernel.shape == (3, 3, 3, 6)
    lenet = _abstract("lenet5_mnist")
    assert (lenet.conv1.padding, lenet.pool1.stride, lenet.act3) == (2, 2, nnx.tanh)


@pytest.mark.parametrize("name", spec.fast_only(jaxcnn.list_models(), FAST))
def test_nnx_network_computes_what_its_linen_twin_computes(name, monkeypatch):
    kwargs = SMALL.get(name, {})
    net = jaxcnn.create_model(name, api="nnx", rngs=nnx.Rngs(params=0, dropout=1), **kwargs)
    model, variables = jaxcnn.linen_twin(net), jaxcnn.linen_variables(net)
    assert model == jaxcnn.create_model(name, **kwargs)
    x = jax.random.normal(jax.random.key(2), (2, *model.input_shape))

    net.eval()
    np.testing.assert_array_equal(np.asarray(net(x)), np.asarray(model.apply(variables, x)))

    # The same masks in both APIs (each draws its own keys): every mask drawn from one key, by shape.
    bernoulli = jax.random.bernoulli
    monkeypatch.setattr(jax.random, "bernoulli", lambda key, p, shape: bernoulli(jax.random.key(7), p, shape))
    net.train()
    out = net(x)
    expected, updates = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(0)},
                                    mutable=["batch_stats"])
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))
    if "batch_stats" in variables:
        _leaves_equal(jaxcnn.linen_variables(net)["batch_stats"], updates["batch_stats"])
        moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(updates["batch_stats"]),
                                                          jax.tree.leaves(variables["batch_stats"]))]
        assert all(moved)  # every running statistic was updated, in place in NNX


# (layer, torch's arguments, input shape): the arguments the registry networks leave at their defaults.
LAYERS = {
    "conv2d": ("Conv2d", dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0),
                              dilation=(1, 2), groups=2, padding_mode="reflect"), (2, 9, 8, 4)),
    "conv1d": ("Conv1d", dict(in_channels=4, out_channels=3, kernel_size=5, padding="same", bias=False,
                              implementation="xla"), (2, 9, 4)),
    "conv3d": ("Conv3d", dict(in_channels=4, out_channels=2, kernel_size=3, stride=2, padding=1), (2, 5, 6, 7, 4)),
    "linear": ("Linear", dict(in_features=4, out_features=3, weight_init="flax"), (2, 5, 4)),
    "maxpool": ("MaxPool", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), (2, 9, 8, 4)),
    "avgpool": ("AvgPool", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
                (2, 9, 8, 4)),
    "adaptive_avg": ("AdaptiveAvgPool", dict(output_size=(3, 2)), (2, 9, 8, 4)),
    "adaptive_max": ("AdaptiveMaxPool", dict(output_size=3), (2, 9, 8, 4)),
}


@pytest.mark.parametrize("case", LAYERS)
def test_nnx_layers_compute_what_the_linen_layers_compute(case):
    cls, arguments, shape = LAYERS[case]
    weighted = cls.startswith(("Conv", "Linear"))
    layer = getattr(jaxcnn.nnx, cls)(**arguments, **({"rngs": nnx.Rngs(0)} if weighted else {}))
    params = {path[-1]: variable[...] for path, variable in nnx.to_flat_state(nnx.state(layer, nnx.Param))}
    x = jax.random.normal(jax.random.key(1), shape)
    expected = getattr(layers, cls)(**arguments).apply({"params": params} if params else {}, x)
    np.testing.assert_array_equal(np.asarray(layer(x)), np.asarray(expected))
    assert ("bias" in params) == (weighted and arguments.get("bias", True))


def test_linen_and_nnx_variables_convert_both_ways():
    model = jaxcnn.create_model("cnn_bn_dropout", num_classes=3, input_size=12)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 12, 12, 3)))
    net = jaxcnn.nnx_from_linen(model, variables)  # linen -> NNX
    assert isinstance(net, jaxcnn.nnx.CNNBatchNormDropout) and net.fc[3].kernel.shape == (128, 3)
    assert jaxcnn.linen_twin(net) == model
    _leaves_equal(jaxcnn.linen_variables(net), variables)  # NNX -> linen: the same tree, the same values
    again = jaxcnn.nnx_from_linen(jaxcnn.linen_twin(net), jaxcnn.linen_variables(net), rngs=nnx.Rngs(5))
    _leaves_equal(nnx.state(again, nnx.Param), nnx.state(net, nnx.Param))
    _leaves_equal(nnx.state(again, nnx.BatchStat), nnx.state(net, nnx.BatchStat))
    default = jaxcnn.create_model("cnn_bn_dropout", api="nnx", rngs=nnx.Rngs(1))
    by_name = jaxcnn.nnx_from_linen("cnn_bn_dropout", jaxcnn.linen_variables(default))  # the default arguments
    _leaves_equal(jaxcnn.linen_variables(by_name), jaxcnn.linen_variables(default))
    with pytest.raises(ValueError, match="do not fit CNNBatchNormDropout"):  # 12x12's Linear, 28x28's network
        jaxcnn.load_linen_variables(default, variables)
    with pytest.raises(TypeError, match="not a registry network"):
        jaxcnn.nnx_from_linen(layers.Linear(2, 3), {"params": {}})


def test_load_linen_variables_refuses_another_tree_naming_each_difference():
    net = jaxcnn.create_model("cnn_bn_dropout", api="nnx", rngs=nnx.Rngs(0))
    before = jaxcnn.linen_variables(net)
    wrong = jax.tree.map(jnp.ones_like, before)
    wrong["params"]["conv_0"]["kernel"] = jnp.zeros((3, 3, 1, 7))
    wrong["params"]["extra"] = {"kernel": jnp.zeros(2)}
    del wrong["batch_stats"]["conv_4"]
    with pytest.raises(ValueError) as err:
        jaxcnn.load_linen_variables(net, wrong)
    message = str(err.value)
    assert "missing ['batch_stats/conv_4/mean', 'batch_stats/conv_4/var']" in message
    assert "unexpected ['params/extra/kernel']" in message
    assert "params/conv_0/kernel: the network holds (3, 3, 3, 32), the variables (3, 3, 1, 7)" in message
    _leaves_equal(jaxcnn.linen_variables(net), before)  # nothing was replaced
    ones = jax.tree.map(jnp.ones_like, before)
    assert jaxcnn.load_linen_variables(net, ones) is net
    _leaves_equal(jaxcnn.linen_variables(net), ones)


def test_torch_weights_load_into_an_nnx_network_in_place(tmp_path):
    source = jaxcnn.create_model("mnist_cnn", api="nnx", rngs=nnx.Rngs(3))
    state = jaxcnn.torch_state_dict(source)
    assert list(state) == jaxcnn.torch_keys(source) == jaxcnn.torch_keys(jaxcnn.linen_twin(source))
    np.testing.assert_array_equal(state["conv_stack.0.weight"],  # torch's OIHW, from HWIO
                                  np.asarray(source.conv_stack[0].kernel[...]).transpose(3, 2, 0, 1))
    path = tmp_path / "w.safetensors"
    jaxcnn.write_torch_safetensors(state, path)
    net = jaxcnn.create_model("mnist_cnn", api="nnx", rngs=nnx.Rngs(0))
    assert jaxcnn.load_torch_weights(net, path) is net
    _leaves_equal(nnx.state(net, nnx.Param), nnx.state(source, nnx.Param))
    other = jaxcnn.create_model("cnn_basic", api="nnx", rngs=nnx.Rngs(0))
    before = jaxcnn.linen_variables(other)
    with pytest.raises(jaxcnn.ConversionError, match="missing keys"):
        jaxcnn.load_torch_weights(other, path)
    _leaves_equal(jaxcnn.linen_variables(other), before)
    with pytest.raises(TypeError, match="jaxcnn NNX network"):
        jaxcnn.torch_state_dict(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))


def test_a_new_nnx_network_trains_and_eval_switches_it():
    net = jaxcnn.create_model("cnn_bn_dropout", api="nnx", rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (4, *net.input_shape))
    assert not net.fc[2].deterministic and not net.conv[1].use_running_average  # like torch modules, NNX layers
    start = net.conv[1].mean[...]
    first, second = net(x), net(x)  # two dropout draws
    assert not np.array_equal(np.asarray(first), np.asarray(second))
    assert not np.array_equal(np.asarray(net.conv[1].mean[...]), np.asarray(start))
    net.eval()
    moved = net.conv[1].mean[...]
    np.testing.assert_array_equal(np.asarray(net(x)), np.asarray(net(x)))
    np.testing.assert_array_equal(np.asarray(net.conv[1].mean[...]), np.asarray(moved))  # read, not written
    net.train()
    view = nnx.view(net, deterministic=True, use_running_average=True)  # Flax's other switch
    assert view.fc[2].deterministic and not net.fc[2].deterministic
    np.testing.assert_array_equal(np.asarray(view(x)), np.asarray(view(x)))


def test_create_model_api_errors_and_arguments(monkeypatch):
    with pytest.raises(ValueError, match="api must be one of"):
        jaxcnn.create_model("lenet5_mnist", api="torch")
    with pytest.raises(TypeError, match="needs rngs"):
        jaxcnn.create_model("lenet5_mnist", api="nnx")
    with pytest.raises(TypeError, match="rngs is for api='nnx'"):
        jaxcnn.create_model("lenet5_mnist", rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match=r"num_clases.*accepts .*num_classes"):
        jaxcnn.create_model("lenet5_mnist", api="nnx", rngs=nnx.Rngs(0), num_clases=3)
    monkeypatch.delitem(jaxcnn.registry._NNX_MODELS, "mnist_cnn")
    with pytest.raises(ValueError, match="mnist_cnn has no NNX network"):
        jaxcnn.create_model("mnist_cnn", api="nnx", rngs=nnx.Rngs(0))
    # Every argument reaches the network, as the linen module's fields: its linen twin is that module.
    kwargs = dict(in_channels=1, num_classes=3, input_size=(36, 40), dropout=0.25, weight_init="flax",
                  conv_implementation="xla", act=jax.nn.gelu)
    for name in ("cnn_bn_dropout", "alexnet"):
        net = _abstract(name, **kwargs)
        assert jaxcnn.linen_twin(net) == jaxcnn.create_model(name, **kwargs)
        assert jaxcnn.registry.registered_name(net) == name and net.input_shape == (36, 40, 1)
    bare = _abstract("sun_regressor", input_size=64, num_classes=3, act=jax.nn.elu)  # a bare Sequential's too
    assert jaxcnn.linen_twin(bare) == jaxcnn.create_model("sun_regressor", input_size=64, num_classes=3, act=jax.nn.elu)
    assert jaxcnn.config_of(_abstract("vgg19_bn")) is jaxcnn.model_config("vgg19_bn")


def test_nnx_md_linen_and_nnx_loops_reach_the_same_parameters():
    """The first Python block under docs/nnx.md's "## The NNX loop and the linen loop" (run on its own here)."""
    guide = (ROOT / "docs" / "nnx.md").read_text()
    section = guide[guide.index("## The NNX loop and the linen loop"):]
    code = section[section.index("```python") + len("```python"):]
    scope = {"__name__": "docs_nnx_loops"}
    exec(compile(code[:code.index("```")], "docs/nnx.md", "exec"), scope)
    net, params = scope["lenet"], scope["params"]
    start = jaxcnn.linen_variables(jaxcnn.create_model("lenet5_mnist", api="nnx", rngs=nnx.Rngs(0)))["params"]
    moved = [float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(start))]
    assert min(moved) > 0  # every parameter was trained
    # The same operations, compiled as two programs: equal up to float32 rounding of XLA's fusion choices.
    for a, b in zip(jax.tree.leaves(jaxcnn.linen_variables(net)["params"]), jax.tree.leaves(params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
