"""Looking inside a network (notebook 004): filters, activation maps, features, saliency, class-model images.

Every tool takes a jaxcnn model, its variables and NHWC images in the model's input space (already
preprocessed), runs in eval mode, and returns arrays; `python -m train.inspect` draws them.

    from jaxcnn import inspect
    maps = inspect.activations(model, variables, images, "conv_stack_0")       # (N, H, W, C)
    sal = inspect.gradient_saliency(model, variables, images, labels)          # (N, H, W)
    occ = inspect.occlusion(model, variables, images[0], label, size=7, stride=2)
"""

from jaxcnn.inspect.activations import activations, conv_layers, features, layer_names, nearest_neighbours
from jaxcnn.inspect.class_model import blur_same, class_model, class_models
from jaxcnn.inspect.grid import channel_filter_images, filter_images, make_grid
from jaxcnn.inspect.saliency import (guided_backprop, guided_model, guided_relu, input_gradients, gradient_saliency,
                                     occlusion, occlusion_masks)

__all__ = [
    "activations", "blur_same", "channel_filter_images", "class_model", "class_models", "conv_layers", "features",
    "filter_images", "gradient_saliency", "guided_backprop", "guided_model", "guided_relu", "input_gradients",
    "layer_names", "make_grid", "nearest_neighbours", "occlusion", "occlusion_masks",
]
