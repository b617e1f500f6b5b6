"""Shared set-up for parity tests: a random torch original with its converted jaxcnn twin."""

import torch

from parity.checks import check, suite
from parity.originals import torch_models


def test_shape(model, batch: int, size: int = suite.AGNOSTIC_SIZE) -> tuple[int, ...]:
    return suite.input_shape(model, batch, size)


def shapes_only(name: str, **kwargs) -> torch.nn.Module:
    """The torch original on torch's meta device: its keys, shapes and parameter counts, no weights drawn."""
    with torch.device("meta"):
        return torch_models.create(name, **kwargs)


def batchnorms(module):
    return [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def random_pair(name: str, seed: int = 0, batch: int = 3, kink_free: bool | None = None,
                size: int = suite.AGNOSTIC_SIZE, api: str = "linen", **kwargs):
    """(torch module with moved BatchNorm statistics, jaxcnn model, converted variables, NCHW input); with
    api="nnx" the model is the NNX network holding the torch module's weights, and the variables None.

    kink_free (None; False for eval mode, True for train mode): an input without near-kinks
    in that mode, where float32 rounding decides where the gradient goes (parity.checks.training.near_kinks).
    """
    module, model = suite.random_original(name, seed, api, **kwargs)
    for bn in batchnorms(module):
        assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    shape = suite.input_shape(model, batch, size)
    if kink_free is None:
        x = check.sample_input(name, shape, seed)
    else:
        x = suite.kink_free_input(module, name, shape, seed, train=kink_free)
    return module, model, suite.flax_weights(module, model, x), x
