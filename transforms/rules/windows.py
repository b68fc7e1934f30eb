"""Windowed reductions: `reduce_window_sum/max/min`, the generic `reduce_window`, and the
`select_and_scatter_add` / `select_and_gather_add` pair that max-pooling gradients produce.

A window op reads, for output position o and window offset w, the element o*stride + w*dilation
of the operand after base dilation and padding. `_patches` lays those reads out as a trailing
axis (a gather with indices known at trace time), which gives every non-linear window op a JVP
made of linear ops: gather, pad and take-along-axis.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import primitives as P

from ..jvp import jvp_eval, jvp_rules
from ..transpose import deflinear, is_undefined, transpose_rules
from ..zeros import Zero, instantiate, tangent_aval


def _padded(x, fill, padding, base_dilation):
    config = [(lo, hi, d - 1) for (lo, hi), d in zip(padding, base_dilation, strict=True)]
    return lax.pad(x, np.array(fill, x.dtype), config)


def _patch_indices(padded_shape, window_dimensions, window_strides, window_dilation):
    """Flat indices into the padded operand, shape (*out_shape, window size)."""
    n = len(padded_shape)
    flat_strides = np.cumprod((1, *padded_shape[::-1]))[:-1][::-1]
    total = np.zeros((1,) * (2 * n), np.int64)
    for d, (size, k, s, wd) in enumerate(
        zip(padded_shape, window_dimensions, window_strides, window_dilation, strict=True)
    ):
        n_out = max((size - (k - 1) * wd - 1) // s + 1, 0)
        pos = np.arange(n_out)[:, None] * s + np.arange(k)[None, :] * wd
        shape = [1] * (2 * n)
        shape[d], shape[n + d] = n_out, k
        total = total + (pos * flat_strides[d]).reshape(
            [n_out if i == d else 1 for i in range(n)] + [k if i == d else 1 for i in range(n)]
        )
    out_shape = total.shape[:n]
    return total.reshape((*out_shape, int(np.prod(window_dimensions)))).astype(np.int32)


def _real_elements(shape, w):
    """Static mask over the patches: True where a window reads an operand element, False where
    it reads padding or a base-dilation hole (XLA's reduce_window skips those)."""
    masks = []
    for n, (lo, hi), bd in zip(shape, w["padding"], w["base_dilation"], strict=True):
        q = np.arange(lo + (n - 1) * bd + 1 + hi) - lo
        masks.append((q % bd == 0) & (q >= 0) & (q // bd < n))
    padded = np.ones((), bool)
    for m in masks:
        padded = np.multiply.outer(padded, m)
    idx = _patch_indices(
        padded.shape, w["window_dimensions"], w["window_strides"], w["window_dilation"]
    )
    return padded.reshape(-1)[idx]


def _patches(x, fill, w):
    """The windows of `x` (padded and dilated with `fill`) as a trailing axis: a static gather."""
    config = [(lo, hi, d - 1) for (lo, hi), d in zip(w["padding"], w["base_dilation"], strict=True)]
    fill = fill if hasattr(fill, "dtype") and np.ndim(fill) == 0 else np.array(fill, x.dtype)
    xp = lax.pad(x, fill, config)
    idx = _patch_indices(
        xp.shape, w["window_dimensions"], w["window_strides"], w["window_dilation"]
    )
    return jnp.take(lax.reshape(xp, (xp.size,)), idx, mode="clip")


def _window_params(params, ndim):
    return {
        "window_dimensions": params["window_dimensions"],
        "window_strides": params["window_strides"],
        "padding": params["padding"],
        "base_dilation": params.get("base_dilation", (1,) * ndim),
        "window_dilation": params.get("window_dilation", (1,) * ndim),
    }


def _pick(t, x, select_max, params):
    """Per window, the value of `t` where `x` attains its max (or min): linear in `t`."""
    w = _window_params(params, np.ndim(x))
    fill = -np.inf if select_max else np.inf
    x_patches = _patches(x, fill, w)
    where = jnp.argmax(x_patches, axis=-1) if select_max else jnp.argmin(x_patches, axis=-1)
    t_patches = _patches(t, 0, w)
    return jnp.take_along_axis(t_patches, where[..., None], axis=-1, mode="promise_in_bounds")[
        ..., 0
    ]


# --- reduce_window_sum: linear; its transpose spreads each cotangent over its window ------------


def _reduce_window_sum_transpose(
    ct, x, *, window_dimensions, window_strides, padding, base_dilation, window_dilation
):
    if type(ct) is Zero:
        return [None]
    shape = x.aval.shape
    # Sum, over the windows that read padded position p, of their cotangents: a window sum over
    # the cotangent dilated by the stride, padded so every padded position sees all its windows.
    spread_padding, padded_lengths = [], []
    for n, (lo, hi), bd, k, wd, s, n_out in zip(
        shape, padding, base_dilation, window_dimensions, window_dilation, window_strides,
        ct.shape, strict=True,
    ):  # fmt: skip
        length = lo + (n - 1) * bd + 1 + hi
        reach = (k - 1) * wd
        spread_padding.append((reach, length - (n_out - 1) * s - 1))
        padded_lengths.append(length)
    ct_padded = P.reduce_window_sum_p.bind(
        ct,
        window_dimensions=window_dimensions,
        window_strides=(1,) * len(shape),
        padding=tuple(spread_padding),
        base_dilation=window_strides,
        window_dilation=window_dilation,
    )
    # Undo the padding and the base dilation of the forward op.
    cropped = lax.pad(ct_padded, np.array(0, ct.dtype), [(-lo, -hi, 0) for lo, hi in padding])
    return [lax.slice(cropped, (0,) * len(shape), cropped.shape, base_dilation)]


deflinear(P.reduce_window_sum_p, _reduce_window_sum_transpose)


# --- reduce_window_max / min: the tangent at the window's extremum -------------------------------


def _reduce_window_extremum_jvp(prim, select_max):
    def rule(primals, tangents, **params):
        (x,), (t,) = primals, tangents
        return prim.bind(x, **params), _pick(t, x, select_max, params)

    jvp_rules[prim] = rule


_reduce_window_extremum_jvp(P.reduce_window_max_p, True)
_reduce_window_extremum_jvp(P.reduce_window_min_p, False)


# --- generic reduce_window: fold the reducer over the window, differentiating each step ---------


def _reduce_window_jvp(primals, tangents, *, jaxpr, consts, **params):
    n = len(primals) // 2
    xs, inits = primals[:n], primals[n:]
    xs_dot, inits_dot = tangents[:n], tangents[n:]
    outs = P.reduce_window_p.bind(*primals, jaxpr=jaxpr, consts=consts, **params)
    w = _window_params(params, np.ndim(xs[0]))
    x_patches = [_patches(x, init, w) for x, init in zip(xs, inits, strict=True)]
    t_patches = [
        _patches(instantiate(t), instantiate(t_init), w)
        for t, t_init in zip(xs_dot, inits_dot, strict=True)
    ]
    out_shape = x_patches[0].shape[:-1]
    acc = [lax.broadcast(v, out_shape) for v in inits]
    acc_dot = [lax.broadcast(instantiate(t), out_shape) for t in inits_dot]
    body = getattr(jaxpr, "jaxpr", jaxpr)
    real = _real_elements(np.shape(xs[0]), w)
    # Fold the reducer from the init value over the window's real elements (padding is skipped,
    # as XLA does). XLA may fold in any order; the reducer is associative, so this one is as good.
    for k in range(real.shape[-1]):
        if not real[..., k].any():
            continue
        new, new_dot = jvp_eval(
            body,
            consts,
            [*acc, *(p[..., k] for p in x_patches)],
            [*acc_dot, *(p[..., k] for p in t_patches)],
        )
        keep = real[..., k]
        acc = [lax.select(keep, a, b) for a, b in zip(new, acc, strict=True)]
        acc_dot = [
            lax.select(keep, instantiate(a), b) for a, b in zip(new_dot, acc_dot, strict=True)
        ]
    return outs, acc_dot


jvp_rules[P.reduce_window_p] = _reduce_window_jvp


# --- select_and_scatter_add / select_and_gather_add: a transpose pair, linear in the first input -


def _select_max(select_prim):
    if select_prim in (P.ge_p, P.gt_p):
        return True
    if select_prim in (P.le_p, P.lt_p):
        return False
    raise NotImplementedError(
        f"select_and_scatter_add with select_prim={select_prim} (reverse mode)"
    )


def _select_and_scatter_add_jvp(primals, tangents, **params):
    (source, operand), (source_dot, _) = primals, tangents
    out = P.select_and_scatter_add_p.bind(source, operand, **params)
    if type(source_dot) is Zero:
        return out, Zero(tangent_aval(operand.aval))
    return out, P.select_and_scatter_add_p.bind(source_dot, operand, **params)


def _select_and_scatter_add_transpose(ct, source, operand, *, select_prim, **params):
    assert is_undefined(source) and not is_undefined(operand)
    if type(ct) is Zero:
        return [None, None]
    return [_pick(ct, operand, _select_max(select_prim), params), None]


jvp_rules[P.select_and_scatter_add_p] = _select_and_scatter_add_jvp
transpose_rules[P.select_and_scatter_add_p] = _select_and_scatter_add_transpose


def _select_and_gather_add_jvp(primals, tangents, *, select_prim, **params):
    (t, operand), (t_dot, _) = primals, tangents
    out = P.select_and_gather_add_p.bind(t, operand, select_prim=select_prim, **params)
    if type(t_dot) is Zero:
        return out, Zero(tangent_aval(out.aval))
    return out, _pick(t_dot, operand, _select_max(select_prim), params)


jvp_rules[P.select_and_gather_add_p] = _select_and_gather_add_jvp
