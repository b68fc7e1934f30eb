"""Forward mode: the JVP transform of a jaxpr, with symbolic zeros.

Each primitive has a rule `rule(primals, tangents, **params) -> (out, out_dot)`; tangents may be
`Zero`. An equation whose input tangents are all zero is evaluated as is and emits no tangent
operation. The helpers below (`defjvp`, `defjvp2`, `defjvp_zero`, `deflinear`) keep most rules to
one line of math.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Sequence

import jax
from jax import dtypes
from jax.extend.core import Jaxpr, Primitive

from . import debug as _debug
from ._jax import core as _core
from .errors import MissingRuleError
from .interpreter import bind, interpret, literal_outputs_as_arrays
from .zeros import Zero, add_tangents, instantiate, tangent_aval

jvp_rules: dict[Primitive, Callable] = {}

# Asked in turn for a rule when `jvp_rules` has none: `rules/foreign.py` answers for primitives
# that JAX does not define, with the rules their authors registered.
jvp_rule_sources: list[Callable[[Primitive], Callable | None]] = []


def jvp_rule(prim: Primitive) -> Callable | None:
    """The JVP rule for `prim`: ours, else one a source finds (a foreign primitive's), else None."""
    rule = jvp_rules.get(prim)
    if rule is None:
        for source in jvp_rule_sources:
            rule = source(prim)
            if rule is not None:
                break
    return rule


def _no_rule(prim, mode: str, detail: str = ""):
    return MissingRuleError(prim.name, mode, detail)


# Which API mode is building the JVP: reverse mode linearizes through the JVP, and a missing rule
# should be reported in the mode the user asked for.
_mode: contextvars.ContextVar[str] = contextvars.ContextVar("transforms_mode", default="forward")


@contextlib.contextmanager
def differentiation_mode(mode: str):
    """Name the mode ("forward" or "reverse") that errors raised while building a JVP report."""
    token = _mode.set(mode)
    try:
        yield
    finally:
        _mode.reset(token)


def current_mode() -> str:
    """The API mode ("forward" or "reverse") whose JVP is being built."""
    return _mode.get()


def aval_of(x):
    return jax.typeof(x)


def jvp_step(eqn, invals):
    if _debug.ENABLED:  # what the rule emits is attributed to the user's equation
        with _debug.attribute(eqn, "jvp"):
            return _jvp_step(eqn, invals)
    return _jvp_step(eqn, invals)


def _jvp_step(eqn, invals):
    primals = [p for p, _ in invals]
    tangents = [_float0_as_zero(t) for _, t in invals]
    if all(type(t) is Zero for t in tangents):
        outs = bind(eqn, primals)
        return [(o, Zero(tangent_aval(v.aval))) for o, v in zip(outs, eqn.outvars, strict=True)]
    rule = jvp_rule(eqn.primitive)
    if rule is None:
        from .rules.custom_vjp_forward import inside_bwd  # rules import this module

        raise _no_rule(eqn.primitive, _mode.get(), inside_bwd(eqn))
    out, out_dot = rule(primals, tangents, **eqn.params)
    if not eqn.primitive.multiple_results:
        return [(out, out_dot)]
    return list(zip(out, out_dot, strict=True))


def _float0_as_zero(t):
    # A float0 tangent (an integer's, instantiated by a loop carry) carries nothing: as a
    # symbolic zero, an integer-only primitive after it needs no rule, as in JAX.
    if type(t) is not Zero and getattr(t, "dtype", None) == dtypes.float0:
        return Zero(jax.typeof(t))
    return t


def _literal_pair(lit):
    return lit.val, Zero(tangent_aval(lit.aval))


def jvp_eval(jaxpr: Jaxpr, consts: Sequence, primals: Sequence, tangents: Sequence):
    """Evaluate `jaxpr` and its tangent. Constants have zero tangents (no perturbation confusion).

    Returns `(primals_out, tangents_out)`; output tangents may be `Zero`.
    """
    const_pairs = [(c, Zero(tangent_aval(v.aval))) for c, v in zip(consts, jaxpr.constvars)]
    outs = interpret(
        jaxpr, const_pairs, list(zip(primals, tangents, strict=True)), jvp_step, _literal_pair
    )
    primals_out = [p for p, _ in outs]
    if _core.trace_ctx.is_top_level():
        primals_out = literal_outputs_as_arrays(jaxpr, primals_out)
    return primals_out, [t for _, t in outs]


# --- helpers for writing rules ------------------------------------------------------------------


def _zero_out(out):
    if isinstance(out, (list, tuple)):
        return [Zero(tangent_aval(aval_of(o))) for o in out]
    return Zero(tangent_aval(aval_of(out)))


def defjvp(prim: Primitive, *tangent_fns) -> None:
    """Register a rule that sums `tangent_fns[i](x_dot_i, *primals, **params)` over inputs.

    A `None` entry marks an input the output does not depend on differentiably.
    """

    def rule(primals, tangents, **params):
        out = prim.bind(*primals, **params)
        out_dot = _zero_out(out)
        for fn, t in zip(tangent_fns, tangents, strict=False):
            if fn is not None and type(t) is not Zero:
                out_dot = add_tangents(out_dot, fn(t, *primals, **params))
        return out, out_dot

    jvp_rules[prim] = rule


def defjvp2(prim: Primitive, *tangent_fns) -> None:
    """Like `defjvp`, but each function also sees the output: `fn(x_dot, out, *primals)`."""

    def rule(primals, tangents, **params):
        out = prim.bind(*primals, **params)
        out_dot = _zero_out(out)
        for fn, t in zip(tangent_fns, tangents, strict=False):
            if fn is not None and type(t) is not Zero:
                out_dot = add_tangents(out_dot, fn(t, out, *primals, **params))
        return out, out_dot

    jvp_rules[prim] = rule


# Primitives whose outputs' tangents are always symbolic zeros (`defjvp_zero`).
zero_tangent_primitives: set = set()


def defjvp_zero(prim: Primitive) -> None:
    """The output is piecewise constant in every input: its tangent is a symbolic zero."""
    zero_tangent_primitives.add(prim)

    def rule(primals, tangents, **params):
        out = prim.bind(*primals, **params)
        return out, _zero_out(out)

    jvp_rules[prim] = rule


def linear_jvp(prim: Primitive) -> Callable:
    """The JVP of a primitive linear in all its inputs: apply it to the tangents."""

    def rule(primals, tangents, **params):
        out = prim.bind(*primals, **params)
        if all(type(t) is Zero for t in tangents):
            return out, _zero_out(out)
        return out, prim.bind(*map(instantiate, tangents), **params)

    return rule
