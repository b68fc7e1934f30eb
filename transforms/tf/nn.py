"""`tf.nn`: activations and losses, written with TF's formulas so the kinks match TF and JAX."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .core import apply
from .linalg import l2_normalize  # noqa: F401
from .ops import _axis, _pair, _t, gather, relu, sigmoid, softplus, tanh
from .tensor import is_float

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
    "l2_normalize",
    "moments",
    "batch_normalization",
    "dropout",
    "conv1d",
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "max_pool",
    "avg_pool",
    "embedding_lookup",
    "gelu",
    "selu",
    "silu",
    "swish",
]


def relu6(features, name=None):
    return apply(
        lambda x: jnp.where(x > 0, jnp.where(x < 6, x, 6.0), 0.0).astype(x.dtype), [_t(features)]
    )


def elu(features, name=None):
    return apply(lambda x: jnp.where(x > 0, x, jnp.expm1(jnp.minimum(x, 0))), [_t(features)])


def leaky_relu(features, alpha=0.2, name=None):
    return apply(lambda x: jnp.where(x > 0, x, alpha * x), [_t(features)])


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _softmax(x, axis):
    # Shifting by the (constant) max changes nothing mathematically and avoids overflow.
    e = jnp.exp(x - lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True)))
    return e / jnp.sum(e, axis=axis, keepdims=True)


def _softmax_fwd(x, axis):
    s = _softmax(x, axis)
    return s, s


def _softmax_bwd(axis, s, g):
    # TF's registered gradient of Softmax, in its order of operations, so that float32
    # gradients print as TensorFlow's do: (g - sum(g * s)) * s.
    return ((g - jnp.sum(g * s, axis=axis, keepdims=True)) * s,)


_softmax.defvjp(_softmax_fwd, _softmax_bwd)


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


def gelu(features, approximate=False, name=None):
    """`x * Φ(x)` (erf form), or TF's tanh approximation with `approximate=True`."""

    def f(x):
        if approximate:
            c = np.sqrt(2.0 / np.pi).astype(x.dtype)
            return 0.5 * x * (1.0 + jnp.tanh(c * (x + 0.044715 * x**3)))
        return 0.5 * x * (1.0 + jax.scipy.special.erf(x / np.sqrt(2.0).astype(x.dtype)))

    return apply(f, [_t(features)])


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(features, name=None):
    """`scale * elu(x, alpha)` with TF's constants."""
    return apply(
        lambda x: _SELU_SCALE * jnp.where(x > 0, x, _SELU_ALPHA * jnp.expm1(jnp.minimum(x, 0))),
        [_t(features)],
    )


def silu(features, beta=1.0, name=None):
    """`x * sigmoid(beta * x)` (also `tf.nn.swish`)."""
    return apply(lambda x: x * lax.logistic(beta * x), [_t(features)])


swish = silu


def moments(x, axes, shift=None, keepdims=False, name=None):
    """`(mean, variance)` of `x` over `axes`."""
    ax = _axis(axes)

    def f(v):
        mean = jnp.mean(v, axis=ax, keepdims=True)
        # TF: the variance of the data around a mean it does not differentiate through twice.
        var = jnp.mean(jnp.square(v - lax.stop_gradient(mean)), axis=ax, keepdims=True)
        if not keepdims:
            mean, var = jnp.squeeze(mean, ax), jnp.squeeze(var, ax)
        return mean, var

    return apply(f, [_t(x)])


def batch_normalization(x, mean, variance, offset, scale, variance_epsilon, name=None):
    """`scale * (x - mean) / sqrt(variance + eps) + offset` (TF's formula; offset and scale
    may be None)."""
    ins = [_t(x), _t(mean), _t(variance)]
    has_offset, has_scale = offset is not None, scale is not None
    if has_offset:
        ins.append(_t(offset))
    if has_scale:
        ins.append(_t(scale))

    def f(v, m, var, *rest):
        rest = list(rest)
        off = rest.pop(0) if has_offset else None
        sc = rest.pop(0) if has_scale else None
        inv = lax.rsqrt(var + variance_epsilon)
        if sc is not None:
            inv = inv * sc
        shift = off - m * inv if off is not None else -m * inv
        return v * inv + shift

    return apply(f, ins)


def dropout(x, rate, noise_shape=None, seed=None, name=None):
    """Zero each entry with probability `rate` and scale the rest by `1 / (1 - rate)`.

    The mask comes from `tf.random` (TF's seeding rules, not TF's numbers).
    """
    from . import random

    x = _t(x)
    r = float(rate)
    if not 0 <= r < 1:
        raise ValueError(
            f"`rate` must be a scalar tensor or a float in the range [0, 1). Received: rate={rate}"
        )
    if r == 0:
        return apply(lambda v: v, [x])
    shape = tuple(x.shape) if noise_shape is None else tuple(int(d) for d in noise_shape)
    u = random.uniform(shape, dtype=x.dtype if is_float(x.dtype) else np.float32, seed=seed)
    keep = u._value >= r
    scale = 1.0 / (1.0 - r)
    return apply(lambda v: v * scale * keep.astype(v.dtype), [x])


def _tuple(v, n, name):
    if isinstance(v, int):
        return (v,) * n
    v = tuple(int(a) for a in v)
    if len(v) == n:
        return v
    if len(v) == n + 2:  # TF's [1, s, s, 1] form (NHWC)
        return v[1:-1]
    if len(v) == 1:
        return v * n
    raise ValueError(f"{name} should be of length 1, {n} or {n + 2}; got {v}.")


def _padding(padding, n):
    if isinstance(padding, str):
        p = padding.upper()
        if p not in ("SAME", "VALID"):
            raise ValueError(f"padding must be 'SAME', 'VALID' or explicit; got {padding!r}.")
        return p
    pads = [tuple(int(a) for a in p) for p in padding]
    return pads[1:-1] if len(pads) == n + 2 else pads


def _conv(x, filters, strides, padding, dilations, n, data_format):
    channels_last = data_format is None or data_format.endswith("C")
    spatial = "DHW"[-n:] if n > 1 else "W"
    lhs = "N" + spatial + "C" if channels_last else "NC" + spatial
    rhs = spatial + "IO"
    dn = (lhs, rhs, lhs)
    st = _tuple(strides, n, "strides")
    dl = _tuple(1 if dilations is None else dilations, n, "dilations")
    pad = _padding(padding, n)
    a, w = _pair(x, filters)
    return apply(
        lambda v, k: lax.conv_general_dilated(v, k, st, pad, rhs_dilation=dl, dimension_numbers=dn),
        [a, w],
    )


def conv1d(input, filters, stride, padding, data_format="NWC", dilations=None, name=None):
    """1-D convolution (cross-correlation) of `[batch, width, in]` with `[width, in, out]`."""
    return _conv(input, filters, stride, padding, dilations, 1, data_format)


def conv2d(input, filters, strides, padding, data_format="NHWC", dilations=None, name=None):
    """2-D convolution (cross-correlation) of `[batch, h, w, in]` with `[h, w, in, out]`."""
    return _conv(input, filters, strides, padding, dilations, 2, data_format)


def _pool(x, ksize, strides, padding, n, data_format, kind):
    channels_last = data_format is None or data_format.endswith("C")
    k = _tuple(ksize, n, "ksize")
    s = _tuple(strides, n, "strides")
    if channels_last:
        window, step = (1, *k, 1), (1, *s, 1)
    else:
        window, step = (1, 1, *k), (1, 1, *s)
    pad = _padding(padding, n)
    if not isinstance(pad, str):
        raise ValueError("pooling takes padding 'SAME' or 'VALID'.")

    def f(v):
        if kind == "max":
            init = -jnp.inf if is_float(v.dtype) else jnp.iinfo(v.dtype).min
            return lax.reduce_window(v, jnp.asarray(init, v.dtype), lax.max, window, step, pad)
        total = lax.reduce_window(v, jnp.asarray(0, v.dtype), lax.add, window, step, pad)
        # TF averages over the window's entries inside the input (padding not counted).
        ones = jnp.ones(v.shape, v.dtype)
        count = lax.reduce_window(ones, jnp.asarray(0, v.dtype), lax.add, window, step, pad)
        return total / count

    return apply(f, [_t(x)])


def max_pool2d(input, ksize, strides, padding, data_format="NHWC", name=None):
    """The maximum over each `ksize` window of `[batch, h, w, channels]`."""
    return _pool(input, ksize, strides, padding, 2, data_format, "max")


def avg_pool2d(input, ksize, strides, padding, data_format="NHWC", name=None):
    """The mean over each `ksize` window (only entries inside the input count)."""
    return _pool(input, ksize, strides, padding, 2, data_format, "avg")


def max_pool(input, ksize, strides, padding, data_format=None, name=None):
    """N-d max pooling; the rank of `input` sets N."""
    return _pool(input, ksize, strides, padding, _t(input).ndim - 2, data_format, "max")


def avg_pool(input, ksize, strides, padding, data_format=None, name=None):
    """N-d average pooling; the rank of `input` sets N."""
    return _pool(input, ksize, strides, padding, _t(input).ndim - 2, data_format, "avg")


def embedding_lookup(params, ids, max_norm=None, name=None):
    """Rows of `params` at integer `ids` (the gradient is dense here, IndexedSlices in TF)."""
    if isinstance(params, list | tuple):
        if len(params) != 1:
            raise NotImplementedError("embedding_lookup over sharded params is not supported.")
        params = params[0]
    out = gather(params, ids)
    if max_norm is not None:
        out = _clip_rows(out, float(max_norm))
    return out


def _clip_rows(t, max_norm):
    def f(v):
        norm = jnp.sqrt(jnp.sum(v * v, axis=-1, keepdims=True))
        return v * jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-30))

    return apply(f, [t])
