"""parity.port's classes: one torch block class used at several widths and in several variants (with and without
a squeeze-excitation, with and without a shortcut, as in rexnet and mixnet) becomes Flax classes whose per-instance
values are fields, never one instance's constants; the source compiles, and the port equals torch."""

import numpy as np
import torch
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
