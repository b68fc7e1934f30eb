"""`while`: its JVP, and the split of a while loop into known and unknown loops.

The JVP runs the same loop over the JVP of its body; which carries have a nonzero tangent is a
fixed point, as for `scan`. Partial evaluation (`_while_partial_eval`, called by
`while_reverse.py`, which registers it) leaves the primal loop in the known program and the
whole loop in the linear one; `while_reverse.py` transposes that by recomputing from snapshots,
and `while_stored.py` stores residuals per step instead when the loop has a bound.

A loop batched by `vmap` has a `bool[batch]` condition; every rule here and in the other loop
modules first rewrites it with a scalar one (`with_scalar_predicate`).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np
from jax import lax
from jax.extend.core import ClosedJaxpr, Jaxpr, Var
from jax.extend.core import primitives as P

from ..interpreter import dce_eqns, eval_jaxpr
from ..jvp import jvp_eval, jvp_rules
from ..partial_eval import JaxprSplit, _debug_info, split_jaxpr
from ..zeros import tangent_aval
from .control_flow import (
    _differentiable,
    _eqn,
    _nonzeros,
    _pick,
    _sds,
    _split3,
    _tangents_in,
    _wholesale,
    cast_to_aval,
    jvp_nonzeros,
)


def loop_predicate(pred):
    """A while loop's predicate as `lax.while_loop` takes it: "any" of a `bool[batch]` one."""
    return lax.reduce_or(pred, tuple(range(pred.ndim))) if np.ndim(pred) else pred


def with_scalar_predicate(params: dict, values: list) -> tuple[dict, list] | None:
    """A `while` whose condition gives `bool[batch]`, as one with a scalar condition, or None.

    JAX's batching of a loop whose predicate depends on the batch leaves the condition batched:
    the loop runs while any example's predicate holds, and `while`'s lowering keeps the carries
    of the finished examples as they are. Our rules build loops with `lax.while_loop`, which
    takes a scalar condition, so that selection is written into the body here: the body takes
    the condition's constants too and selects, per example, the new carry or the old one.
    `values` are the equation's inputs (or their tangents, or unknown-ness flags); the
    condition's constants are passed twice, to the condition and to the body.
    """
    cond, body = params["cond_jaxpr"], params["body_jaxpr"]
    n_cc, n_bc = params["cond_nconsts"], params["body_nconsts"]
    pred_aval = cond.out_avals[0]
    if not pred_aval.shape:
        return None
    batch = pred_aval.shape
    carry_avals = [v.aval for v in body.jaxpr.invars[n_bc:]]
    if any(tuple(a.shape[: len(batch)]) != batch for a in carry_avals):
        raise NotImplementedError(
            f"while_loop with a condition of shape {batch}: every carry must have those "
            f"leading dimensions, got {[a.str_short() for a in carry_avals]}"
        )

    def new_cond(*args):
        (pred,) = eval_jaxpr(cond.jaxpr, cond.consts, *args)
        return loop_predicate(pred)

    def new_body(*args):
        cc, bc, carry = _split3(list(args), n_cc, n_bc)
        (pred,) = eval_jaxpr(cond.jaxpr, cond.consts, *cc, *carry)
        new = eval_jaxpr(body.jaxpr, body.consts, *bc, *carry)
        dims = tuple(range(len(batch)))
        return [
            lax.select(lax.broadcast_in_dim(pred, jax.typeof(old).shape, dims), x, old)
            for x, old in zip(new, carry, strict=True)
        ]

    cc_avals = [v.aval for v in cond.jaxpr.invars[:n_cc]]
    bc_avals = [v.aval for v in body.jaxpr.invars[:n_bc]]
    new_params = dict(
        params,
        cond_jaxpr=jax.make_jaxpr(new_cond)(*map(_sds, cc_avals + carry_avals)),
        body_jaxpr=jax.make_jaxpr(new_body)(*map(_sds, cc_avals + bc_avals + carry_avals)),
        body_nconsts=n_cc + n_bc,
    )
    cc, bc, init = _split3(list(values), n_cc, n_bc)
    return new_params, [*cc, *cc, *bc, *init]


def split_while_body(body: Jaxpr, const_unknowns, carry_unknowns):
    """`split_jaxpr` of a while body, with every carry that an unknown input reaches unknown.

    A fixed point over the carries (at most one more round per carry: each round only adds
    unknowns). Returns the split and the carries' unknown-ness.
    """
    carry_unknowns = list(carry_unknowns)
    while True:
        s = split_jaxpr(body, list(const_unknowns) + carry_unknowns, instantiate=carry_unknowns)
        grown = [a or b for a, b in zip(carry_unknowns, s.out_unknowns, strict=True)]
        if grown == carry_unknowns:
            return s, carry_unknowns
        carry_unknowns = grown


@dataclass(frozen=True)
class WhileSplit:
    """A while loop's body and condition split by which inputs are unknown."""

    body: JaxprSplit
    carry_unknowns: list
    cond_known: Jaxpr  # the condition over its constants and the known carries


def split_while(params: dict, unknowns) -> WhileSplit | None:
    """Split a while equation's body and condition, or None where it cannot be split.

    It cannot when the condition depends on an unknown input, or every carry is unknown: the
    whole loop is then on the unknown side.
    """
    cond, body = params["cond_jaxpr"], params["body_jaxpr"]
    cc_u, bc_u, carry_u = _split3(list(unknowns), params["cond_nconsts"], params["body_nconsts"])
    if any(cc_u):
        return None
    s, carry_u = split_while_body(body.jaxpr, bc_u, carry_u)
    cond_split = split_jaxpr(cond.jaxpr, cc_u + carry_u)
    if all(carry_u) or any(cond_split.out_unknowns):
        return None
    cond_known = Jaxpr(
        cond.jaxpr.constvars,
        cond_split.known.invars,
        list(cond.jaxpr.outvars),
        cond_split.known.eqns,
        debug_info=_debug_info("known while cond", len(cond_split.known.invars), 1),
    )
    return WhileSplit(s, carry_u, cond_known)


def _while_jvp(primals, tangents, **params):
    scalar = with_scalar_predicate(params, list(primals))
    if scalar is not None:
        new_params, primals = scalar
        tangents = with_scalar_predicate(params, list(tangents))[1]
        return _while_jvp(primals, tangents, **new_params)
    return _scalar_while_jvp(primals, tangents, **params)


def _scalar_while_jvp(primals, tangents, *, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts):
    cond_consts, body_consts, init = _split3(primals, cond_nconsts, body_nconsts)
    _, t_body_consts, t_init = _split3(tangents, cond_nconsts, body_nconsts)
    avals = [v.aval for v in body_jaxpr.jaxpr.invars]
    const_nz = _nonzeros(t_body_consts, avals[:body_nconsts])
    carry_nz = _nonzeros(t_init, avals[body_nconsts:])
    carry_diff = [_differentiable(a) for a in avals[body_nconsts:]]
    while True:
        out_nz = jvp_nonzeros(body_jaxpr, const_nz + carry_nz)
        grown = [(a or b) and d for a, b, d in zip(carry_nz, out_nz, carry_diff, strict=True)]
        if grown == carry_nz:
            break
        carry_nz = grown
    carry_t_avals = [tangent_aval(a) for a in avals[body_nconsts:]]
    t_consts_nz = _pick(t_body_consts, const_nz)

    def cond_fun(carry):
        c, _ = carry
        return loop_predicate(eval_jaxpr(cond_jaxpr.jaxpr, cond_jaxpr.consts, *cond_consts, *c)[0])

    def body_fun(carry):
        c, t_c = carry
        outs, outs_dot = jvp_eval(
            body_jaxpr.jaxpr,
            body_jaxpr.consts,
            [*body_consts, *c],
            _tangents_in(const_nz + carry_nz, [*t_consts_nz, *t_c], avals),
        )
        return outs, [cast_to_aval(t, a) for t, a, z in zip(outs_dot, carry_t_avals, carry_nz) if z]

    t_init_nz = [cast_to_aval(t, a) for t, a, z in zip(t_init, carry_t_avals, carry_nz) if z]
    outs, t_outs = lax.while_loop(cond_fun, body_fun, (init, t_init_nz))
    return outs, _tangents_in(carry_nz, t_outs, avals[body_nconsts:])


def _while_partial_eval(eqn, unknowns):
    # The primal loop runs in the known program; the whole loop (primal recomputed alongside the
    # tangents) goes to the linear program: evaluated forward by linearize, transposed by
    # recomputing the primal from snapshots (rules/while_reverse.py), so nothing is stored per
    # step.
    p = eqn.params
    cond, body, n_cc, n_bc = p["cond_jaxpr"], p["body_jaxpr"], p["cond_nconsts"], p["body_nconsts"]
    _, bc_u, _ = _split3(list(unknowns), n_cc, n_bc)
    split = split_while(p, unknowns)
    if split is None:
        return _wholesale(eqn)
    s, carry_u, cond_known = split.body, split.carry_unknowns, split.cond_known
    known_carry = [not u for u in carry_u]
    known_outs = _pick(body.jaxpr.outvars, known_carry)
    body_eqns, _ = dce_eqns(s.known.eqns, known_outs)
    body_known = Jaxpr(
        body.jaxpr.constvars,
        s.known.invars,
        known_outs,
        body_eqns,
        debug_info=_debug_info("known while body", len(s.known.invars), len(known_outs)),
    )
    cc, bc, init = _split3(eqn.invars, n_cc, n_bc)
    known_eqn = _eqn(
        [*cc, *_pick(bc, bc_u, False), *_pick(init, known_carry)],
        _pick(eqn.outvars, known_carry),
        P.while_p,
        dict(
            p,
            cond_jaxpr=ClosedJaxpr(cond_known, cond.consts),
            body_jaxpr=ClosedJaxpr(body_known, body.consts),
            body_nconsts=n_bc - sum(bc_u),
        ),
        eqn,
    )
    unknown_outvars = [
        Var(v.aval) if k else v for v, k in zip(eqn.outvars, known_carry, strict=True)
    ]
    unknown_eqn = _eqn(eqn.invars, unknown_outvars, P.while_p, p, eqn)
    return [known_eqn], [unknown_eqn], carry_u


jvp_rules[P.while_p] = _while_jvp
# Partial evaluation and transposition: while_reverse.py (and while_stored.py, with a bound).
