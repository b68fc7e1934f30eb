"""Partial evaluation: split a JVP jaxpr into a known (primal) part and a linear (tangent) part.

Given which invars are unknown (the tangents), one forward pass marks every equation with an
unknown input as unknown. Known equations form the known jaxpr, which also outputs the residuals:
the known values the unknown equations read. Unknown equations form the linear jaxpr, whose
inputs are the residuals followed by the unknown invars. Both are dead-code eliminated, so reverse
mode keeps only the residuals it needs.

Equations that carry inner jaxprs (`scan`, `cond`, `while`, `remat`) mix primal and tangent work
in one equation; sending them wholesale to the linear side would recompute (or lose) the primal
part. Their primitives have a rule in `partial_eval_rules`:

    rule(eqn, unknowns) -> (known_eqns, unknown_eqns, out_unknowns)

The known equations define the eqn's known outvars (and any fresh residual variables); the
unknown equations define its unknown outvars and read whatever known variables they need, which
become residuals automatically.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from jax.extend.core import ClosedJaxpr, DebugInfo, Jaxpr, Literal, Primitive, Var

from .interpreter import dce_eqns
from .residuals import recompute_cheap

partial_eval_rules: dict[Primitive, Callable] = {}


@dataclass(frozen=True)
class Split:
    known: ClosedJaxpr  # known invars -> known outvars + residuals
    linear: Jaxpr  # residuals + unknown invars -> unknown outvars
    out_unknowns: tuple[bool, ...]
    num_residuals: int


@dataclass(frozen=True)
class JaxprSplit:
    """`split_jaxpr`'s result: the two halves plus the residual variables, for rules to route."""

    known: Jaxpr  # constvars; known invars -> known outvars + residuals
    linear: Jaxpr  # residuals + unknown invars -> unknown outvars (no constvars)
    out_unknowns: tuple[bool, ...]
    residuals: tuple  # variables of the original jaxpr (constvars, invars or known eqn outputs)


def split_jaxpr(
    jaxpr: Jaxpr,
    unknowns: Sequence[bool],
    keep_known_outs: Sequence[bool] | None = None,
    instantiate: Sequence[bool] | bool = False,
    recompute_cheap_residuals: bool = True,
) -> JaxprSplit:
    """Split `jaxpr` by the unknown-ness of its invars (cost linear in the number of equations).

    Outvars that are known stay outputs of the known jaxpr (those `keep_known_outs` selects, all
    by default); the linear jaxpr outputs the unknown ones. `instantiate[i]` forces outvar `i`
    to be an output of the linear jaxpr even when it is known (a loop carry that must stay on
    the linear side); its value then travels as a residual. Residuals that are cheap functions of
    other residuals are recomputed on the linear side (`residuals.recompute_cheap`) unless
    `recompute_cheap_residuals` is False (a `checkpoint` policy decides what its body saves).
    """
    n_out = len(jaxpr.outvars)
    if isinstance(instantiate, bool):
        instantiate = [instantiate] * n_out
    unknown_vars = {v for v, u in zip(jaxpr.invars, unknowns, strict=True) if u}
    known_eqns, unknown_eqns = [], []
    for eqn in jaxpr.eqns:
        in_unknowns = [type(v) is not Literal and v in unknown_vars for v in eqn.invars]
        if not any(in_unknowns):
            known_eqns.append(eqn)
            continue
        rule = partial_eval_rules.get(eqn.primitive)
        if rule is None:
            unknown_vars.update(eqn.outvars)
            unknown_eqns.append(eqn)
            continue
        eqns_k, eqns_u, out_unknowns = rule(eqn, in_unknowns)
        known_eqns.extend(eqns_k)
        unknown_eqns.extend(eqns_u)
        unknown_vars.update(v for v, u in zip(eqn.outvars, out_unknowns, strict=True) if u)

    is_unknown = [type(v) is not Literal and v in unknown_vars for v in jaxpr.outvars]
    out_unknowns = tuple(u or f for u, f in zip(is_unknown, instantiate, strict=True))
    unknown_outvars = [v for v, u in zip(jaxpr.outvars, out_unknowns, strict=True) if u]
    keep = keep_known_outs if keep_known_outs is not None else [True] * n_out
    known_outvars = [
        v for v, u, k in zip(jaxpr.outvars, out_unknowns, keep, strict=True) if k and not u
    ]

    unknown_eqns, read_by_unknown = dce_eqns(unknown_eqns, unknown_outvars)
    # Equations without variable inputs (a zeros fill, an iota) are cheaper to repeat on the
    # linear side than to carry as residuals, which inside a loop would be stacked per step.
    constant_eqns = _constant_producers(known_eqns, read_by_unknown - unknown_vars)
    if constant_eqns:
        unknown_eqns, read_by_unknown = dce_eqns([*constant_eqns, *unknown_eqns], unknown_outvars)
    # Residuals: known variables (invars, constvars, known equation outputs) that the linear
    # part reads, in a deterministic order.
    residuals = [v for v in _ordered(read_by_unknown, jaxpr, known_eqns) if v not in unknown_vars]
    if recompute_cheap_residuals:
        unknown_eqns, residuals = recompute_cheap(known_eqns, unknown_eqns, residuals)
    known_eqns, _ = dce_eqns(known_eqns, [*known_outvars, *residuals])

    known_invars = [v for v, u in zip(jaxpr.invars, unknowns, strict=True) if not u]
    unknown_invars = [v for v, u in zip(jaxpr.invars, unknowns, strict=True) if u]
    known = Jaxpr(
        jaxpr.constvars,
        known_invars,
        [*known_outvars, *residuals],
        known_eqns,
        debug_info=_debug_info("known", len(known_invars), len(known_outvars) + len(residuals)),
    )
    linear = Jaxpr(
        [],
        [*residuals, *unknown_invars],
        unknown_outvars,
        unknown_eqns,
        debug_info=_debug_info(
            "linear", len(residuals) + len(unknown_invars), len(unknown_outvars)
        ),
    )
    return JaxprSplit(known, linear, out_unknowns, tuple(residuals))


def partial_eval(
    closed: ClosedJaxpr, unknowns: Sequence[bool], keep_known_outs: Sequence[bool] | None = None
) -> Split:
    """Split `closed` by the unknown-ness of its invars (see `split_jaxpr`)."""
    s = split_jaxpr(closed.jaxpr, unknowns, keep_known_outs)
    return Split(ClosedJaxpr(s.known, closed.consts), s.linear, s.out_unknowns, len(s.residuals))


def _constant_producers(known_eqns, wanted: set) -> list:
    if not wanted:
        return []
    return [
        e
        for e in known_eqns
        if not e.effects
        and all(type(v) is Literal for v in e.invars)
        and not _has_subjaxpr(e)
        and any(v in wanted for v in e.outvars)
    ]


def _has_subjaxpr(eqn) -> bool:
    def inner(p):
        if isinstance(p, (tuple, list)):
            return any(inner(q) for q in p)
        return isinstance(p, (Jaxpr, ClosedJaxpr))

    return any(inner(p) for p in eqn.params.values())


def _ordered(live: set, jaxpr: Jaxpr, known_eqns) -> list:
    order = [*jaxpr.constvars, *jaxpr.invars]
    for eqn in known_eqns:
        order.extend(eqn.outvars)
    return [v for v in order if v in live]


def _debug_info(part: str, n_in: int, n_out: int) -> DebugInfo:
    return DebugInfo(
        f"transforms.partial_eval ({part} part)",
        None,
        tuple(f"in{i}" for i in range(n_in)),
        tuple(f"out{i}" for i in range(n_out)),
    )


def fresh_vars(avals) -> list:
    """New variables of the given abstract values (for residuals a rule introduces)."""
    return [Var(a) for a in avals]
