"""torch.nn.functional.scaled_dot_product_attention, with torch's axis order (..., L, E)."""

import math

import jax
import jax.numpy as jnp


def scaled_dot_product_attention(query: jax.Array, key: jax.Array, value: jax.Array,
                                 attn_mask: jax.Array | None = None, is_causal: bool = False,
                                 scale: float | None = None) -> jax.Array:
    """softmax(query @ key^T * scale + mask) @ value, as torch computes it (no dropout).

    Arguments:
        query: (..., L, E); key: (..., S, E); value: (..., S, Ev); leading axes broadcast.
        attn_mask: a boolean mask (True: attend) or an additive float one, broadcasting to (..., L, S).
        is_causal: attend only to positions at or before one's own (the lower triangle).
        scale: the factor of the scores; default 1 / sqrt(E).
    Returns:
        (..., L, Ev).
    """
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = query @ jnp.swapaxes(key, -1, -2) * scale  # (..., L, S)
    if is_causal:
        length, source = scores.shape[-2:]
        scores = jnp.where(jnp.tril(jnp.ones((length, source), bool)), scores, -jnp.inf)
    if attn_mask is not None:
        scores = jnp.where(attn_mask, scores, -jnp.inf) if attn_mask.dtype == jnp.bool_ else scores + attn_mask
    return jax.nn.softmax(scores, axis=-1) @ value
