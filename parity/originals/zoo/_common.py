"""Code that torchvision repeats across its model files, written once here for the zoo."""

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class BasicConv2d(nn.Module):
    """GoogLeNet's and Inception v3's conv block: a convolution without bias, BatchNorm (eps 1e-3), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        x = self.bn(x)
        return F.relu(x, inplace=True)


def _normal_linear(m: nn.Linear) -> None:
    nn.init.normal_(m.weight, 0, 0.01)


def init_mobile(module: nn.Module, linear: Callable[[nn.Linear], None] = _normal_linear) -> None:
    """MobileNet v2 / v3's and EfficientNet's initialisation: kaiming-normal (fan_out) convolutions, unit norms,
    zero biases and `linear`'s Linear weights (N(0, 0.01); EfficientNet's: uniform in +-1/sqrt(out_features))."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            linear(m)
            nn.init.zeros_(m.bias)


def transform_input(x: Tensor) -> Tensor:
    """GoogLeNet's and Inception v3's `transform_input`: ImageNet-normalised input re-normalised to (x - 0.5) / 0.5,
    channel by channel (indexing, unsqueeze, cat: what parity.port must follow)."""
    x_ch0 = torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
    x_ch1 = torch.unsqueeze(x[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
    x_ch2 = torch.unsqueeze(x[:, 2], 1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
    return torch.cat((x_ch0, x_ch1, x_ch2), 1)
