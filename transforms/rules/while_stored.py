"""Reverse mode through a `while_loop` with a known bound: residuals stored once per step.

`transforms.while_loop(..., max_steps=m)` (and `fori_loop`) marks its loop's condition with
`MAX_STEPS_MARK` and `m`; the condition also stops the loop after `m` steps. Partial evaluation
of such a loop (`stored_while_partial_eval`) splits its body as a scan's is split, then:

- the known program runs the primal loop, writing each step's residuals into `[m, ...]`
  buffers at the step's index and counting the steps `n`; residuals computed from
  loop-invariant inputs alone are computed once, before the loop;
- the linear program holds a loop of exactly `n` steps whose known carry is the step counter
  alone, reading step `i`'s residuals from the buffers (`COUNTER_ONLY_MARK`).

Evaluated forward (`linearize`), that loop is a tangent loop. Transposed
(`while_reverse._while_transpose`), it runs `i` from `n - 1` down to 0, reading step `i`'s
residuals: nothing is recomputed and there are no snapshots, so the gradient costs what a scan's
does (memory `m` steps of residuals) while running only the `n` steps taken, in both passes. A
masked scan of `m` steps would run all `m` in both passes and select on every step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.ad_checkpoint import checkpoint_name
from jax.extend.core import Jaxpr, Literal, Var
from jax.extend.core import primitives as P

from ..interpreter import dce_eqns, eval_jaxpr
from ..partial_eval import _debug_info
from ..zeros import stacked_aval, zeros_like_aval
from .control_flow import _eqn, _pick, _sds, _split3, cast_to_aval
from .while_loop import loop_predicate, split_while

MAX_STEPS_MARK = "transforms.while_max_steps="
# Marks a linear loop whose only known carry is its step counter, from 0, and whose
# condition is `counter < n` (`n` its only constant): its transpose counts down, recomputing
# nothing.
COUNTER_ONLY_MARK = "transforms.while_counter_only"
# Marks the linear program's replay of a loop whose trip count the primal loop counted: its
# condition is `counter < n`, with `n` its only constant.
TRIPS_MARK = "transforms.while_trips"


def marks(cond_jaxpr: Jaxpr) -> list[str]:
    """The names a loop's condition is marked with (`checkpoint_name` equations)."""
    return [
        eqn.params["name"]
        for eqn in cond_jaxpr.eqns
        if eqn.primitive is P.name_p and isinstance(eqn.params.get("name"), str)
    ]


def max_steps_of(cond_jaxpr: Jaxpr) -> int | None:
    """The bound a loop's condition is marked with by `transforms.while_loop`, or None."""
    for name in marks(cond_jaxpr):
        if name.startswith(MAX_STEPS_MARK):
            return int(name[len(MAX_STEPS_MARK) :])
    return None


def bounded_while_loop(cond_fun, body_fun, init_val, max_steps: int):
    """`lax.while_loop` stopped after `max_steps` steps, marked so reverse mode stores residuals."""

    def cond(state):
        step, carry = state
        keep_going = jnp.logical_and(step < max_steps, cond_fun(carry))
        return checkpoint_name(keep_going, f"{MAX_STEPS_MARK}{max_steps}")

    def body(state):
        step, carry = state
        return step + 1, body_fun(carry)

    return lax.while_loop(cond, body, (step_counter(0), init_val))[1]


def step_counter(value):
    """A scalar of the default integer type (int32, or int64 under x64)."""
    return jnp.asarray(value, dtype=jax.dtypes.canonicalize_dtype(jnp.int64))


def stored_while_partial_eval(eqn, unknowns):
    """Partial evaluation of a `MAX_STEPS_MARK` loop, or None where it does not apply."""
    p = eqn.params
    cond, body = p["cond_jaxpr"], p["body_jaxpr"]
    n_cc, n_bc = p["cond_nconsts"], p["body_nconsts"]
    max_steps = max_steps_of(cond.jaxpr)
    if max_steps is None:
        return None
    _, bc_u, _ = _split3(list(unknowns), n_cc, n_bc)
    split = split_while(p, unknowns)
    if split is None:
        return None
    s, carry_u, cond_known = split.body, split.carry_unknowns, split.cond_known
    known_carry = [not u for u in carry_u]
    bj = body.jaxpr
    n_known_outs = len(s.known.outvars) - len(s.residuals)

    # Route each residual: the body's constants and its known loop-invariant inputs go to the
    # linear loop as they are; residuals computed from those alone are computed once, before
    # the loop; the rest are stored per step.
    const_pos = {v: i for i, v in enumerate(bj.constvars)}
    bc_pos = {v: i for i, v in enumerate(bj.invars[:n_bc])}
    invariant = set(bj.constvars) | set(bj.invars[:n_bc])
    for e in s.known.eqns:
        if not e.effects and all(type(v) is Literal or v in invariant for v in e.invars):
            invariant.update(e.outvars)
    res_const = [r for r in s.residuals if r in const_pos]
    res_bc = [r for r in s.residuals if r in bc_pos]
    routed = set(const_pos) | set(bc_pos)
    res_hoisted = [r for r in s.residuals if r in invariant and r not in routed]
    res_stored = [r for r in s.residuals if r not in invariant]

    known_bc_invars = _pick(bj.invars[:n_bc], bc_u, False)
    hoist_jaxpr = Jaxpr(
        bj.constvars,
        known_bc_invars,
        res_hoisted,
        dce_eqns(s.known.eqns, res_hoisted)[0],
        debug_info=_debug_info("loop invariants", len(known_bc_invars), len(res_hoisted)),
    )
    step_outs = [*s.known.outvars[:n_known_outs], *res_stored]
    step_jaxpr = Jaxpr(
        bj.constvars,
        s.known.invars,
        step_outs,
        dce_eqns(s.known.eqns, step_outs)[0],
        debug_info=_debug_info("known while body", len(s.known.invars), len(step_outs)),
    )
    carry_avals = [v.aval for v in bj.invars[n_bc:]]
    known_carry_avals = _pick(carry_avals, known_carry)

    def forward(*args):
        cc, kbc, kinit = _split3(list(args), n_cc, n_bc - sum(bc_u))
        hoisted = eval_jaxpr(hoist_jaxpr, body.consts, *kbc)
        # typed as the stacked residuals (sharding on Explicit axes, varying axes in shard_map)
        buffers = [zeros_like_aval(stacked_aval(r.aval, max_steps)) for r in res_stored]

        def keep_going(state):
            step, carry, _ = state
            (pred,) = eval_jaxpr(cond_known, cond.consts, *cc, *carry)
            return checkpoint_name(
                jnp.logical_and(step < max_steps, loop_predicate(pred)),
                f"{MAX_STEPS_MARK}{max_steps}",
            )

        def step(state):
            i, carry, buffers = state
            outs = eval_jaxpr(step_jaxpr, body.consts, *kbc, *carry)
            carry = [cast_to_aval(x, a) for x, a in zip(outs[:n_known_outs], known_carry_avals)]
            buffers = [
                lax.dynamic_update_index_in_dim(b, r, i, 0)
                for b, r in zip(buffers, outs[n_known_outs:], strict=True)
            ]
            return i + 1, carry, buffers

        n, carry, buffers = lax.while_loop(keep_going, step, (step_counter(0), kinit, buffers))
        return [*carry, n, *hoisted, *buffers]

    cc, bc, init = _split3(list(eqn.invars), n_cc, n_bc)
    known_in = [*cc, *_pick(bc, bc_u, False), *_pick(init, known_carry)]
    forward_jaxpr = jax.make_jaxpr(forward)(*(_sds(v.aval) for v in known_in))
    trips = Var(jax.typeof(step_counter(0)))
    hoisted_vars = [Var(r.aval) for r in res_hoisted]
    buffer_vars = [Var(stacked_aval(r.aval, max_steps)) for r in res_stored]
    known_eqn = _eqn(
        known_in,
        [*_pick(eqn.outvars, known_carry), trips, *hoisted_vars, *buffer_vars],
        P.closed_call_p,
        {"call_jaxpr": forward_jaxpr},
        eqn,
    )

    # The linear loop: step i reads its residuals, in `s.residuals` order, from where they
    # were routed.
    const_vals = [body.consts[const_pos[r]] for r in res_const]
    n_bc_res, n_hoisted = len(res_bc), len(res_hoisted)
    n_u_bc = sum(bc_u)

    def replay(n, *args):
        bc_vals = args[:n_bc_res]
        hoisted = args[n_bc_res : n_bc_res + n_hoisted]
        buffers = args[n_bc_res + n_hoisted : n_bc_res + n_hoisted + len(res_stored)]
        lin_in = args[n_bc_res + n_hoisted + len(res_stored) :]
        u_bc, u_init = lin_in[:n_u_bc], lin_in[n_u_bc:]
        fixed = {
            **dict(zip(res_const, const_vals, strict=True)),
            **dict(zip(res_bc, bc_vals, strict=True)),
            **dict(zip(res_hoisted, hoisted, strict=True)),
        }

        def keep_going(state):
            pred = checkpoint_name(state[0] < n, TRIPS_MARK)
            return checkpoint_name(pred, COUNTER_ONLY_MARK)

        def step(state):
            i, carry = state
            stored = {
                r: lax.dynamic_index_in_dim(b, i, 0, keepdims=False)
                for r, b in zip(res_stored, buffers, strict=True)
            }
            residuals = [fixed[r] if r in fixed else stored[r] for r in s.residuals]
            outs = eval_jaxpr(s.linear, [], *residuals, *u_bc, *carry)
            return i + 1, [cast_to_aval(x, jax.typeof(c)) for x, c in zip(outs, carry, strict=True)]

        return lax.while_loop(keep_going, step, (step_counter(0), list(u_init)))[1]

    lin_operands = [
        *(bc[bc_pos[r]] for r in res_bc),
        *hoisted_vars,
        *buffer_vars,
        *_pick(bc, bc_u),
        *_pick(init, carry_u),
    ]
    replay_jaxpr = jax.make_jaxpr(replay)(_sds(trips.aval), *(_sds(v.aval) for v in lin_operands))
    linear_eqn = _eqn(
        [trips, *lin_operands],
        _pick(eqn.outvars, carry_u),
        P.closed_call_p,
        {"call_jaxpr": replay_jaxpr},
        eqn,
    )
    return [known_eqn], [linear_eqn], carry_u
