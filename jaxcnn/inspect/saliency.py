"""Which pixels matter: occlusion, gradient saliency and guided backprop (weights frozen, eval mode).

Scores are the network's pre-softmax outputs; occlusion maps the softmax probability.
"""

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxcnn.registry import CourseNet


@jax.custom_vjp
def guided_relu(x: jax.Array) -> jax.Array:
    """ReLU whose backward passes only positive gradients, and only where the forward input was positive."""
    return jnp.maximum(x, 0)


def _guided_relu_fwd(x):
    return jnp.maximum(x, 0), x


def _guided_relu_bwd(x, g):
    return (jnp.where(x > 0, jnp.maximum(g, 0), jnp.zeros_like(g)),)


guided_relu.defvjp(_guided_relu_fwd, _guided_relu_bwd)


def guided_model(model: nn.Module) -> nn.Module:
    """`model` with its ReLUs computed by `guided_relu`: `model.clone(act=guided_relu)`.

    A network names its nonlinearity in an `act` field (every registry network does, as
    `create_model(name, act=...)`). Networks whose `act` is not a ReLU (LeNet's tanh and sigmoid) and
    registry networks without one (no nonlinearity at all) have nothing to guide and come back as they
    are, as torch's guided backprop hooks only nn.ReLU.
    """
    fields = {f.name for f in dataclasses.fields(model)}
    if "act" not in fields:
        if isinstance(model, CourseNet):
            return model
        raise ValueError(f"guided backprop swaps a network's ReLUs through its `act` field; {type(model).__name__} "
                         "has none: give it a field `act: Callable = nn.relu` and call self.act where it calls nn.relu")
    return model.clone(act=guided_relu) if model.act in (jax.nn.relu, guided_relu) else model


def _class_score_sum(model: nn.Module, variables, classes: jax.Array) -> Callable:
    def total(x):
        logits = model.apply(variables, x)
        if logits.ndim != 2:
            raise ValueError(f"saliency needs class scores (N, classes); {type(model).__name__} gives {logits.shape}")
        return jnp.take_along_axis(logits, classes[:, None], axis=1).sum()

    return total


@functools.partial(jax.jit, static_argnames=("model", "guided_relus"))
def input_gradients(model: nn.Module, variables, images: jax.Array, classes: jax.Array,
                    guided_relus: bool = False) -> jax.Array:
    """d score_c / d image for each image and its class: images (N, H, W, C), classes (N,) -> (N, H, W, C)."""
    classes = jnp.broadcast_to(jnp.asarray(classes, jnp.int32), images.shape[:1])
    model = guided_model(model) if guided_relus else model
    return jax.grad(_class_score_sum(model, variables, classes))(images)


def gradient_saliency(model: nn.Module, variables, images: jax.Array, classes: jax.Array) -> jax.Array:
    """max over channels of |d score_c / d image|: images (N, H, W, C), classes (N,) -> (N, H, W)."""
    return jnp.abs(input_gradients(model, variables, images, classes)).max(axis=-1)


def guided_backprop(model: nn.Module, variables, images: jax.Array, classes: jax.Array) -> jax.Array:
    """d score_c / d image through guided ReLUs: images (N, H, W, C), classes (N,) -> (N, H, W, C)."""
    return input_gradients(model, variables, images, classes, guided_relus=True)


def occlusion_masks(height: int, width: int, size: int, stride: int) -> jax.Array:
    """One boolean mask per patch position, row-major: (out_h * out_w, height, width), True inside the patch.

    out_h = (height - size) // stride + 1 (and out_w alike): positions where the patch fits.
    """
    if not 1 <= size <= min(height, width) or stride < 1:
        raise ValueError(f"patch size must be in 1..{min(height, width)} and stride >= 1, got {size}, {stride}")
    tops = jnp.arange(0, height - size + 1, stride)
    lefts = jnp.arange(0, width - size + 1, stride)
    rows = (jnp.arange(height) >= tops[:, None]) & (jnp.arange(height) < tops[:, None] + size)  # (out_h, H)
    cols = (jnp.arange(width) >= lefts[:, None]) & (jnp.arange(width) < lefts[:, None] + size)  # (out_w, W)
    return (rows[:, None, :, None] & cols[None, :, None, :]).reshape(-1, height, width)


@functools.partial(jax.jit, static_argnames=("model", "size", "stride", "batch_size"))
def occlusion(model: nn.Module, variables, image: jax.Array, target: int, size: int, stride: int,
              fill: float = 0.0, batch_size: int = 256) -> jax.Array:
    """The probability of class `target` with a (size x size) patch set to `fill`, for each patch position.

    image (H, W, C) -> (out_h, out_w), out = (H - size) // stride + 1. All positions are one batched
    computation (in batches of batch_size images), not a loop of forwards.
    """
    height, width = image.shape[:2]
    masks = occlusion_masks(height, width, size, stride)

    def probability(mask):
        occluded = jnp.where(mask[:, :, None], jnp.asarray(fill, image.dtype), image)
        return jax.nn.softmax(model.apply(variables, occluded[None])[0])[target]

    probabilities = jax.lax.map(probability, masks, batch_size=batch_size)
    return probabilities.reshape((height - size) // stride + 1, (width - size) // stride + 1)
