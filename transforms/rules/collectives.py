"""Sharded programs: `sharding_constraint`, `shard_map`, and the collectives used inside it.

A `shard_map` body runs once per device on its local block. Its JVP is a `shard_map` of the
body's JVP; partial evaluation splits it into a primal `shard_map` that also returns the
residuals and a linear `shard_map`; the transpose is a `shard_map` of the transposed body, its
in- and out-specs swapped. Inside the body, values carry a type saying along which mesh axes they
may differ between devices ("varying") or are equal ("invariant"); the transposes below keep
that typing, which is what makes `psum`'s transpose a broadcast (`pvary`) and vice versa:

    psum:       y = sum_d x_d             (varying -> invariant)    x̄ = pvary(ȳ)
    pvary:      y_d = x                   (invariant -> varying)    x̄ = psum(ȳ)
    all_gather: y = concat_d x_d          ȳ -> reduce_scatter(ȳ)    (and the reverse)
    ppermute:   y_σ(d) = x_d              x̄ = ppermute(ȳ, σ⁻¹)
    all_to_all: split one axis, concat another    x̄ = all_to_all(ȳ) with the two axes swapped
    pmax/pmin:  the tangent at the devices attaining the extremum, shared equally among ties
"""

from __future__ import annotations

import math

import jax
from jax import lax
from jax.extend.core import ClosedJaxpr, Literal
from jax.extend.core import primitives as P
from jax.sharding import AbstractMesh
from jax.sharding import PartitionSpec as Spec

from .._jax import reshard_p
from ..interpreter import eval_jaxpr
from ..jvp import jvp_eval, jvp_rules
from ..partial_eval import partial_eval, partial_eval_rules
from ..tracing import aval_struct
from ..transpose import backward_pass, deflinear, is_undefined, transpose_rules
from ..zeros import Zero, instantiate, tangent_aval, varying_axes


def _probe_primitives() -> dict:
    """The collective primitives JAX does not export, found by tracing a tiny `shard_map`.

    Why: `shard_map`, `psum_invariant`, `pvary`, `pmin`, `reduce_scatter` and `pbroadcast` are not
    in `jax.extend.core.primitives`; tracing them through the public API finds the exact objects
    that appear in users' jaxprs, without importing JAX internals.
    """

    def body(x):
        total = lax.psum(x, "i")
        return (
            lax.pcast(total, "i", to="varying"),
            lax.pmin(x, "i"),
            lax.psum_scatter(x, "i", tiled=True),
            lax.pbroadcast(x, "i", 0),
        )

    mesh = AbstractMesh((2,), ("i",))
    specs = (Spec("i"),) * 4
    fun = jax.shard_map(body, mesh=mesh, in_specs=Spec("i"), out_specs=specs)
    closed = jax.make_jaxpr(fun)(jax.ShapeDtypeStruct((4,), "float32"))
    (outer,) = closed.jaxpr.eqns
    found = {outer.primitive.name: outer.primitive}
    found.update({e.primitive.name: e.primitive for e in outer.params["jaxpr"].eqns})
    return found


_prims = _probe_primitives()
shard_map_p = _prims["shard_map"]
psum_invariant_p = _prims["psum_invariant"]
pvary_p = _prims["pvary"]
pmin_p = _prims["pmin"]
reduce_scatter_p = _prims["reduce_scatter"]
pbroadcast_p = _prims["pbroadcast"]


def _nonzero(ct) -> bool:
    return ct is not None and type(ct) is not Zero


def _single(transpose):
    """A transpose rule for a one-operand linear primitive; a zero cotangent stays zero."""

    def rule(ct, x, **params):
        return [transpose(ct, **params) if _nonzero(ct) else None]

    return rule


# --- sharding annotations -------------------------------------------------------------------------

# The constraint is linear (the identity on values); its cotangent gets the same layout.
deflinear(P.sharding_constraint_p, _single(lambda ct, **p: P.sharding_constraint_p.bind(ct, **p)))


def _reshard_transpose(ct, x, *, dst_sharding, concrete_mesh):
    # `jax.sharding.reshard` is the identity on values and moves data to another layout (a
    # type, on Explicit axes); the cotangent moves back to the layout of its primal.
    if not _nonzero(ct):
        return [None]
    return [reshard_p.bind(ct, dst_sharding=x.aval.sharding, concrete_mesh=concrete_mesh)]


deflinear(reshard_p, _reshard_transpose)


# --- collectives inside shard_map -----------------------------------------------------------------


# With check_vma (the default) a psum of a varying value is `psum_invariant`; its transpose
# hands each device the (invariant) cotangent, typed as varying again: that is `pvary`.
deflinear(psum_invariant_p, _single(lambda ct, *, axes, **_: lax.pcast(ct, axes, to="varying")))
deflinear(pvary_p, _single(lambda ct, *, axes: lax.psum(ct, axes)))


# Without check_vma every value counts as varying: the transpose of a sum over devices is a sum
# over devices, with the cotangent of a replicated output split between its copies (see the
# shard_map transpose below).
# Under `vmap` a psum over the mapped axis names a positional axis (an int) and drops it, like
# `reduce_sum`: its transpose broadcasts the cotangent back along those axes.
def _psum_transpose(ct, x, *, axes, **params):
    if not _nonzero(ct):
        return [None]
    positional = tuple(a for a in axes if isinstance(a, int))
    named = tuple(a for a in axes if not isinstance(a, int))
    if positional:
        kept = tuple(d for d in range(len(x.aval.shape)) if d not in positional)
        ct = lax.broadcast_in_dim(ct, x.aval.shape, kept)
    return [P.psum_p.bind(ct, axes=named, **params) if named else ct]


deflinear(P.psum_p, _psum_transpose)


def _all_gather_transpose(
    ct, *, all_gather_dimension, axis_name, axis_index_groups, axis_size, tiled
):
    return reduce_scatter_p.bind(
        ct,
        scatter_dimension=all_gather_dimension,
        axis_name=axis_name,
        axis_index_groups=axis_index_groups,
        axis_size=axis_size,
        tiled=tiled,
    )


def _reduce_scatter_transpose(
    ct, *, scatter_dimension, axis_name, axis_index_groups, axis_size, tiled
):
    return P.all_gather_p.bind(
        ct,
        all_gather_dimension=scatter_dimension,
        axis_name=axis_name,
        axis_index_groups=axis_index_groups,
        axis_size=axis_size,
        tiled=tiled,
    )


deflinear(P.all_gather_p, _single(_all_gather_transpose))
deflinear(reduce_scatter_p, _single(_reduce_scatter_transpose))
deflinear(
    P.ppermute_p,
    _single(
        lambda ct, *, axis_name, perm: P.ppermute_p.bind(
            ct, axis_name=axis_name, perm=tuple((dst, src) for src, dst in perm)
        )
    ),
)


def _all_to_all_transpose(ct, x, *, split_axis, concat_axis, tiled, **params):
    if not _nonzero(ct):
        return [None]
    if not tiled and x.aval.shape[concat_axis] != 1 and split_axis != concat_axis:
        raise NotImplementedError(
            f"Transpose rule for 'all_to_all' (tiled=False) needs a size-1 concat axis, got "
            f"{x.aval.str_short()} with concat_axis={concat_axis}: use lax.all_to_all, which "
            "inserts that axis, or tiled=True."
        )
    # lax.all_to_all(tiled=False) binds the primitive with a size-n split axis and a size-1 (or
    # the same) concat axis, where it moves data exactly as the tiled form does; the tiled
    # form's inverse is itself with the two axes swapped.
    return [
        P.all_to_all_p.bind(
            ct, split_axis=concat_axis, concat_axis=split_axis, tiled=True, **params
        )
    ]


deflinear(P.all_to_all_p, _all_to_all_transpose)


def _pbroadcast_transpose(ct, *, axis_name, source):
    # Every device received the source's value: the source's cotangent is the sum of them all.
    total = lax.psum(ct, axis_name)
    index = lax.axis_index(axis_name)
    at_source = lax.eq(index, lax.full_like(index, source))
    return lax.select(lax.broadcast(at_source, total.shape), total, lax.full_like(total, 0))


deflinear(pbroadcast_p, _single(_pbroadcast_transpose))


def _pextremum_jvp(prim):
    # JAX has no rule here. Like reduce_max, the derivative goes to the devices that attain the
    # extremum, split equally among ties; the psums make the tangent invariant, as the output is.
    def rule(primals, tangents, *, axes, axis_index_groups):
        (x,), (t,) = primals, tangents
        out = prim.bind(x, axes=axes, axis_index_groups=axis_index_groups)
        attains = lax.convert_element_type(lax.eq(x, out), x.dtype)
        ties = lax.psum(attains, axes)
        return out, lax.div(lax.psum(lax.mul(attains, t), axes), ties)

    return rule


jvp_rules[P.pmax_p] = _pextremum_jvp(P.pmax_p)
jvp_rules[pmin_p] = _pextremum_jvp(pmin_p)
# axis_index has no inputs: it is bound as is and its (integer) output has a zero tangent.


# --- shard_map ------------------------------------------------------------------------------------


def _shard_map(fun, params, in_specs, out_specs):
    """`jax.shard_map` of `fun` over `params`' mesh (tuples of specs in and out)."""
    return jax.shard_map(
        fun,
        mesh=params["mesh"],
        in_specs=tuple(in_specs),
        out_specs=tuple(out_specs),
        axis_names=set(params["newly_manual_axes"]),
        check_vma=params["check_vma"],
    )


def _tangent_dependence(jaxpr, nonzeros) -> list[bool]:
    """Which outputs of `jaxpr` may have a nonzero tangent: they depend on a nonzero input.

    Why: shard_map needs its out_specs before the body is traced, so the JVP decides up front
    which output tangents it returns; the rest are symbolic zeros.
    """
    live = {v for v, nz in zip(jaxpr.invars, nonzeros, strict=True) if nz}
    for eqn in jaxpr.eqns:
        if any(type(v) is not Literal and v in live for v in eqn.invars):
            live.update(eqn.outvars)
    return [
        type(v) is not Literal and v in live and tangent_aval(v.aval).dtype == v.aval.dtype
        for v in jaxpr.outvars
    ]


def _shard_map_jvp(primals, tangents, *, jaxpr, **params):
    nonzeros = [type(t) is not Zero for t in tangents]
    out_nonzeros = _tangent_dependence(jaxpr, nonzeros)
    n = len(primals)

    def body(*args):
        nz_tangents = iter(args[n:])
        tangents = [
            next(nz_tangents) if nz else Zero(tangent_aval(v.aval))
            for v, nz in zip(jaxpr.invars, nonzeros, strict=True)
        ]
        outs, outs_dot = jvp_eval(jaxpr, (), args[:n], tangents)
        nz_dots = [instantiate(t) for t, nz in zip(outs_dot, out_nonzeros, strict=True) if nz]
        return (*outs, *nz_dots)

    in_specs, out_specs = params["in_specs"], params["out_specs"]
    fun = _shard_map(
        body,
        params,
        [*in_specs, *(s for s, nz in zip(in_specs, nonzeros, strict=True) if nz)],
        [*out_specs, *(s for s, nz in zip(out_specs, out_nonzeros, strict=True) if nz)],
    )
    flat = fun(*primals, *(t for t in tangents if type(t) is not Zero))
    outs, nz_dots = list(flat[: len(out_specs)]), iter(flat[len(out_specs) :])
    outs_dot = [
        next(nz_dots) if nz else Zero(tangent_aval(jax.typeof(o)))
        for o, nz in zip(outs, out_nonzeros, strict=True)
    ]
    return outs, outs_dot


jvp_rules[shard_map_p] = _shard_map_jvp


def _mesh_order(params, axes) -> tuple:
    return tuple(a for a in params["mesh"].axis_names if a in axes)


def _residual_axes(params, aval) -> tuple:
    """The mesh axes a residual is stacked over when it leaves the body.

    Why: a per-device value leaves a shard_map as one block per device along the axes where it
    may differ; an invariant value (check_vma) leaves once, as is.
    """
    if params["check_vma"]:
        return _mesh_order(params, varying_axes(aval))
    return _mesh_order(params, params["newly_manual_axes"])


def _trace_eqns(fun, in_atoms, out_vars):
    """Trace `fun` over the avals of `in_atoms`; its equations, rewired to read `in_atoms`.

    Outputs whose target in `out_vars` is not None are renamed to it; the others keep the traced
    variables (new residuals). Returns (equations, traced output variables).
    """
    # The outer values keep their sharding types (on Explicit axes shard_map checks them).
    closed = jax.make_jaxpr(fun)(*(aval_struct(a.aval) for a in in_atoms))
    jaxpr = closed.jaxpr
    rename = dict(zip(jaxpr.invars, in_atoms, strict=True))
    rename.update(
        (c, Literal(val, c.aval)) for c, val in zip(jaxpr.constvars, closed.consts, strict=True)
    )
    out_rename = {}
    for v, target in zip(jaxpr.outvars, out_vars, strict=True):
        assert type(v) is not Literal and v not in rename, "shard_map output not computed"
        if target is not None:
            out_rename[v] = target
    eqns = [
        e.replace(
            invars=[rename.get(v, v) if type(v) is not Literal else v for v in e.invars],
            outvars=[out_rename.get(v, v) for v in e.outvars],
        )
        for e in jaxpr.eqns
    ]
    return eqns, [out_rename.get(v, v) for v in jaxpr.outvars]


def _shard_map_partial_eval(eqn, in_unknowns):
    if all(in_unknowns):  # nothing known to split off
        return [], [eqn], [True] * len(eqn.outvars)
    params = eqn.params
    body = params["jaxpr"]
    split = partial_eval(ClosedJaxpr(body, ()), in_unknowns)
    nres = split.num_residuals
    residuals = split.linear.invars[:nres]
    out_unknowns = split.out_unknowns
    in_specs, out_specs = params["in_specs"], params["out_specs"]
    n_known_outs = len(out_unknowns) - sum(out_unknowns)

    # A residual that is a known body input is passed to the linear shard_map directly.
    body_inputs = {v: i for i, v in enumerate(body.invars)}
    computed = [r for r in residuals if r not in body_inputs]
    stack_axes = {r: _residual_axes(params, r.aval) for r in computed}

    def known_body(*args):
        outs = eval_jaxpr(split.known.jaxpr, (), *args)
        res = dict(zip(residuals, outs[n_known_outs:], strict=True))
        stacked = [lax.expand_dims(res[r], (0,)) if stack_axes[r] else res[r] for r in computed]
        return (*outs[:n_known_outs], *stacked)

    def ins(xs, unknown):  # the inputs (or their specs) on one side of the split
        return [x for x, u in zip(xs, in_unknowns, strict=True) if u == unknown]

    def outs(xs, unknown):
        return [x for x, u in zip(xs, out_unknowns, strict=True) if u == unknown]

    res_specs = {r: Spec(stack_axes[r]) if stack_axes[r] else Spec() for r in computed}
    known_eqns, known_outs = _trace_eqns(
        lambda *xs: _shard_map(
            known_body,
            params,
            ins(in_specs, False),
            [*outs(out_specs, False), *(res_specs[r] for r in computed)],
        )(*xs),
        ins(eqn.invars, False),
        [*outs(eqn.outvars, False), *[None] * len(computed)],
    )
    outer_res = dict(zip(computed, known_outs[n_known_outs:], strict=True))

    def linear_body(*args):
        res, tangents = args[:nres], args[nres:]
        res = [
            lax.squeeze(x, (0,)) if stack_axes.get(r) else x
            for r, x in zip(residuals, res, strict=True)
        ]
        return tuple(eval_jaxpr(split.linear, (), *res, *tangents))

    forwarded = [r for r in residuals if r in body_inputs]
    outer_res.update((r, eqn.invars[body_inputs[r]]) for r in forwarded)
    res_specs.update((r, in_specs[body_inputs[r]]) for r in forwarded)
    lin_eqns, _ = _trace_eqns(
        lambda *xs: _shard_map(
            linear_body,
            params,
            [*(res_specs[r] for r in residuals), *ins(in_specs, True)],
            outs(out_specs, True),
        )(*xs),
        [*(outer_res[r] for r in residuals), *ins(eqn.invars, True)],
        outs(eqn.outvars, True),
    )
    return known_eqns, lin_eqns, out_unknowns


partial_eval_rules[shard_map_p] = _shard_map_partial_eval


def _unmentioned(params, spec) -> tuple:
    named = {
        a
        for part in spec
        if part is not None
        for a in (part if isinstance(part, tuple) else (part,))
    }
    return _mesh_order(params, set(params["newly_manual_axes"]) - named)


def _shard_map_transpose(cts, *invals, jaxpr, **params):
    linear = [is_undefined(x) for x in invals]
    in_specs, out_specs = params["in_specs"], params["out_specs"]
    residuals = [x for x in invals if not is_undefined(x)]
    nonzero = [_nonzero(ct) for ct in cts]
    check_vma = params["check_vma"]

    def body(*args):
        res, nz_cts = args[: len(residuals)], iter(args[len(residuals) :])
        cts_out = []
        for v, spec, nz in zip(jaxpr.outvars, out_specs, nonzero, strict=True):
            ct = next(nz_cts) if nz else Zero(tangent_aval(v.aval))
            # Without check_vma an output not split over an axis is one value with a copy per
            # device along it: its cotangent is shared between the copies.
            copies = math.prod(params["mesh"].shape[a] for a in _unmentioned(params, spec))
            if nz and not check_vma and copies > 1:
                ct = lax.div(ct, lax.full_like(ct, copies))
            cts_out.append(ct)
        cts_in = backward_pass(jaxpr, (), res, linear, cts_out)
        out = []
        for ct, spec in zip(
            cts_in, (s for s, m in zip(in_specs, linear, strict=True) if m), strict=True
        ):
            axes = _unmentioned(params, spec)
            if not check_vma and axes and type(ct) is not Zero:
                # ...and an input replicated along an axis collects the cotangents of its copies.
                ct = lax.psum(ct, axes)
            out.append(instantiate(ct))
        return tuple(out)

    fun = _shard_map(
        body,
        params,
        [
            *(s for s, m in zip(in_specs, linear, strict=True) if not m),
            *(s for s, nz in zip(out_specs, nonzero, strict=True) if nz),
        ],
        [s for s, m in zip(in_specs, linear, strict=True) if m],
    )
    cts_in = iter(fun(*residuals, *(ct for ct in cts if _nonzero(ct))))
    return [next(cts_in) if m else None for m in linear]


transpose_rules[shard_map_p] = _shard_map_transpose
