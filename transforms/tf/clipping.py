"""TF ops that clip, pad, and guard divisions and logs against zeros: `clip_by_norm`,
`clip_by_global_norm`, `pad`, `divide_no_nan`, `xlogy`, `reduce_euclidean_norm`. Like the
rest of `ops`, each runs through `core.apply` and so is recorded."""

from __future__ import annotations

import builtins

import jax.numpy as jnp
import numpy as np

from .core import apply
from .ops import _axis, _pair, _t
from .tensor import Tensor, is_float
from .variable import Variable


def _clip_by_norm(v, clip, axes):
    # TF's formula, so values and gradients (at the kink too) are TF's.
    l2sum = jnp.sum(v * v, axis=axes, keepdims=True)
    positive = l2sum > 0
    l2norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, l2sum, jnp.ones_like(l2sum))), l2sum)
    return v * clip / jnp.maximum(l2norm, clip)


def clip_by_norm(t, clip_norm, axes=None, name=None):
    """`t` rescaled so that its L2 norm (over `axes`, all by default) is at most `clip_norm`.

    Example:
      >>> tf.clip_by_norm(tf.constant([3.0, 4.0]), 1.0).numpy()
      array([0.6, 0.8], dtype=float32)
    """
    x = _t(t)
    ax = _axis(axes)
    clip = _t(clip_norm) if isinstance(clip_norm, Tensor | Variable) else None
    if clip is None:
        c = float(clip_norm)
        return apply(lambda v: _clip_by_norm(v, jnp.asarray(c, v.dtype), ax), [x])
    return apply(lambda v, c: _clip_by_norm(v, c.astype(v.dtype), ax), [x, clip])


def clip_by_global_norm(t_list, clip_norm, use_norm=None, name=None):
    """`(clipped list, global norm)`: every tensor scaled by
    `clip_norm / max(global_norm, clip_norm)` (TF's formula; None entries stay None).

    Example:
      >>> grads, norm = tf.clip_by_global_norm(grads, 5.0)
    """
    if isinstance(t_list, Tensor | Variable):
        raise TypeError("`t_list` should be a sequence of tensors, not a single tensor.")
    items = list(t_list)
    present = [_t(t) for t in items if t is not None]
    if use_norm is None:
        norm_t = apply(lambda *vs: jnp.sqrt(builtins.sum(jnp.sum(v * v) for v in vs)), present)
    else:
        norm_t = _t(use_norm)
    clip = _t(clip_norm) if isinstance(clip_norm, Tensor | Variable) else None
    dtype = norm_t.dtype

    def scale_of(n, *c):
        c = c[0].astype(dtype) if c else jnp.asarray(float(clip_norm), dtype)
        # `+ (n - n)`: a NaN or inf norm gives NaN everywhere, as in TF.
        return c * jnp.minimum(1.0 / n, 1.0 / c) + (n - n)

    scale = apply(scale_of, [norm_t] + ([clip] if clip is not None else []))
    out, it = [], iter(present)
    for t in items:
        if t is None:
            out.append(None)
            continue
        x = next(it)
        out.append(apply(lambda v, s: v * s.astype(v.dtype), [x, scale]))
    return out, norm_t


def pad(tensor, paddings, mode="CONSTANT", constant_values=0, name=None):
    """`tensor` padded by `paddings[i] = [before, after]` along each axis; `mode` is
    "CONSTANT" (with `constant_values`), "REFLECT" or "SYMMETRIC" (TF's modes)."""
    x = _t(tensor)
    widths = tuple((int(a), int(b)) for a, b in np.asarray(paddings).reshape(-1, 2))
    m = mode.upper()
    if m == "CONSTANT":
        fill_value = np.asarray(float(constant_values) if is_float(x.dtype) else constant_values)
        return apply(
            lambda v: jnp.pad(
                v, widths, mode="constant", constant_values=fill_value.astype(v.dtype)
            ),
            [x],
        )
    if m in ("REFLECT", "SYMMETRIC"):
        return apply(lambda v: jnp.pad(v, widths, mode=m.lower()), [x])
    raise ValueError(
        f'Value of argument `mode` expected to be one of "CONSTANT", "REFLECT", '
        f'or "SYMMETRIC". Received `mode` = {mode}'
    )


def divide_no_nan(x, y, name=None):
    """`x / y`, and 0 where `y` is 0 (gradients too, as TF's safe division)."""
    a, b = _pair(x, y)

    def f(u, v):
        zero = v == 0
        safe = jnp.where(zero, jnp.ones_like(v), v)
        return jnp.where(zero, jnp.zeros_like(u / safe), u / safe)

    return apply(f, [a, b])


def xlogy(x, y, name=None):
    """`x * log(y)`, and 0 where `x` is 0."""
    a, b = _pair(x, y)

    def f(u, v):
        zero = u == 0
        safe = jnp.where(zero, jnp.ones_like(v), v)
        return jnp.where(zero, jnp.zeros_like(u), u * jnp.log(safe))

    return apply(f, [a, b])


def reduce_euclidean_norm(input_tensor, axis=None, keepdims=False, name=None):
    """`sqrt(sum(x**2))` over `axis`."""
    ax = _axis(axis)
    return apply(lambda v: jnp.sqrt(jnp.sum(v * v, axis=ax, keepdims=keepdims)), [_t(input_tensor)])
