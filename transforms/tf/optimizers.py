"""`tf.optimizers.SGD` and `Adam` (Keras 3 update rules) as Optax gradient transformations.

Slots (momenta, Adam's moments) and the step counter are non-trainable Variables, so that an
optimizer step inside `tf.function` is lifted into the compiled program like any other state.
"""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .ops import _t
from .tensor import Tensor
from .variable import Variable


def keras_sgd(learning_rate, momentum=0.0, nesterov=False) -> optax.GradientTransformation:
    """SGD as Keras writes it: `m = momentum * m - lr * g`; `w += m` (Nesterov:
    `w += momentum * m - lr * g`); without momentum `w -= lr * g`."""

    def init(params):
        return (
            {"m": jax.tree.map(lambda p: jnp.zeros(p.shape, p.dtype), params)} if momentum else {}
        )

    def update(grads, state, params=None):
        if not momentum:
            return jax.tree.map(lambda g: -(g * learning_rate).astype(g.dtype), grads), state
        m = jax.tree.map(lambda m, g: m * momentum - g * learning_rate, state["m"], grads)
        if nesterov:
            upd = jax.tree.map(lambda m, g: m * momentum - g * learning_rate, m, grads)
        else:
            upd = m
        return upd, {"m": m}

    return optax.GradientTransformation(init, update)


def keras_adam(learning_rate, beta_1, beta_2, epsilon, step) -> optax.GradientTransformation:
    """Adam as Keras writes it: epsilon is added to sqrt(v) and the bias corrections are folded
    into the step size, `alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)` (t = `step`)."""

    def init(params):
        zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, p.dtype), params)
        return {"m": zeros, "v": zeros}

    def update(grads, state, params=None):
        def one(g, m, v):
            t = jnp.asarray(step, g.dtype)
            alpha = learning_rate * jnp.sqrt(1 - beta_2**t) / (1 - beta_1**t)
            m = m + (g - m) * (1 - beta_1)
            v = v + (jnp.square(g) - v) * (1 - beta_2)
            return -(m * alpha) / (jnp.sqrt(v) + epsilon), m, v

        out = jax.tree.map(one, grads, state["m"], state["v"])
        upd = jax.tree.map(lambda o: o[0], out, is_leaf=lambda x: isinstance(x, tuple))
        m = jax.tree.map(lambda o: o[1], out, is_leaf=lambda x: isinstance(x, tuple))
        v = jax.tree.map(lambda o: o[2], out, is_leaf=lambda x: isinstance(x, tuple))
        return upd, {"m": m, "v": v}

    return optax.GradientTransformation(init, update)


class Optimizer:
    """Shared machinery: per-variable slot Variables, validation before any update."""

    _slot_names: tuple[str, ...] = ()

    def __init__(self, learning_rate, name):
        self.learning_rate = learning_rate
        self.name = name
        count_dtype = jnp.int64 if jax.config.jax_enable_x64 else jnp.int32
        self.iterations = Variable(jnp.zeros((), count_dtype), trainable=False, name="iteration")
        self._slots: dict[int, dict[str, Variable]] = {}

    def _lr(self):
        lr = self.learning_rate
        if callable(lr):
            lr = lr(self.iterations.read_value())
        return lr._value if isinstance(lr, Tensor) else lr

    def _transform(self, step) -> optax.GradientTransformation:
        raise NotImplementedError

    def apply_gradients(self, grads_and_vars, name=None):
        """Update each Variable from its gradient; pairs whose gradient is None are skipped.

        Example:
          >>> opt = tf.optimizers.SGD(learning_rate=0.1)
          >>> opt.apply_gradients(zip(grads, [w, b]))
        """
        pairs = [(g, v) for g, v in grads_and_vars if g is not None]
        for g, v in pairs:
            if not isinstance(v, Variable):
                raise TypeError(f"apply_gradients needs tf.Variable, got {type(v).__name__}.")
            g = _t(g)
            if tuple(g.shape) != tuple(v.shape):
                raise ValueError(
                    f"Gradient of shape {tuple(g.shape)} for variable {v.name!r} of shape "
                    f"{tuple(v.shape)}."
                )
        if not pairs:
            return self.iterations
        step = self.iterations._current() + 1
        tx = self._transform(step)
        grads = [_t(g)._value.astype(v.dtype) for g, v in pairs]
        params = [v._current() for _, v in pairs]
        states = [self._slot_state(v, tx) for _, v in pairs]
        state = jax.tree.map(lambda *xs: list(xs), *states) if states[0] else {}
        updates, new_state = tx.update(grads, state, params)
        new_params = optax.apply_updates(params, updates)
        # Everything is computed before anything is written: a failure changes nothing.
        for i, (_, v) in enumerate(pairs):
            v._write(new_params[i].astype(v.dtype))
            for slot, var in self._slots[id(v)].items():
                var._write(new_state[slot][i])
        self.iterations._write(step)
        return self.iterations

    def _slot_state(self, v, tx):
        slots = self._slots.get(id(v))
        if slots is None:
            names = tx.init(jax.ShapeDtypeStruct(v.shape, v.dtype)).keys()
            slots = self._slots[id(v)] = {
                k: Variable(np.zeros(v.shape, v.dtype), trainable=False, name=f"{v._name}/{k}")
                for k in names
            }
        return {k: var._current() for k, var in slots.items()}

    def minimize(self, loss, var_list, tape=None):
        """Compute the gradient of `loss` (a callable, or a tensor with `tape`) and apply it."""
        from .tape import GradientTape

        if callable(loss):
            with GradientTape() as tape:
                value = loss()
        else:
            if tape is None:
                raise ValueError("minimize with a tensor loss needs the tape that computed it.")
            value = loss
        var_list = list(var_list() if callable(var_list) else var_list)
        grads = tape.gradient(value, var_list)
        return self.apply_gradients(zip(grads, var_list, strict=True))


class SGD(Optimizer):
    """Gradient descent with optional (Nesterov) momentum, Keras's update rule, on Optax.

    Example:
      >>> opt = tf.optimizers.SGD(learning_rate=0.1, momentum=0.9)
      >>> opt.apply_gradients(zip(grads, variables))
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, name="SGD", **kwargs):
        super().__init__(learning_rate, name)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"`momentum` must be a float between [0, 1], got {momentum}.")
        self.momentum, self.nesterov = momentum, nesterov

    def _transform(self, step):
        return keras_sgd(self._lr(), self.momentum, self.nesterov)


class Adam(Optimizer):
    """Adam with Keras's update rule (epsilon outside the bias correction), on Optax.

    Example:
      >>> opt = tf.optimizers.Adam(learning_rate=1e-3)
      >>> opt.apply_gradients(zip(grads, variables))
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-7,
        amsgrad=False,
        name="Adam",
        **kwargs,
    ):
        if amsgrad:
            raise NotImplementedError("Adam(amsgrad=True) is not supported; use amsgrad=False.")
        super().__init__(learning_rate, name)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon

    def _transform(self, step):
        return keras_adam(self._lr(), self.beta_1, self.beta_2, self.epsilon, step)


optimizers = SimpleNamespace(SGD=SGD, Adam=Adam, Optimizer=Optimizer)
