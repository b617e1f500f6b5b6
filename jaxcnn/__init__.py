"""jaxcnn: the convolutional networks of a PyTorch course as Flax linen modules (NHWC input).

    import jaxcnn
    model = jaxcnn.create_model("lenet5_mnist")
    variables = model.init(jax.random.key(0), jnp.zeros((1, *model.input_shape)))
    logits = model.apply(variables, images_nhwc)
"""

from jaxcnn import alexnet, convnets, lenet, vgg  # noqa: F401  (register the networks)
from jaxcnn import inspect  # noqa: F401  (jaxcnn.inspect: filters, activations, saliency, class models)
from jaxcnn.banded import banded_conv2d
from jaxcnn.arithmetic import conv_output_size, conv_params, padding_for, pool_output_size
from jaxcnn.convolution import conv2d_as_linear, conv2d_by_hand, extract_patches
from jaxcnn.filters import GAUSSIAN_BLUR, SHARPEN, SOBEL_X, SOBEL_Y, apply_filter, gaussian_blur, sharpen, sobel
from jaxcnn.layers import (AdaptiveAvgPool, AvgPool, BatchNorm, Conv1d, Conv2d, Conv3d, Dropout, Flatten, Linear,
                           MaxPool, adaptive_avg_pool, avg_pool, max_pool)
from jaxcnn.registry import CourseNet, create_model, list_models, register_model
from jaxcnn.summary import LayerCall, Summary, count_params, summary, trace_layers

__version__ = "0.1.0"
__all__ = [
    "AdaptiveAvgPool", "AvgPool", "BatchNorm", "Conv1d", "Conv2d", "Conv3d", "CourseNet", "Dropout", "Flatten",
    "GAUSSIAN_BLUR", "LayerCall", "Linear", "MaxPool", "SHARPEN", "SOBEL_X", "SOBEL_Y", "Summary",
    "adaptive_avg_pool", "apply_filter", "avg_pool", "banded_conv2d", "conv2d_as_linear", "conv2d_by_hand",
    "conv_output_size", "conv_params", "count_params", "create_model", "extract_patches", "gaussian_blur",
    "list_models", "max_pool",
    "padding_for", "pool_output_size", "register_model", "sharpen", "sobel", "summary", "trace_layers",
]
