"""`tf.random`: normal and uniform samples from a global, seedable stream (not TF's numbers)."""

from __future__ import annotations

import threading

import jax
import numpy as np

from .ops import _shape_of
from .tensor import Tensor
from .variable import Variable

_lock = threading.Lock()
# The stream's state is a Variable, so that inside tf.function it is lifted like any other
# state: each call of the compiled program draws new numbers and advances the stream. It is
# made on first use (making a key compiles a little program: not at import time).
_state: list[Variable] = []


def _stream() -> Variable:
    if not _state:
        key = np.asarray(jax.random.key_data(jax.random.key(0)))
        _state.append(Variable(key, trainable=False, name="global_rng"))
    return _state[0]


def set_seed(seed: int) -> None:
    """Restart the global stream from `seed` (TF's `tf.random.set_seed`)."""
    with _lock:
        _stream().assign(np.asarray(jax.random.key_data(jax.random.key(int(seed)))))


def _next_key(seed):
    if seed is not None:
        return jax.random.key(int(seed))
    with _lock:
        state = _stream()
        key, sub = jax.random.split(jax.random.wrap_key_data(state._current()))
        state._write(jax.random.key_data(key))
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
