"""VGG-11 with BatchNorm as torchvision.models.vgg writes it (parity.originals.torchvision_models' VGG and make_layers, the
course's twins): features (make_layers of config "A"), avgpool (AdaptiveAvgPool2d 7x7), classifier."""

from typing import Sequence

from parity.originals.torchvision_models import VGG, make_layers

CONFIG_A = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]  # torchvision's cfgs["A"]


def vgg11_bn(num_classes: int = 1000, cfg: Sequence[str | int] = CONFIG_A, **kwargs) -> VGG:
    """torchvision.models.vgg11_bn (132,868,840 parameters at 1000 classes; inputs of 32x32 and up)."""
    return VGG(make_layers(list(cfg), batch_norm=True), num_classes=num_classes, **kwargs)
