"""parity.port's classes: one torch block class used at several widths and in several variants (with and without
a squeeze-excitation, with and without a shortcut, as in rexnet and mixnet) becomes Flax classes whose per-instance
values are fields, never one instance's constants; the source compiles, and the port equals torch."""

import numpy as np
import pytest
import torch
from flax import nnx
from torch import nn

from parity import port


class Bottleneck(nn.Module):
    """rexnet's LinearBottleneck in small: the shortcut adds to the first `in_channels` of a wider output."""

    def __init__(self, in_channels: int, out_channels: int, se: bool):
        super().__init__()
        self.in_channels = in_channels
        self.use_shortcut = out_channels >= in_channels
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.se = nn.Sequential(nn.Conv2d(out_channels, 2, 1), nn.ReLU(), nn.Conv2d(2, out_channels, 1)) if se else None

    def forward(self, x):
        shortcut = x
        x = self.conv(x)
        if self.se is not None:
            x = x * self.se(x.mean((2, 3), keepdim=True)).sigmoid()
        if self.use_shortcut:
            x = torch.cat([x[:, 0:self.in_channels] + shortcut, x[:, self.in_channels:]], dim=1)
        return x


class Widths(nn.Module):
    def __init__(self):
        super().__init__()
        widths = [(3, 5, False), (5, 4, False), (4, 7, False), (7, 9, True), (9, 6, True), (6, 11, True),
                  (11, 13, False)]
        self.blocks = nn.Sequential(*(Bottleneck(i, o, se) for i, o, se in widths))

    def forward(self, x):
        return self.blocks(x)


def test_one_block_class_across_widths_and_variants_keeps_each_instance_s_values():
    torch.manual_seed(0)
    module = Widths()
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    ported = port.build(module, x)
    compile(ported.source, "model.py", "exec")
    for bound in ("0:3]", "0:4]", "0:7]", "0:6]"):  # the slice bounds of the instances with a shortcut
        assert bound not in ported.source, ported.source
    assert ported.source.count("class Bottleneck") == 2  # with and without the squeeze-excitation
    report = port.check(module, ported.module, ported.variables, x)
    assert report.ok, report.table() + "\n" + ported.source


def test_an_internal_error_of_a_handler_is_a_port_error_naming_the_line(monkeypatch):
    from parity.port import _emit

    def broken(ctx, m, input):
        raise KeyError("a handler's own bug")

    class Small(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.act = nn.Conv2d(3, 4, 3), nn.ReLU()

        def forward(self, x):
            return self.act(self.conv(x))

    monkeypatch.setitem(_emit.MODULES, nn.ReLU, broken)
    with pytest.raises(port.PortError, match=r"test_port_classes\.py:\d+: return self\.act\(self\.conv\(x\)\)  <- "
                                             r"ReLU .*internal error of the port \(KeyError"):
        port.build(Small(), np.zeros((2, 3, 8, 8), np.float32))


class Encoder(nn.Module):
    """segmentation_models_pytorch's encoders: a Sequential run block by block, some blocks' outputs returned."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2),
                                      nn.ReLU())

    def forward(self, x):
        features = [x]
        for i, module in enumerate(self.features):
            x = module(x)
            if i in (1, 3):
                features.append(x)
        return features


def test_a_sequential_whose_intermediate_outputs_are_returned_is_not_collapsed():
    torch.manual_seed(0)
    module = Encoder()
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    ported = port.build(module, x)
    report = port.check(module, ported.module, ported.variables, x)
    assert report.ok, report.table() + "\n" + ported.source


def test_weights_that_forward_never_reads_are_kept_out_of_flax_and_given_back(recwarn):
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.bn = nn.BatchNorm2d(2)
            self.spare = nn.Linear(3, 3)
            self.spare_bn = nn.BatchNorm2d(2)  # smp's encoders keep the head's BatchNorm that forward skips

        def forward(self, x):
            return self.bn(self.conv(x))

    module = Unused()
    x = np.random.default_rng(0).standard_normal((2, 1, 6, 6)).astype(np.float32)
    ported = port.build(module, x)
    assert any("spare.weight, spare.bias" in str(w.message) for w in recwarn)
    assert set(nnx.state(ported.module, nnx.Param)) == {"conv", "bn"}
    report = port.check(module, ported.module, ported.variables, x)
    assert report.ok and report.round_trip_exact and "batch statistics (train)" in report.verdicts, report.table()
    back = port.torch_state_dict(ported.module, ported.variables)
    assert back["spare.weight"].shape == (3, 3) and not back["spare.weight"].any()
    Unused().load_state_dict(back, strict=True)


class DenseLayer(nn.Module):
    """timm's DenseLayer in small: it takes the block's features so far, a list that grows by one each layer."""

    def __init__(self, channels: int, growth: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)
        self.conv = nn.Conv2d(channels, growth, 3, padding=1)

    def forward(self, features):
        x = features if isinstance(features, torch.Tensor) else torch.cat(features, 1)
        return self.conv(torch.relu(self.norm(x)))


class DenseBlock(nn.Module):
    def __init__(self, layers: int = 4):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.layers = nn.ModuleList(DenseLayer(4 + 2 * i, 2) for i in range(layers))

    def forward(self, x):
        features = [self.stem(x)]
        for layer in self.layers:
            features.append(layer(features))
        return torch.cat(features, 1)


def test_blocks_that_take_lists_of_tensors_are_one_class_whatever_the_list_s_length():
    torch.manual_seed(0)
    module = DenseBlock()
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    ported = port.build(module, x)
    compile(ported.source, "model.py", "exec")
    assert ported.source.count("class DenseLayer") == 1, ported.source
    assert "jnp.concatenate(features, axis=3)" in ported.source  # the argument's list, of any length
    assert "self.layers_[3]([stem, layers_0, layers_1, layers_2])" in ported.source, ported.source
    report = port.check(module, ported.module, ported.variables, x)
    assert report.ok, report.table() + "\n" + ported.source


class Branches(nn.Module):
    """HRNet's HighResolutionModule in small: puts each branch's output in its input list's place, returns a new list."""

    def __init__(self, channels: tuple[int, ...]):
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for c in channels)
        self.fuse = nn.Conv2d(sum(channels), channels[0], 1)

    def forward(self, x: list):
        for i, branch in enumerate(self.branches):
            x[i] = branch(x[i])
        return [self.fuse(torch.cat(x, 1)), *x[1:]]


class Resolutions(nn.Module):
    def __init__(self, read_the_changed_list: bool = False):
        super().__init__()
        self.stems = nn.ModuleList([nn.Conv2d(3, 2, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1)])
        self.stages = nn.Sequential(Branches((2, 3)), Branches((2, 3)))
        self.read_the_changed_list = read_the_changed_list

    def forward(self, x):
        features = [stem(x) for stem in self.stems]
        out = self.stages[1](self.stages[0](features))
        return out[0] + features[0] if self.read_the_changed_list else out[0]


def test_a_block_that_changes_the_list_it_is_given_ports_or_names_the_read_it_cannot_follow():
    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    module = Resolutions()
    ported = port.build(module, x)
    assert ported.source.count("class Branches") == 1, ported.source
    report = port.check(module, ported.module, ported.variables, x)
    assert report.ok, report.table() + "\n" + ported.source
    with pytest.raises(port.PortError, match=r"test_port_classes\.py:\d+: return out\[0\] \+ features\[0\].*reads a "
                                             r"tensor that Branches put into the list it was given"):
        port.build(Resolutions(read_the_changed_list=True), x)
