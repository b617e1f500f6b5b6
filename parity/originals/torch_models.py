"""The torch originals, written as the course notebooks write them.

Layer order and attribute names are the notebooks', so `state_dict()` keys are
exactly those of ARCHITECTURES.md. Constructor arguments the notebooks hard-code
(the 5x5 image of notebook 000, 28x28 inputs) are keyword arguments here with
the notebooks' values as defaults, matching `jaxcnn.create_model`.
"""

import functools
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from parity.originals import torchvision_models

TORCH_MODELS: dict[str, Callable[..., nn.Module]] = {}


def _register(name: str):
    def add(cls):
        TORCH_MODELS[name] = cls
        return cls
    return add


def _hw(size):
    return (size, size) if isinstance(size, int) else tuple(size)


@_register("two_conv_net")
class MODEL(nn.Module):
    """Notebook 000, task 2."""

    def __init__(self, in_channels=1, num_classes=2, input_size=5):
        super(MODEL, self).__init__()
        h, w = _hw(input_size)
        self.conv_layers = nn.Sequential(
            nn.Conv2d(in_channels, 16, padding=1, kernel_size=3),
            nn.Conv2d(16, 32, padding=1, kernel_size=3),
        )
        self.flatten_layer = nn.Sequential(nn.Flatten())
        self.fc_layer = nn.Sequential(nn.Linear(32 * h * w, num_classes))

    def forward(self, x):
        x = self.conv_layers(x)
        x = self.flatten_layer(x)
        x = x.view(x.size(0), -1)
        x = self.fc_layer(x)
        return x


@_register("conv_relu_conv")
class MyModel(nn.Module):
    """Notebook 001 `MyModel(in_channels, out_channels)`."""

    def __init__(self, in_channels=3, out_channels=64, input_size=None):
        super().__init__()
        self.conv_1 = nn.Conv2d(in_channels, 32, (3, 3))
        self.conv_2 = nn.Conv2d(32, out_channels, (3, 3))
        self.act = nn.ReLU()

    def forward(self, x):
        x = self.conv_1(x)
        x = self.act(x)
        x = self.conv_2(x)
        return x


@_register("cnn_basic")
class CNN_Model_Basic(nn.Module):
    """Notebook 001, example 1 (`CNN_Model(out)`)."""

    def __init__(self, in_channels=3, num_classes=5, input_size=28):
        super().__init__()
        h, w = (s - 4 for s in _hw(input_size))
        self.conv_1 = nn.Conv2d(in_channels, 32, (3, 3))
        self.conv_2 = nn.Conv2d(32, 64, (3, 3))
        self.flatten = nn.Flatten()
        self.act = nn.ReLU()
        self.layer_1 = nn.Linear(64 * h * w, 128)
        self.layer_2 = nn.Linear(128, num_classes)

    def forward(self, x):
        x = self.conv_1(x)
        x = self.act(x)
        x = self.conv_2(x)
        x = self.flatten(x)
        x = self.layer_1(x)
        x = self.act(x)
        x = self.layer_2(x)
        return x


@_register("cnn_bn_dropout")
class CNN_Model(nn.Module):
    """Notebook 001, example 2 (`CNN_Model(in_channels, out)`)."""

    def __init__(self, in_channels=3, num_classes=10, input_size=28, dropout=0.5):
        super().__init__()
        h, w = (s - 4 for s in _hw(input_size))
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 32, (3, 3), bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 64, (3, 3), bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
        )
        self.flatten = nn.Flatten()
        self.fc = nn.Sequential(
            nn.Linear(64 * h * w, 128),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(128, num_classes),
        )

    def forward(self, x):
        x = self.conv(x)
        x = self.flatten(x)
        x = self.fc(x)
        return x


@_register("lenet5_mnist")
class LeNet5(torch.nn.Module):
    """Notebook 002."""

    def __init__(self, in_channels=1, num_classes=10, input_size=28):
        super(LeNet5, self).__init__()
        h, w = ((s // 2 - 4) // 2 for s in _hw(input_size))

        self.conv1 = torch.nn.Conv2d(in_channels=in_channels, out_channels=6, kernel_size=5, padding=2)
        self.act1 = torch.nn.Tanh()
        self.pool1 = torch.nn.AvgPool2d(kernel_size=2, stride=2)

        self.conv2 = torch.nn.Conv2d(in_channels=6, out_channels=16, kernel_size=5, padding=0)
        self.act2 = torch.nn.Tanh()
        self.pool2 = torch.nn.AvgPool2d(kernel_size=2, stride=2)

        self.fc1 = torch.nn.Linear(h * w * 16, 120)
        self.act3 = torch.nn.Tanh()

        self.fc2 = torch.nn.Linear(120, 84)
        self.act4 = torch.nn.Tanh()

        self.fc3 = torch.nn.Linear(84, num_classes)

    def forward(self, x):
        x = self.conv1(x)
        x = self.act1(x)
        x = self.pool1(x)

        x = self.conv2(x)
        x = self.act2(x)
        x = self.pool2(x)

        x = x.view(x.size(0), x.size(1) * x.size(2) * x.size(3))

        x = self.fc1(x)
        x = self.act3(x)
        x = self.fc2(x)
        x = self.act4(x)
        x = self.fc3(x)
        return x


@_register("lenet5_classic")
class Net(nn.Module):
    """Notebook 004 `Net` (the PyTorch tutorial's LeNet)."""

    def __init__(self, in_channels=1, num_classes=10, input_size=32):
        super(Net, self).__init__()
        h, w = (((s - 4) // 2 - 4) // 2 for s in _hw(input_size))
        self.conv1 = nn.Conv2d(in_channels, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * h * w, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = self.conv1(x)
        x = F.sigmoid(x)
        x = F.avg_pool2d(x, (2, 2))
        x = self.conv2(x)
        x = F.sigmoid(x)
        x = F.avg_pool2d(x, 2)
        x = torch.flatten(x, 1)
        x = F.sigmoid(self.fc1(x))
        x = F.sigmoid(self.fc2(x))
        x = self.fc3(x)
        return x


@_register("mnist_cnn")
class CNN_model(nn.Module):
    """Notebook 004, the MNIST CNN trained for 10 epochs."""

    def __init__(self, in_channels=1, num_classes=10, input_size=28):
        super(CNN_model, self).__init__()
        h, w = (s // 2 // 2 for s in _hw(input_size))
        self.conv_stack = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(h * w * 32, 100),
            nn.ReLU(),
            nn.Linear(100, num_classes),
        )

    def forward(self, x):
        x = self.conv_stack(x)
        return x


def cifar_conv_mlp(in_channels=3, num_classes=10, input_size=32):
    """Notebook 004, "conv layer = conv + activation" (a bare nn.Sequential)."""
    h, w = (s - 2 for s in _hw(input_size))
    return torch.nn.Sequential(
        nn.Conv2d(in_channels=in_channels, out_channels=6, kernel_size=3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * h * w, 100),
        nn.ReLU(),
        nn.Linear(100, num_classes),
    )


def sun_regressor(in_channels=3, num_classes=2, input_size=256):
    """Notebook 003 (a bare nn.Sequential; MSE regression of the sun's position)."""
    h, w = (s // 8 for s in _hw(input_size))
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 3, padding='same'),
        nn.ReLU(),
        nn.MaxPool2d(2),  # (batch, 32, 128, 128)
        nn.Conv2d(32, 8, 3, padding='same'),
        nn.ReLU(),
        nn.MaxPool2d(2),  # (batch, 8, 64, 64)
        nn.Conv2d(8, 4, 3, padding='same'),
        nn.ReLU(),
        nn.MaxPool2d(2),  # (batch, 4, 32, 32)
        nn.Flatten(),
        nn.Linear(4 * h * w, 128),  # (batch, 4096)
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


TORCH_MODELS["cifar_conv_mlp"] = cifar_conv_mlp
TORCH_MODELS["sun_regressor"] = sun_regressor
for _config in torchvision_models.CONFIGS:
    TORCH_MODELS[_config] = functools.partial(torchvision_models.vgg, _config, False)
    TORCH_MODELS[_config + "_bn"] = functools.partial(torchvision_models.vgg, _config, True)
TORCH_MODELS["alexnet"] = torchvision_models.AlexNet


def create(name: str, **kwargs) -> nn.Module:
    """The torch original of a jaxcnn registry model, with the same defaults as `jaxcnn.create_model`."""
    if name not in TORCH_MODELS:
        raise KeyError(f"no torch original named {name!r}; available: {', '.join(sorted(TORCH_MODELS))}")
    return TORCH_MODELS[name](**kwargs)
