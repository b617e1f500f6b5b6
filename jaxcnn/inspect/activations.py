"""What the layers compute: any named layer's output, the embedding before the classifier, nearest neighbours."""

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.traverse_util import flatten_dict

from jaxcnn.layers import ConvNd, Linear
from jaxcnn.summary import trace_layers


def _sample_shape(model: nn.Module, images_shape: Sequence[int] | None) -> tuple[int, ...]:
    return (1, *images_shape[1:]) if images_shape is not None else (1, *model.input_shape)


def layer_names(model: nn.Module, images_shape: Sequence[int] | None = None) -> list[str]:
    """Every submodule call in order, as '/'-joined paths ('conv_stack_0', 'features_3', ...)."""
    _, calls = trace_layers(model, _sample_shape(model, images_shape))
    return ["/".join(call.path) for call in calls]


def conv_layers(model: nn.Module, images_shape: Sequence[int] | None = None) -> list[str]:
    """The 2-D convolutions in call order (the first is the one whose filters look like image patches)."""
    _, calls = trace_layers(model, _sample_shape(model, images_shape))
    return ["/".join(call.path) for call in calls if issubclass(call.layer, ConvNd) and len(call.output_shape) == 4]


def activations(model: nn.Module, variables, images: jax.Array, layers: str | Sequence[str]):
    """Outputs of named layers (eval mode), from Flax's captured intermediates.

    images (N, H, W, C) -> for one name the layer's output, e.g. (N, H', W', C') for a conv;
    for a list of names a dict name -> output. Names as `layer_names(model)`.
    """
    wanted = [layers] if isinstance(layers, str) else list(layers)
    known = layer_names(model, images.shape)
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ValueError(f"no layer named {unknown} in {type(model).__name__}; its layers: {known}")

    def capture(module: nn.Module, method_name: str) -> bool:
        return method_name == "__call__" and "/".join(module.path) in wanted

    _, state = model.apply(variables, images, capture_intermediates=capture, mutable=["intermediates"])
    flat = flatten_dict(state["intermediates"], sep="/")
    outputs = {name: flat[f"{name}/__call__"][0] for name in wanted}
    return outputs[wanted[0]] if isinstance(layers, str) else outputs


def features(model: nn.Module, variables, images: jax.Array) -> jax.Array:
    """The last hidden layer's output, i.e. the input of the final Linear: images (N, H, W, C) -> (N, D)."""
    inputs = []

    def grab(next_fun, args, kwargs, context):
        if isinstance(context.module, Linear) and context.method_name == "__call__":
            inputs.append(args[0])
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(grab):
        model.apply(variables, images)
    if not inputs:
        raise ValueError(f"{type(model).__name__} has no Linear layer, so no embedding before a classifier")
    return inputs[-1]


def nearest_neighbours(query: jax.Array, bank: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """The k rows of bank (M, ...) nearest to query (...) in Euclidean distance, nearest first.

    Returns (indices (k,), distances (k,)). Images are compared as flat vectors (pixel space),
    embeddings as they are (feature space).
    """
    bank = jnp.reshape(bank, (bank.shape[0], -1))
    query = jnp.reshape(query, (-1,))
    if query.shape[0] != bank.shape[1]:
        raise ValueError(f"query has {query.shape[0]} values, the bank's rows {bank.shape[1]}")
    if not 1 <= k <= bank.shape[0]:
        raise ValueError(f"k must be in 1..{bank.shape[0]}, got {k}")
    squared = jnp.sum((bank - query) ** 2, axis=1)
    negative, indices = jax.lax.top_k(-squared, k)
    return indices, jnp.sqrt(jnp.maximum(-negative, 0.0))
