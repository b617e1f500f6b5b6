"""jaxcnn: the convolutional networks of a PyTorch course as Flax linen modules (NHWC input).

    import jaxcnn
    model = jaxcnn.create_model("lenet5_mnist")
    variables = model.init(jax.random.key(0), jnp.zeros((1, *model.input_shape)))
    logits = model.apply(variables, images_nhwc)

    variables = jaxcnn.load_torch_weights(model, "lenet.safetensors")   # torch-keyed weights, no torch needed
    state = jaxcnn.torch_state_dict(model, variables)                   # and back: {'conv1.weight': ...}

    net = jaxcnn.create_model("lenet5_mnist", api="nnx", rngs=nnx.Rngs(0))   # Flax NNX, written as torch's:
    net.conv1.kernel; net.eval(); logits = net(images_nhwc)                  # jaxcnn.nnx.LeNet5
"""

from jaxcnn import alexnet, convnets, lenet, vgg  # noqa: F401  (register the networks)
from jaxcnn import nnx  # noqa: F401  (register their NNX networks: jaxcnn.nnx)
from jaxcnn import imagenet, inspect  # noqa: F401  (jaxcnn.inspect: filters, activations, saliency, class models)
from jaxcnn.banded import banded_conv2d
from jaxcnn.config import ModelConfig
from jaxcnn.interchange import (ConversionError, load_torch_weights, read_torch_safetensors, torch_keys,
                                torch_state_dict, write_torch_safetensors)
from jaxcnn.nnx import linen_twin, linen_variables, load_linen_variables, nnx_from_linen
from jaxcnn.pretrained import About, load_pretrained, read_about
from jaxcnn.preprocess import PREPROCESS, preprocess
from jaxcnn.arithmetic import conv_output_size, conv_params, padding_for, pool_output_size
from jaxcnn.convolution import conv2d_as_linear, conv2d_by_hand, extract_patches
from jaxcnn.filters import GAUSSIAN_BLUR, SHARPEN, SOBEL_X, SOBEL_Y, apply_filter, gaussian_blur, sharpen, sobel
from jaxcnn.layers import (AdaptiveAvgPool, AdaptiveMaxPool, AvgPool, BatchNorm, Conv1d, Conv2d, Conv3d, Dropout, Flatten, Linear,
                           MaxPool, adaptive_avg_pool, adaptive_max_pool, avg_pool, max_pool)
from jaxcnn.registry import (APIS, CourseNet, config_of, create_model, list_models, model_config, register_model,
                             register_nnx)
from jaxcnn.summary import LayerCall, Summary, count_params, summary, trace_layers



__version__ = "0.1.0"
__all__ = [
    "APIS", "About", "AdaptiveAvgPool", "AdaptiveMaxPool", "AvgPool", "BatchNorm", "Conv1d", "Conv2d", "Conv3d", "ConversionError", "CourseNet",
    "Dropout", "Flatten", "GAUSSIAN_BLUR", "LayerCall", "Linear", "MaxPool", "ModelConfig", "PREPROCESS", "SHARPEN",
    "SOBEL_X", "SOBEL_Y", "Summary", "adaptive_avg_pool", "adaptive_max_pool", "apply_filter", "avg_pool", "banded_conv2d", "config_of",
    "conv2d_as_linear", "conv2d_by_hand", "conv_output_size", "conv_params", "count_params", "create_model",
    "extract_patches", "gaussian_blur", "linen_twin", "linen_variables", "list_models", "load_linen_variables",
    "load_pretrained", "load_torch_weights", "max_pool", "model_config", "nnx_from_linen", "padding_for", "pool_output_size", "preprocess", "read_about", "read_torch_safetensors", "register_model", "register_nnx", "sharpen", "sobel",
    "summary", "torch_keys", "torch_state_dict", "trace_layers", "write_torch_safetensors",
]
