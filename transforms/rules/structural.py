"""Shape-changing, indexing and reduction primitives, and `dot_general`.

Most of these are linear: their JVP applies the primitive to the tangent (`deflinear`) and the
transpose routes the cotangent back to where each input element went.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from jax import lax
from jax.extend.core import primitives as P
from jax.sharding import PartitionSpec

from ..errors import MissingRuleError
from ..jvp import current_mode, jvp_eval, jvp_rules
from ..transpose import deflinear, is_undefined, transpose_rules
from ..zeros import Zero, explicit_sharding, instantiate


def _zeros(aval):
    return lax.full(aval.shape, 0, aval.dtype, sharding=explicit_sharding(aval))


# --- pure data movement ---------------------------------------------------------------------------


def _broadcast_in_dim_transpose(ct, x, *dyn, shape, broadcast_dimensions, sharding):
    in_shape = x.aval.shape
    # Sum the new axes away, then the axes that were size 1 and got stretched.
    new_axes = tuple(i for i in range(len(shape)) if i not in broadcast_dimensions)
    stretched = tuple(
        d for i, d in enumerate(broadcast_dimensions) if in_shape[i] == 1 and shape[d] != 1
    )
    out = lax.reduce_sum(ct, new_axes + stretched) if new_axes + stretched else ct
    if out.shape != in_shape:
        out = lax.reshape(out, in_shape, out_sharding=explicit_sharding(x.aval))
    return [out] + [None] * len(dyn)


deflinear(P.broadcast_in_dim_p, _broadcast_in_dim_transpose)


def _reshape_transpose(ct, x, *dyn, new_sizes, dimensions, sharding):
    # The cotangent takes its primal's layout (a reshape's output layout can be ambiguous).
    if dimensions is None:
        return [lax.reshape(ct, x.aval.shape, out_sharding=explicit_sharding(x.aval))] + [
            None
        ] * len(dyn)
    # reshape with `dimensions` reads x in the order `transpose(x, dimensions)`: undo both.
    permuted_shape = tuple(x.aval.shape[d] for d in dimensions)
    permuted = lax.reshape(ct, permuted_shape, out_sharding=_permuted_sharding(x.aval, dimensions))
    ct_x = lax.transpose(permuted, tuple(np.argsort(dimensions)))
    return [ct_x] + [None] * len(dyn)


deflinear(P.reshape_p, _reshape_transpose)
deflinear(
    P.squeeze_p,
    lambda ct, x, *, dimensions: [
        lax.reshape(ct, x.aval.shape, out_sharding=explicit_sharding(x.aval))
    ],
)
deflinear(
    P.transpose_p,
    lambda ct, x, *, permutation: [lax.transpose(ct, tuple(np.argsort(permutation)))],
)
deflinear(P.rev_p, lambda ct, x, *, dimensions: [lax.rev(ct, dimensions)])


def _concatenate_transpose(ct, *xs, dimension):
    out, start = [], 0
    for x in xs:
        size = x.aval.shape[dimension] if is_undefined(x) else np.shape(x)[dimension]
        if is_undefined(x):
            out.append(lax.slice_in_dim(ct, start, start + size, axis=dimension))
        else:
            out.append(None)
        start += size
    return out


deflinear(P.concatenate_p, _concatenate_transpose)


def _pad_jvp(primals, tangents, *, padding_config):
    (x, pad_value), (tx, tpad) = primals, tangents
    out = lax.pad(x, pad_value, padding_config)
    if type(tx) is Zero and type(tpad) is Zero:
        return out, Zero(out.aval if hasattr(out, "aval") else None)
    tx = _zeros_like(x) if type(tx) is Zero else tx
    tpad = _zeros_like(pad_value) if type(tpad) is Zero else tpad
    return out, lax.pad(tx, tpad, padding_config)


def _zeros_like(x):
    return lax.full_like(x, 0)


def _pad_transpose(ct, x, pad_value, *, padding_config):
    if type(ct) is Zero:
        return [None, None]
    # Undo the padding: negative padding crops, then the interior stride picks the elements.
    lo, hi, interior = zip(*padding_config, strict=True)
    unpadded = lax.pad(ct, np.array(0, ct.dtype), [(-l, -h, 0) for l, h in zip(lo, hi)])
    t_x = (
        lax.slice(unpadded, (0,) * ct.ndim, unpadded.shape, tuple(i + 1 for i in interior))
        if is_undefined(x)
        else None
    )
    t_pad = None
    if is_undefined(pad_value):
        total = lax.reduce_sum(ct, tuple(range(ct.ndim)))
        inner = (
            lax.reduce_sum(t_x, tuple(range(ct.ndim)))
            if t_x is not None
            else lax.reduce_sum(
                lax.slice(unpadded, (0,) * ct.ndim, unpadded.shape, tuple(i + 1 for i in interior)),
                tuple(range(ct.ndim)),
            )
        )
        t_pad = lax.sub(total, inner)
    return [t_x, t_pad]


jvp_rules[P.pad_p] = _pad_jvp
transpose_rules[P.pad_p] = _pad_transpose


def _slice_transpose(ct, x, *, start_indices, limit_indices, strides):
    shape = x.aval.shape
    if strides is None or all(s == 1 for s in strides):
        pads = [(s, d - l, 0) for s, l, d in zip(start_indices, limit_indices, shape, strict=True)]
    else:
        real_limits = [
            s + (o - 1) * st + 1 if o > 0 else s
            for s, o, st in zip(start_indices, ct.shape, strides, strict=True)
        ]
        pads = [
            (s, d - rl, st - 1)
            for s, rl, d, st in zip(start_indices, real_limits, shape, strides, strict=True)
        ]
    return [lax.pad(ct, np.array(0, ct.dtype), pads)]


deflinear(P.slice_p, _slice_transpose)


def _dynamic_slice_jvp(primals, tangents, *, slice_sizes):
    x, *idx = primals
    tx = tangents[0]
    out = lax.dynamic_slice(x, idx, slice_sizes)
    if type(tx) is Zero:
        return out, Zero(_aval(out))
    return out, lax.dynamic_slice(tx, idx, slice_sizes)


def _dynamic_slice_transpose(ct, x, *idx, slice_sizes):
    assert all(not is_undefined(i) for i in idx)
    zeros = _zeros(x.aval)
    return [lax.dynamic_update_slice(zeros, ct, idx)] + [None] * len(idx)


jvp_rules[P.dynamic_slice_p] = _dynamic_slice_jvp
transpose_rules[P.dynamic_slice_p] = _dynamic_slice_transpose


def _dynamic_update_slice_jvp(primals, tangents):
    x, update, *idx = primals
    tx, tu = tangents[:2]
    out = lax.dynamic_update_slice(x, update, idx)
    if type(tx) is Zero and type(tu) is Zero:
        return out, Zero(_aval(out))
    tx = _zeros_like(x) if type(tx) is Zero else tx
    tu = _zeros_like(update) if type(tu) is Zero else tu
    return out, lax.dynamic_update_slice(tx, tu, idx)


def _dynamic_update_slice_transpose(ct, x, update, *idx):
    upd_shape = update.aval.shape if is_undefined(update) else np.shape(update)
    ct_x = (
        lax.dynamic_update_slice(ct, lax.full(upd_shape, 0, ct.dtype), idx)
        if is_undefined(x)
        else None
    )
    ct_u = lax.dynamic_slice(ct, idx, upd_shape) if is_undefined(update) else None
    return [ct_x, ct_u] + [None] * len(idx)


jvp_rules[P.dynamic_update_slice_p] = _dynamic_update_slice_jvp
transpose_rules[P.dynamic_update_slice_p] = _dynamic_update_slice_transpose


def _aval(x):
    import jax

    return jax.typeof(x).to_tangent_aval()


# --- reductions -----------------------------------------------------------------------------------


def _reduce_sum_transpose(ct, x, *, axes, **params):
    shape = x.aval.shape
    kept = tuple(i for i in range(len(shape)) if i not in axes)
    return [lax.broadcast_in_dim(ct, shape, kept, out_sharding=explicit_sharding(x.aval))]


deflinear(P.reduce_sum_p, _reduce_sum_transpose)


def _reduce_chooser_jvp(prim):
    # The tangent of max/min is the mean of the tangents at the locations that attain it
    # (JAX's convention for ties).
    def rule(primals, tangents, *, axes, **params):
        (x,), (t,) = primals, tangents
        out = prim.bind(x, axes=axes, **params)
        kept = tuple(i for i in range(x.ndim) if i not in axes)
        location = lax.eq(x, lax.broadcast_in_dim(out, x.shape, kept))
        location = lax.convert_element_type(location, t.dtype)
        counts = lax.reduce_sum(location, axes)
        return out, lax.div(lax.reduce_sum(lax.mul(t, location), axes), counts)

    return rule


jvp_rules[P.reduce_max_p] = _reduce_chooser_jvp(P.reduce_max_p)
jvp_rules[P.reduce_min_p] = _reduce_chooser_jvp(P.reduce_min_p)


def _reduce_prod_jvp(primals, tangents, *, axes, **params):
    # d prod(x) = sum_i t_i * prod_{j != i} x_j. The products of the others are exclusive prefix
    # times exclusive suffix products, so zeros in x are exact (no division by x). The scans are
    # built from slices, pads and muls (lax.associative_scan), which have rules of their own, so
    # the rule can be differentiated again.
    (x,), (t,) = primals, tangents
    out = P.reduce_prod_p.bind(x, axes=axes, **params)
    kept = tuple(i for i in range(x.ndim) if i not in axes)
    kept_shape = tuple(x.shape[i] for i in kept)
    n_red = int(np.prod([x.shape[a] for a in axes]))
    perm = kept + tuple(axes)
    xr = lax.reshape(lax.transpose(x, perm), (*kept_shape, n_red))
    tr = lax.reshape(lax.transpose(t, perm), (*kept_shape, n_red))
    axis = len(kept_shape)
    if n_red == 0:
        return out, lax.reduce_sum(tr, (axis,))
    one = lax.full((*kept_shape, 1), 1, x.dtype)
    before = lax.concatenate([one, lax.slice_in_dim(xr, 0, n_red - 1, axis=axis)], axis)
    after = lax.concatenate([lax.slice_in_dim(xr, 1, n_red, axis=axis), one], axis)
    before = lax.associative_scan(lax.mul, before, axis=axis)
    after = lax.associative_scan(lax.mul, after, reverse=True, axis=axis)
    return out, lax.reduce_sum(lax.mul(tr, lax.mul(before, after)), (axis,))


jvp_rules[P.reduce_prod_p] = _reduce_prod_jvp


# --- dot_general ----------------------------------------------------------------------------------


def _dot_jvp(primals, tangents, **params):
    x, y = primals
    tx, ty = tangents
    out = P.dot_general_p.bind(x, y, **params)
    terms = []
    if type(tx) is not Zero:
        terms.append(P.dot_general_p.bind(tx, y, **params))
    if type(ty) is not Zero:
        terms.append(P.dot_general_p.bind(x, ty, **params))
    out_dot = terms[0] if len(terms) == 1 else lax.add(*terms)
    return out, out_dot


def _ranges_like(*xs):
    start = 0
    for x in xs:
        x_len = len(x)
        yield tuple(range(start, start + x_len))
        start += x_len


def _remaining(original, *removed_lists):
    removed = set()
    for r in removed_lists:
        removed |= set(r)
    return [i for i in original if i not in removed]


def _dot_transpose_lhs(ct, x_aval, y, *, dimension_numbers, swap_ans=False, **params):
    # dot_general output axes: batch, lhs free, rhs free. The lhs cotangent is ct contracted with
    # y over y's free axes, then permuted back into x's axis order.
    (x_contract, y_contract), (x_batch, y_batch) = dimension_numbers
    x_ndim = len(x_aval.shape)
    y_ndim = np.ndim(y)
    x_kept = _remaining(range(x_ndim), x_contract, x_batch)
    y_kept = _remaining(range(y_ndim), y_contract, y_batch)
    if swap_ans:
        ans_batch, ans_y, _ = _ranges_like(x_batch, y_kept, x_kept)
    else:
        ans_batch, _, ans_y = _ranges_like(x_batch, x_kept, y_kept)
    x_contract_sorted_by_y = (
        list(np.take(x_contract, np.argsort(y_contract))) if len(x_contract) else []
    )
    # x's axes in the order the contraction leaves them: dot_general(ct, y) gives (batch,
    # x_kept, x_contract), dot_general(y, ct) gives (batch, x_contract, x_kept). Take the order
    # that lands already in x's layout when there is one: a contraction followed by a transpose
    # runs up to 3x slower on XLA:CPU (the weight gradient of a dense layer on (batch, seq,
    # features) inputs), and the transpose is a copy on every backend.
    res_axes = list(x_batch) + x_kept + x_contract_sorted_by_y
    precision = params.get("precision")
    lhs, rhs, dims = ct, y, ((ans_y, y_kept), (ans_batch, y_batch))
    y_first_axes = list(x_batch) + x_contract_sorted_by_y + x_kept
    if res_axes != sorted(res_axes) and y_first_axes == sorted(y_first_axes):
        res_axes = y_first_axes
        lhs, rhs, dims = y, ct, ((y_kept, ans_y), (y_batch, ans_batch))
        if isinstance(precision, tuple):
            precision = precision[::-1]
    out_axes = np.argsort(res_axes)
    pref = params.get("preferred_element_type")
    out_sharding = _permuted_sharding(x_aval, res_axes)
    if out_sharding is None and _is_leading_contraction(lhs, rhs, dims):
        res = _leading_contraction(lhs, rhs, len(dims[0][0]), precision, pref)
    else:
        res = lax.dot_general(
            lhs,
            rhs,
            dims,
            precision=precision,
            preferred_element_type=pref,
            out_sharding=out_sharding,
        )
    if list(out_axes) != sorted(out_axes):
        res = lax.transpose(res, tuple(out_axes))
    if res.dtype != x_aval.dtype:
        res = lax.convert_element_type(res, x_aval.dtype)
    return res


# A weight gradient contracts over the leading (batch, sequence) axes of both operands:
# x^T @ ct with x of (batch, seq, features). XLA:CPU then copies the larger operand into a
# transposed layout for its matrix kernel. Written as a plain matrix product of the flattened
# operands with the first one transposed, it copies that one instead: 15-25% faster for the
# dense layers of the transformer bench (8 x 256 x {256, 1024}), as fast below that. Small
# contractions stay as they are (no gain, and three more ops when run op by op).
_LEADING_CONTRACTION_MIN = 256


@functools.cache
def _default_backend_is_cpu() -> bool:
    return jax.default_backend() == "cpu"  # fixed once JAX has started; read it once


def _is_leading_contraction(lhs, rhs, dims) -> bool:
    (lc, rc), (lb, rb) = dims
    k = len(lc)
    if lb or rb or not k or tuple(lc) != tuple(range(k)) or tuple(rc) != tuple(range(k)):
        return False
    if not all(type(d) is int for d in (*np.shape(lhs), *np.shape(rhs))):
        return False  # symbolic sizes (tf.function's None dimensions): left to XLA
    if not _default_backend_is_cpu():
        return False  # measured on XLA:CPU only; GPU and TPU kernels take transposed operands
    return int(np.prod(np.shape(lhs)[:k])) >= _LEADING_CONTRACTION_MIN


def _leading_contraction(lhs, rhs, k, precision, pref):
    """`dot_general` of `lhs`, `rhs` over their first `k` axes, as flat(lhs)^T @ flat(rhs)."""
    l_shape, r_shape = np.shape(lhs), np.shape(rhs)
    contracted = int(np.prod(l_shape[:k]))
    a = lax.reshape(lhs, (contracted, int(np.prod(l_shape[k:]))))
    b = lax.reshape(rhs, (contracted, int(np.prod(r_shape[k:]))))
    out = lax.dot_general(
        lax.transpose(a, (1, 0)),
        b,
        (((1,), (0,)), ((), ())),
        precision=precision,
        preferred_element_type=pref,
    )
    return lax.reshape(out, (*l_shape[k:], *r_shape[k:]))


def _permuted_sharding(aval, axes):
    """`aval`'s sharding with its dimensions in the order `axes`, when the mesh types it.

    Why: on a mesh with Explicit axes the layout is part of the type, and a contraction over a
    sharded dimension (a batch-sharded gradient) is ambiguous unless the output layout is given:
    the cotangent takes its primal's layout.
    """
    sharding = explicit_sharding(aval)
    if sharding is None:
        return None
    spec = tuple(sharding.spec) + (None,) * (len(aval.shape) - len(sharding.spec))
    return sharding.update(spec=PartitionSpec(*(spec[i] for i in axes)))


def _dot_transpose_rhs(ct, x, y_aval, *, dimension_numbers, **params):
    (x_contract, y_contract), (x_batch, y_batch) = dimension_numbers
    swapped = ((y_contract, x_contract), (y_batch, x_batch))
    return _dot_transpose_lhs(ct, y_aval, x, dimension_numbers=swapped, swap_ans=True, **params)


def _dot_transpose(ct, x, y, **params):
    assert is_undefined(x) ^ is_undefined(y), "dot_general is bilinear"
    if type(ct) is Zero:
        return [None, None]
    kw = {k: params[k] for k in ("precision", "preferred_element_type") if k in params}
    dn = params["dimension_numbers"]
    if is_undefined(x):
        return [_dot_transpose_lhs(ct, x.aval, y, dimension_numbers=dn, **kw), None]
    return [None, _dot_transpose_rhs(ct, x, y.aval, dimension_numbers=dn, **kw)]


jvp_rules[P.dot_general_p] = _dot_jvp
transpose_rules[P.dot_general_p] = _dot_transpose

_unused = instantiate


# --- variadic reduce with a user's reducer ----------------------------------------------------


def _reduce_jvp(primals, tangents, *, computation, jaxpr, dimensions):
    # Reducing dual numbers (x, dx) with the reducer's own JVP gives the reduction's tangent:
    # the JVP of an associative, commutative reducer is again associative and commutative, and
    # (init, 0) stays its identity. The init values are that identity, so their tangent is 0.
    if current_mode() == "reverse":
        raise MissingRuleError(
            "reduce",
            "reverse",
            " lax.reduce with a custom reducer has no transpose (JAX fails here too): the "
            "reduction order it would need is XLA's choice. Use forward mode (transforms.jvp, "
            "transforms.jacfwd), or built-in reductions (jnp.sum, jnp.max, jnp.argmax, ...).",
        )
    k = len(primals) // 2
    operands, inits = primals[:k], primals[k:]
    operand_dots = [instantiate(t) for t in tangents[:k]]
    if any(type(t) is not Zero for t in tangents[k:]):
        raise NotImplementedError(
            "lax.reduce: the init values must be the reducer's identity, constants, so they "
            "have no derivative; close over them instead of differentiating with respect to them."
        )
    init_dots = [lax.full((), 0, t.dtype) for t in operand_dots]

    def dual_reducer(acc, x):
        outs, outs_dot = jvp_eval(jaxpr.jaxpr, jaxpr.consts, [*acc[:k], *x[:k]], [*acc[k:], *x[k:]])
        return (*outs, *(instantiate(t) for t in outs_dot))

    out = P.reduce_p.bind(*primals, computation=computation, jaxpr=jaxpr, dimensions=dimensions)
    # The primal outputs come from the user's own reduction (not batched with the tangents).
    dual = lax.reduce((*operands, *operand_dots), (*inits, *init_dots), dual_reducer, dimensions)
    return list(out), list(dual[k:])


jvp_rules[P.reduce_p] = _reduce_jvp
