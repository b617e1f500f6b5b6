"""Flax NNX networks and layers written as their torch originals are: torch's attribute names, torch's arithmetic.

    from flax import nnx
    import jaxcnn

    net = jaxcnn.create_model("mnist_cnn", api="nnx", rngs=nnx.Rngs(0))   # jaxcnn.nnx.MnistCNN
    net.conv_stack[0].kernel                 # nnx.Param (3, 3, 1, 32): torch's conv_stack.0.weight, as HWIO
    net.eval(); logits = net(images_nhwc)    # net.train(): dropout on, BatchNorm statistics updated in place

The layers (`jaxcnn.nnx.Conv2d`, `BatchNorm`, `MaxPool`, `Sequential`, ...) take torch's arguments and compute
with `jaxcnn.functional` and `jaxcnn.pooling`, as jaxcnn's linen layers do; each registry network has an NNX
class here whose `nnx.state` paths are its torch state_dict keys (`state_dict_keys`), and a linen twin
(`linen_twin`) whose variables convert both ways (`linen_variables`, `load_linen_variables`, `nnx_from_linen`).
"""

from jaxcnn.nnx._base import CourseNet, linen_twin
from jaxcnn.nnx._layers import (AdaptiveAvgPool, AdaptiveMaxPool, AvgPool, BatchNorm, Conv1d, Conv2d, Conv3d,
                                ConvNd, Dropout, Flatten, Linear, MaxPool, Sequential)
from jaxcnn.nnx._convnets import (CifarConvMLP, CNNBasic, CNNBatchNormDropout, ConvReluConv, MnistCNN,
                                  SunRegressor, TwoConvNet)
from jaxcnn.nnx._lenet import LeNet5, LeNet5Classic
from jaxcnn.nnx._torchvision import VGG, AlexNet
from jaxcnn.nnx._variables import linen_variables, load_linen_variables, nnx_from_linen, state_dict_keys

__all__ = [
    "AdaptiveAvgPool", "AdaptiveMaxPool", "AlexNet", "AvgPool", "BatchNorm", "CNNBasic", "CNNBatchNormDropout",
    "CifarConvMLP", "Conv1d", "Conv2d", "Conv3d", "ConvNd", "ConvReluConv", "CourseNet", "Dropout", "Flatten",
    "LeNet5", "LeNet5Classic", "Linear", "MaxPool", "MnistCNN", "Sequential", "SunRegressor", "TwoConvNet", "VGG",
    "linen_twin", "linen_variables", "load_linen_variables", "nnx_from_linen", "state_dict_keys",
]
