"""Shared set-up for parity tests: a random torch original with its converted jaxcnn twin."""

import numpy as np
import torch

import jaxcnn
from parity import check, convert, torch_models, training

# Networks whose AdaptiveAvgPool takes any size are tested on small inputs (64x64 runs VGG's
# adaptive pool in its upsampling regime, 2x2 -> 7x7); the 224x224 acceptance runs separately.
SMALL_INPUT = 64


def test_shape(model, batch: int, size: int = SMALL_INPUT) -> tuple[int, ...]:
    """NCHW input shape for tests: the model's own size, or `size` for size-agnostic networks."""
    h, w, c = model.input_shape
    if not model.fixed_size:
        h, w = min(h, size), min(w, size)
    return (batch, c, h, w)


def batchnorms(module):
    return [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def move_bn_statistics(module, name, shape, seed=100):
    """Train-mode passes so BatchNorm running statistics leave their defaults (0 and 1)."""
    if not batchnorms(module):
        return
    module.train()
    with torch.no_grad():
        for step in range(3):
            module(torch.as_tensor(check.sample_input(name, shape, seed=seed + step)) * 2 + 0.5)
    for bn in batchnorms(module):
        assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    module.eval()


def random_pair(name: str, seed: int = 0, batch: int = 3, kink_free: bool | None = None, size: int = SMALL_INPUT,
                **kwargs):
    """(torch module with moved BN statistics, jaxcnn model, variables, NCHW input).

    kink_free (None, False for eval mode, True for train mode): the first input (seeds seed,
    seed+1, ...) with no ReLU input near zero and no max-pool near-tie in that mode, where float32 rounding decides where the gradient goes
    (see parity.training.near_kinks).
    """
    torch.manual_seed(seed)
    module = torch_models.create(name, **kwargs)
    model = jaxcnn.create_model(name, **kwargs)
    shape = test_shape(model, batch, size)
    move_bn_statistics(module, name, shape)
    x = check.sample_input(name, shape, seed)
    for attempt in range(1, 40):
        if kink_free is None or training.near_kinks(module, x, train=kink_free) == 0:
            break
        x = check.sample_input(name, shape, seed + attempt)
    else:
        raise AssertionError(f"no kink-free input for {name} in 40 seeds")
    return module, model, convert.torch_to_flax(module, model, x), x
