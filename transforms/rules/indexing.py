"""Gather and the scatter family: `x[idx]`, `x.at[idx].set/add/mul/min/max`, `jnp.take`, ...

Gather and scatter-add are each other's transpose (same index map, read versus accumulate).
The non-linear scatters differentiate by masks computed from the primals only, so every tangent
flows through `mul`, `gather` and `scatter-add`, which keeps the JVP linear and transposable.
"""

from __future__ import annotations

import jax
import numpy as np
from jax import lax
from jax.extend.core import primitives as P

from ..jvp import jvp_rules
from ..transpose import is_undefined, transpose_rules
from ..zeros import Zero, explicit_sharding, instantiate, tangent_aval


def _shape(x):
    return x.aval.shape if is_undefined(x) else np.shape(x)


def _zeros(shape, dtype):
    return lax.full(shape, 0, dtype)


# --- the two index maps: gather's and scatter's dimension numbers describe the same map -----------


def _scatter_dnums_of(g: lax.GatherDimensionNumbers) -> lax.ScatterDimensionNumbers:
    return lax.ScatterDimensionNumbers(
        update_window_dims=g.offset_dims,
        inserted_window_dims=g.collapsed_slice_dims,
        scatter_dims_to_operand_dims=g.start_index_map,
        operand_batching_dims=g.operand_batching_dims,
        scatter_indices_batching_dims=g.start_indices_batching_dims,
    )


def _gather_dnums_of(s: lax.ScatterDimensionNumbers) -> lax.GatherDimensionNumbers:
    return lax.GatherDimensionNumbers(
        offset_dims=s.update_window_dims,
        collapsed_slice_dims=s.inserted_window_dims,
        start_index_map=s.scatter_dims_to_operand_dims,
        operand_batching_dims=s.operand_batching_dims,
        start_indices_batching_dims=s.scatter_indices_batching_dims,
    )


def _slice_sizes_of(s: lax.ScatterDimensionNumbers, operand_shape, updates_shape):
    # Operand dims that a scatter window spans take the window's size; the others are 1.
    sizes, window = [], iter(s.update_window_dims)
    for i in range(len(operand_shape)):
        if i in s.inserted_window_dims or i in s.operand_batching_dims:
            sizes.append(1)
        else:
            sizes.append(updates_shape[next(window)])
    return tuple(sizes)


def _gather_updates(x, indices, *, dimension_numbers, updates_shape, mode, **_):
    """Read `x` at the places a scatter with these parameters writes: one value per update."""
    return lax.gather(
        x,
        indices,
        _gather_dnums_of(dimension_numbers),
        _slice_sizes_of(dimension_numbers, np.shape(x), updates_shape),
        mode=mode,
        fill_value=0,
    )


def _scatter_add(x, indices, updates, *, dimension_numbers, mode, indices_are_sorted=False, **_):
    return lax.scatter_add(
        x, indices, updates, dimension_numbers, indices_are_sorted=indices_are_sorted, mode=mode
    )


# --- gather ---------------------------------------------------------------------------------------


def _gather_jvp(primals, tangents, **params):
    (x, indices), (x_dot, _) = primals, tangents
    out = P.gather_p.bind(x, indices, **params)
    if type(x_dot) is Zero:
        return out, Zero(tangent_aval(jax.typeof(out)))
    # Out-of-bounds reads fill the primal (often with NaN) but have a zero tangent.
    return out, P.gather_p.bind(x_dot, indices, **{**params, "fill_value": 0})


def _gather_transpose(ct, x, indices, *, dimension_numbers, slice_sizes, mode, **params):
    assert is_undefined(x) and not is_undefined(indices), "gather is linear in its operand only"
    if type(ct) is Zero:
        return [None, None]
    zeros = lax.full(x.aval.shape, 0, x.aval.dtype, sharding=explicit_sharding(x.aval))
    ct_x = lax.scatter_add(
        zeros,
        indices,
        ct,
        _scatter_dnums_of(dimension_numbers),
        indices_are_sorted=params["indices_are_sorted"],
        unique_indices=params["unique_indices"],
        mode=mode,
    )
    return [ct_x, None]


jvp_rules[P.gather_p] = _gather_jvp
transpose_rules[P.gather_p] = _gather_transpose


# --- scatter-add: linear in (operand, updates) ----------------------------------------------------


def _scatter_add_jvp(primals, tangents, **params):
    (x, indices, updates), (x_dot, _, u_dot) = primals, tangents
    out = P.scatter_add_p.bind(x, indices, updates, **params)
    if type(x_dot) is Zero and type(u_dot) is Zero:
        return out, Zero(tangent_aval(x_dot.aval))
    return out, P.scatter_add_p.bind(instantiate(x_dot), indices, instantiate(u_dot), **params)


def _scatter_add_transpose(ct, x, indices, updates, **params):
    assert not is_undefined(indices), "scatter-add is not linear in its indices"
    if type(ct) is Zero:
        return [None, None, None]
    ct_x = ct if is_undefined(x) else None
    ct_u = None
    if is_undefined(updates):
        ct_u = _gather_updates(ct, indices, updates_shape=_shape(updates), **params)
    return [ct_x, None, ct_u]


jvp_rules[P.scatter_add_p] = _scatter_add_jvp
transpose_rules[P.scatter_add_p] = _scatter_add_transpose


# --- scatter (set): the operand's tangent survives where nothing was written ----------------------


def _winners(x, indices, updates, params):
    """Masks for a scatter-set: where the operand survives, and which update lands (last wins)."""
    size = int(np.prod(np.shape(updates), dtype=np.int64))
    # Give every update element a distinct id (1-based, 0 means "not written") and scatter the
    # ids with the primal's own scatter: the id that lands is the update that won its slot.
    ids = lax.reshape(lax.iota(np.int32, size) + np.int32(1), np.shape(updates))
    landed = P.scatter_p.bind(_zeros(np.shape(x), np.int32), indices, ids, **params)
    kept = lax.eq(landed, np.int32(0))
    won = lax.eq(_gather_updates(landed, indices, updates_shape=np.shape(updates), **params), ids)
    return kept, won


def _mask(t, m):
    return lax.select(m, t, lax.full_like(t, 0))


def _scatter_jvp(primals, tangents, **params):
    (x, indices, updates), (x_dot, _, u_dot) = primals, tangents
    out = P.scatter_p.bind(x, indices, updates, **params)
    if type(x_dot) is Zero and type(u_dot) is Zero:
        return out, Zero(tangent_aval(x_dot.aval))
    kept, won = _winners(x, indices, updates, params)
    out_dot = _scatter_add(
        _mask(instantiate(x_dot), kept), indices, _mask(instantiate(u_dot), won), **params
    )
    return out, out_dot


jvp_rules[P.scatter_p] = _scatter_jvp


# --- scatter-mul: out = x * prod(updates landing on each slot) ------------------------------------


def _scatter_mul_jvp(primals, tangents, **params):
    (x, indices, updates), (x_dot, _, u_dot) = primals, tangents
    out = P.scatter_mul_p.bind(x, indices, updates, **params)
    out_dot = Zero(tangent_aval(x_dot.aval))
    if type(x_dot) is not Zero:
        out_dot = P.scatter_mul_p.bind(x_dot, indices, updates, **params)
    if type(u_dot) is not Zero:
        # d out / d u_j = x * prod_{k != j} u_k over the updates k landing on j's slot. The
        # exclusive product comes from the product of the non-zero updates and a count of zeros,
        # so zeros in `updates` get exact derivatives (no division by zero).
        ushape = np.shape(updates)
        is_zero = lax.eq(updates, lax.full_like(updates, 0))
        one = lax.full_like(updates, 1)
        nonzero = lax.select(is_zero, one, updates)
        prod_nz = P.scatter_mul_p.bind(lax.full_like(x, 1), indices, nonzero, **params)
        n_zero = _scatter_add(
            _zeros(np.shape(x), np.int32), indices, lax.convert_element_type(is_zero, np.int32),
            **params,
        )  # fmt: skip
        g_prod = _gather_updates(prod_nz, indices, updates_shape=ushape, **params)
        g_nzero = _gather_updates(n_zero, indices, updates_shape=ushape, **params)
        g_x = _gather_updates(x, indices, updates_shape=ushape, **params)
        zero = lax.full_like(updates, 0)
        others = lax.select(
            is_zero,
            lax.select(lax.eq(g_nzero, np.int32(1)), g_prod, zero),
            lax.select(lax.eq(g_nzero, np.int32(0)), lax.div(g_prod, nonzero), zero),
        )
        term = _scatter_add(
            lax.full_like(x, 0), indices, lax.mul(u_dot, lax.mul(g_x, others)), **params
        )
        out_dot = term if type(out_dot) is Zero else lax.add(out_dot, term)
    return out, out_dot


def _scatter_mul_transpose(ct, x, indices, updates, **params):
    if is_undefined(updates) or is_undefined(indices):
        raise NotImplementedError(
            "Transpose rule for 'scatter-mul' is defined for its operand only (reverse mode); "
            "its updates enter non-linearly."
        )
    if type(ct) is Zero:
        return [None, None, None]
    return [P.scatter_mul_p.bind(ct, indices, updates, **params), None, None]


jvp_rules[P.scatter_mul_p] = _scatter_mul_jvp
transpose_rules[P.scatter_mul_p] = _scatter_mul_transpose


# --- scatter-min / scatter-max: ties share the tangent equally (JAX's convention) -----------------


def _scatter_extremum_jvp(prim):
    def rule(primals, tangents, **params):
        (x, indices, updates), (x_dot, _, u_dot) = primals, tangents
        out = prim.bind(x, indices, updates, **params)
        if type(x_dot) is Zero and type(u_dot) is Zero:
            return out, Zero(tangent_aval(x_dot.aval))
        ushape = np.shape(updates)
        dtype = out.dtype
        x_hit = lax.convert_element_type(lax.eq(x, out), dtype)
        g_out = _gather_updates(out, indices, updates_shape=ushape, **params)
        u_hit = lax.convert_element_type(lax.eq(updates, g_out), dtype)
        count = lax.add(x_hit, _scatter_add(lax.full_like(x, 0), indices, u_hit, **params))
        total = _scatter_add(
            lax.mul(instantiate(x_dot), x_hit), indices, lax.mul(instantiate(u_dot), u_hit),
            **params,
        )  # fmt: skip
        return out, lax.div(total, count)

    return rule


jvp_rules[P.scatter_min_p] = _scatter_extremum_jvp(P.scatter_min_p)
jvp_rules[P.scatter_max_p] = _scatter_extremum_jvp(P.scatter_max_p)
