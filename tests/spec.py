"""Figures of ../shared/ARCHITECTURES.md, the spec the tests hold the code to, and the registry as test
parameters."""

import pytest

import jaxcnn

PARAMS = {
    "two_conv_net": 6_402, "conv_relu_conv": 19_392, "cnn_basic": 4_738_757, "cnn_bn_dropout": 4_739_498,
    "lenet5_mnist": 61_706, "lenet5_classic": 61_706, "mnist_cnn": 167_478, "cifar_conv_mlp": 541_278,
    "sun_regressor": 528_174,
}
# The torchvision networks, as torchvision's model documentation counts them.
TORCHVISION_PARAMS = {
    "alexnet": 61_100_840, "vgg16": 138_357_544, "vgg16_bn": 138_365_992, "vgg19": 143_667_240,
    "vgg19_bn": 143_678_248,
}

# (input NCHW, output) of the spec's "input" and "output" columns.
IO = {
    "two_conv_net": [((1, 1, 5, 5), (1, 2))],
    "conv_relu_conv": [((16, 3, 28, 28), (16, 64, 24, 24)), ((16, 3, 50, 50), (16, 64, 46, 46))],
    "cnn_basic": [((16, 3, 28, 28), (16, 5))],
    "cnn_bn_dropout": [((16, 3, 28, 28), (16, 10))],
    "lenet5_mnist": [((4, 1, 28, 28), (4, 10))],
    "lenet5_classic": [((4, 1, 32, 32), (4, 10))],
    "mnist_cnn": [((4, 1, 28, 28), (4, 10))],
    "cifar_conv_mlp": [((1, 3, 32, 32), (1, 10))],
    "sun_regressor": [((32, 3, 256, 256), (32, 2))],
}

# state_dict parameter keys without .weight/.bias (BatchNorm and bias-free layers marked).
KEYS = {
    "two_conv_net": ["conv_layers.0", "conv_layers.1", "fc_layer.0"],
    "conv_relu_conv": ["conv_1", "conv_2"],
    "cnn_basic": ["conv_1", "conv_2", "layer_1", "layer_2"],
    "cnn_bn_dropout": ["conv.0:nobias", "conv.1:bn", "conv.3:nobias", "conv.4:bn", "fc.0", "fc.3"],
    "lenet5_mnist": ["conv1", "conv2", "fc1", "fc2", "fc3"],
    "lenet5_classic": ["conv1", "conv2", "fc1", "fc2", "fc3"],
    "mnist_cnn": ["conv_stack.0", "conv_stack.3", "conv_stack.7", "conv_stack.9"],
    "cifar_conv_mlp": ["0", "3", "5"],
    "sun_regressor": ["0", "3", "6", "10", "12"],
}

NINE = sorted(PARAMS)
# torchvision's state_dict prefixes (each with .weight and .bias; a BatchNorm's also running_mean, running_var and
# num_batches_tracked): the convolutions' (and BatchNorms') indices in `features`, the Linears' in `classifier`.
_VGG16 = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
_VGG19 = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
_VGG16_BN = [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40]
_VGG19_BN = [0, 3, 7, 10, 14, 17, 20, 23, 27, 30, 33, 36, 40, 43, 46, 49]
TORCHVISION_KEYS = {
    "alexnet": ([0, 3, 6, 8, 10], [], [1, 4, 6]),
    "vgg16": (_VGG16, [], [0, 3, 6]), "vgg19": (_VGG19, [], [0, 3, 6]),
    "vgg16_bn": (_VGG16_BN, [i + 1 for i in _VGG16_BN], [0, 3, 6]),
    "vgg19_bn": (_VGG19_BN, [i + 1 for i in _VGG19_BN], [0, 3, 6]),
}


def state_dict_keys(name: str) -> set[str]:
    """The full state_dict key set the spec implies for `name`."""
    leaves = {"": ("weight", "bias"), "nobias": ("weight",),
              "bn": ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    if name in TORCHVISION_KEYS:
        convs, batchnorms, linears = TORCHVISION_KEYS[name]
        entries = ([f"features.{i}" for i in convs] + [f"features.{i}:bn" for i in batchnorms]
                   + [f"classifier.{i}" for i in linears])
    else:
        entries = KEYS[name]
    keys = set()
    for entry in entries:
        prefix, _, kind = entry.partition(":")
        keys |= {f"{prefix}.{leaf}" for leaf in leaves[kind]}
    return keys



# vgg16_bn is the VGG every registry-wide test runs in `make test` (it has every layer kind of the family: conv,
# BatchNorm, ReLU, max pool, dropout, Linear); the other three repeat those checks at other depths and without
# BatchNorm, in `make sweep`.
SWEPT_VGG = ("vgg16", "vgg19", "vgg19_bn")


def marks(name: str, slow: bool, repeat: bool = False) -> list:
    """The marks of a test over registry network `name`: slow if `slow`, and sweep for the VGGs `make test` leaves to
    `make sweep` (every VGG where the test is a `repeat` of one already run, such as another seed)."""
    swept = name in SWEPT_VGG or (repeat and name.startswith("vgg"))
    return [pytest.mark.slow] * (slow or swept) + [pytest.mark.sweep] * swept


def fast_only(names, fast) -> list:
    """Test parameters over `names`: those not in `fast` marked slow (pytest -m "not slow" leaves them out), the
    swept VGGs marked sweep as well (`make test` leaves them out, `make sweep` runs them)."""
    return [n if n in fast else pytest.param(n, marks=marks(n, True)) for n in names]


def registry(names=None) -> list:
    """Test parameters over the registry (or `names`), the VGGs marked slow: 138M parameters each, the bulk of the
    suite's time, of layer kinds (conv, BatchNorm, ReLU, max pool, dropout) the fast set checks in AlexNet and
    cnn_bn_dropout. `make test` runs vgg16_bn, `make sweep` the other VGGs."""
    names = jaxcnn.list_models() if names is None else names
    return fast_only(names, [n for n in names if not n.startswith("vgg")])
