"""Code that torchvision repeats across its model files, written once here for the zoo."""

import torch
from torch import Tensor, nn


def init_mobile(module: nn.Module) -> None:
    """MobileNet v2 / v3's initialisation: kaiming-normal (fan_out) convolutions, unit norms, N(0, 0.01) Linears."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def transform_input(x: Tensor) -> Tensor:
    """GoogLeNet's and Inception v3's `transform_input`: ImageNet-normalised input re-normalised to (x - 0.5) / 0.5,
    channel by channel (indexing, unsqueeze, cat: what parity.port must follow)."""
    x_ch0 = torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
    x_ch1 = torch.unsqueeze(x[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
    x_ch2 = torch.unsqueeze(x[:, 2], 1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
    return torch.cat((x_ch0, x_ch1, x_ch2), 1)
