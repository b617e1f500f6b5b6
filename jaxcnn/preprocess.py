"""The notebooks' preprocessing of uint8 pixels, as JAX functions, and the value range each one yields."""

import jax
import jax.numpy as jnp

# x: uint8 (or float) pixels 0..255, any shape -> float32 of the same shape.
PREPROCESS = {
    "raw": lambda x: jnp.asarray(x).astype(jnp.float32),  # notebook 002: pixel values 0..255 as floats
    "unit": lambda x: jnp.asarray(x).astype(jnp.float32) / 255.0,  # ToTensor
    "normalize": lambda x: (jnp.asarray(x).astype(jnp.float32) / 255.0 - 0.5) / 0.5,  # ToTensor + Normalize(0.5, 0.5)
}
# The (low, high) of each preprocessing's output.
RANGES = {"raw": (0.0, 255.0), "unit": (0.0, 1.0), "normalize": (-1.0, 1.0)}


def preprocess(name: str, pixels: jax.Array) -> jax.Array:
    """PREPROCESS[name](pixels), with an error naming the choices for an unknown name."""
    if name not in PREPROCESS:
        raise ValueError(f"unknown preprocessing {name!r}; choose one of {sorted(PREPROCESS)}")
    return PREPROCESS[name](pixels)
