"""The small conv nets of notebooks 000, 001, 003 and 004 as Flax NNX modules, written as their torch originals
(parity/originals/torch_models.py) are: the same attributes, the same nn.Sequential indices, the same forward.

Each takes NHWC input and its linen twin's arguments (jaxcnn.convnets), rngs last; new, it is in training mode.
"""

import jax
from flax import nnx

from jaxcnn import convnets
from jaxcnn.arithmetic import conv_output_size, pool_output_size
from jaxcnn.nnx._base import CourseNet, layer_makers
from jaxcnn.nnx._layers import BatchNorm, Dropout, Flatten, MaxPool, Sequential
from jaxcnn.registry import Activation, InputSize, hw, register_nnx


@register_nnx("two_conv_net")
class TwoConvNet(CourseNet):
    """Notebook 000 `MODEL`: conv_layers = [Conv(in,16,3,p=1), Conv(16,32,3,p=1)], flatten_layer = [Flatten],
    fc_layer = [Linear(32*H*W, num_classes)]. x (N, H, W, in_channels) -> (N, num_classes)."""
    linen = convnets.TwoConvNet

    def __init__(self, in_channels: int = 1, num_classes: int = 2, input_size: InputSize = 5,
                 weight_init: str = "torch", conv_implementation: str = "auto", *, rngs: nnx.Rngs):
        self.keep(locals())  # its arguments, as attributes (CourseNet.keep)
        conv, linear = layer_makers(weight_init, conv_implementation, rngs)
        h, w = hw(input_size)
        self.conv_layers = Sequential(conv(in_channels, 16, padding=1, kernel_size=3),
                                      conv(16, 32, padding=1, kernel_size=3))
        self.flatten_layer = Sequential(Flatten())
        self.fc_layer = Sequential(linear(32 * h * w, num_classes))

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.check_input(x)
        x = self.conv_layers(x)
        x = self.flatten_layer(x)
        return self.fc_layer(x)


@register_nnx("conv_relu_conv")
class ConvReluConv(CourseNet):
    """Notebook 001 `MyModel(in, out)`: conv_1 3x3, act, conv_2 3x3, any H, W >= 5.
    x (N, H, W, in_channels) -> (N, H-4, W-4, out_channels)."""
    linen = convnets.ConvReluConv
    fixed_size = False

    def __init__(self, in_channels: int = 3, out_channels: int = 64, input_size: InputSize = 28,
                 weight_init: str = "torch", conv_implementation: str = "auto", act: Activation = nnx.relu, *,
                 rngs: nnx.Rngs):
        self.keep(locals())  # its arguments, as attributes (CourseNet.keep)
        conv, _ = layer_makers(weight_init, conv_implementation, rngs)
        self.conv_1 = conv(in_channels, 32, (3, 3))
        self.conv_2 = conv(32, out_channels, (3, 3))
        self.act = act

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.check_input(x)
        x = self.conv_1(x)
        x = self.act(x)
        return self.conv_2(x)


@register_nnx("cnn_basic")
class CNNBasic(CourseNet):
    """Notebook 001 example 1 `CNN_Model(out)`: conv_1, act, conv_2, flatten, layer_1, act, layer_2.
    x (N, 28, 28, in_channels) -> (N, num_classes)."""
    linen = convnets.CNNBasic

    def __init__(self, in_channels: int = 3, num_classes: int = 5, input_size: InputSize = 28,
                 weight_init: str = "torch", conv_implementation: str = "auto", act: Activation = nnx.relu, *,
                 rngs: nnx.Rngs):
        self.keep(locals())  # its arguments, as attributes (CourseNet.keep)
        conv, linear = layer_makers(weight_init, conv_implementation, rngs)
        h, w = conv_output_size(conv_output_size(hw(input_size), 3), 3)
        self.conv_1 = conv(in_channels, 32, (3, 3))
        self.conv_2 = conv(32, 64, (3, 3))
        self.flatten = Flatten()
        self.act = act
        self.layer_1 = linear(64 * h * w, 128)
        self.layer_2 = linear(128, num_classes)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.check_input(x)
        x = self.conv_1(x)
        x = self.act(x)
        x = self.conv_2(x)
        x = self.flatten(x)
        x = self.layer_1(x)
        x = self.act(x)
        return self.layer_2(x)


@register_nnx("cnn_bn_dropout")
class CNNBatchNormDropout(CourseNet):
    """Notebook 001 example 2 `CNN_Model(in, out)`: conv = [Conv(bias=False), BatchNorm, act] x 2, flatten,
    fc = [Linear(64*24*24, 128), act, Dropout(dropout), Linear(128, num_classes)].
    x (N, 28, 28, in_channels) -> (N, num_classes)."""
    linen = convnets.CNNBatchNormDropout

    def __init__(self, in_channels: int = 3, num_classes: int = 10, input_size: InputSize = 28,
                 dropout: float = 0.5, weight_init: str = "torch", conv_implementation: str = "auto",
                 act: Activation = nnx.relu, *, rngs: nnx.Rngs):
        self.keep(locals())  # its arguments, as attributes (CourseNet.keep)
        conv, linear = layer_makers(weight_init, conv_implementation, rngs)
        h, w = conv_output_size(conv_output_size(hw(input_size), 3), 3)
        self.conv = Sequential(
            conv(in_channels, 32, (3, 3), bias=False),
            BatchNorm(32),
            act,
            conv(32, 64, (3, 3), bias=False),
            BatchNorm(64),
            act,
        )
        self.flatten = Flatten()
        self.fc = Sequential(
            linear(64 * h * w, 128),
            act,
            Dropout(dropout, rngs=rngs),
            linear(128, num_classes),
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.check_input(x)
        x = self.conv(x)
        x = self.flatten(x)
        return self.fc(x)


@register_nnx("mnist_cnn")
class MnistCNN(CourseNet):
    """Notebook 004 `CNN_model`: conv_stack = [Conv(1,32,3,p=1), MaxPool(2), act, Conv(32,32,3,p=1), MaxPool(2),
    act, Flatten, Linear(1568,100), act, Linear(100,10)]. x (N, 28, 28, 1) -> (N, num_classes)."""
    linen = convnets.MnistCNN

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: InputSize = 28,
                 weight_init: str = "torch", conv_implementation: str = "auto", act: Activation = nnx.relu, *,
                 rngs: nnx.Rngs):
        self.keep(locals())  # its arguments, as attributes (CourseNet.keep)
        conv, linear = layer_makers(weight_init, conv_implementation, rngs)
        h, w = pool_output_size(pool_output_size(hw(input_size), 2), 2)
        self.conv_stack = Sequential(
            conv(in_channels, 32, 3, padding=1),
            MaxPool(2),
            act,
            conv(32, 32, 3, padding=1),
            MaxPool(2),
            act,
            Flatten(),
            linear(h * w * 32, 100),
            act,
            linear(100, num_classes),
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.check_input(x)
        return self.conv_stack(x)


@register_nnx("cifar_conv_mlp")
class CifarConvMLP(CourseNet, Sequential):
    """Notebook 004 "conv layer = conv + activation": a bare nn.Sequential, so the network is a Sequential
    (`net[0].kernel` is '0.weight'): Conv2d(3,6,3), act, Flatten, Linear(5400,100), act, Linear(100,10).
    x (N, 32, 32, 3) -> (N, num_classes)."""
    linen = convnets.CifarConvMLP

    def __init__(self, in_channels: int = 3, num_classes: int = 10, input_size: InputSize = 32,
                 weight_init: str = "torch", conv_implementation: str = "auto", act: Activation = nnx.relu, *,
                 rngs: nnx.Rngs):
        self.keep(locals())  # its arguments, as attributes (CourseNet.keep)
        conv, linear = layer_makers(weight_init, conv_implementation, rngs)
        h, w = conv_output_size(hw(input_size), 3)
        super().__init__(
            conv(in_channels=in_channels, out_channels=6, kernel_size=3),
            act,
            Flatten(),
            linear(6 * h * w, 100),
            act,
            linear(100, num_classes),
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return super().__call__(self.check_input(x))


@register_nnx("sun_regressor")
class SunRegressor(CourseNet, Sequential):
    """Notebook 003: a bare nn.Sequential of three [Conv 3x3 'same', act, MaxPool(2)] blocks (32, 8, 4
    channels), Flatten, Linear(4096,128), act, Linear(128,2). x (N, 256, 256, 3), pixels in [0, 1] ->
    (N, num_classes) (the sun's x, y)."""
    linen = convnets.SunRegressor

    def __init__(self, in_channels: int = 3, num_classes: int = 2, input_size: InputSize = 256,
                 weight_init: str = "torch", conv_implementation: str = "auto", act: Activation = nnx.relu, *,
                 rngs: nnx.Rngs):
        self.keep(locals())  # its arguments, as attributes (CourseNet.keep)
        conv, linear = layer_makers(weight_init, conv_implementation, rngs)
        h, w = pool_output_size(pool_output_size(pool_output_size(hw(input_size), 2), 2), 2)
        super().__init__(
            conv(in_channels, 32, 3, padding="same"),
            act,
            MaxPool(2),  # (batch, 128, 128, 32)
            conv(32, 8, 3, padding="same"),
            act,
            MaxPool(2),  # (batch, 64, 64, 8)
            conv(8, 4, 3, padding="same"),
            act,
            MaxPool(2),  # (batch, 32, 32, 4)
            Flatten(),
            linear(4 * h * w, 128),  # (batch, 4096)
            act,
            linear(128, num_classes),
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return super().__call__(self.check_input(x))
