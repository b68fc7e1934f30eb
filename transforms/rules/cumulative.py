"""Cumulative reductions (`cumsum`, `cumprod`, `cummax`, `cummin`, `cumlogsumexp`) and sorting.

The tangent of `cumprod` and `cumlogsumexp` obeys a first-order linear recurrence along the axis,
`out_dot[i] = a[i] * out_dot[i-1] + b[i]`, where `a` comes from the primals and `b` is linear in
the input tangent. We solve it with an associative scan over affine maps, which is exact where
the primals hold zeros (no division by `x`) and stays linear in the tangent. Sorting and top-k
move tangents with the permutation they apply to the primals.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import primitives as P

from ..jvp import jvp_eval, jvp_rules
from ..transpose import deflinear
from ..zeros import Zero, instantiate, tangent_aval

deflinear(
    P.cumsum_p,
    lambda ct, x, *, axis, reverse: [lax.cumsum(ct, axis=axis, reverse=not reverse)],
)


def _shift(x, axis, fill):
    """`x` moved one step along `axis` (element i holds x[i-1]); `fill` enters at position 0."""
    config = [(0, 0, 0)] * x.ndim
    config[axis] = (1, -1, 0)
    return lax.pad(x, np.array(fill, x.dtype), config)


def _affine_scan(a, b, axis):
    """Solve y[i] = a[i] * y[i-1] + b[i] (y[-1] = 0) along `axis`; linear in `b`."""

    def compose(first, second):
        (a1, b1), (a2, b2) = first, second
        return lax.mul(a1, a2), lax.add(lax.mul(a2, b1), b2)

    return lax.associative_scan(compose, (a, b), axis=axis)[1]


def _cumulative_jvp(prim, coefficients):
    # `coefficients(x, out, axis)` gives (a, w): the recurrence is out_dot[i] = a[i] *
    # out_dot[i-1] + w[i] * t[i]. A reversed scan is the forward one on reversed inputs.
    def rule(primals, tangents, *, axis, reverse):
        (x,), (t,) = primals, tangents
        out = prim.bind(x, axis=axis, reverse=reverse)
        flip = (lambda v: lax.rev(v, (axis,))) if reverse else (lambda v: v)
        a, w = coefficients(flip(x), flip(out), axis)
        return out, flip(_affine_scan(a, lax.mul(w, flip(t)), axis))

    jvp_rules[prim] = rule


def _cumprod_coefficients(x, out, axis):
    # out[i] = out[i-1] * x[i]
    return x, _shift(out, axis, 1)


def _cumlogsumexp_coefficients(x, out, axis):
    # out[i] = log(exp(out[i-1]) + exp(x[i])); both weights are at most 1, so nothing overflows.
    return lax.exp(lax.sub(_shift(out, axis, -np.inf), out)), lax.exp(lax.sub(x, out))


_cumulative_jvp(P.cumprod_p, _cumprod_coefficients)
_cumulative_jvp(P.cumlogsumexp_p, _cumlogsumexp_coefficients)


def _cum_extremum_jvp(prim, combine):
    # Away from ties the tangent is that of the running extremum's element. At ties JAX's
    # convention is whatever `max`'s half-and-half rule gives along the tree of an associative
    # scan, so we differentiate that same scan with our own `max`/`min` rules.
    def rule(primals, tangents, *, axis, reverse):
        (x,), (t,) = primals, tangents
        out = prim.bind(x, axis=axis, reverse=reverse)
        scan = jax.make_jaxpr(
            lambda v: lax.associative_scan(combine, v, axis=axis, reverse=reverse)
        )(x)
        _, (out_dot,) = jvp_eval(scan.jaxpr, scan.consts, [x], [t])
        return out, instantiate(out_dot)

    jvp_rules[prim] = rule


_cum_extremum_jvp(P.cummax_p, lax.max)
_cum_extremum_jvp(P.cummin_p, lax.min)


# --- sort and top_k: tangents follow the permutation ----------------------------------------------


def _take(t, perm, axis):
    return jnp.take_along_axis(t, perm, axis=axis, mode="promise_in_bounds")


def _sort_jvp(primals, tangents, *, dimension, is_stable, num_keys):
    shape = np.shape(primals[0])
    # Sort an iota alongside (after the keys, so it never decides the order) to learn the
    # permutation, then apply it to each tangent.
    iota = lax.broadcasted_iota(np.int32, shape, dimension)
    *outs, perm = P.sort_p.bind(
        *primals, iota, dimension=dimension, is_stable=is_stable, num_keys=num_keys
    )
    outs_dot = [
        Zero(tangent_aval(t.aval)) if type(t) is Zero else _take(t, perm, dimension)
        for t in tangents
    ]
    return outs, outs_dot


jvp_rules[P.sort_p] = _sort_jvp


def _top_k_jvp(primals, tangents, **params):
    (x,), (t,) = primals, tangents
    values, indices = P.top_k_p.bind(x, **params)
    axis = params.get("axis", -1) % np.ndim(x)
    return [values, indices], [
        _take(t, indices, axis),
        Zero(tangent_aval(indices.aval)),
    ]


jvp_rules[P.top_k_p] = _top_k_jvp


def _approx_top_k_jvp(primals, tangents, **params):
    # On every backend the k values returned are entries of the operand at the returned indices.
    (x,), (t,) = primals, tangents
    values, indices = P.approx_top_k_p.bind(x, **params)
    axis = params["reduction_dimension"] % np.ndim(x)
    return [values, indices], [_take(t, indices, axis), Zero(tangent_aval(indices.aval))]


jvp_rules[P.approx_top_k_p] = _approx_top_k_jvp
