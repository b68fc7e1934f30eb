"""`tf.nn`: activations and losses, written with TF's formulas so the kinks match TF and JAX."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from .core import apply
from .ops import _pair, _t, relu, sigmoid, softplus, tanh

__all__ = [
    "relu",
    "relu6",
    "elu",
    "leaky_relu",
    "sigmoid",
    "tanh",
    "softplus",
    "softmax",
    "log_softmax",
    "sigmoid_cross_entropy_with_logits",
    "softmax_cross_entropy_with_logits",
    "sparse_softmax_cross_entropy_with_logits",
    "l2_loss",
]


def relu6(features, name=None):
    return apply(
        lambda x: jnp.where(x > 0, jnp.where(x < 6, x, 6.0), 0.0).astype(x.dtype), [_t(features)]
    )


def elu(features, name=None):
    return apply(lambda x: jnp.where(x > 0, x, jnp.expm1(jnp.minimum(x, 0))), [_t(features)])


def leaky_relu(features, alpha=0.2, name=None):
    return apply(lambda x: jnp.where(x > 0, x, alpha * x), [_t(features)])


def _softmax(x, axis):
    # Shifting by the (constant) max changes nothing mathematically and avoids overflow.
    e = jnp.exp(x - lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True)))
    return e / jnp.sum(e, axis=axis, keepdims=True)


def _log_softmax(x, axis):
    shifted = x - lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=axis, keepdims=True))


def softmax(logits, axis=None, name=None):
    """`exp(logits) / sum(exp(logits))` along `axis` (the last by default)."""
    ax = -1 if axis is None else axis
    return apply(lambda x: _softmax(x, ax), [_t(logits)])


def log_softmax(logits, axis=None, name=None):
    ax = -1 if axis is None else axis
    return apply(lambda x: _log_softmax(x, ax), [_t(logits)])


def _sigmoid_xent(z, x):
    # TF's stable formula: max(x, 0) - x * z + log(1 + exp(-|x|)), with TF's selects.
    cond = x >= 0
    relu_x = jnp.where(cond, x, jnp.zeros_like(x))
    neg_abs = jnp.where(cond, -x, x)
    return relu_x - x * z + jnp.log1p(jnp.exp(neg_abs))


def sigmoid_cross_entropy_with_logits(labels=None, logits=None, name=None):
    """Elementwise logistic loss of `logits` against `labels` in [0, 1].

    Example:
      >>> tf.nn.sigmoid_cross_entropy_with_logits(labels=[1.0], logits=[0.0]).numpy()
      array([0.6931472], dtype=float32)
    """
    if labels is None or logits is None:
        raise ValueError("sigmoid_cross_entropy_with_logits needs both labels= and logits=.")
    logits = _t(logits)
    z, x = _pair(labels, logits)
    if tuple(z.shape) != tuple(x.shape):
        raise ValueError(
            f"logits and labels must have the same shape, got {tuple(x.shape)} and "
            f"{tuple(z.shape)}."
        )
    return apply(_sigmoid_xent, [z, x])


def softmax_cross_entropy_with_logits(labels, logits, axis=-1, name=None):
    z, x = _pair(labels, logits)
    return apply(lambda z, x: -jnp.sum(z * _log_softmax(x, axis), axis=axis), [z, x])


def sparse_softmax_cross_entropy_with_logits(labels=None, logits=None, name=None):
    idx = _t(labels)._value

    def loss(x):
        lsm = _log_softmax(x, -1)
        return -jnp.take_along_axis(lsm, idx[..., None].astype(jnp.int32), axis=-1)[..., 0]

    return apply(loss, [_t(logits)])


def l2_loss(t, name=None):
    return apply(lambda x: jnp.sum(x * x) / 2, [_t(t)])
