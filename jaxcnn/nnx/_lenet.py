"""LeNet-5 as Flax NNX modules, written as notebook 002's `LeNet5` and notebook 004's `Net` are."""

import jax
from flax import nnx

from jaxcnn import lenet
from jaxcnn.functional import flatten
from jaxcnn.nnx._base import CourseNet, layer_makers
from jaxcnn.nnx._layers import AvgPool
from jaxcnn.pooling import avg_pool
from jaxcnn.registry import Activation, InputSize, register_nnx


@register_nnx("lenet5_mnist")
class LeNet5(CourseNet):
    """Notebook 002 `LeNet5`: conv1 5x5 p=2, act1, pool1 AvgPool(2,2), conv2 5x5, act2, pool2, view, fc1 400->120,
    act3, fc2 120->84, act4, fc3 84->10 (the acts tanh). x (N, 28, 28, 1), raw pixels 0..255 -> (N, num_classes)."""
    linen = lenet.LeNet5

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: InputSize = 28,
                 weight_init: str = "torch", conv_implementation: str = "auto", act: Activation = nnx.tanh, *,
                 rngs: nnx.Rngs):
        self.keep(locals())  # its arguments, as attributes (CourseNet.keep)
        conv, linear = layer_makers(weight_init, conv_implementation, rngs)

        self.conv1 = conv(in_channels=in_channels, out_channels=6, kernel_size=5, padding=2)
        self.act1 = act
        self.pool1 = AvgPool(kernel_size=2, stride=2)

        self.conv2 = conv(in_channels=6, out_channels=16, kernel_size=5, padding=0)
        self.act2 = act
        self.pool2 = AvgPool(kernel_size=2, stride=2)

        self.fc1 = linear(lenet.lenet_features(input_size, 2), 120)
        self.act3 = act

        self.fc2 = linear(120, 84)
        self.act4 = act

        self.fc3 = linear(84, num_classes)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.check_input(x)
        x = self.conv1(x)
        x = self.act1(x)
        x = self.pool1(x)

        x = self.conv2(x)
        x = self.act2(x)
        x = self.pool2(x)

        x = flatten(x)  # torch: x.view(x.size(0), -1), in (C, H, W) order; the weights of fc1 are permuted

        x = self.fc1(x)
        x = self.act3(x)
        x = self.fc2(x)
        x = self.act4(x)
        return self.fc3(x)


@register_nnx("lenet5_classic")
class LeNet5Classic(CourseNet):
    """Notebook 004 `Net`: conv1 5x5, act, avg_pool2d(2), conv2 5x5, act, avg_pool2d(2), flatten, fc1 + act,
    fc2 + act, fc3 (the acts sigmoid). x (N, 32, 32, 1) -> (N, num_classes)."""
    linen = lenet.LeNet5Classic

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: InputSize = 32,
                 weight_init: str = "torch", conv_implementation: str = "auto", act: Activation = nnx.sigmoid, *,
                 rngs: nnx.Rngs):
        self.keep(locals())  # its arguments, as attributes (CourseNet.keep)
        conv, linear = layer_makers(weight_init, conv_implementation, rngs)
        self.conv1 = conv(in_channels, 6, 5)
        self.conv2 = conv(6, 16, 5)
        self.fc1 = linear(lenet.lenet_features(input_size, 0), 120)
        self.fc2 = linear(120, 84)
        self.fc3 = linear(84, num_classes)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.check_input(x)
        x = self.conv1(x)
        x = self.act(x)
        x = avg_pool(x, (2, 2))
        x = self.conv2(x)
        x = self.act(x)
        x = avg_pool(x, 2)
        x = flatten(x)
        x = self.act(self.fc1(x))
        x = self.act(self.fc2(x))
        return self.fc3(x)
