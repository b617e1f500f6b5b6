"""The notebooks' preprocessing of uint8 pixels, as JAX functions, and the value range each one yields."""

import jax
import jax.numpy as jnp

def _floats(x) -> jax.Array:
    """Pixels as floats: float32, or float64 where they are float64 already (a float64 run computes in float64)."""
    x = jnp.asarray(x)
    return x if x.dtype in (jnp.float32, jnp.float64) else x.astype(jnp.float32)


# x: uint8 (or float) pixels 0..255, any shape -> float32 (float64 for float64 x) of the same shape.
PREPROCESS = {
    "raw": _floats,  # notebook 002: pixel values 0..255 as floats
    "unit": lambda x: _floats(x) / 255.0,  # ToTensor
    "normalize": lambda x: (_floats(x) / 255.0 - 0.5) / 0.5,  # ToTensor + Normalize(0.5, 0.5)
}
# The (low, high) of each preprocessing's output.
RANGES = {"raw": (0.0, 255.0), "unit": (0.0, 1.0), "normalize": (-1.0, 1.0)}


def preprocessor(name: str, mean=None, std=None):
    """PREPROCESS[name], or with `mean` and `std` (per channel, of [0, 1] pixels) torchvision's ToTensor +
    Normalize(mean, std): x -> (x / 255 - mean) / std (ImageNet's for pretrained weights)."""
    if mean is None and std is None:
        if name not in PREPROCESS:
            raise ValueError(f"unknown preprocessing {name!r}; choose one of {sorted(PREPROCESS)}")
        return PREPROCESS[name]
    if mean is None or std is None:
        raise ValueError("give both mean and std (per channel), or neither")
    mean, std = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)
    return lambda x: (_floats(x) / 255.0 - mean) / std


def preprocess(name: str, pixels: jax.Array) -> jax.Array:
    """PREPROCESS[name](pixels), with an error naming the choices for an unknown name."""
    return preprocessor(name)(pixels)
