"""GoogLeNet as torchvision.models.googlenet writes it: BasicConv2d (conv without bias, BatchNorm eps 1e-3,
ReLU), Inception (four branches concatenated; the "5x5" branch a 3x3 conv, as in torchvision), InceptionAux,
transform_input (ImageNet's normalisation redone per channel: x[:, c], unsqueeze, cat).

googlenet() is the network torchvision's pretrained weights give: transform_input=True, aux_logits=False (no aux1
and aux2 modules; InceptionAux only when aux_logits=True, in train mode, as in torchvision). The one addition to
torchvision's constructor: `width` (every channel count but the classes' multiplied by it; 1 by default), for the
narrow test version (parity.originals.zoo.tiny). Same state_dict keys as torchvision; written here, torchvision not imported.
"""

from collections import namedtuple
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from parity.originals.zoo._common import BasicConv2d, transform_input

GoogLeNetOutputs = namedtuple("GoogLeNetOutputs", ["logits", "aux_logits2", "aux_logits1"])

# in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj of inception3a ... inception5b
_INCEPTIONS = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32), "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64), "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64), "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128), "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}


class Inception(nn.Module):
    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int, conv_block: Callable[..., nn.Module] | None = None) -> None:
        super().__init__()
        if conv_block is None:
            conv_block = BasicConv2d
        self.branch1 = conv_block(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(conv_block(in_channels, ch3x3red, kernel_size=1),
                                     conv_block(ch3x3red, ch3x3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(conv_block(in_channels, ch5x5red, kernel_size=1),
                                     conv_block(ch5x5red, ch5x5, kernel_size=3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
                                     conv_block(in_channels, pool_proj, kernel_size=1))

    def _forward(self, x: Tensor) -> list[Tensor]:
        return [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]

    def forward(self, x: Tensor) -> Tensor:
        outputs = self._forward(x)
        return torch.cat(outputs, 1)


class InceptionAux(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, conv_block: Callable[..., nn.Module] | None = None,
                 dropout: float = 0.7, width: float = 1.0) -> None:
        super().__init__()
        if conv_block is None:
            conv_block = BasicConv2d
        self.conv = conv_block(in_channels, max(1, int(128 * width)), kernel_size=1)
        self.fc1 = nn.Linear(max(1, int(128 * width)) * 16, max(1, int(1024 * width)))
        self.fc2 = nn.Linear(max(1, int(1024 * width)), num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = F.adaptive_avg_pool2d(x, (4, 4))  # N x C x 4 x 4
        x = self.conv(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x), inplace=True)
        x = self.dropout(x)
        x = self.fc2(x)
        return x


class GoogLeNet(nn.Module):
    __constants__ = ["aux_logits", "transform_input"]

    def __init__(self, num_classes: int = 1000, aux_logits: bool = False, transform_input: bool = True,
                 init_weights: bool = True, blocks: list[Callable[..., nn.Module]] | None = None,
                 dropout: float = 0.2, dropout_aux: float = 0.7, width: float = 1.0) -> None:
        super().__init__()
        if blocks is None:
            blocks = [BasicConv2d, Inception, InceptionAux]
        conv_block, inception_block, inception_aux_block = blocks

        def w(c: int) -> int:
            return max(1, int(c * width))

        self.aux_logits = aux_logits
        self.transform_input = transform_input
        self.conv1 = conv_block(3, w(64), kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = conv_block(w(64), w(64), kernel_size=1)
        self.conv3 = conv_block(w(64), w(192), kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        widths, channels = {}, w(192)
        for name, cfg in _INCEPTIONS.items():  # each block takes what the one before it gives
            widths[name] = [channels] + [w(c) for c in cfg[1:]]
            channels = sum(widths[name][i] for i in (1, 3, 5, 6))
        self.inception3a = inception_block(*widths["inception3a"])
        self.inception3b = inception_block(*widths["inception3b"])
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = inception_block(*widths["inception4a"])
        self.inception4b = inception_block(*widths["inception4b"])
        self.inception4c = inception_block(*widths["inception4c"])
        self.inception4d = inception_block(*widths["inception4d"])
        self.inception4e = inception_block(*widths["inception4e"])
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = inception_block(*widths["inception5a"])
        self.inception5b = inception_block(*widths["inception5b"])
        if aux_logits:
            self.aux1 = inception_aux_block(widths["inception4b"][0], num_classes, dropout=dropout_aux, width=width)
            self.aux2 = inception_aux_block(widths["inception4e"][0], num_classes, dropout=dropout_aux, width=width)
        else:
            self.aux1 = None  # type: ignore[assignment]
            self.aux2 = None  # type: ignore[assignment]
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(channels, num_classes)
        if init_weights:
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    torch.nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)

    def _transform_input(self, x: Tensor) -> Tensor:
        return transform_input(x) if self.transform_input else x

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        x = self.conv1(x)  # N x 64 x 112 x 112 (at 224 x 224)
        x = self.maxpool1(x)
        x = self.conv2(x)
        x = self.conv3(x)
        x = self.maxpool2(x)  # N x 192 x 28 x 28
        x = self.inception3a(x)
        x = self.inception3b(x)
        x = self.maxpool3(x)
        x = self.inception4a(x)  # N x 512 x 14 x 14
        aux1: Tensor | None = None
        if self.aux1 is not None:
            if self.training:
                aux1 = self.aux1(x)
        x = self.inception4b(x)
        x = self.inception4c(x)
        x = self.inception4d(x)
        aux2: Tensor | None = None
        if self.aux2 is not None:
            if self.training:
                aux2 = self.aux2(x)
        x = self.inception4e(x)
        x = self.maxpool4(x)
        x = self.inception5a(x)
        x = self.inception5b(x)  # N x 1024 x 7 x 7
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.dropout(x)
        x = self.fc(x)
        return x, aux2, aux1

    def eager_outputs(self, x: Tensor, aux2: Tensor | None, aux1: Tensor | None) -> Any:
        if self.training and self.aux_logits:
            return GoogLeNetOutputs(x, aux2, aux1)
        return x

    def forward(self, x: Tensor) -> Any:
        x = self._transform_input(x)
        x, aux1, aux2 = self._forward(x)
        return self.eager_outputs(x, aux2, aux1)


def googlenet(num_classes: int = 1000, **kwargs: Any) -> GoogLeNet:
    """torchvision.models.googlenet as its pretrained weights give it (6,624,904 parameters at 1000 classes)."""
    return GoogLeNet(num_classes=num_classes, **kwargs)
