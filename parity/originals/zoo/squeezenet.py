"""SqueezeNet 1.1 (and 1.0) as torchvision.models.squeezenet writes it: Fire (squeeze 1x1, expand 1x1 and 3x3
concatenated), features, classifier = Sequential(Dropout, final 1x1 conv, ReLU, AdaptiveAvgPool2d), flatten.

The one addition to torchvision's constructor: `width` (every channel count but the classes' multiplied by it;
1 by default), for the narrow test version (parity.originals.zoo.tiny). Same state_dict keys as torchvision; written here,
torchvision not imported.
"""

import torch
import torch.nn.init as init
from torch import nn


class Fire(nn.Module):
    def __init__(self, inplanes: int, squeeze_planes: int, expand1x1_planes: int, expand3x3_planes: int) -> None:
        super().__init__()
        self.inplanes = inplanes
        self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                          self.expand3x3_activation(self.expand3x3(x))], 1)


class SqueezeNet(nn.Module):
    def __init__(self, version: str = "1_0", num_classes: int = 1000, dropout: float = 0.5,
                 width: float = 1.0) -> None:
        super().__init__()
        self.num_classes = num_classes

        def w(c: int) -> int:
            return max(1, int(c * width))

        def fire(i: int, s: int, e: int) -> Fire:
            return Fire(w(i), w(s), w(e), w(e))

        if version == "1_0":
            self.features = nn.Sequential(
                nn.Conv2d(3, w(96), kernel_size=7, stride=2),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                fire(96, 16, 64), fire(128, 16, 64), fire(128, 32, 128),
                nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                fire(256, 32, 128), fire(256, 48, 192), fire(384, 48, 192), fire(384, 64, 256),
                nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                fire(512, 64, 256),
            )
        elif version == "1_1":
            self.features = nn.Sequential(
                nn.Conv2d(3, w(64), kernel_size=3, stride=2),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                fire(64, 16, 64), fire(128, 16, 64),
                nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                fire(128, 32, 128), fire(256, 32, 128),
                nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                fire(256, 48, 192), fire(384, 48, 192), fire(384, 64, 256), fire(512, 64, 256),
            )
        else:
            raise ValueError(f"Unsupported SqueezeNet version {version}: 1_0 or 1_1 expected")
        # Final convolution is initialized differently from the rest
        final_conv = nn.Conv2d(2 * w(256), self.num_classes, kernel_size=1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), final_conv, nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d((1, 1)))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is final_conv:
                    init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    init.kaiming_uniform_(m.weight)
                if m.bias is not None:
                    init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.classifier(x)
        return torch.flatten(x, 1)


def squeezenet1_1(num_classes: int = 1000, **kwargs) -> SqueezeNet:
    """torchvision.models.squeezenet1_1 (1,235,496 parameters at 1000 classes)."""
    return SqueezeNet("1_1", num_classes=num_classes, **kwargs)
