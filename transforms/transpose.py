"""Reverse mode's second half: transposing a linear jaxpr into its cotangent program.

Rules have the shape `rule(ct, *invals, **params) -> cts_in`, one entry per input: the cotangent
for an input that is an `UndefPrimal` (a linear input), `None` for the others. `ct` is the output
cotangent (a list for primitives with several results) and may be a `Zero`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext

import numpy as np
from jax import dtypes
from jax.extend.core import Jaxpr, Literal, Primitive

from . import debug as _debug
from .errors import MissingRuleError
from .interpreter import bind, eqn_mesh
from .jvp import _no_rule, jvp_rule, jvp_rules, linear_jvp
from .zeros import Zero, add_tangents, tangent_aval

transpose_rules: dict[Primitive, Callable] = {}

# Asked in turn when `transpose_rules` has no rule (see `jvp.jvp_rule_sources`).
transpose_rule_sources: list[Callable[[Primitive], Callable | None]] = []


def transpose_rule(prim: Primitive) -> Callable | None:
    """The transpose rule for `prim`: ours, else one a source finds, else None."""
    rule = transpose_rules.get(prim)
    if rule is None:
        for source in transpose_rule_sources:
            rule = source(prim)
            if rule is not None:
                break
    return rule


class UndefPrimal:
    """A linear input of an equation being transposed: its value is not known, only its type."""

    __slots__ = ("aval",)

    def __init__(self, aval):
        self.aval = aval

    def __repr__(self):
        return f"UndefPrimal({self.aval.str_short()})"


def is_undefined(x) -> bool:
    return type(x) is UndefPrimal


def deflinear(prim: Primitive, transpose: Callable) -> None:
    """Register a primitive linear in all its inputs: JVP applies it to tangents; `transpose`."""
    jvp_rules[prim] = linear_jvp(prim)
    transpose_rules[prim] = transpose


def _accumulate(ct_env: dict, v, ct) -> None:
    if ct is None or type(ct) is Zero or type(v) is Literal:
        return
    if getattr(ct, "dtype", None) == dtypes.float0:
        return
    prev = ct_env.get(v)
    ct_env[v] = ct if prev is None else add_tangents(prev, ct)


def backward_pass(
    jaxpr: Jaxpr, consts: Sequence, residuals: Sequence, linear_mask: Sequence[bool], cts_out
) -> list:
    """Transpose `jaxpr` with respect to its invars where `linear_mask` is True.

    `residuals` are the values of the other invars (in order). Returns one cotangent per linear
    invar, `Zero` where nothing flowed back. The loop runs backwards over the equations; the
    equations must be linear in the variables that depend on the linear invars.
    """
    primal_env: dict = dict(zip(jaxpr.constvars, consts, strict=True))
    linear_vars = set()
    res_iter = iter(residuals)
    for v, is_lin in zip(jaxpr.invars, linear_mask, strict=True):
        if is_lin:
            linear_vars.add(v)
        else:
            primal_env[v] = next(res_iter)
    # Forward sweep over equations that depend only on primal values: a linear jaxpr may compute
    # coefficients (e.g. a constant mask) that the transposed equations read.
    linear_eqns = []
    for eqn in jaxpr.eqns:
        if any(type(v) is not Literal and v in linear_vars for v in eqn.invars):
            linear_vars.update(eqn.outvars)
            linear_eqns.append(eqn)
        else:
            with _debug.attribute(eqn), eqn_mesh(eqn) or nullcontext():
                outs = bind(eqn, [_read_primal(primal_env, v) for v in eqn.invars])
            primal_env.update(zip(eqn.outvars, outs, strict=True))

    ct_env: dict = {}
    for v, ct in zip(jaxpr.outvars, cts_out, strict=True):
        if type(v) is not Literal and v in linear_vars:
            _accumulate(ct_env, v, ct)

    for eqn in reversed(linear_eqns):
        cts = [ct_env.pop(v, None) for v in eqn.outvars]
        if all(ct is None for ct in cts):
            continue
        cts = [
            Zero(tangent_aval(v.aval)) if ct is None else ct
            for ct, v in zip(cts, eqn.outvars, strict=True)
        ]
        invals = [
            UndefPrimal(v.aval)
            if type(v) is not Literal and v in linear_vars
            else _read_primal(primal_env, v)
            for v in eqn.invars
        ]
        rule = transpose_rule(eqn.primitive)
        if rule is None:
            if jvp_rule(eqn.primitive) is not None:
                raise MissingRuleError(
                    eqn.primitive.name,
                    "reverse",
                    f" It has a JVP rule but no transpose rule, so '{eqn.primitive.name}' "
                    "cannot appear in a linear (tangent) program; its JVP rule must emit "
                    "linear operations on tangents.",
                    transpose=True,
                )
            raise _no_rule(eqn.primitive, "reverse")
        with _debug.attribute(eqn, "transpose"), eqn_mesh(eqn) or nullcontext():
            cts_in = rule(cts if eqn.primitive.multiple_results else cts[0], *invals, **eqn.params)
        for v, x, ct in zip(eqn.invars, invals, cts_in, strict=True):
            if type(x) is UndefPrimal:
                _accumulate(ct_env, v, ct)

    out = []
    for v, is_lin in zip(jaxpr.invars, linear_mask, strict=True):
        if is_lin:
            ct = ct_env.get(v)
            out.append(Zero(tangent_aval(v.aval)) if ct is None else ct)
    return out


def _read_primal(env, v):
    if type(v) is Literal:
        return v.val
    return env[v]


def unbroadcast_to(ct, aval):
    """Sum `ct` down to `aval`'s shape (used where a rule broadcast an operand)."""
    from jax import lax

    if np.shape(ct) == aval.shape:
        return ct
    extra = len(np.shape(ct)) - len(aval.shape)
    axes = tuple(range(extra)) + tuple(
        i + extra for i, d in enumerate(aval.shape) if d == 1 and np.shape(ct)[i + extra] != 1
    )
    ct = lax.reduce_sum(ct, axes) if axes else ct
    return lax.reshape(ct, aval.shape) if np.shape(ct) != aval.shape else ct
