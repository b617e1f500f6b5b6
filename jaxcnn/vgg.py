"""VGG-16/19 (configurations D and E), with and without BatchNorm, named as torchvision's.

features_N are the convolutions (and BatchNorms) at torchvision's `features.N`;
classifier_0/3/6 are its Linears. AdaptiveAvgPool to 7x7 lets any input of at
least 32x32 through, as in torch.
"""

import functools

import jax
from flax import linen as nn

from jaxcnn.config import ModelConfig
from jaxcnn.layers import AdaptiveAvgPool, BatchNorm, Conv2d, Dropout, Flatten, Linear, MaxPool
from jaxcnn.registry import Activation, CourseNet, InputSize, register_model

CONFIGS = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(CourseNet):
    """torchvision's VGG: x (N, H, W, 3), H, W >= 32 (224 in the paper) -> (N, num_classes)."""
    config: str = "vgg16"
    batch_norm: bool = False
    in_channels: int = 3
    num_classes: int = 1000
    input_size: InputSize = 224  # the example size: AdaptiveAvgPool takes any H, W >= 32
    dropout: float = 0.5
    weight_init: str = "torch"
    conv_implementation: str = "auto"  # of every convolution: "auto", "xla" or "banded" (jaxcnn.layers)
    act: Activation = nn.relu
    fixed_size = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.check_input(x)
        channels, index = self.in_channels, 0
        for v in CONFIGS[self.config]:
            if v == "M":
                x = MaxPool(2, 2, name=f"features_{index}")(x)
                index += 1
                continue
            x = Conv2d(channels, v, 3, padding=1, weight_init=self.weight_init,
                implementation=self.conv_implementation, name=f"features_{index}")(x)
            if self.batch_norm:
                x = BatchNorm(v, name=f"features_{index + 1}")(x, train)
            x = self.act(x)
            channels, index = v, index + (3 if self.batch_norm else 2)
        x = AdaptiveAvgPool((7, 7), name="avgpool")(x)
        x = Flatten(name="flatten")(x)
        x = self.act(Linear(channels * 7 * 7, 4096, weight_init=self.weight_init, name="classifier_0")(x))
        x = Dropout(self.dropout, name="classifier_2")(x, train)
        x = self.act(Linear(4096, 4096, weight_init=self.weight_init, name="classifier_3")(x))
        x = Dropout(self.dropout, name="classifier_5")(x, train)
        return Linear(4096, self.num_classes, weight_init=self.weight_init, name="classifier_6")(x)


for _config in CONFIGS:
    register_model(_config, ModelConfig(torch_sequentials=("features", "classifier")))(
        functools.partial(VGG, config=_config, batch_norm=False))
    # Gradients at 32x32: at the default 64x64 the BatchNorm variants' inputs have near-kinks.
    register_model(_config + "_bn", ModelConfig(torch_sequentials=("features", "classifier"),
                                                gradient_check=dict(size=32)))(
        functools.partial(VGG, config=_config, batch_norm=True))
