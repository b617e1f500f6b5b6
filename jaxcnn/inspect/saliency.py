"""Which pixels matter: occlusion, gradient saliency and guided backprop (weights frozen, eval mode).

Scores are the network's pre-softmax outputs; occlusion maps the softmax probability.
"""

import functools
from typing import Callable

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax.extend import core as jex


@jax.custom_vjp
def guided_relu(x: jax.Array) -> jax.Array:
    """ReLU whose backward passes only positive gradients, and only where the forward input was positive."""
    return jnp.maximum(x, 0)


def _guided_relu_fwd(x):
    return jnp.maximum(x, 0), x


def _guided_relu_bwd(x, g):
    return (jnp.where(x > 0, jnp.maximum(g, 0), jnp.zeros_like(g)),)


guided_relu.defvjp(_guided_relu_fwd, _guided_relu_bwd)


def _only_max_with_zero(jaxpr) -> bool:
    """The body of jax.nn.relu: one `max(x, 0)`, possibly inside one jit."""
    eqns = jaxpr.eqns
    if len(eqns) == 1 and eqns[0].primitive.name in ("jit", "pjit"):
        return _only_max_with_zero(eqns[0].params["jaxpr"].jaxpr)
    return len(eqns) == 1 and _is_max_with_zero(eqns[0])


def _is_max_with_zero(eqn) -> bool:
    return eqn.primitive.name == "max" and any(
        isinstance(v, jex.Literal) and jnp.ndim(v.val) == 0 and v.val == 0 for v in eqn.invars)


def _is_relu(eqn) -> bool:
    if eqn.primitive.name == "custom_jvp_call":
        return _only_max_with_zero(eqn.params["call_jaxpr"].jaxpr)
    return _is_max_with_zero(eqn)


def _evaluate(jaxpr, consts, *args):
    """Evaluates a jaxpr, computing every ReLU with guided_relu (recursing into nested jits)."""
    env = {}

    def read(var):
        return var.val if isinstance(var, jex.Literal) else env[var]

    env.update(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    for eqn in jaxpr.eqns:
        values = [read(v) for v in eqn.invars]
        if _is_relu(eqn):
            operands = [v for v, var in zip(values, eqn.invars) if not isinstance(var, jex.Literal)]
            outs = [guided_relu(operands[-1])]  # custom_jvp_call: (*consts, x); max: the non-zero side
        elif eqn.primitive.name in ("jit", "pjit"):
            inner = eqn.params["jaxpr"]
            outs = _evaluate(inner.jaxpr, inner.consts, *values)
        else:
            params = eqn.primitive.get_bind_params(eqn.params)
            subfuns, params = params if isinstance(params, tuple) else ((), params)  # older jax: (subfuns, params)
            outs = eqn.primitive.bind(*subfuns, *values, **params)
            outs = outs if eqn.primitive.multiple_results else [outs]
        env.update(zip(eqn.outvars, outs))
    return [read(v) for v in jaxpr.outvars]


def guided(fn: Callable) -> Callable:
    """fn with every ReLU (jax.nn.relu / nn.relu, or max(x, 0)) replaced by `guided_relu`.

    Works on any function, e.g. `lambda x: model.apply(variables, x)` of any registry network,
    without rewriting the network: fn is traced to a jaxpr and re-evaluated. ReLUs inside control
    flow (scan, cond, while) or custom_vjp functions are left as they are.
    """
    @functools.wraps(fn)
    def wrapped(*args):
        closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        outs = _evaluate(closed.jaxpr, closed.consts, *jax.tree_util.tree_leaves(args))
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), outs)

    return wrapped


def _class_score_sum(model: nn.Module, variables, classes: jax.Array, guided_relus: bool) -> Callable:
    def scores(x):
        return model.apply(variables, x)

    forward = guided(scores) if guided_relus else scores

    def total(x):
        logits = forward(x)
        if logits.ndim != 2:
            raise ValueError(f"saliency needs class scores (N, classes); {type(model).__name__} gives {logits.shape}")
        return jnp.take_along_axis(logits, classes[:, None], axis=1).sum()

    return total


@functools.partial(jax.jit, static_argnames=("model", "guided_relus"))
def input_gradients(model: nn.Module, variables, images: jax.Array, classes: jax.Array,
                    guided_relus: bool = False) -> jax.Array:
    """d score_c / d image for each image and its class: images (N, H, W, C), classes (N,) -> (N, H, W, C)."""
    classes = jnp.broadcast_to(jnp.asarray(classes, jnp.int32), images.shape[:1])
    return jax.grad(_class_score_sum(model, variables, classes, guided_relus))(images)


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
