"""Keras's own trainer (`fit`, `evaluate`, `predict`) differentiated by our engine.

Keras's JAX trainer computes each training step's gradients with one call of JAX's
`value_and_grad` on its stateless loss function; the `jax` its module sees is a stand-in whose
`value_and_grad` is `transforms.value_and_grad`. Everything else (jit, batching, callbacks,
metrics) is Keras's.

A model whose `train_step(self, data)` is TensorFlow's kind (a `tf.GradientTape` inside, as in
TF's "Customizing what happens in fit" guide) gets a train function of its own: each batch goes
to that `train_step` as our Tensors, eagerly with `run_eagerly=True`, otherwise under our
`tf.function`, where the Keras Variables it reads and writes are lifted like `tf.Variable`s.
Keras's JAX-style `train_step(self, state, data)` keeps Keras's path.
"""

from __future__ import annotations

import inspect
import types

import jax
from jax import tree_util
from keras.src.backend.jax import trainer as _keras_trainer

from ... import api
from ..tensor import Tensor

JAXTrainer = _keras_trainer.JAXTrainer


class _JaxWithOurGradient(types.ModuleType):
    """`jax` for Keras's trainer module: `value_and_grad` is ours, the rest is JAX's."""

    value_and_grad = staticmethod(api.value_and_grad)

    def __getattr__(self, name):
        return getattr(jax, name)


def tf_style_train_step(model) -> bool:
    """Whether `model` overrides `train_step` with TensorFlow's signature `(self, data)`."""
    step = type(model).train_step
    if step is JAXTrainer.train_step:
        return False
    params = [
        p
        for p in inspect.signature(step).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return len(params) == 2


_original_make_train_function = JAXTrainer.make_train_function
_original_get_jax_state = JAXTrainer._get_jax_state


def _make_train_function(self, force=False):
    if not tf_style_train_step(self):
        return _original_make_train_function(self, force)
    if self.train_function is not None and not force:
        return
    from ..function import function

    step = self.train_step
    if not self.run_eagerly and self.jit_compile:
        step = function(step)

    def one_step(state, data):
        # `state` (the values Keras's loop hands around) is not used: the step reads and
        # updates the Variables themselves. It returns their new values, which Keras's loop
        # assigns back at the end of the epoch.
        logs = step(tree_util.tree_map(Tensor, data))
        return logs, _original_get_jax_state(self, True, True, True, True)

    self.train_function = self._make_function(one_step)


def _get_jax_state(self, *args, purge_model_variables=False, **kwargs):
    # A TF-style step reads the Variables' own values, so `fit` must not drop them.
    if purge_model_variables and tf_style_train_step(self):
        purge_model_variables = False
    return _original_get_jax_state(
        self, *args, purge_model_variables=purge_model_variables, **kwargs
    )


def install():
    """Route the trainer's gradients to our engine (once per process)."""
    if not isinstance(_keras_trainer.jax, _JaxWithOurGradient):
        _keras_trainer.jax = _JaxWithOurGradient("jax")
        JAXTrainer.make_train_function = _make_train_function
        JAXTrainer._get_jax_state = _get_jax_state
