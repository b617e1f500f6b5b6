"""jaxcnn's transposed convolutions against torch's in float64, and parity.port of a U-Net-style decoder with them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn

from jaxcnn import layers
from jaxcnn.interchange import kernel_to_flax
from parity import port

CASES = [  # in, out, kernel, stride, padding, output_padding, groups, dilation
    (4, 6, 3, 2, 1, 1, 2, 1), (3, 5, 2, 2, 0, 0, 1, 1), (4, 4, 3, 1, 2, 0, 4, 2), (2, 6, 4, 3, 1, 2, 2, 1),
    (4, 2, 3, 2, 3, 1, 1, 1),  # padding beyond the kernel's reach: the output is cropped
]


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("case", CASES)
def test_conv_transpose_equals_torch_in_float64(n, case):
    cin, cout, k, s, p, op, g, d = case
    torch.manual_seed(0)
    module = getattr(nn, f"ConvTranspose{n}d")(cin, cout, k, s, p, op, g, True, d).double()
    x = np.random.default_rng(0).standard_normal((2, cin) + (5,) * n)
    expected = module(torch.from_numpy(x)).detach().numpy()
    with jax.enable_x64(True):
        y = layers.conv_transpose(jnp.moveaxis(jnp.asarray(x), 1, -1),
                                  jnp.asarray(kernel_to_flax(module.weight.detach().numpy())),
                                  jnp.asarray(module.bias.detach().numpy()), s, p, op, g, d)
        got = np.moveaxis(np.asarray(y), -1, 1)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


class Decoder(nn.Module):
    """An encoder-decoder with a skip connection, upsampling by transposed convolutions."""

    def __init__(self):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.up = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)
        self.head = nn.ConvTranspose2d(7, 2, 1, groups=1, bias=False)

    def forward(self, x):
        return self.head(torch.cat([self.up(self.down(x)), x], dim=1))


def test_a_decoder_with_transposed_convolutions_ports():
    torch.manual_seed(0)
    module = Decoder()
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    ported = port.build(module, x)
    assert "output_padding=(1, 1)" in ported.source and "layers.ConvTranspose2d(7, 2, kernel_size=(1, 1), bias=False, rngs=rngs)" \
        in ported.source
    report = port.check(module, ported.module, ported.variables, x)
    assert report.ok, report.table()


def test_the_functional_transposed_convolution_ports():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(3, 2, 3, 3) * 0.3)

        def forward(self, x):
            return torch.nn.functional.conv_transpose2d(x, self.weight * 2.0, stride=2, padding=1, groups=1)

    torch.manual_seed(0)
    module = Functional()
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32)
    ported = port.build(module, x)
    assert "layers.conv_transpose(" in ported.source
    report = port.check(module, ported.module, ported.variables, x)
    assert report.ok, report.table()
