"""Partial evaluation: split a JVP jaxpr into a known (primal) part and a linear (tangent) part.

Given which invars are unknown (the tangents), one forward pass marks every equation with an
unknown input as unknown. Known equations form the known jaxpr, which also outputs the residuals:
the known values the unknown equations read. Unknown equations form the linear jaxpr, whose
inputs are the residuals followed by the unknown invars. Both are dead-code eliminated, so reverse
mode keeps only the residuals it needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from jax.extend.core import ClosedJaxpr, Jaxpr, Literal, Primitive

from .interpreter import dce_eqns

# Equations that must be split rather than sent whole to one side (a `shard_map` whose body
# mixes primal and tangent work): `rule(eqn, in_unknowns) -> (known_eqns, unknown_eqns,
# out_unknowns)`. The known equations may define extra variables (residuals) that the unknown
# ones read; they are found like any other residual.
partial_eval_rules: dict[Primitive, Callable] = {}


@dataclass(frozen=True)
class Split:
    known: ClosedJaxpr  # known invars -> known outvars + residuals
    linear: Jaxpr  # residuals + unknown invars -> unknown outvars
    out_unknowns: tuple[bool, ...]
    num_residuals: int


def partial_eval(
    closed: ClosedJaxpr, unknowns: Sequence[bool], keep_known_outs: Sequence[bool] | None = None
) -> Split:
    """Split `closed` by the unknown-ness of its invars.

    Outvars that are known values stay outputs of the known jaxpr (those `keep_known_outs`
    selects, all by default); the linear jaxpr outputs only the unknown ones (`out_unknowns` says
    which). Cost is linear in the number of equations.
    """
    jaxpr = closed.jaxpr
    unknown_vars = {v for v, u in zip(jaxpr.invars, unknowns, strict=True) if u}
    known_eqns, unknown_eqns = [], []
    for eqn in jaxpr.eqns:
        in_unknowns = [type(v) is not Literal and v in unknown_vars for v in eqn.invars]
        rule = partial_eval_rules.get(eqn.primitive)
        if rule is not None and any(in_unknowns) and not all(in_unknowns):
            known, unknown, out_unknowns = rule(eqn, in_unknowns)
            known_eqns.extend(known)
            unknown_eqns.extend(unknown)
            unknown_vars.update(v for v, u in zip(eqn.outvars, out_unknowns, strict=True) if u)
        elif any(in_unknowns):
            unknown_vars.update(eqn.outvars)
            unknown_eqns.append(eqn)
        else:
            known_eqns.append(eqn)

    out_unknowns = tuple(type(v) is not Literal and v in unknown_vars for v in jaxpr.outvars)
    unknown_outvars = [v for v, u in zip(jaxpr.outvars, out_unknowns, strict=True) if u]
    keep = keep_known_outs if keep_known_outs is not None else [True] * len(jaxpr.outvars)
    known_outvars = [
        v for v, u, k in zip(jaxpr.outvars, out_unknowns, keep, strict=True) if k and not u
    ]

    unknown_eqns, read_by_unknown = dce_eqns(unknown_eqns, unknown_outvars)
    # Residuals: known variables (invars, constvars, known equation outputs) that the linear
    # part reads, in a deterministic order.
    residuals = [v for v in _ordered(read_by_unknown, jaxpr, known_eqns) if v not in unknown_vars]
    known_eqns, _ = dce_eqns(known_eqns, [*known_outvars, *residuals])

    known_invars = [v for v, u in zip(jaxpr.invars, unknowns, strict=True) if not u]
    unknown_invars = [v for v, u in zip(jaxpr.invars, unknowns, strict=True) if u]
    known = Jaxpr(jaxpr.constvars, known_invars, [*known_outvars, *residuals], known_eqns)
    linear = Jaxpr([], [*residuals, *unknown_invars], unknown_outvars, unknown_eqns)
    return Split(ClosedJaxpr(known, closed.consts), linear, out_unknowns, len(residuals))


def _ordered(live: set, jaxpr: Jaxpr, known_eqns) -> list:
    order = [*jaxpr.constvars, *jaxpr.invars]
    for eqn in known_eqns:
        order.extend(eqn.outvars)
    return [v for v in order if v in live]
