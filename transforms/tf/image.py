"""`tf.image`: the basic image ops training code uses, on `[height, width, channels]` images
or `[batch, height, width, channels]` batches, with TF's formulas."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from .core import apply
from .ops import _shape_of, _t, cast
from .tensor import is_float

_METHODS = {
    "bilinear": "linear",
    "nearest": "nearest",
    "bicubic": "cubic",
    "lanczos3": "lanczos3",
    "lanczos5": "lanczos5",
}


class ResizeMethod:
    """TF's names for `tf.image.resize` methods."""

    BILINEAR = "bilinear"
    NEAREST_NEIGHBOR = "nearest"
    BICUBIC = "bicubic"
    LANCZOS3 = "lanczos3"
    LANCZOS5 = "lanczos5"


def resize(
    images, size, method="bilinear", preserve_aspect_ratio=False, antialias=False, name=None
):
    """Images resized to `size = [new_height, new_width]` (TF2's half-pixel-centre sampling);
    the result is float32 except for "nearest", which keeps the dtype."""
    x = _t(images)
    if preserve_aspect_ratio:
        raise NotImplementedError("tf.image.resize with preserve_aspect_ratio is not supported.")
    if method not in _METHODS:
        raise ValueError(f"Resize method is not implemented: {method}")
    h, w = _shape_of(size)
    kind = _METHODS[method]
    if not is_float(x.dtype) and method != "nearest":
        x = cast(x, np.float32)

    def f(v):
        shape = (*v.shape[:-3], h, w, v.shape[-1])
        if kind == "nearest":
            # TF2's nearest: the source pixel floor((i + 0.5) * scale), half-pixel centres.
            rows = np.minimum(np.floor((np.arange(h) + 0.5) * v.shape[-3] / h), v.shape[-3] - 1)
            cols = np.minimum(np.floor((np.arange(w) + 0.5) * v.shape[-2] / w), v.shape[-2] - 1)
            return jnp.take(
                jnp.take(v, rows.astype(np.int32), axis=-3), cols.astype(np.int32), axis=-2
            )
        return jax.image.resize(v, shape, kind, antialias=antialias)

    return apply(f, [x])


def flip_left_right(image):
    """The image mirrored along its width."""
    return apply(lambda v: jnp.flip(v, axis=-2), [_t(image)])


def flip_up_down(image):
    """The image mirrored along its height."""
    return apply(lambda v: jnp.flip(v, axis=-3), [_t(image)])


def adjust_contrast(images, contrast_factor):
    """`(x - mean) * contrast_factor + mean`, the mean per channel over height and width."""
    x = _t(images)
    c = float(contrast_factor)

    def f(v):
        mean = jnp.mean(v, axis=(-3, -2), keepdims=True)
        return ((v - mean) * c + mean).astype(v.dtype)

    return apply(f, [cast(x, np.float32) if not is_float(x.dtype) else x])


def per_image_standardization(image):
    """`(x - mean) / max(stddev, 1 / sqrt(N))` per image, over its N = h * w * c entries."""
    x = _t(image)
    x = cast(x, np.float32) if not is_float(x.dtype) else x

    def f(v):
        n = math.prod(v.shape[-3:])
        mean = jnp.mean(v, axis=(-3, -2, -1), keepdims=True)
        std = jnp.std(v, axis=(-3, -2, -1), keepdims=True)
        return (v - mean) / jnp.maximum(std, 1.0 / np.sqrt(n).astype(v.dtype))

    return apply(f, [x])


def rgb_to_grayscale(images, name=None):
    """The luma `0.2989 R + 0.587 G + 0.114 B`, keeping a channel axis of size 1."""
    weights = np.array([0.2989, 0.587, 0.114])
    return apply(
        lambda v: jnp.sum(v * weights.astype(v.dtype), axis=-1, keepdims=True), [_t(images)]
    )


__all__ = [
    "ResizeMethod",
    "adjust_contrast",
    "flip_left_right",
    "flip_up_down",
    "per_image_standardization",
    "resize",
    "rgb_to_grayscale",
]
