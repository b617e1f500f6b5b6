"""Forward parity: a random torch original, converted, computes what the jaxcnn model computes."""

import jax
import numpy as np
import pytest

from jaxcnn import interchange
import jaxcnn
from parity.checks import check, convert
from tests import helpers, spec

SEEDS = (0, 1, 2)


def random_original(name: str, seed: int, batch: int = 3):
    module, model, _, x = helpers.random_pair(name, seed, batch)
    return module, model, x


# The large networks in the fast set: AlexNet, seed 0 (VGG forwards: slow; the representative VGG's fast gradient
# check in test_training_parity runs its forward too. Each seed of a large network costs seconds). The NNX
# networks, seed 0: BatchNorm and dropout in the fast set (its linen twin's outputs: test_nnx), every VGG in the sweep.
NNX_FAST = ("cnn_bn_dropout",)
CASES = [pytest.param(name, seed, "linen", marks=spec.marks(
    name, name.startswith("vgg") or (seed > 0 and name == "alexnet"), repeat=seed > 0))
    for name in jaxcnn.list_models() for seed in SEEDS]
CASES += [pytest.param(name, 0, "nnx", marks=spec.marks(name, name not in NNX_FAST, repeat=True))
          for name in jaxcnn.list_models()]


@pytest.mark.parametrize("name,seed,api", CASES)
def test_forward_parity(name, seed, api):
    module, model, variables, x = helpers.random_pair(name, seed, 3, api=api)
    result = check.assert_same_outputs(module, model, variables, x, rtol=1e-5)
    assert result.ok and result.torch_shape == result.flax_shape, result


@pytest.mark.parametrize("name", spec.registry())
def test_converted_variables_have_the_tree_of_model_init(name):
    module, model, x = random_original(name, 0, batch=1)
    variables = convert.torch_to_flax(module, model, x)
    init = jax.eval_shape(lambda: model.init(jax.random.key(0), check.to_nhwc(x)))
    same = jax.tree_util.tree_map(lambda a, b: a.shape == b.shape and a.dtype == b.dtype, variables, init)
    assert all(jax.tree_util.tree_leaves(same))


def test_flatten_permutation_is_what_makes_linear_after_flatten_agree(monkeypatch):
    """Without the (C,H,W) -> (H,W,C) permutation of fc1, LeNet-5's outputs would differ."""
    module, model, x = random_original("lenet5_mnist", 0)
    monkeypatch.setattr(interchange, "_after_flatten", lambda calls: {})
    variables = convert.torch_to_flax(module, model, x)
    assert not check.compare_outputs(module, model, variables, x).ok


def test_torch_output_feature_maps_are_compared_channels_last():
    module, model, x = random_original("conv_relu_conv", 0)
    result = check.assert_same_outputs(module, model, convert.torch_to_flax(module, model, x), x)
    assert result.flax_shape == (3, 24, 24, 64)


def test_different_weights_fail_the_check():
    module, model, x = random_original("mnist_cnn", 0)
    variables = convert.torch_to_flax(module, model, x)
    other, _, _ = random_original("mnist_cnn", 1)
    with pytest.raises(AssertionError, match="outputs differ"):
        check.assert_same_outputs(other, model, variables, x)


def test_state_dict_is_accepted_as_well_as_module():
    module, model, x = random_original("cnn_bn_dropout", 0)
    a = convert.torch_to_flax(module, model, x)
    b = convert.torch_to_flax(module.state_dict(), model, x.shape)
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
