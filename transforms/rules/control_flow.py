"""Control flow: `scan` and `cond` (and `switch`); `while` is in `while_loop.py`.

Each primitive carries inner jaxprs, so each needs all three stages:

- JVP: the same loop or branch, over the JVP of its body. Which carries have a nonzero tangent
  is a fixed point: a carry's tangent is nonzero if its initial tangent is, or if one step makes
  it so from the current guess.
- Partial evaluation (`partial_eval_rules`): split the body into its known (primal) and unknown
  (tangent) halves. For `scan` the unknown carries are again a fixed point; values the linear
  body needs from each step are stacked by the known scan as extra outputs. For `cond` every
  branch outputs the residuals of every branch (zeros in the slots of the others), so both
  halves keep one signature.
- Transpose: a linear `scan` transposes into a scan running the other way over the transposed
  body, the cotangents of loop-invariant inputs accumulated in the carry; a linear `cond`
  transposes each branch.

The helpers at the top serve the loop modules too (`while_loop.py`, `while_reverse.py`,
`while_stored.py`).
"""

from __future__ import annotations

import jax
from jax import lax
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal, Var, new_jaxpr_eqn
from jax.extend.core import primitives as P

from ..interpreter import dce_eqns, eval_jaxpr
from ..jvp import jvp_eval, jvp_rules
from ..partial_eval import _debug_info, partial_eval_rules, split_jaxpr
from ..transpose import backward_pass, is_undefined, transpose_rules
from ..zeros import (
    Zero,
    explicit_sharding,
    instantiate,
    is_differentiable,
    stacked_aval,
    tangent_aval,
)

# --- helpers --------------------------------------------------------------------------------------


def _differentiable(aval) -> bool:
    return is_differentiable(aval)


def _sds(aval):
    # On Explicit mesh axes the sharding is part of the type: a program traced without it
    # would not match the values it is called on (a loop's carries would change type).
    return jax.ShapeDtypeStruct(
        aval.shape, aval.dtype, weak_type=aval.weak_type, sharding=explicit_sharding(aval)
    )


def cast_to_aval(x, aval):
    """`x` with exactly `aval`'s dtype and weak type: loop carries and branch outputs must match."""
    x = instantiate(x)
    have = jax.typeof(x)
    if have.dtype == aval.dtype and have.weak_type == aval.weak_type:
        return x
    return P.convert_element_type_p.bind(
        x, new_dtype=aval.dtype, weak_type=aval.weak_type, sharding=None
    )


def as_weak_as(cts, avals) -> list:
    """`avals` with the weak type of the cotangents that come in (Zeros keep theirs).

    A loop carry's cotangent is as weak as the incoming one, as JAX's loops give it: a strong
    cotangent of a Python-float (weak) carry stays strong.
    """
    return [
        a if type(ct) is Zero else a.update(weak_type=jax.typeof(ct).weak_type)
        for ct, a in zip(cts, avals, strict=True)
    ]


def jvp_nonzeros(closed: ClosedJaxpr, nonzeros) -> list[bool]:
    """Which outputs of `closed`'s JVP have a nonzero tangent, given which inputs do."""
    in_avals = [v.aval for v in closed.jaxpr.invars]
    box = []

    def probe(*args):
        primals, nz_tangents = args[: len(in_avals)], iter(args[len(in_avals) :])
        tangents = [
            next(nz_tangents) if nz else Zero(tangent_aval(a))
            for nz, a in zip(nonzeros, in_avals, strict=True)
        ]
        _, outs_dot = jvp_eval(closed.jaxpr, closed.consts, primals, tangents)
        box.append([type(t) is not Zero for t in outs_dot])
        return []

    t_avals = [tangent_aval(a) for a, nz in zip(in_avals, nonzeros, strict=True) if nz]
    jax.make_jaxpr(probe)(*map(_sds, in_avals), *map(_sds, t_avals))
    return box[-1]


def _nonzeros(tangents, avals) -> list[bool]:
    # A float0 tangent (of an integer input) is zero whatever its value.
    return [
        type(t) is not Zero and _differentiable(a) for t, a in zip(tangents, avals, strict=True)
    ]


def _split3(xs, n1, n2):
    return list(xs[:n1]), list(xs[n1 : n1 + n2]), list(xs[n1 + n2 :])


def _pick(xs, mask, want=True):
    return [x for x, m in zip(xs, mask, strict=True) if m == want]


def _merge(mask, if_true, if_false):
    t, f = iter(if_true), iter(if_false)
    return [next(t) if m else next(f) for m in mask]


def _tangents_in(nonzeros, nz_values, avals):
    it = iter(nz_values)
    return [
        next(it) if nz else Zero(tangent_aval(a)) for nz, a in zip(nonzeros, avals, strict=True)
    ]


def _eqn(invars, outvars, prim, params, like):
    return new_jaxpr_eqn(invars, outvars, prim, params, like.effects, like.source_info, like.ctx)


def _wholesale(eqn):
    return [], [eqn], [True] * len(eqn.outvars)


# --- scan -----------------------------------------------------------------------------------------


def _scan_jvp(
    primals, tangents, *, jaxpr, num_consts, num_carry, length, reverse, unroll, **params
):
    n_c, n_k = num_consts, num_carry
    avals = [v.aval for v in jaxpr.jaxpr.invars]
    nz = _nonzeros(tangents, avals)
    const_nz, carry_nz, xs_nz = _split3(nz, n_c, n_k)
    carry_diff = [_differentiable(a) for a in avals[n_c : n_c + n_k]]
    while True:  # fixed point: a carry's tangent is nonzero if any step can make it so
        out_nz = jvp_nonzeros(jaxpr, const_nz + carry_nz + xs_nz)
        grown = [(a or b) and d for a, b, d in zip(carry_nz, out_nz[:n_k], carry_diff, strict=True)]
        if grown == carry_nz:
            break
        carry_nz = grown
    out_avals = [v.aval for v in jaxpr.jaxpr.outvars]
    ys_nz = [z and _differentiable(a) for z, a in zip(out_nz[n_k:], out_avals[n_k:], strict=True)]
    consts, init, xs = _split3(primals, n_c, n_k)
    t_consts, t_init, t_xs = _split3(tangents, n_c, n_k)
    carry_t_avals = [tangent_aval(a) for a in avals[n_c : n_c + n_k]]
    t_init_nz = [cast_to_aval(t, a) for t, a, z in zip(t_init, carry_t_avals, carry_nz) if z]
    t_consts_nz = _pick(t_consts, const_nz)
    t_xs_nz = _pick(t_xs, xs_nz)

    def body(carry, x):
        c, t_c = carry
        x_p, t_x = x
        outs, outs_dot = jvp_eval(
            jaxpr.jaxpr,
            jaxpr.consts,
            [*consts, *c, *x_p],
            _tangents_in(const_nz + carry_nz + xs_nz, [*t_consts_nz, *t_c, *t_x], avals),
        )
        t_c_out = [
            cast_to_aval(t, a)
            for t, a, z in zip(outs_dot[:n_k], carry_t_avals, carry_nz, strict=True)
            if z
        ]
        c_out = [
            cast_to_aval(o, a) for o, a in zip(outs[:n_k], avals[n_c : n_c + n_k], strict=True)
        ]
        return (c_out, t_c_out), (outs[n_k:], _pick(outs_dot[n_k:], ys_nz))

    (c_out, t_c_out), (ys, t_ys) = lax.scan(
        body, (init, t_init_nz), (xs, t_xs_nz), length=length, reverse=reverse, unroll=unroll
    )
    out_t = _tangents_in(carry_nz + ys_nz, [*t_c_out, *t_ys], out_avals)
    return [*c_out, *ys], out_t


def _scan_partial_eval(eqn, unknowns):
    p = eqn.params
    closed, n_c, n_k = p["jaxpr"], p["num_consts"], p["num_carry"]
    body = closed.jaxpr
    n_ys = len(body.outvars) - n_k
    const_u, carry_u, xs_u = _split3(list(unknowns), n_c, n_k)
    while True:  # fixed point over the carry: which carries the unknown inputs reach
        s = split_jaxpr(body, const_u + carry_u + xs_u, instantiate=carry_u + [False] * n_ys)
        grown = [a or b for a, b in zip(carry_u, s.out_unknowns[:n_k], strict=True)]
        if grown == carry_u:
            break
        carry_u = grown
    out_u = list(s.out_unknowns)
    if all(out_u):
        return _wholesale(eqn)

    in_u = const_u + carry_u + xs_u
    outer_in = list(eqn.invars)
    body_pos = {v: i for i, v in enumerate(body.invars)}
    constvars = set(body.constvars)
    # Route each residual: loop-invariant inputs and known xs go straight from the outer
    # equation to the linear scan; values computed inside (or carried) are stacked per step.
    res_consts, res_xs, res_stacked, res_constvars = [], [], [], []
    for r in s.residuals:
        if r in constvars:
            res_constvars.append(r)
        elif r in body_pos and body_pos[r] < n_c:
            res_consts.append(r)
        elif r in body_pos and body_pos[r] >= n_c + n_k:
            res_xs.append(r)
        else:
            res_stacked.append(r)

    # Residuals computed from loop-invariant inputs alone are computed once, before the loop,
    # and enter the linear scan as consts instead of being stacked per step.
    invariant = set(body.invars[:n_c]) | constvars
    invariant_eqns = []
    for e in s.known.eqns:
        if not e.effects and all(type(v) is Literal or v in invariant for v in e.invars):
            invariant.update(e.outvars)
            invariant_eqns.append(e)
    res_hoisted = [r for r in res_stacked if r in invariant]
    res_stacked = [r for r in res_stacked if r not in invariant]
    hoisted_vars = [Var(r.aval) for r in res_hoisted]
    hoist_eqns = []
    if res_hoisted:
        known_const_invars = _pick(body.invars[:n_c], const_u, False)
        hoist_body = Jaxpr(
            body.constvars,
            known_const_invars,
            res_hoisted,
            # From the invariant equations only: the body's effectful ones (a debug print)
            # read the carry, which the hoisted computation has no access to, and stay in it.
            dce_eqns(invariant_eqns, res_hoisted)[0],
            debug_info=_debug_info("scan invariants", len(known_const_invars), len(res_hoisted)),
        )
        hoist_eqns.append(
            _eqn(
                _pick(outer_in[:n_c], const_u, False),
                hoisted_vars,
                P.closed_call_p,
                {"call_jaxpr": ClosedJaxpr(hoist_body, closed.consts)},
                eqn,
            )
        )

    length = p["length"]
    stacked_vars = [Var(stacked_aval(r.aval, length)) for r in res_stacked]
    n_known_outs = len(s.known.outvars) - len(s.residuals)
    known_outs = list(s.known.outvars[:n_known_outs])
    known_body_eqns, _ = dce_eqns(s.known.eqns, [*known_outs, *res_stacked])
    known_invars = _pick(body.invars, in_u, False)
    known_body = Jaxpr(
        body.constvars,
        known_invars,
        [*known_outs, *res_stacked],
        known_body_eqns,
        debug_info=_debug_info(
            "known scan body", len(known_invars), n_known_outs + len(res_stacked)
        ),
    )
    known_eqn = _eqn(
        _pick(outer_in, in_u, False),
        [*_pick(eqn.outvars, out_u, False), *stacked_vars],
        P.scan_p,
        dict(
            p,
            jaxpr=ClosedJaxpr(known_body, closed.consts),
            num_consts=n_c - sum(const_u),
            num_carry=n_k - sum(carry_u),
        ),
        eqn,
    )

    n_res = len(s.residuals)
    lin_unknown_in = list(s.linear.invars[n_res:])
    u_consts, u_carry, u_xs = _split3(lin_unknown_in, sum(const_u), sum(carry_u))
    lin_invars = [*res_consts, *res_hoisted, *u_consts, *u_carry, *res_stacked, *res_xs, *u_xs]
    linear_body = Jaxpr(
        res_constvars,
        lin_invars,
        s.linear.outvars,
        s.linear.eqns,
        debug_info=_debug_info("linear scan body", len(lin_invars), len(s.linear.outvars)),
    )
    const_vals = [closed.consts[body.constvars.index(v)] for v in res_constvars]
    outer_of = dict(zip(body.invars, outer_in, strict=True))
    outer_u_consts, outer_u_carry, outer_u_xs = _split3(
        _pick(outer_in, in_u), sum(const_u), sum(carry_u)
    )
    unknown_eqn = _eqn(
        [
            *(outer_of[r] for r in res_consts),
            *hoisted_vars,
            *outer_u_consts,
            *outer_u_carry,
            *stacked_vars,
            *(outer_of[r] for r in res_xs),
            *outer_u_xs,
        ],
        _pick(eqn.outvars, out_u),
        P.scan_p,
        dict(
            p,
            jaxpr=ClosedJaxpr(linear_body, const_vals),
            num_consts=len(res_consts) + len(res_hoisted) + len(u_consts),
            num_carry=len(u_carry),
        ),
        eqn,
    )
    return [*hoist_eqns, known_eqn], [unknown_eqn], out_u


def _transpose_by_splitting(prim, params, cts, invals):
    # An equation that mixes non-linear and linear work (a loop counter next to a linear carry,
    # as in a user's function given to linear_transpose): split it like partial evaluation
    # does, evaluate the non-linear half, transpose the linear half.
    in_lin = [is_undefined(x) for x in invals]
    avals = [x.aval if is_undefined(x) else jax.typeof(x) for x in invals]
    one_eqn = jax.make_jaxpr(lambda *a: prim.bind(*a, **params))(*map(_sds, avals))
    s = split_jaxpr(one_eqn.jaxpr, in_lin, keep_known_outs=[False] * len(cts))
    residuals = eval_jaxpr(s.known, one_eqn.consts, *_pick(invals, in_lin, False))
    cts_lin = [
        instantiate(ct) if type(ct) is not Zero else ct
        for ct, u in zip(cts, s.out_unknowns, strict=True)
        if u
    ]
    mask = [False] * len(residuals) + [True] * sum(in_lin)
    return _merge(
        in_lin, backward_pass(s.linear, [], residuals, mask, cts_lin), [None] * len(invals)
    )


def _scan_transpose(cts, *invals, jaxpr, num_consts, num_carry, length, reverse, unroll, **params):
    # Consts and xs are linear where undefined, residuals otherwise; every carry must be linear
    # (partial evaluation puts the others in the known scan), else split first.
    n_c, n_k = num_consts, num_carry
    consts, init, xs = _split3(invals, n_c, n_k)
    const_lin = [is_undefined(c) for c in consts]
    xs_lin = [is_undefined(x) for x in xs]
    carry_lin = [is_undefined(x) for x in init]
    n_ys = len(jaxpr.jaxpr.outvars) - n_k
    while True:
        s = split_jaxpr(jaxpr.jaxpr, const_lin + carry_lin + xs_lin, [False] * (n_k + n_ys))
        grown = [a or b for a, b in zip(carry_lin, s.out_unknowns[:n_k], strict=True)]
        if grown == carry_lin:
            break
        carry_lin = grown
    if not all(carry_lin):
        all_params = dict(
            params,
            jaxpr=jaxpr,
            num_consts=n_c,
            num_carry=n_k,
            length=length,
            reverse=reverse,
            unroll=unroll,
        )
        return _transpose_by_splitting(P.scan_p, all_params, cts, invals)
    mask = const_lin + [True] * n_k + xs_lin
    res_consts = _pick(consts, const_lin, False)
    res_xs = _pick(xs, xs_lin, False)
    in_t_avals = [tangent_aval(v.aval) for v in jaxpr.jaxpr.invars]
    const_avals, carry_avals, xs_avals = _split3(in_t_avals, n_c, n_k)
    out_t_avals = [tangent_aval(v.aval) for v in jaxpr.jaxpr.outvars]
    carry_avals = as_weak_as(cts[:n_k], carry_avals)
    ct_carry0 = [cast_to_aval(ct, a) for ct, a in zip(cts[:n_k], carry_avals, strict=True)]
    ys_nz = [type(ct) is not Zero for ct in cts[n_k:]]
    ct_ys = _pick(cts[n_k:], ys_nz)
    ct_consts0 = [instantiate(Zero(a)) for a in _pick(const_avals, const_lin)]

    def body(carry, x):
        ct_consts, ct_carry = carry
        res_x, ct_y = x
        cts_out = [*ct_carry, *_tangents_in(ys_nz, ct_y, out_t_avals[n_k:])]
        cts_in = backward_pass(jaxpr.jaxpr, jaxpr.consts, [*res_consts, *res_x], mask, cts_out)
        ct_c_in, ct_k_in, ct_x_in = _split3(cts_in, sum(const_lin), n_k)
        ct_consts = [
            lax.add(acc, cast_to_aval(ct, a)) if type(ct) is not Zero else acc
            for acc, ct, a in zip(ct_consts, ct_c_in, _pick(const_avals, const_lin), strict=True)
        ]
        ct_carry = [cast_to_aval(ct, a) for ct, a in zip(ct_k_in, carry_avals, strict=True)]
        ct_x = [cast_to_aval(ct, a) for ct, a in zip(ct_x_in, _pick(xs_avals, xs_lin), strict=True)]
        return (ct_consts, ct_carry), ct_x

    (ct_consts, ct_init), ct_xs = lax.scan(
        body,
        (ct_consts0, ct_carry0),
        (res_xs, ct_ys),
        length=length,
        reverse=not reverse,
        unroll=unroll,
    )
    ct_init = [ct if is_undefined(x) else None for ct, x in zip(ct_init, init, strict=True)]
    return [
        *_merge(const_lin, ct_consts, [None] * n_c),
        *ct_init,
        *_merge(xs_lin, ct_xs, [None] * len(xs)),
    ]


jvp_rules[P.scan_p] = _scan_jvp
partial_eval_rules[P.scan_p] = _scan_partial_eval
transpose_rules[P.scan_p] = _scan_transpose


# --- cond / switch --------------------------------------------------------------------------------


def _cond_jvp(primals, tangents, *, branches, **params):
    index, *ops = primals
    t_ops = tangents[1:]
    nz = _nonzeros(t_ops, [v.aval for v in branches[0].jaxpr.invars])
    # A tangent output is nonzero if any branch makes it so; the others instantiate zeros.
    out_avals = [v.aval for v in branches[0].jaxpr.outvars]
    out_nz = [
        any(col) and _differentiable(a)
        for col, a in zip(zip(*(jvp_nonzeros(b, nz) for b in branches)), out_avals, strict=True)
    ]
    out_t_avals = [tangent_aval(a) for a in out_avals]
    in_avals = [v.aval for v in branches[0].jaxpr.invars]

    def branch_fn(br):
        def f(ops, t_ops_nz):
            outs, outs_dot = jvp_eval(
                br.jaxpr, br.consts, ops, _tangents_in(nz, t_ops_nz, in_avals)
            )
            t_nz = [cast_to_aval(t, a) for t, a, z in zip(outs_dot, out_t_avals, out_nz) if z]
            return [cast_to_aval(o, a) for o, a in zip(outs, out_avals, strict=True)], t_nz

        return f

    outs, t_nz = lax.switch(index, [branch_fn(b) for b in branches], ops, _pick(t_ops, nz))
    return outs, _tangents_in(out_nz, t_nz, out_avals)


def _cond_partial_eval(eqn, unknowns):
    index_u, *ops_u = unknowns
    if index_u:
        return _wholesale(eqn)
    branches = eqn.params["branches"]
    n_out = len(eqn.outvars)
    splits = [split_jaxpr(b.jaxpr, ops_u) for b in branches]
    out_u = [any(col) for col in zip(*(s.out_unknowns for s in splits), strict=True)]
    splits = [split_jaxpr(b.jaxpr, ops_u, instantiate=out_u) for b in branches]
    if all(out_u):
        return _wholesale(eqn)

    # Residuals that are the branch's own (known) operands are routed from the outer equation;
    # every other residual gets a slot, filled by its branch and zero in the others.
    res_ops = sorted(
        {
            b.jaxpr.invars.index(r)
            for b, s in zip(branches, splits)
            for r in s.residuals
            if r in b.jaxpr.invars
        }
    )
    slots = [
        [r for r in s.residuals if r not in b.jaxpr.invars]
        for b, s in zip(branches, splits, strict=True)
    ]
    slot_avals = [r.aval for rs in slots for r in rs]
    known_ops_avals = [
        v.aval for v, u in zip(branches[0].jaxpr.invars, ops_u, strict=True) if not u
    ]

    def known_branch(i, b, s):
        n_known = n_out - sum(out_u)

        def f(*known_ops):
            outs = eval_jaxpr(s.known, b.consts, *known_ops)
            mine = dict(zip(s.residuals, outs[n_known:], strict=True))
            filled = [
                cast_to_aval(mine[r] if j == i else Zero(r.aval), r.aval)
                for j, rs in enumerate(slots)
                for r in rs
            ]
            return [*outs[:n_known], *filled]

        return jax.make_jaxpr(f)(*map(_sds, known_ops_avals))

    def linear_branch(i, b, s):
        def f(*args):
            ops_r = args[: len(res_ops)]
            slot_vals = args[len(res_ops) : len(res_ops) + len(slot_avals)]
            unknown = args[len(res_ops) + len(slot_avals) :]
            env = {b.jaxpr.invars[j]: x for j, x in zip(res_ops, ops_r, strict=True)}
            start = sum(len(rs) for rs in slots[:i])
            env.update(zip(slots[i], slot_vals[start : start + len(slots[i])], strict=True))
            res_vals = [
                env[r] if r in env else b.consts[b.jaxpr.constvars.index(r)] for r in s.residuals
            ]
            return eval_jaxpr(s.linear, [], *res_vals, *unknown)

        in_avals = [
            *(branches[0].jaxpr.invars[j].aval for j in res_ops),
            *slot_avals,
            *(v.aval for v, u in zip(b.jaxpr.invars, ops_u, strict=True) if u),
        ]
        return jax.make_jaxpr(f)(*map(_sds, in_avals))

    known_branches = tuple(known_branch(i, b, s) for i, (b, s) in enumerate(zip(branches, splits)))
    linear_branches = tuple(
        linear_branch(i, b, s) for i, (b, s) in enumerate(zip(branches, splits))
    )
    index, *ops = eqn.invars
    slot_vars = [Var(a) for a in slot_avals]
    known_eqn = _eqn(
        [index, *_pick(ops, ops_u, False)],
        [*_pick(eqn.outvars, out_u, False), *slot_vars],
        P.cond_p,
        dict(eqn.params, branches=known_branches),
        eqn,
    )
    unknown_eqn = _eqn(
        [index, *(ops[j] for j in res_ops), *slot_vars, *_pick(ops, ops_u)],
        _pick(eqn.outvars, out_u),
        P.cond_p,
        dict(eqn.params, branches=linear_branches),
        eqn,
    )
    return [known_eqn], [unknown_eqn], out_u


def _cond_transpose(cts, index, *ops, branches, **params):
    assert not is_undefined(index), "cond is not linear in its predicate"
    lin = [is_undefined(x) for x in ops]
    in_avals = [v.aval for v in branches[0].jaxpr.invars]
    lin_avals = [tangent_aval(a) for a in _pick(in_avals, lin)]
    out_t_avals = [tangent_aval(v.aval) for v in branches[0].jaxpr.outvars]
    cts_nz = [type(ct) is not Zero for ct in cts]

    def branch_fn(br):
        def f(res, cts_present):
            cts_out = _tangents_in(cts_nz, cts_present, out_t_avals)
            cts_in = backward_pass(br.jaxpr, br.consts, res, lin, cts_out)
            return [cast_to_aval(ct, a) for ct, a in zip(cts_in, lin_avals, strict=True)]

        return f

    cts_in = lax.switch(
        index, [branch_fn(b) for b in branches], _pick(ops, lin, False), _pick(cts, cts_nz)
    )
    return [None, *_merge(lin, cts_in, [None] * len(ops))]


jvp_rules[P.cond_p] = _cond_jvp
partial_eval_rules[P.cond_p] = _cond_partial_eval
transpose_rules[P.cond_p] = _cond_transpose
