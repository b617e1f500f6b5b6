"""The small conv nets of notebooks 000, 001, 003 and 004, named as their torch originals.

Submodule names follow the torch attributes ('conv_stack.0' -> 'conv_stack_0';
a bare nn.Sequential's '3' -> 'layers_3'), so a parameter tree reads like the
state_dict. All take NHWC input; `train=True` enables Dropout and BatchNorm
batch statistics.
"""

import functools

import jax
from flax import linen as nn

from jaxcnn.arithmetic import conv_output_size, pool_output_size
from jaxcnn.config import ModelConfig
from jaxcnn.layers import BatchNorm, Conv2d, Dropout, Flatten, Linear, MaxPool
from jaxcnn.registry import Activation, CourseNet, InputSize, hw, register_model


@register_model("two_conv_net", ModelConfig(torch_sequentials=("conv_layers", "flatten_layer", "fc_layer")))
class TwoConvNet(CourseNet):
    """Notebook 000 `MODEL`: two padded 3x3 convs (no activation), Flatten, Linear(32*H*W, 2).

    x: (N, H, W, in_channels) -> (N, num_classes)."""
    in_channels: int = 1
    num_classes: int = 2
    input_size: InputSize = 5
    weight_init: str = "torch"
    conv_implementation: str = "auto"  # of every convolution: "auto", "xla" or "banded" (jaxcnn.layers)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        conv = functools.partial(Conv2d, kernel_size=3, padding=1, weight_init=self.weight_init,
                                 implementation=self.conv_implementation)
        x = self.check_input(x)
        x = conv(self.in_channels, 16, name="conv_layers_0")(x)
        x = conv(16, 32, name="conv_layers_1")(x)
        x = Flatten(name="flatten_layer_0")(x)
        h, w = hw(self.input_size)
        return Linear(32 * h * w, self.num_classes, weight_init=self.weight_init, name="fc_layer_0")(x)


@register_model("conv_relu_conv", ModelConfig(loss="mse"))  # its output is a feature map
class ConvReluConv(CourseNet):
    """Notebook 001 `MyModel(in, out)`: conv_1 3x3 -> ReLU -> conv_2 3x3, any H, W >= 5.

    x: (N, H, W, in_channels) -> (N, H-4, W-4, out_channels)."""
    in_channels: int = 3
    out_channels: int = 64
    input_size: InputSize = 28  # only the example size: the network takes any H, W >= 5
    weight_init: str = "torch"
    conv_implementation: str = "auto"  # of every convolution: "auto", "xla" or "banded" (jaxcnn.layers)
    act: Activation = nn.relu
    fixed_size = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.check_input(x)
        x = self.act(Conv2d(self.in_channels, 32, 3, weight_init=self.weight_init,
            implementation=self.conv_implementation, name="conv_1")(x))
        return Conv2d(32, self.out_channels, 3, weight_init=self.weight_init, implementation=self.conv_implementation,
                      name="conv_2")(x)


@register_model("cnn_basic")
class CNNBasic(CourseNet):
    """Notebook 001 example 1 `CNN_Model(out)`: conv_1, ReLU, conv_2, Flatten, layer_1 + ReLU, layer_2.

    x: (N, 28, 28, 3) -> (N, num_classes)."""
    in_channels: int = 3
    num_classes: int = 5
    input_size: InputSize = 28
    weight_init: str = "torch"
    conv_implementation: str = "auto"  # of every convolution: "auto", "xla" or "banded" (jaxcnn.layers)
    act: Activation = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.check_input(x)
        x = self.act(Conv2d(self.in_channels, 32, 3, weight_init=self.weight_init,
            implementation=self.conv_implementation, name="conv_1")(x))
        x = Conv2d(32, 64, 3, weight_init=self.weight_init, implementation=self.conv_implementation, name="conv_2")(x)
        x = Flatten(name="flatten")(x)
        h, w = conv_output_size(conv_output_size(hw(self.input_size), 3), 3)
        x = self.act(Linear(64 * h * w, 128, weight_init=self.weight_init, name="layer_1")(x))
        return Linear(128, self.num_classes, weight_init=self.weight_init, name="layer_2")(x)


@register_model("cnn_bn_dropout", ModelConfig(torch_sequentials=("conv", "fc")))
class CNNBatchNormDropout(CourseNet):
    """Notebook 001 example 2 `CNN_Model(in, out)`: conv = [Conv(bias=False), BN, ReLU] x 2;
    fc = [Linear(36864, 128), ReLU, Dropout(0.5), Linear(128, out)].

    x: (N, 28, 28, in_channels) -> (N, num_classes)."""
    in_channels: int = 3
    num_classes: int = 10
    input_size: InputSize = 28
    dropout: float = 0.5
    weight_init: str = "torch"
    conv_implementation: str = "auto"  # of every convolution: "auto", "xla" or "banded" (jaxcnn.layers)
    act: Activation = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.check_input(x)
        x = Conv2d(self.in_channels, 32, 3, bias=False, weight_init=self.weight_init,
            implementation=self.conv_implementation, name="conv_0")(x)
        x = self.act(BatchNorm(32, name="conv_1")(x, train))
        x = Conv2d(32, 64, 3, bias=False, weight_init=self.weight_init, implementation=self.conv_implementation,
                   name="conv_3")(x)
        x = self.act(BatchNorm(64, name="conv_4")(x, train))
        x = Flatten(name="flatten")(x)
        h, w = conv_output_size(conv_output_size(hw(self.input_size), 3), 3)
        x = self.act(Linear(64 * h * w, 128, weight_init=self.weight_init, name="fc_0")(x))
        x = Dropout(self.dropout, name="fc_2")(x, train)
        return Linear(128, self.num_classes, weight_init=self.weight_init, name="fc_3")(x)


@register_model("mnist_cnn", ModelConfig(
    preprocess="normalize", torch_sequentials=("conv_stack",),
    recipe=dict(data="mnist", optimizer="adam", lr=1e-3, batch_size=64, epochs=10)))  # notebook 004
class MnistCNN(CourseNet):
    """Notebook 004 `CNN_model`: conv_stack = [Conv(1,32,3,p=1), MaxPool(2), ReLU, Conv(32,32,3,p=1),
    MaxPool(2), ReLU, Flatten, Linear(1568,100), ReLU, Linear(100,10)].

    x: (N, 28, 28, 1), Normalize(0.5, 0.5) of [0, 1] pixels -> (N, num_classes)."""
    in_channels: int = 1
    num_classes: int = 10
    input_size: InputSize = 28
    weight_init: str = "torch"
    conv_implementation: str = "auto"  # of every convolution: "auto", "xla" or "banded" (jaxcnn.layers)
    act: Activation = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.check_input(x)
        x = Conv2d(self.in_channels, 32, 3, padding=1, weight_init=self.weight_init,
            implementation=self.conv_implementation, name="conv_stack_0")(x)
        x = self.act(MaxPool(2, name="conv_stack_1")(x))
        x = Conv2d(32, 32, 3, padding=1, weight_init=self.weight_init, implementation=self.conv_implementation,
                   name="conv_stack_3")(x)
        x = self.act(MaxPool(2, name="conv_stack_4")(x))
        x = Flatten(name="conv_stack_6")(x)
        h, w = pool_output_size(pool_output_size(hw(self.input_size), 2), 2)
        x = self.act(Linear(32 * h * w, 100, weight_init=self.weight_init, name="conv_stack_7")(x))
        return Linear(100, self.num_classes, weight_init=self.weight_init, name="conv_stack_9")(x)


@register_model("cifar_conv_mlp", ModelConfig(torch_sequentials=("",)))
class CifarConvMLP(CourseNet):
    """Notebook 004 "conv layer = conv + activation": a bare nn.Sequential of Conv2d(3,6,3), ReLU,
    Flatten, Linear(5400,100), ReLU, Linear(100,10).

    x: (N, 32, 32, 3) -> (N, num_classes)."""
    in_channels: int = 3
    num_classes: int = 10
    input_size: InputSize = 32
    weight_init: str = "torch"
    conv_implementation: str = "auto"  # of every convolution: "auto", "xla" or "banded" (jaxcnn.layers)
    act: Activation = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.check_input(x)
        x = self.act(Conv2d(self.in_channels, 6, 3, weight_init=self.weight_init,
            implementation=self.conv_implementation, name="layers_0")(x))
        x = Flatten(name="layers_2")(x)
        h, w = conv_output_size(hw(self.input_size), 3)
        x = self.act(Linear(6 * h * w, 100, weight_init=self.weight_init, name="layers_3")(x))
        return Linear(100, self.num_classes, weight_init=self.weight_init, name="layers_5")(x)


@register_model("sun_regressor", ModelConfig(
    preprocess="unit", loss="mse", torch_sequentials=("",),
    recipe=dict(data="sun", optimizer="adam_l2", lr=1e-3, weight_decay=1e-3, batch_size=32, epochs=5),
    gradient_check=dict(model_kwargs=dict(input_size=64))))  # notebook 003; 256x256 has near-kinks
class SunRegressor(CourseNet):
    """Notebook 003: a bare nn.Sequential of three [Conv 3x3 'same', ReLU, MaxPool(2)] blocks
    (32, 8, 4 channels), Flatten, Linear(4096,128), ReLU, Linear(128,2); trained with MSE.

    x: (N, 256, 256, 3), pixels in [0, 1] -> (N, num_classes) (the sun's x, y)."""
    in_channels: int = 3
    num_classes: int = 2
    input_size: InputSize = 256
    weight_init: str = "torch"
    conv_implementation: str = "auto"  # of every convolution: "auto", "xla" or "banded" (jaxcnn.layers)
    act: Activation = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.check_input(x)
        size = hw(self.input_size)
        for index, (cin, cout) in zip((0, 3, 6), ((self.in_channels, 32), (32, 8), (8, 4))):
            x = self.act(Conv2d(cin, cout, 3, padding="same", weight_init=self.weight_init,
                implementation=self.conv_implementation, name=f"layers_{index}")(x))
            x = MaxPool(2, name=f"layers_{index + 2}")(x)
            size = pool_output_size(size, 2)
        x = Flatten(name="layers_9")(x)
        x = self.act(Linear(4 * size[0] * size[1], 128, weight_init=self.weight_init, name="layers_10")(x))
        return Linear(128, self.num_classes, weight_init=self.weight_init, name="layers_12")(x)
