"""Keras's own trainer (`fit`, `evaluate`, `predict`) differentiated by our engine.

Keras's JAX trainer computes each training step's gradients with one call of JAX's
`value_and_grad` on its stateless loss function; the `jax` its module sees is a stand-in whose
`value_and_grad` is `transforms.value_and_grad`. Everything else (jit, batching, callbacks,
metrics) is Keras's.
"""

from __future__ import annotations

import types

import jax
from keras.src.backend.jax import trainer as _keras_trainer

from ... import api


class _JaxWithOurGradient(types.ModuleType):
    """`jax` for Keras's trainer module: `value_and_grad` is ours, the rest is JAX's."""

    value_and_grad = staticmethod(api.value_and_grad)

    def __getattr__(self, name):
        return getattr(jax, name)


def install():
    """Route the trainer's gradients to our engine (once per process)."""
    if not isinstance(_keras_trainer.jax, _JaxWithOurGradient):
        _keras_trainer.jax = _JaxWithOurGradient("jax")
