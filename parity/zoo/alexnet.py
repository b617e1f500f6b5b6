"""AlexNet as torchvision.models.alexnet writes it: features, avgpool (AdaptiveAvgPool2d 6x6), classifier.

The one addition to torchvision's constructor: `widths` (the five convolutions' channels, torchvision's 64, 192,
384, 256, 256 by default) and `hidden` (the classifier's 4096), for the narrow test version (parity.zoo.tiny).
Same state_dict keys as torchvision; written here, torchvision not imported.
"""

from typing import Sequence

import torch
from torch import nn


class AlexNet(nn.Module):
    def __init__(self, num_classes: int = 1000, dropout: float = 0.5,
                 widths: Sequence[int] = (64, 192, 384, 256, 256), hidden: int = 4096) -> None:
        super().__init__()
        a, b, c, d, e = widths
        self.features = nn.Sequential(
            nn.Conv2d(3, a, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(a, b, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(b, c, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, d, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(d, e, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(e * 6 * 6, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.classifier(x)
        return x


def alexnet(num_classes: int = 1000, **kwargs) -> AlexNet:
    """torchvision.models.alexnet (61,100,840 parameters at 1000 classes; inputs of 63x63 and up)."""
    return AlexNet(num_classes=num_classes, **kwargs)
