"""Reverse mode through `while_loop`: transposing a linear while loop with bounded memory.

Partial evaluation (`while_loop._while_partial_eval`) leaves the primal loop in the known
program and the whole loop (primal recomputed next to the tangents) in the linear program, so
the linear program holds a `while` equation whose linear inputs are tangent carries and tangent
body constants, and whose other inputs (the primal initial carry, the constants) are values.
Its transpose runs in two loops:

1. Counting: the trip count `n`. Partial evaluation (`_counted_while_partial_eval`) makes the
   primal loop count its iterations and hands `n` to the linear program's loop, which replays
   exactly `n` steps (its condition is marked `TRIPS_MARK`). A while loop reaching the
   transpose another way (a user's linear function) is counted here: the primal half of the
   body runs forward until the condition fails. Nothing is stored: memory O(carry).
2. Reversing: a `while_loop` counting `i` down from `n - 1` to 0 that keeps a stack of at most
   `S` snapshots of the primal carry (`[S, *carry]` buffers indexed dynamically, so shapes are
   static; slot 0 holds the initial carry). Each iteration first bisects: while the stack has
   room and its top snapshot, at step `p`, is before `i - 1`, it advances a copy from `p` to
   the midpoint `m = (p + i + 1) // 2` and pushes it. Then it advances from the top snapshot to
   `i`, recomputes the residuals of step `i` from that carry, transposes the linear half of the
   body (the cotangent of the carry goes from after step `i` to before it; cotangents of
   loop-invariant inputs accumulate), pops the snapshot if it was at `i`, and decrements `i`.

Peak memory is `S` primal carries plus one step's residuals, whatever `n` is. Primal steps
recomputed (`recompute_steps` gives the exact number; `n` more for a counting pass, when the
primal loop did not count): `n (n - 1) / 2` with `S = 1`, about `(n / 2) log2 n` once
`2 ** (S - 1) >= n` (bisection), and in between the recursion
`R(n, S) = n / 2 + R(n / 2, S - 1) + R(n / 2, S)`, i.e. a few times `n log n` for the default
`S` and any `n` up to millions. `S` is the `snapshots` keyword of
`transforms.while_loop`, which marks the loop's condition (see `transforms/loops.py`).

A loop with a bound (`max_steps`) stores its residuals per step instead (`while_stored.py`): its
linear loop's only value carry is the step counter, so its transpose counts down from `n - 1`
with no snapshots and nothing recomputed.
"""

from __future__ import annotations

import jax
from jax import lax
from jax.ad_checkpoint import checkpoint_name
from jax.extend.core import Jaxpr, Var
from jax.extend.core import primitives as P

from ..interpreter import dce_eqns, eval_jaxpr
from ..partial_eval import _debug_info, partial_eval_rules, split_jaxpr
from ..transpose import backward_pass, is_undefined, transpose_rules
from ..zeros import Zero, instantiate, tangent_aval
from .control_flow import _eqn, _merge, _pick, _sds, _split3, as_weak_as, cast_to_aval
from .while_loop import (
    _while_partial_eval,
    loop_predicate,
    split_while_body,
    with_scalar_predicate,
)
from .while_stored import (
    COUNTER_ONLY_MARK,
    TRIPS_MARK,
    marks,
    step_counter,
    stored_while_partial_eval,
)

DEFAULT_SNAPSHOTS = 16
SNAPSHOTS_MARK = "transforms.while_snapshots="


def snapshots_of(cond_jaxpr: Jaxpr) -> int:
    """The snapshot count a loop's condition is marked with (`DEFAULT_SNAPSHOTS` if none)."""
    for name in marks(cond_jaxpr):
        if name.startswith(SNAPSHOTS_MARK):
            return int(name[len(SNAPSHOTS_MARK) :])
    return DEFAULT_SNAPSHOTS


def _counted_while_partial_eval(eqn, unknowns):
    scalar = with_scalar_predicate(eqn.params, list(eqn.invars))
    if scalar is not None:  # a loop batched by vmap: its selection written into the body
        params, invars = scalar
        unknowns = with_scalar_predicate(eqn.params, list(unknowns))[1]
        eqn = _eqn(invars, eqn.outvars, P.while_p, params, eqn)
    # control_flow's split leaves the primal loop in the known program and the whole loop in
    # the linear one. Count the primal loop's trips there and hand the count to the linear
    # loop, which then replays exactly that many steps: its transpose needs no counting pass.
    stored = stored_while_partial_eval(eqn, unknowns)
    if stored is not None:  # a bound known (transforms.while_loop's max_steps)
        return stored
    known, unknown, out_u = _while_partial_eval(eqn, unknowns)
    if not known or len(known) != 1 or known[0].primitive is not P.while_p:
        return known, unknown, out_u
    (known_eqn,), (linear_eqn,) = known, unknown
    kp, lp = known_eqn.params, linear_eqn.params
    int_aval = jax.typeof(jnp_int(0))
    trips = Var(int_aval)

    def counted(*args):
        cc, bc, init = _split3(list(args), kp["cond_nconsts"], kp["body_nconsts"])
        cj, bj = kp["cond_jaxpr"], kp["body_jaxpr"]

        def cond(state):
            return loop_predicate(eval_jaxpr(cj.jaxpr, cj.consts, *cc, *state[1])[0])

        def body(state):
            return state[0] + 1, eval_jaxpr(bj.jaxpr, bj.consts, *bc, *state[1])

        n, outs = lax.while_loop(cond, body, (jnp_int(0), list(init)))
        return [*outs, n]

    snapshots = snapshots_of(lp["cond_jaxpr"].jaxpr)

    def replay(n, *args):
        _, bc, init = _split3(list(args), lp["cond_nconsts"], lp["body_nconsts"])
        bj = lp["body_jaxpr"]

        def cond(state):
            pred = checkpoint_name(state[0] < n, f"{SNAPSHOTS_MARK}{snapshots}")
            return checkpoint_name(pred, TRIPS_MARK)

        def body(state):
            return state[0] + 1, eval_jaxpr(bj.jaxpr, bj.consts, *bc, *state[1])

        return lax.while_loop(cond, body, (jnp_int(0), list(init)))[1]

    def avals(vs):
        return [_sds(v.aval) for v in vs]

    counted_jaxpr = jax.make_jaxpr(counted)(*avals(known_eqn.invars))
    replay_jaxpr = jax.make_jaxpr(replay)(_sds(int_aval), *avals(linear_eqn.invars))
    counted_eqn = _eqn(
        known_eqn.invars,
        [*known_eqn.outvars, trips],
        P.closed_call_p,
        {"call_jaxpr": counted_jaxpr},
        known_eqn,
    )
    replay_eqn = _eqn(
        [trips, *linear_eqn.invars],
        linear_eqn.outvars,
        P.closed_call_p,
        {"call_jaxpr": replay_jaxpr},
        linear_eqn,
    )
    return [counted_eqn], [replay_eqn], out_u


def recompute_steps(n: int, snapshots: int) -> int:
    """Primal steps the reversing loop recomputes for trip count `n` (a model of the schedule
    above, step for step; documented costs and the benchmark use it)."""
    steps, stack, i = 0, [0], n - 1
    while i >= 0:
        p = stack[-1]
        target = (p + i + 1) // 2 if (p < i and len(stack) < snapshots) else i
        steps += target - p
        if target < i:
            stack.append(target)
        else:
            i -= 1
            if p == target:
                stack.pop()
    return steps


class WhileConditionTangentError(ValueError):
    """A while loop's condition reads a value that depends on the linear inputs."""


def _while_transpose(cts, *invals, **params):
    scalar = with_scalar_predicate(params, list(invals))
    if scalar is None:
        return _scalar_while_transpose(cts, *invals, **params)
    new_params, new_invals = scalar
    out = _scalar_while_transpose(cts, *new_invals, **new_params)
    n_cc = params["cond_nconsts"]  # never linear (that raises): no cotangent
    return [*([None] * n_cc), *out[2 * n_cc :]]


def _scalar_while_transpose(cts, *invals, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts):
    cc, bc, init = _split3(list(invals), cond_nconsts, body_nconsts)
    if any(is_undefined(x) for x in cc):
        raise WhileConditionTangentError(
            "while_loop: the loop condition depends on a linear input; it has no transpose."
        )
    body = body_jaxpr.jaxpr
    bc_lin = [is_undefined(x) for x in bc]
    carry_lin = [is_undefined(x) for x in init]
    s, carry_lin = split_while_body(body, bc_lin, carry_lin)  # linear where a linear value reaches
    cond_split = split_jaxpr(cond_jaxpr.jaxpr, [False] * cond_nconsts + carry_lin)
    if any(cond_split.out_unknowns):
        raise WhileConditionTangentError(
            "while_loop: the loop condition depends on a linear carry; it has no transpose."
        )
    snapshots = max(1, snapshots_of(cond_jaxpr.jaxpr))

    known_carry = [not u for u in carry_lin]
    n_res = len(s.residuals)
    n_known_out = len(s.known.outvars) - n_res
    step_eqns, _ = dce_eqns(s.known.eqns, list(s.known.outvars[:n_known_out]))
    step_jaxpr = Jaxpr(
        body.constvars,
        s.known.invars,
        list(s.known.outvars[:n_known_out]),
        step_eqns,
        debug_info=_debug_info("primal while step", len(s.known.invars), n_known_out),
    )
    kbc = _pick(bc, bc_lin, False)
    kinit = _pick(init, known_carry)
    carry_avals = [v.aval for v in body.invars[body_nconsts:]]
    kinit = [cast_to_aval(x, a) for x, a in zip(kinit, _pick(carry_avals, known_carry))]
    lin_bc_avals = [tangent_aval(v.aval) for v in _pick(body.invars[:body_nconsts], bc_lin)]
    lin_carry_avals = [tangent_aval(a) for a in _pick(carry_avals, carry_lin)]

    def keep_going(kc):
        return loop_predicate(eval_jaxpr(cond_split.known, cond_jaxpr.consts, *cc, *kc)[0])

    def step(kc):
        return eval_jaxpr(step_jaxpr, body_jaxpr.consts, *kbc, *kc)

    def advance(kc, k):
        return lax.fori_loop(0, k, lambda _, c: step(c), kc)

    # 1. The trip count.
    def count_body(state):
        i, kc = state
        return i + 1, step(kc)

    if TRIPS_MARK in marks(cond_jaxpr.jaxpr):  # counted by the primal loop
        (n,) = cc
    else:
        n, _ = lax.while_loop(lambda state: keep_going(state[1]), count_body, (jnp_int(0), kinit))

    # 2. Reverse, recomputing from the nearest snapshot (or, for a loop whose only known carry
    # is its step counter, from the counter alone).
    mask = [False] * n_res + [True] * (len(lin_bc_avals) + len(lin_carry_avals))
    lin_carry_avals = as_weak_as(_pick(list(cts), carry_lin), lin_carry_avals)
    ct_carry0 = [
        cast_to_aval(ct, a)
        for ct, a in zip(_pick(list(cts), carry_lin), lin_carry_avals, strict=True)
    ]
    ct_consts0 = [instantiate(Zero(a)) for a in lin_bc_avals]

    def reverse_step(kc, ct_consts, ct_carry):
        residuals = eval_jaxpr(s.known, body_jaxpr.consts, *kbc, *kc)[n_known_out:]
        cts_in = backward_pass(s.linear, [], residuals, mask, ct_carry)
        ct_c_in, ct_k_in = cts_in[: len(lin_bc_avals)], cts_in[len(lin_bc_avals) :]
        ct_consts = [
            lax.add(acc, cast_to_aval(ct, a)) if type(ct) is not Zero else acc
            for acc, ct, a in zip(ct_consts, ct_c_in, lin_bc_avals, strict=True)
        ]
        ct_carry = [cast_to_aval(ct, a) for ct, a in zip(ct_k_in, lin_carry_avals, strict=True)]
        return ct_consts, ct_carry

    if COUNTER_ONLY_MARK in marks(cond_jaxpr.jaxpr):
        _check_counter_only(kinit)

        def count_down(state):
            i, ct_consts, ct_carry = state
            ct_consts, ct_carry = reverse_step([i], ct_consts, ct_carry)
            return i - 1, ct_consts, ct_carry

        state0 = (n - 1, ct_consts0, ct_carry0)
        _, ct_consts, ct_carry = lax.while_loop(lambda st: st[0] >= 0, count_down, state0)
        return _while_cotangents(init, carry_lin, bc_lin, ct_consts, ct_carry, cond_nconsts)

    buffers0 = [
        lax.broadcast_in_dim(x, (snapshots, *x.shape), tuple(range(1, x.ndim + 1)))
        for x in map(jax.numpy.asarray, kinit)
    ]
    positions0 = lax.full((snapshots,), 0, jnp_int(0).dtype)

    def snapshot(buffers, slot):
        return [lax.dynamic_index_in_dim(b, slot, keepdims=False) for b in buffers]

    def reverse_body(state):
        # One step reversed per iteration: bisect towards step i while the stack has room
        # (an inner loop, so no iteration of this one is spent on a push alone), advance from
        # the top snapshot to i, transpose step i, pop the snapshot if it was at i.
        i, top, positions, buffers, ct_consts, ct_carry = state

        def can_push(stack):
            top, positions, _ = stack
            return (top < snapshots) & ((positions[top - 1] + i + 1) // 2 < i)

        def push(stack):
            top, positions, buffers = stack
            p = positions[top - 1]
            middle = (p + i + 1) // 2
            kc = advance(snapshot(buffers, top - 1), middle - p)
            buffers = [
                lax.dynamic_update_index_in_dim(b, x, top, 0)
                for b, x in zip(buffers, kc, strict=True)
            ]
            positions = lax.dynamic_update_index_in_dim(positions, middle, top, 0)
            return top + 1, positions, buffers

        top, positions, buffers = lax.while_loop(can_push, push, (top, positions, buffers))
        p = positions[top - 1]
        kc = advance(snapshot(buffers, top - 1), i - p)
        ct_consts, ct_carry = reverse_step(kc, ct_consts, ct_carry)
        top = top - (p == i).astype(top.dtype)
        return i - 1, top, positions, buffers, ct_consts, ct_carry

    state0 = (n - 1, jnp_int(1), positions0, buffers0, ct_consts0, ct_carry0)
    *_, ct_consts, ct_carry = lax.while_loop(lambda st: st[0] >= 0, reverse_body, state0)
    return _while_cotangents(init, carry_lin, bc_lin, ct_consts, ct_carry, cond_nconsts)


def _while_cotangents(init, carry_lin, bc_lin, ct_consts, ct_carry, cond_nconsts):
    # The transpose's outputs, one per input of the while equation (None for values).

    ct_carry_full = _merge(carry_lin, ct_carry, [None] * len(init))
    ct_init = [ct if is_undefined(x) else None for ct, x in zip(ct_carry_full, init, strict=True)]
    return [
        *([None] * cond_nconsts),
        *_merge(bc_lin, ct_consts, [None] * len(bc_lin)),
        *ct_init,
    ]


def _check_counter_only(known_carry) -> None:
    # The mark promises a loop built by while_stored: its one known carry is the step counter.
    if len(known_carry) != 1 or jax.numpy.ndim(known_carry[0]) != 0:
        raise AssertionError(
            f"internal: a {COUNTER_ONLY_MARK} loop must carry only its step counter as a "
            f"value, got {[jax.typeof(x).str_short() for x in known_carry]}"
        )


jnp_int = step_counter


transpose_rules[P.while_p] = _while_transpose
partial_eval_rules[P.while_p] = _counted_while_partial_eval
