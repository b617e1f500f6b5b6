"""VGG-16/19 (with and without BatchNorm) and AlexNet as Flax NNX modules, written as torchvision writes them:
`features` and `classifier` Sequentials indexed as torchvision's (`net.features[3]`, `net.classifier[6].bias`),
`avgpool`, and the forward features -> avgpool -> flatten -> classifier. NHWC input; the linen twins are
jaxcnn.vgg.VGG and jaxcnn.alexnet.AlexNet.
"""

import functools

import jax
from flax import nnx

from jaxcnn import alexnet, vgg
from jaxcnn.functional import flatten
from jaxcnn.nnx._base import CourseNet, layer_makers
from jaxcnn.nnx._layers import AdaptiveAvgPool, BatchNorm, Dropout, MaxPool, Sequential
from jaxcnn.registry import Activation, InputSize, register_nnx


def make_layers(config: list, batch_norm: bool, in_channels: int, act: Activation, conv) -> Sequential:
    """torchvision's vgg.make_layers: per width, Conv2d 3x3 p=1 (and BatchNorm) and act; per 'M', MaxPool(2, 2)."""
    layers = []
    for v in config:
        if v == "M":
            layers += [MaxPool(kernel_size=2, stride=2)]
        else:
            conv2d = conv(in_channels, v, kernel_size=3, padding=1)
            layers += [conv2d, BatchNorm(v), act] if batch_norm else [conv2d, act]
            in_channels = v
    return Sequential(*layers)


class Torchvision(CourseNet):
    """torchvision's VGG and AlexNet: their `features`, `avgpool` and `classifier`, and their forward."""
    fixed_size = False

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.check_input(x)
        x = self.features(x)
        x = self.avgpool(x)
        x = flatten(x)
        return self.classifier(x)


class VGG(Torchvision):
    """torchvision's VGG (configuration `config`: 'vgg16' is D, 'vgg19' E): x (N, H, W, 3), H, W >= 32 (224 in
    the paper) -> (N, num_classes)."""
    linen = vgg.VGG

    def __init__(self, config: str = "vgg16", batch_norm: bool = False, in_channels: int = 3,
                 num_classes: int = 1000, input_size: InputSize = 224, dropout: float = 0.5,
                 weight_init: str = "torch", conv_implementation: str = "auto", act: Activation = nnx.relu, *,
                 rngs: nnx.Rngs):
        self.keep(locals())  # its arguments, as attributes (CourseNet.keep)
        conv, linear = layer_makers(weight_init, conv_implementation, rngs)
        self.features = make_layers(vgg.CONFIGS[config], batch_norm, in_channels, act, conv)
        channels = [v for v in vgg.CONFIGS[config] if v != "M"][-1]  # 512
        self.avgpool = AdaptiveAvgPool((7, 7))
        self.classifier = Sequential(
            linear(channels * 7 * 7, 4096),
            act,
            Dropout(dropout, rngs=rngs),
            linear(4096, 4096),
            act,
            Dropout(dropout, rngs=rngs),
            linear(4096, num_classes),
        )


for _config in vgg.CONFIGS:
    register_nnx(_config)(functools.partial(VGG, config=_config, batch_norm=False))
    register_nnx(_config + "_bn")(functools.partial(VGG, config=_config, batch_norm=True))


@register_nnx("alexnet")
class AlexNet(Torchvision):
    """torchvision's AlexNet: x (N, H, W, 3), H, W >= 63 (224 usually) -> (N, num_classes)."""
    linen = alexnet.AlexNet

    def __init__(self, in_channels: int = 3, num_classes: int = 1000, input_size: InputSize = 224,
                 dropout: float = 0.5, weight_init: str = "torch", conv_implementation: str = "auto",
                 act: Activation = nnx.relu, *, rngs: nnx.Rngs):
        self.keep(locals())  # its arguments, as attributes (CourseNet.keep)
        conv, linear = layer_makers(weight_init, conv_implementation, rngs)
        self.features = Sequential(
            conv(in_channels, 64, kernel_size=11, stride=4, padding=2),
            act,
            MaxPool(kernel_size=3, stride=2),
            conv(64, 192, kernel_size=5, padding=2),
            act,
            MaxPool(kernel_size=3, stride=2),
            conv(192, 384, kernel_size=3, padding=1),
            act,
            conv(384, 256, kernel_size=3, padding=1),
            act,
            conv(256, 256, kernel_size=3, padding=1),
            act,
            MaxPool(kernel_size=3, stride=2),
        )
        self.avgpool = AdaptiveAvgPool((6, 6))
        self.classifier = Sequential(
            Dropout(dropout, rngs=rngs),
            linear(256 * 6 * 6, 4096),
            act,
            Dropout(dropout, rngs=rngs),
            linear(4096, 4096),
            act,
            linear(4096, num_classes),
        )
