"""LeNet-5 as notebook 002 trains it on MNIST, and the classic 32x32 one of notebook 004."""

import functools

import jax
from flax import linen as nn

from jaxcnn.arithmetic import conv_output_size, pool_output_size
from jaxcnn.config import ModelConfig
from jaxcnn.layers import AvgPool, Conv2d, Flatten, Linear
from jaxcnn.registry import Activation, CourseNet, InputSize, hw, register_model


def lenet_features(input_size: InputSize, first_padding: int) -> int:
    """Length of the flattened 16-channel map after conv(5)-pool(2)-conv(5)-pool(2)."""
    size = pool_output_size(conv_output_size(hw(input_size), 5, 1, first_padding), 2)
    h, w = pool_output_size(conv_output_size(size, 5), 2)
    return 16 * h * w


@register_model("lenet5_mnist", ModelConfig(
    preprocess="raw",
    recipe=dict(data="mnist", optimizer="adam", lr=1e-3, batch_size=100, epochs=1)))  # notebook 002
class LeNet5(CourseNet):
    """Notebook 002 `LeNet5`: conv1 5x5 p=2, tanh, AvgPool(2,2), conv2 5x5, tanh, AvgPool(2,2),
    view, fc1 400->120, tanh, fc2 120->84, tanh, fc3 84->10.

    x: (N, 28, 28, 1), raw pixel values 0..255 as floats -> (N, num_classes)."""
    in_channels: int = 1
    num_classes: int = 10
    input_size: InputSize = 28
    weight_init: str = "torch"
    conv_implementation: str = "auto"  # of every convolution: "auto", "xla" or "banded" (jaxcnn.layers)
    act: Activation = nn.tanh

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.check_input(x)
        conv = functools.partial(Conv2d, weight_init=self.weight_init, implementation=self.conv_implementation)
        x = AvgPool(2, 2, name="pool1")(self.act(conv(self.in_channels, 6, 5, padding=2, name="conv1")(x)))
        x = AvgPool(2, 2, name="pool2")(self.act(conv(6, 16, 5, name="conv2")(x)))
        x = Flatten(name="view")(x)
        x = self.act(Linear(lenet_features(self.input_size, 2), 120, weight_init=self.weight_init, name="fc1")(x))
        x = self.act(Linear(120, 84, weight_init=self.weight_init, name="fc2")(x))
        return Linear(84, self.num_classes, weight_init=self.weight_init, name="fc3")(x)


@register_model("lenet5_classic", ModelConfig(
    recipe=dict(data="one dummy batch", optimizer="sgd", lr=0.01, batch_size=1, epochs=1)))  # notebook 004
class LeNet5Classic(CourseNet):
    """Notebook 004 `Net`: conv1 5x5, sigmoid, avg_pool2d(2), conv2 5x5, sigmoid, avg_pool2d(2),
    flatten, fc1 + sigmoid, fc2 + sigmoid, fc3.

    x: (N, 32, 32, 1) -> (N, num_classes)."""
    in_channels: int = 1
    num_classes: int = 10
    input_size: InputSize = 32
    weight_init: str = "torch"
    conv_implementation: str = "auto"  # of every convolution: "auto", "xla" or "banded" (jaxcnn.layers)
    act: Activation = nn.sigmoid

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.check_input(x)
        conv = functools.partial(Conv2d, weight_init=self.weight_init, implementation=self.conv_implementation)
        x = AvgPool(2)(self.act(conv(self.in_channels, 6, 5, name="conv1")(x)))
        x = AvgPool(2)(self.act(conv(6, 16, 5, name="conv2")(x)))
        x = Flatten()(x)
        x = self.act(Linear(lenet_features(self.input_size, 0), 120, weight_init=self.weight_init, name="fc1")(x))
        x = self.act(Linear(120, 84, weight_init=self.weight_init, name="fc2")(x))
        return Linear(84, self.num_classes, weight_init=self.weight_init, name="fc3")(x)
