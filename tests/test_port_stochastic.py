"""Stochastic depth as other libraries write it, matched by the function's name and replayed in the check: timm's
drop_path and efficientnet_pytorch's drop_connect (copied here as they are written: neither library is imported);
channel dropout (Dropout1d, 2d), its mask shared along the spatial axes."""

import numpy as np
import torch
from torch import nn

from parity import port


def drop_path(x, drop_prob: float = 0., training: bool = False, scale_by_keep: bool = True):
    if drop_prob == 0. or not training:
        return x
    keep_prob = 1 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    random_tensor = x.new_empty(shape).bernoulli_(keep_prob)
    if keep_prob > 0.0 and scale_by_keep:
        random_tensor.div_(keep_prob)
    return x * random_tensor


def drop_connect(inputs, p, training):
    if not training:
        return inputs
    batch_size = inputs.shape[0]
    keep_prob = 1 - p
    random_tensor = keep_prob
    random_tensor += torch.rand([batch_size, 1, 1, 1], dtype=inputs.dtype, device=inputs.device)
    binary_tensor = torch.floor(random_tensor)
    return inputs / keep_prob * binary_tensor


class Residuals(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        x = x + drop_path(self.a(x), 0.3, self.training)
        return x + drop_connect(self.b(x), 0.4, training=self.training)


def test_drop_path_and_drop_connect_are_stochastic_depth_replayed_in_train_mode():
    torch.manual_seed(0)
    module = Residuals()
    x = np.random.default_rng(0).standard_normal((8, 4, 5, 5)).astype(np.float32)
    ported = port.build(module, x)
    assert ported.source.count("layers.StochasticDepth(") == 2
    report = port.check(module, ported.module, ported.variables, x)
    assert report.ok and "forward (train)" in report.verdicts, report.table()


class ChannelDropouts(nn.Module):
    """Dropout2d before a segmentation head (smp's FPN, PSPNet) and Dropout1d over a sequence of features."""

    def __init__(self):
        super().__init__()
        self.conv, self.drop2d = nn.Conv2d(3, 6, 3, padding=1), nn.Dropout2d(0.4)
        self.head, self.drop1d = nn.Conv1d(6, 5, 1), nn.Dropout1d(0.3)

    def forward(self, x):
        x = self.drop2d(self.conv(x))
        return self.drop1d(self.head(x.flatten(2)))


def test_channel_dropouts_drop_whole_channels_replayed_in_train_mode():
    torch.manual_seed(0)
    module = ChannelDropouts()
    x = np.random.default_rng(0).standard_normal((4, 3, 6, 6)).astype(np.float32)
    ported = port.build(module, x)
    assert "layers.Dropout(0.4, broadcast_dims=(1, 2), rngs=rngs)" in ported.source, ported.source
    report = port.check(module, ported.module, ported.variables, x)
    assert report.ok and "forward (train)" in report.verdicts, report.table()
