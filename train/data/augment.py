"""Training-time augmentation of uint8 image batches, inside the jitted step (the data stays on the devices).

    'none'       the images as they are
    'flip'       torchvision's RandomHorizontalFlip(): each image mirrored with probability 1/2
    'crop_flip'  RandomCrop(size, padding=4) then RandomHorizontalFlip(): the CIFAR-10 recipe; the image padded by
                 4 black pixels on each side and a window of its own size cut at a uniform offset

and, for image folders streamed from disk, on the input pipeline's workers (train.data.pipeline):

    'random_resized_crop'  RandomResizedCrop(size) + RandomHorizontalFlip(), torchvision's ImageNet recipe
"""

import jax
import jax.numpy as jnp

HOST_AUGMENTATIONS = ("random_resized_crop",)
AUGMENTATIONS = ("none", "flip", "crop_flip", *HOST_AUGMENTATIONS)
CROP_PADDING = 4


def _flip(images: jax.Array, key: jax.Array) -> jax.Array:
    mirrored = jax.random.bernoulli(key, 0.5, (images.shape[0],))
    return jnp.where(mirrored[:, None, None, None], images[:, :, ::-1], images)


def _crop(images: jax.Array, key: jax.Array, padding: int = CROP_PADDING) -> jax.Array:
    n, h, w, c = images.shape
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(key, (n, 2), 0, 2 * padding + 1)
    cut = lambda image, offset: jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))  # noqa: E731
    return jax.vmap(cut)(padded, offsets)


def augment_batch(kind: str, images: jax.Array, key: jax.Array) -> jax.Array:
    """images (N, H, W, C), any dtype -> the same shape and dtype, augmented as `kind` says with draws from key."""
    if kind == "none":
        return images
    if kind not in AUGMENTATIONS or kind in HOST_AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {kind!r} on the devices; choose one of "
                         f"{[a for a in AUGMENTATIONS if a not in HOST_AUGMENTATIONS]}")
    crop_key, flip_key = jax.random.split(key)
    if kind == "crop_flip":
        images = _crop(images, crop_key)
    return _flip(images, flip_key)
