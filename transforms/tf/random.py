"""`tf.random`: normal and uniform samples from a global, seedable stream (not TF's numbers)."""

from __future__ import annotations

import threading

import jax
import numpy as np

from .ops import _shape_of
from .tensor import Tensor

_lock = threading.Lock()
_key = [jax.random.key(0)]


def set_seed(seed: int) -> None:
    """Restart the global stream from `seed` (TF's `tf.random.set_seed`)."""
    with _lock:
        _key[0] = jax.random.key(int(seed))


def _next_key(seed):
    if seed is not None:
        return jax.random.key(int(seed))
    with _lock:
        _key[0], sub = jax.random.split(_key[0])
    return sub


def normal(shape, mean=0.0, stddev=1.0, dtype=np.float32, seed=None, name=None) -> Tensor:
    """Samples from N(mean, stddev²) of the given shape (float32 by default).

    Example:
      >>> tf.random.normal([2, 3]).shape
      TensorShape([2, 3])
    """
    z = jax.random.normal(_next_key(seed), _shape_of(shape), dtype)
    return Tensor((z * stddev + mean).astype(dtype))


def uniform(shape, minval=0, maxval=None, dtype=np.float32, seed=None, name=None) -> Tensor:
    """Samples uniform on [minval, maxval) (maxval 1 for floats)."""
    maxval = 1.0 if maxval is None else maxval
    u = jax.random.uniform(_next_key(seed), _shape_of(shape), dtype, minval, maxval)
    return Tensor(u.astype(dtype))
