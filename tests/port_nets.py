"""torch networks written for parity.port's tests: what everyday CNNs are made of, in the styles people write."""

import collections

import torch
import torch.nn.functional as F
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, momentum=0.2)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class TinyResNet(nn.Module):
    """Residual blocks (identity and projection shortcuts), a ModuleList, global average pooling."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True))
        self.layers = nn.ModuleList([ResidualBlock(8, 8), ResidualBlock(8, 16, stride=2)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        x = self.pool(x)
        return self.fc(torch.flatten(x, 1))


class Inception(nn.Module):
    """Branches concatenated along channels; ceil-mode and padded pools; a ModuleDict."""

    def __init__(self):
        super().__init__()
        self.branches = nn.ModuleDict({
            "b1": nn.Conv2d(3, 4, 1),
            "b3": nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding="same")),
            "b5": nn.Sequential(nn.Conv2d(3, 2, 5, padding=2, padding_mode="reflect"), nn.GELU()),
            "b7": nn.Sequential(nn.Conv2d(3, 2, 3, padding=1, padding_mode="replicate"), nn.SiLU(), nn.ReLU6()),
            "pool": nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(3, 4, 1)),
        })
        self.down = nn.MaxPool2d(2, ceil_mode=True)
        self.avg = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(18 * 3 * 3, 5))

    def forward(self, x):
        x = torch.cat([branch(x) for branch in self.branches.values()], dim=1)
        return self.head(self.avg(self.down(x)))


class DepthwiseSeparable(nn.Module):
    """Depthwise (groups = channels) and pointwise convolutions, dilation, ReLU6/Hardswish, squeeze-excitation."""

    def __init__(self):
        super().__init__()
        self.depthwise = nn.Conv2d(6, 6, 3, padding=2, dilation=2, groups=6)
        self.pointwise = nn.Conv2d(6, 12, 1)
        self.bn = nn.BatchNorm2d(12)
        self.squeeze = nn.Linear(12, 3)
        self.excite = nn.Linear(3, 12)
        self.classifier = nn.Linear(12, 4)

    def forward(self, x):
        x = F.relu6(self.depthwise(x))
        x = F.hardswish(self.bn(self.pointwise(x)))
        b, c, _, _ = x.shape
        s = x.mean((2, 3))
        s = torch.sigmoid(self.excite(F.silu(self.squeeze(s)))).view(b, c, 1, 1)
        x = x * s
        return F.log_softmax(self.classifier(F.adaptive_max_pool2d(x, 1).view(b, -1)), dim=1)


class Signal1d(nn.Module):
    """A 1-D CNN: Conv1d, BatchNorm1d, pools, a flatten into a Linear (its weights permuted), BatchNorm1d on
    features, dropout."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(2, 8, 5, padding=2), nn.BatchNorm1d(8), nn.LeakyReLU(0.1), nn.MaxPool1d(2),
            nn.Conv1d(8, 8, 3, stride=2, padding=1, padding_mode="circular"), nn.ELU(), nn.AvgPool1d(2, ceil_mode=True),
            nn.AdaptiveAvgPool1d(4),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32, 16), nn.BatchNorm1d(16), nn.Tanh(),
                                        nn.Dropout(0.2), nn.Linear(16, 3))

    def forward(self, x):
        return self.classifier(self.features(x))


class Functional(nn.Module):
    """A forward in the functional style: F.* and torch.* calls, Tensor methods, view, functional dropout,
    a parameter and a buffer of the module's own, arithmetic with scalars and broadcasting."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.conv2 = nn.Conv2d(4, 8, 3)
        self.fc1 = nn.Linear(8 * 6 * 6, 32)
        self.fc2 = nn.Linear(32, num_classes)
        self.gain = nn.Parameter(torch.linspace(0.5, 1.5, 8).view(8, 1, 1))
        self.register_buffer("offset", torch.linspace(-0.1, 0.1, 8).view(1, 8, 1, 1))

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = torch.relu(self.conv2(x)) * self.gain + self.offset
        x = F.avg_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)
        x = (x - 0.5) / 2.0
        x = x.view(-1, 8 * 6 * 6)
        x = F.dropout(x, p=0.25, training=self.training)
        x = F.gelu(self.fc1(x), approximate="tanh")
        return torch.softmax(self.fc2(x), dim=-1)


class Volume3d(nn.Module):
    """A 3-D CNN (NDHWC in Flax): Conv3d, BatchNorm3d, MaxPool3d, a flatten into a Linear, module activations."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm3d(4)
        self.pool = nn.MaxPool3d(2)
        self.fc = nn.Linear(4 * 2 * 3 * 3, 3)
        self.out = nn.Sequential(nn.Hardsigmoid(), nn.Softmax(dim=1))

    def forward(self, x):
        return self.out(self.fc(self.pool(F.relu(self.bn(self.conv(x)))).flatten(1)))


class Unsupported(nn.Module):
    """Four operations the port does not understand, each on a line of its own."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.shuffle = nn.PixelShuffle(2)
        self.norm = nn.LocalResponseNorm(2)

    def forward(self, x):
        x = self.shuffle(self.conv(x))
        x = self.norm(x)
        x = torch.roll(x, 1, 2)
        return x.cumprod(1)


class LayoutTwists(nn.Module):
    """Layouts that must be converted: a reshape into a Conv1d, a flatten into BatchNorm1d, a concatenation of
    differently held tensors, a sum over channels, adaptive pools with uneven bins, two outputs."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.rows = nn.Conv1d(24, 8, 3)
        self.bn = nn.BatchNorm1d(144)
        self.fc = nn.Linear(144 + 32, 6)

    def forward(self, x):
        y = self.conv(x)  # (N, 4, 6, 6)
        r = self.rows(y.reshape(y.shape[0], 4 * 6, 6)).flatten(1)  # (N, 24, 6) -> (N, 8, 4) -> (N, 32)
        f = self.bn(torch.flatten(y, 1))  # (N, 144)
        z = torch.cat([f, r], dim=1) + torch.cat([torch.flatten(y, 1), r], 1)
        g = F.adaptive_max_pool2d(y.sum(dim=1, keepdim=True), (4, 3)) + F.adaptive_avg_pool2d(y, (4, 3))
        return self.fc(z), g


class Branching(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        x = self.conv(x)
        if self.training:
            x = x * 2
        return x


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        x = self.conv(x)
        if x.sum() > 0:
            x = -x
        return x


class Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.spare = nn.Linear(3, 3)

    def forward(self, x):
        return self.conv(x)


class InPlaceReuse(nn.Module):
    """An in-place ReLU on a tensor read again afterwards: torch adds the changed tensor, and so does the port."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        a = self.conv(x)
        b = self.relu(a)
        return a + b


class CumulativeBatchNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(1, momentum=None)

    def forward(self, x):
        return self.bn(x)


# name -> (constructor, NCHW example input shape)
class InPlaceView(nn.Module):
    """A view of a tensor that is then changed in place: torch's view sees the change."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        a = self.conv(x)
        first = a[:, :1]
        a.relu_()
        return first * 2


class SliceAssignment(nn.Module):
    """`x[:, 0] = ...` changes x in place and returns nothing: not a silent no-op in the port."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        a = self.conv(x)
        a[:, 0] = 0.0
        return a


Outputs = collections.namedtuple("Outputs", ["logits", "features"])


class NamedOutputs(nn.Module):
    """Returns a namedtuple (torchvision's GoogLeNetOutputs, InceptionOutputs are ones)."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 2, 3), nn.Linear(2, 3)

    def forward(self, x):
        features = self.conv(x)
        return Outputs(self.fc(features.mean((2, 3))), features)


class AuxiliaryInTraining(NamedOutputs):
    """Adds an auxiliary output in train mode only, as torchvision's GoogLeNet does with aux_logits=True."""

    def forward(self, x):
        outputs = super().forward(x)
        return outputs if self.training else outputs.logits


class VersionedLayout(nn.Module):
    """Reads its layout version from the state_dict's _metadata when loading, as torchvision's MNASNet does."""
    _version = 2

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args):
        if local_metadata.get("version") != 2:
            raise ValueError(f"version {local_metadata.get('version')} not supported")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args)

    def forward(self, x):
        return self.conv(x)


NETWORKS = {
    "residual": (TinyResNet, (2, 3, 16, 16)),
    "concatenation": (Inception, (2, 3, 11, 11)),
    "depthwise": (DepthwiseSeparable, (2, 6, 9, 9)),
    "signal_1d": (Signal1d, (4, 2, 40)),
    "functional": (Functional, (2, 1, 28, 28)),
    "volume_3d": (Volume3d, (2, 1, 4, 6, 6)),
    "layout_twists": (LayoutTwists, (3, 4, 6, 6)),
    "in_place": (InPlaceReuse, (2, 1, 8, 8)),
    "mode_branches": (Branching, (2, 1, 8, 8)),
    "named_outputs": (NamedOutputs, (2, 1, 8, 8)),
    "auxiliary_in_training": (AuxiliaryInTraining, (2, 1, 8, 8)),
}
