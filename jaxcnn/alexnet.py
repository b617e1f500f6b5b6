"""AlexNet as torchvision builds it (notebook 004 visualises its first-layer filters)."""

import jax
from flax import linen as nn

from jaxcnn.config import ModelConfig
from jaxcnn.layers import AdaptiveAvgPool, Conv2d, Dropout, Flatten, Linear, MaxPool
from jaxcnn.registry import Activation, CourseNet, InputSize, register_model

# (torchvision index, out channels, kernel, stride, padding, index of the max-pool after it or None)
_CONVS = [(0, 64, 11, 4, 2, 2), (3, 192, 5, 1, 2, 5), (6, 384, 3, 1, 1, None), (8, 256, 3, 1, 1, None),
          (10, 256, 3, 1, 1, 12)]


@register_model("alexnet", ModelConfig(torch_sequentials=("features", "classifier")))
class AlexNet(CourseNet):
    """torchvision's AlexNet: x (N, H, W, 3), H, W >= 63 (224 usually) -> (N, num_classes).

    features_0/3/6/8/10 are the convolutions, classifier_1/4/6 the Linears.
    """
    in_channels: int = 3
    num_classes: int = 1000
    input_size: InputSize = 224  # the example size: AdaptiveAvgPool takes any H, W >= 63
    dropout: float = 0.5
    weight_init: str = "torch"
    conv_implementation: str = "auto"  # of every convolution: "auto", "xla" or "banded" (jaxcnn.layers)
    act: Activation = nn.relu
    fixed_size = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = self.check_input(x)
        channels = self.in_channels
        for index, out, kernel, stride, padding, pool in _CONVS:
            x = Conv2d(channels, out, kernel, stride, padding, weight_init=self.weight_init,
                       implementation=self.conv_implementation, name=f"features_{index}")(x)
            x = self.act(x)
            if pool is not None:
                x = MaxPool(3, 2, name=f"features_{pool}")(x)
            channels = out
        x = AdaptiveAvgPool((6, 6), name="avgpool")(x)
        x = Flatten(name="flatten")(x)
        x = Dropout(self.dropout, name="classifier_0")(x, train)
        x = self.act(Linear(channels * 6 * 6, 4096, weight_init=self.weight_init, name="classifier_1")(x))
        x = Dropout(self.dropout, name="classifier_3")(x, train)
        x = self.act(Linear(4096, 4096, weight_init=self.weight_init, name="classifier_4")(x))
        return Linear(4096, self.num_classes, weight_init=self.weight_init, name="classifier_6")(x)
