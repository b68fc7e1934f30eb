"""`tf.random`: normal and uniform samples from seedable streams, with TF's seeding rules
(not TF's numbers).

TF's rules: with no seed at all, each process draws new numbers; `tf.random.set_seed(s)` makes
the sequence of draws that follows repeatable (calling it again restarts it); an op-level
`seed=` gives that op its own repeatable sequence (successive calls still differ), derived from
the global seed, or from a fixed default one when none was set.
"""

from __future__ import annotations

import secrets
import threading

import jax
import numpy as np

from .core import created_variables
from .ops import _shape_of
from .tensor import Tensor
from .variable import Variable

__all__ = ["normal", "set_seed", "uniform"]

_lock = threading.Lock()
# Stream states are Variables, so that inside tf.function they are lifted like any other
# state: each call of the compiled program draws new numbers and advances the stream. They are
# made on first use (making a key compiles a little program: not at import time).
_global: list[Variable] = []
_per_op_seed: dict[int, Variable] = {}
_global_seed: list[int | None] = [None]
# TF's default graph seed, used for op seeds when no global seed was set.
_DEFAULT_GLOBAL_SEED = 87654321


def _key_data(seed: int, op_seed: int | None = None):
    key = jax.random.key(int(seed) % (1 << 31))
    if op_seed is not None:
        key = jax.random.fold_in(key, int(op_seed) % (1 << 31))
    return np.asarray(jax.random.key_data(key))


def _stream(op_seed=None) -> Variable:
    # The library's own state: made lazily, possibly while tf.function traces a later call,
    # which must not count as the user's function creating a Variable.
    with created_variables(None):
        return _make_stream(op_seed)


def _make_stream(op_seed) -> Variable:
    if op_seed is None:
        if not _global:
            seed = _global_seed[0]
            # No global seed: a fresh one per process, as TF draws new numbers in each run.
            start = _key_data(secrets.randbits(31) if seed is None else seed)
            _global.append(Variable(start, trainable=False, name="global_rng"))
        return _global[0]
    op_seed = int(op_seed)
    if op_seed not in _per_op_seed:
        base = _DEFAULT_GLOBAL_SEED if _global_seed[0] is None else _global_seed[0]
        _per_op_seed[op_seed] = Variable(
            _key_data(base, op_seed), trainable=False, name=f"rng_seed_{op_seed}"
        )
    return _per_op_seed[op_seed]


def set_seed(seed) -> None:
    """Set the global seed (TF's `tf.random.set_seed`): the draws after it repeat each time it
    is called with the same seed; op-level seeds restart too. `None` goes back to unseeded.

    Example:
      >>> tf.random.set_seed(1); a = tf.random.normal([2])
      >>> tf.random.set_seed(1); b = tf.random.normal([2])   # a == b
    """
    with _lock:
        _global_seed[0] = None if seed is None else int(seed)
        if seed is None:
            start = _key_data(secrets.randbits(31))
        else:
            start = _key_data(int(seed))
        _stream().assign(start)
        base = _DEFAULT_GLOBAL_SEED if seed is None else int(seed)
        for op_seed, var in _per_op_seed.items():
            var.assign(_key_data(base, op_seed))


def _next_key(seed):
    with _lock:
        state = _stream(seed)
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
