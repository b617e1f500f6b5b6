"""What the NNX source written by `parity.port` calls as `layers.X`: jaxcnn's NNX layers with torch's arguments,
and the very functions jaxcnn.layers gives the linen source (one copy of torch's arithmetic).

    from jaxcnn.nnx import layers

    self.conv1 = layers.Conv2d(3, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False, rngs=rngs)
    x = layers.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
"""

from jaxcnn.attention import scaled_dot_product_attention
from jaxcnn.functional import conv, flatten, normalize_over_batch
from jaxcnn.nnx._containers import ModuleDict, ModuleList, NamedSequential
from jaxcnn.nnx._layers import (AdaptiveAvgPool, AdaptiveMaxPool, AvgPool, BatchNorm, Conv1d, Conv2d, Conv3d, Dropout,
                                Flatten, Linear, MaxPool, Sequential)
from jaxcnn.nnx._torch_layers import (Buffer, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d, GroupNorm,
                                      LayerNorm, PReLU, StochasticDepth)
from jaxcnn.pooling import adaptive_avg_pool, adaptive_max_pool, avg_pool, max_pool
from jaxcnn.torch_layers import group_norm, interpolate, layer_norm, pad, prelu
from jaxcnn.transposed import conv_transpose

__all__ = [
    "AdaptiveAvgPool", "AdaptiveMaxPool", "AvgPool", "BatchNorm", "Buffer", "Conv1d", "Conv2d", "Conv3d",
    "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "Dropout", "Flatten", "GroupNorm", "LayerNorm", "Linear",
    "MaxPool", "ModuleDict", "ModuleList", "NamedSequential", "PReLU", "Sequential", "StochasticDepth",
    "adaptive_avg_pool", "adaptive_max_pool", "avg_pool", "conv", "conv_transpose", "flatten", "group_norm",
    "interpolate", "layer_norm", "max_pool", "normalize_over_batch", "pad", "prelu", "scaled_dot_product_attention",
]
