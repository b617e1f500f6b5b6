"""parity.port writing Flax NNX (its default): modules read like their torch originals (attributes and state paths
torch's), modes as torch's, the same check report, weights both ways, written and loaded again."""

import collections
import re

import jax
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F
from flax import nnx
from torch import nn

from jaxcnn.nnx.layers import Buffer
from parity import port
from parity.checks import check as parity_check
from tests import port_nets


class Block(nn.Module):
    """One class at two widths and two dropout rates."""

    def __init__(self, channels: int, p: float):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)
        self.drop = nn.Dropout(p)

    def forward(self, x):
        return x + self.drop(F.relu(self.bn(self.conv(x))))


class TorchStyle(nn.Module):
    """A ModuleList of blocks, a ModuleDict with a key that is no identifier, an OrderedDict Sequential, a child
    named '0', a parameter, a buffer and a non-persistent one, and a branch on self.training."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.blocks = nn.ModuleList([Block(8, 0.1), Block(8, 0.2)])
        self.add_module("0", nn.Conv2d(8, 8, 1))
        self.named = nn.Sequential(collections.OrderedDict(norm=nn.LayerNorm(8), act=nn.GELU()))
        self.heads = nn.ModuleDict({"main-head": nn.Linear(8, 5), "aux": nn.Linear(8, 2)})
        self.gamma = nn.Parameter(torch.rand(8) + 0.5)
        self.register_buffer("shift", torch.randn(8))
        self.register_buffer("halves", torch.full((8,), 0.5), persistent=False)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        x = getattr(self, "0")(x) * self.gamma[:, None, None] + (self.shift * self.halves)[:, None, None]
        if self.training:
            x = x * 2
        f = self.named(x.mean((2, 3)))
        return self.heads["main-head"](f) + F.pad(self.heads["aux"](f), (0, 3))


@pytest.fixture(scope="module")
def ported():
    torch.manual_seed(0)
    module = TorchStyle()
    x = np.random.default_rng(0).standard_normal((2, 3, 10, 10)).astype(np.float32)
    return module, x, port.build(module, x)


def _state_paths(net: nnx.Module) -> set[str]:
    weights = nnx.state(net, nnx.Any(nnx.Param, nnx.BatchStat, Buffer))
    return {"/".join(str(k) for k in path) for path, _ in nnx.to_flat_state(weights)}


def test_the_nnx_source_reads_like_the_torch_module(ported):
    module, x, p = ported
    compile(p.source, "model.py", "exec")
    assert "from flax import nnx" in p.source and "from jaxcnn.nnx import layers" in p.source
    assert "class Block(nnx.Module)" in p.source and "class TorchStyle(nnx.Module)" in p.source
    assert "def __init__(self, rate: float, *, rngs: nnx.Rngs):" in p.source  # the width is shared, the rate not
    assert "train: bool" not in p.source and "setup" not in p.source and "name=" not in p.source
    assert "if not self.deterministic:" in p.source  # torch's `if self.training:`
    net = p.module
    assert net.blocks[1].conv.kernel.shape == (3, 3, 8, 8) and net.blocks[1].drop.rate == 0.2
    assert net.heads["main-head"].kernel.shape == (8, 5) and net.named["norm"].scale.shape == (8,)
    assert net.gamma.shape == (8,) and net.layers_0.kernel.shape == (1, 1, 8, 8)  # '0': no Python attribute


def test_the_state_paths_are_the_weight_tables_and_torch_keys_map_one_to_one(ported):
    module, _, p = ported
    table = type(p.module).TORCH_WEIGHTS
    assert [row[0] for row in table] == list(module.state_dict())
    paths = {row[1] for row in table if row[1]} | set(type(p.module).TORCH_CONSTANTS)
    assert _state_paths(p.module) == paths
    rows = {row[0]: row[1] for row in table}
    assert rows["blocks.1.bn.running_var"] == "blocks/1/bn/var" and rows["heads.main-head.weight"] == \
        "heads/main-head/kernel" and rows["0.weight"] == "layers_0/kernel" and rows["shift"] == "shift"


def test_the_nnx_port_passes_every_check_in_both_modes(ported):
    module, x, p = ported
    report = port.check(module, p.module, None, x)
    assert report.ok, report.table()
    assert {"forward (train)", "gradients (train)", "batch statistics (train)"} <= set(report.verdicts)


def test_nnx_and_linen_ports_compute_alike_and_modes_follow_train_and_eval(ported):
    module, x, p = ported
    linen = port.build(module, x, api="linen")
    xh = parity_check.to_nhwc(x)
    np.testing.assert_array_equal(np.asarray(p.module(xh)), np.asarray(linen.module.apply(linen.variables, xh)))
    net = nnx.clone(p.module)
    mean = np.asarray(net.blocks[0].bn.mean[...])
    net.train()
    a, b = net(xh), net(xh)
    assert not np.array_equal(np.asarray(a), np.asarray(b))  # dropout draws anew each call
    assert not np.array_equal(np.asarray(net.blocks[0].bn.mean[...]), mean)  # statistics updated in place
    net.eval()
    np.testing.assert_array_equal(np.asarray(net(xh)), np.asarray(net(xh)))


def test_weights_go_both_ways_and_the_port_is_written_and_loaded(ported, tmp_path):
    module, x, p = ported
    port.save(p, tmp_path)
    net, state = port.load(tmp_path)
    xh = parity_check.to_nhwc(x)
    np.testing.assert_array_equal(np.asarray(net(xh)), np.asarray(p.module(xh)))
    assert (tmp_path / "model.py").read_text() == p.source
    other = TorchStyle()
    port.load_state_dict(net, other.state_dict())  # in place
    with torch.no_grad():
        expected = other.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.asarray(net(xh)), expected, rtol=1e-5, atol=1e-5)
    back = port.torch_state_dict(net)
    fresh = TorchStyle()
    fresh.load_state_dict(back, strict=True)
    assert all(torch.equal(back[k], v) for k, v in other.state_dict().items())


def test_a_ported_network_trains_on_in_nnx_and_goes_back_to_torch(ported):
    module, x, p = ported
    net = nnx.clone(p.module)
    net.train()
    optimizer = nnx.Optimizer(net, optax.sgd(0.1), wrt=nnx.Param)
    targets = np.zeros((2, 5), np.float32)

    @nnx.jit
    def step(net, optimizer, x):
        loss, grads = nnx.value_and_grad(lambda n: ((n(x) - targets) ** 2).mean())(net)
        optimizer.update(net, grads)
        return loss

    losses = [float(step(net, optimizer, parity_check.to_nhwc(x))) for _ in range(3)]
    assert losses[-1] < losses[0]
    trained = TorchStyle()
    trained.load_state_dict(port.torch_state_dict(net), strict=True)
    assert not torch.equal(trained.stem.weight, module.stem.weight)


def test_outputs_that_only_train_mode_returns():
    torch.manual_seed(0)
    module = port_nets.AuxiliaryInTraining()
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    net = port.build(module, x).module
    xh = parity_check.to_nhwc(x)
    logits = net(xh)
    net.train()
    train_logits, features = net(xh)
    np.testing.assert_array_equal(np.asarray(logits), np.asarray(train_logits))
    assert features.shape == (2, 6, 6, 2)


def test_a_dropout_on_in_both_modes_stays_on_after_eval():
    class AlwaysDropout(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 16)

        def forward(self, x):
            return F.dropout(self.fc(x.flatten(1)), 0.5, training=True)

    ported = port.build(AlwaysDropout(), np.zeros((2, 1, 4, 4), np.float32))
    assert re.search(r"self\.\w+\(fc, deterministic=False\)", ported.source)
    net = ported.module
    y = np.asarray(net(np.ones((2, 4, 4, 1), np.float32)))
    assert (y == 0).any()  # eval mode, and still dropped: F.dropout(training=True) as torch's
    assert jax.numpy.isfinite(y).all()
