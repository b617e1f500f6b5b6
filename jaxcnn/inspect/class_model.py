"""Class-model visualisation (Simonyan et al., notebook 004): the image a network finds most like a class."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxcnn.filters import GAUSSIAN_BLUR, apply_filter


def blur_same(image: jax.Array) -> jax.Array:
    """The course's 5x5 Gaussian on each channel, edges replicated so the size stays: (H, W, C) -> (H, W, C)."""
    padded = jnp.pad(image, ((2, 2), (2, 2), (0, 0)), mode="edge")
    blurred = apply_filter(jnp.moveaxis(padded, -1, 0)[..., None], GAUSSIAN_BLUR)  # (C, H, W, 1)
    return jnp.moveaxis(blurred[..., 0], 0, -1).astype(image.dtype)


@functools.partial(jax.jit, static_argnames=("model", "shape", "steps", "blur_every", "clip_every"))
def class_model(model: nn.Module, variables, target: int | jax.Array, shape: tuple[int, int, int], steps: int = 200,
                learning_rate: float = 0.1, l2: float = 1e-3, blur_every: int = 0, clip_every: int = 0,
                clip_fraction: float = 0.1, value_range: tuple[float, float] | None = None) -> jax.Array:
    """Gradient ascent on score_target(I) - l2 * ||I||^2 from a zero image of `shape` (H, W, C) -> (H, W, C).

    score is the pre-softmax output. Every `blur_every` steps the image is blurred with the course's
    Gaussian; every `clip_every` steps pixels below clip_fraction of the largest |pixel| are set to 0;
    value_range clamps the image to the model's input range after each step. target may be traced
    (vmap over classes to draw all of them in one call).
    """
    def objective(image):
        return model.apply(variables, image[None])[0, target] - l2 * jnp.sum(image ** 2)

    def step(index, image):
        image = image + learning_rate * jax.grad(objective)(image)
        if blur_every:
            image = jax.lax.cond((index + 1) % blur_every == 0, blur_same, lambda im: im, image)
        if clip_every:
            small = jnp.abs(image) < clip_fraction * jnp.max(jnp.abs(image))
            image = jnp.where(((index + 1) % clip_every == 0) & small, 0.0, image)
        if value_range is not None:
            image = jnp.clip(image, *value_range)
        return image

    return jax.lax.fori_loop(0, steps, step, jnp.zeros(shape, jnp.float32))


def class_models(model: nn.Module, variables, classes, shape: tuple[int, int, int], **options) -> jax.Array:
    """class_model for each of `classes` (K,) at once: -> (K, H, W, C)."""
    run = functools.partial(class_model, model, variables, shape=shape, **options)
    return jax.vmap(run)(jnp.asarray(np.asarray(classes), jnp.int32))
