"""create_model(name, api="nnx"): the same parameters, outputs and BatchNorm statistics as the linen module."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxcnn
from tests import spec

ROOT = Path(__file__).resolve().parents[1]
# The fast set: BatchNorm with dropout, and a network without batch statistics; the rest are slow, the
# 60-140M-parameter networks at small inputs (their pools adapt).
FAST = ("cnn_bn_dropout", "two_conv_net")
SMALL = {"alexnet": dict(input_size=64), "vgg16": dict(input_size=32), "vgg16_bn": dict(input_size=32),
         "vgg19": dict(input_size=32), "vgg19_bn": dict(input_size=32)}


def _leaves_equal(a, b) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("name", spec.fast_only(jaxcnn.list_models(), FAST))
def test_nnx_model_is_the_linen_model(name):
    kwargs = SMALL.get(name, {})
    net = jaxcnn.create_model(name, api="nnx", rngs=nnx.Rngs(params=0, dropout=1), **kwargs)
    model = jaxcnn.create_model(name, **kwargs)
    assert isinstance(net, nnx.Module) and net.module == model
    x = jax.random.normal(jax.random.key(2), (2, *model.input_shape))
    variables = model.init({"params": nnx.Rngs(params=0).params()}, x[:1])
    _leaves_equal(net.variables(), variables)  # same tree, same initial values
    assert jaxcnn.count_params(nnx.state(net, nnx.Param)) == jaxcnn.count_params(variables["params"])

    net.eval()
    np.testing.assert_array_equal(np.asarray(net(x)), np.asarray(model.apply(variables, x)))

    net.train()
    out = net(x)
    expected, updates = model.apply(variables, x, train=True, rngs={"dropout": nnx.Rngs(dropout=1).dropout()},
                                    mutable=["batch_stats"])
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))
    if "batch_stats" in variables:
        _leaves_equal(net.variables()["batch_stats"], updates["batch_stats"])
        moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(updates["batch_stats"]),
                                                          jax.tree.leaves(variables["batch_stats"]))]
        assert all(moved)  # every running statistic was updated


def test_a_new_nnx_model_trains_and_eval_switches_it():
    net = jaxcnn.create_model("cnn_bn_dropout", api="nnx", rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (4, *net.module.input_shape))
    assert not net.deterministic  # like torch modules and NNX layers
    first, second = net(x), net(x)  # two dropout draws
    assert not np.array_equal(np.asarray(first), np.asarray(second))
    net.eval()
    np.testing.assert_array_equal(np.asarray(net(x)), np.asarray(net(x)))


def test_torch_weights_load_into_an_nnx_model_in_place(tmp_path):
    source = jaxcnn.create_model("cnn_bn_dropout", api="nnx", rngs=nnx.Rngs(3))
    path = tmp_path / "w.safetensors"
    jaxcnn.write_torch_safetensors(jaxcnn.torch_state_dict(source), path)
    net = jaxcnn.create_model("cnn_bn_dropout", api="nnx", rngs=nnx.Rngs(0))
    assert jaxcnn.load_torch_weights(net, path) is net
    _leaves_equal(net.variables(), source.variables())
    other = jaxcnn.create_model("cnn_basic", api="nnx", rngs=nnx.Rngs(0))
    with pytest.raises(jaxcnn.ConversionError, match="missing keys"):
        jaxcnn.load_torch_weights(other, path)


def test_nnx_model_refuses_variables_of_another_tree_naming_each_difference():
    net = jaxcnn.create_model("cnn_bn_dropout", api="nnx", rngs=nnx.Rngs(0))
    before = net.variables()
    wrong = jax.tree_util.tree_map(jnp.ones_like, before)
    first = next(iter(wrong["params"]))
    wrong["params"][first]["kernel"] = jnp.zeros((3, 3, 1, 7))
    wrong["params"]["extra"] = {"kernel": jnp.zeros(2)}
    last = list(wrong["batch_stats"])[-1]
    del wrong["batch_stats"][last]
    with pytest.raises(ValueError, match=f"params of {type(net.module).__name__} do not fit") as err:
        net.load_variables(wrong)
    assert f"{first}/kernel: the model holds" in str(err.value) and "unexpected ['extra/kernel']" in str(err.value)
    del wrong["params"]["extra"]
    wrong["params"][first]["kernel"] = jnp.ones_like(before["params"][first]["kernel"])
    with pytest.raises(ValueError, match=f"batch_stats .* missing \\['{last}/mean', '{last}/var'\\]"):
        net.load_variables(wrong)
    # Nothing was replaced: the params that fitted were not loaded before batch_stats failed.
    jax.tree_util.tree_map(np.testing.assert_array_equal, net.variables(), before)


def test_create_model_api_errors():
    with pytest.raises(ValueError, match="api must be one of"):
        jaxcnn.create_model("lenet5_mnist", api="torch")
    with pytest.raises(TypeError, match="needs rngs"):
        jaxcnn.create_model("lenet5_mnist", api="nnx")
    with pytest.raises(TypeError, match="rngs is for api='nnx'"):
        jaxcnn.create_model("lenet5_mnist", rngs=nnx.Rngs(0))


def test_nnx_md_linen_and_nnx_loops_reach_the_same_parameters():
    """The first Python block under docs/nnx.md's "## The two loops side by side" (run on its own here)."""
    guide = (ROOT / "docs" / "nnx.md").read_text()
    section = guide[guide.index("## The two loops side by side"):]
    code = section[section.index("```python") + len("```python"):]
    scope = {"__name__": "docs_nnx_loops"}
    exec(compile(code[:code.index("```")], "docs/nnx.md", "exec"), scope)
    net, params, batch_stats = scope["net"], scope["params"], scope["batch_stats"]
    start = jaxcnn.create_model("cnn_bn_dropout", api="nnx", rngs=nnx.Rngs(params=0)).variables()
    moved = [float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(start["params"]))]
    assert min(moved) > 0  # every parameter was trained
    # The same operations, compiled as two programs: equal up to float32 rounding of XLA's fusion choices.
    for got, want in ((net.variables()["params"], params), (net.variables()["batch_stats"], batch_stats)):
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
