"""`jax.checkpoint` (remat): values inside are recomputed in the backward pass, not stored.

- JVP: a checkpointed function's JVP is again checkpointed (same `policy`, `prevent_cse`).
- Partial evaluation: the known program computes only the primal outputs, plus the values the
  `policy` allows to save (e.g. `dots_saveable`: the outputs of `dot_general`). The whole body
  also travels into the linear program as one `remat` equation whose inputs are the primal
  inputs and the saved values: the residuals are those, not the body's intermediates.
- Transpose: the linear `remat` equation splits its body again, evaluates the known half
  (the recomputation, behind an optimization barrier so XLA does not merge it with the forward
  pass) and transposes the linear half.
"""

from __future__ import annotations

import jax
from jax import lax
from jax.extend.core import Jaxpr, Var, new_jaxpr_eqn
from jax.extend.core import primitives as P

from .._jax import partial_eval as _pe
from ..interpreter import dce_eqns, eval_jaxpr
from ..jvp import jvp_eval, jvp_rules
from ..partial_eval import _debug_info, partial_eval_rules, split_jaxpr
from ..transpose import backward_pass, is_undefined, transpose_rules
from ..zeros import Zero, instantiate, tangent_aval


def _remat_jvp(primals, tangents, *, jaxpr, prevent_cse, differentiated, policy):
    nz = [type(t) is not Zero for t in tangents]
    in_avals = [v.aval for v in jaxpr.invars]
    out_nz_box = []

    def f(primals, t_nz):
        it = iter(t_nz)
        tangents = [
            next(it) if z else Zero(tangent_aval(a)) for z, a in zip(nz, in_avals, strict=True)
        ]
        outs, outs_dot = jvp_eval(jaxpr, (), primals, tangents)
        out_nz_box.append([type(t) is not Zero for t in outs_dot])
        return outs, [t for t in outs_dot if type(t) is not Zero]

    t_nz = [t for t in tangents if type(t) is not Zero]
    outs, t_out = jax.checkpoint(f, prevent_cse=prevent_cse, policy=policy)(list(primals), t_nz)
    it = iter(t_out)
    return outs, [
        next(it) if z else Zero(tangent_aval(v.aval))
        for z, v in zip(out_nz_box[-1], jaxpr.outvars, strict=True)
    ]


def _saveable(policy, eqn) -> bool:
    if policy is None:
        return False
    verdict = policy(eqn.primitive, *(v.aval for v in eqn.invars), **eqn.params)
    # Policies answer True/False, or (offloading policies) a marker object saying where to keep
    # the value; anything but "recompute" means the value is kept.
    if isinstance(verdict, bool):
        return verdict
    return not isinstance(verdict, _pe.RecomputeType)


def _remat_partial_eval(eqn, unknowns):
    p = eqn.params
    body = p["jaxpr"]
    # The policy, not our residual pass, decides what the body saves.
    s = split_jaxpr(body, unknowns, recompute_cheap_residuals=False)
    out_u = list(s.out_unknowns)
    if not any(out_u):
        return [eqn], [], out_u
    if all(out_u):
        return [], [eqn], out_u
    # Known equations the policy lets us save are cut out of the recomputation: their outputs
    # become inputs of the linear remat, computed once by the known program.
    saved_eqns = [e for e in s.known.eqns if _saveable(p["policy"], e)]
    saved_defs = {v for e in saved_eqns for v in e.outvars}
    recompute = [e for e in s.known.eqns if not any(v in saved_defs for v in e.outvars)]
    n_res = len(s.residuals)
    lin_eqns, live = dce_eqns([*recompute, *s.linear.eqns], s.linear.outvars)
    # The linear body reads the split's residuals by name, so it needs no renaming.
    known_in = [v for v, u in zip(body.invars, unknowns, strict=True) if not u and v in live]
    saved = [v for e in saved_eqns for v in e.outvars if v in live]
    unknown_in = list(s.linear.invars[n_res:])
    lin_invars = [*known_in, *saved, *unknown_in]
    lin_body = Jaxpr(
        [],
        lin_invars,
        s.linear.outvars,
        lin_eqns,
        debug_info=_debug_info("linear remat body", len(lin_invars), len(s.linear.outvars)),
    )
    n_known_out = len(s.known.outvars) - n_res
    known_outs = list(s.known.outvars[:n_known_out])
    known_eqns, _ = dce_eqns(s.known.eqns, [*known_outs, *saved])
    known_body = Jaxpr(
        [],
        list(s.known.invars),
        [*known_outs, *saved],
        known_eqns,
        debug_info=_debug_info("known remat body", len(s.known.invars), n_known_out + len(saved)),
    )
    outer_of = dict(zip(body.invars, eqn.invars, strict=True))
    saved_vars = [Var(v.aval) for v in saved]
    known_eqn = new_jaxpr_eqn(
        [x for x, u in zip(eqn.invars, unknowns, strict=True) if not u],
        [*(v for v, u in zip(eqn.outvars, out_u, strict=True) if not u), *saved_vars],
        P.remat_p,
        dict(p, jaxpr=known_body),
        eqn.effects,
        eqn.source_info,
        eqn.ctx,
    )
    unknown_eqn = new_jaxpr_eqn(
        [*(outer_of[v] for v in known_in), *saved_vars, *(outer_of[v] for v in unknown_in)],
        [v for v, u in zip(eqn.outvars, out_u, strict=True) if u],
        P.remat_p,
        dict(p, jaxpr=lin_body),
        eqn.effects,
        eqn.source_info,
        eqn.ctx,
    )
    return [known_eqn], [unknown_eqn], out_u


def _remat_transpose(cts, *invals, jaxpr, prevent_cse, differentiated, policy):
    lin = [is_undefined(x) for x in invals]
    res = [x for x in invals if not is_undefined(x)]
    if prevent_cse and res:
        # Without the barrier XLA may reuse the forward pass's values: no memory saved.
        res = list(lax.optimization_barrier(res))
    s = split_jaxpr(jaxpr, lin, keep_known_outs=[False] * len(jaxpr.outvars))
    residuals = eval_jaxpr(s.known, [], *res)  # the recomputation
    cts_lin = [ct for ct, u in zip(cts, s.out_unknowns, strict=True) if u]
    mask = [False] * len(residuals) + [True] * sum(lin)
    cts_in = iter(backward_pass(s.linear, [], residuals, mask, cts_lin))
    return [next(cts_in) if m else None for m in lin]


jvp_rules[P.remat_p] = _remat_jvp
partial_eval_rules[P.remat_p] = _remat_partial_eval
transpose_rules[P.remat_p] = _remat_transpose


# --- checkpoint_name: an identity that policies can select by name --------------------------------


def _name_jvp(primals, tangents, *, name):
    (x,), (t,) = primals, tangents
    return P.name_p.bind(x, name=name), t


jvp_rules[P.name_p] = _name_jvp
transpose_rules[P.name_p] = lambda ct, x, *, name: [ct]


# --- optimization_barrier: identity on values, so identity on tangents and cotangents -------------

optimization_barrier_p = jax.make_jaxpr(lax.optimization_barrier)(1.0).eqns[0].primitive


def _barrier_jvp(primals, tangents):
    return optimization_barrier_p.bind(*primals), list(tangents)


def _barrier_transpose(cts, *invals):
    return [None if type(ct) is Zero else instantiate(ct) for ct in cts]


jvp_rules[optimization_barrier_p] = _barrier_jvp
transpose_rules[optimization_barrier_p] = _barrier_transpose
