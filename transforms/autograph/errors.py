"""Reverse mode through a converted `while` on traced values: say which loop, and the way out.

A converted loop stages its predicate through an identity `jit` named after the loop's source
position (`runtime._loop_marker`). That equation survives differentiation inside the loop's
`cond_jaxpr`, so when reverse mode reaches the `while` (which it cannot transpose until
reverse-mode while_loop exists) the error can name the loop and point to
`set_loop_options(maximum_iterations=N)`, which turns it into a scan reverse mode handles.
"""

from __future__ import annotations

from jax.extend.core import primitives as P

from .. import rules as _rules  # noqa: F401  (the while rules must be registered to be wrapped)
from ..errors import MissingRuleError
from ..transpose import transpose_rules

_PREFIX = "autograph_"


def _converted_loop(cond_jaxpr):
    """`(kind, 'file:line')` of the converted loop whose predicate is `cond_jaxpr`, or None."""
    stack = [cond_jaxpr.jaxpr]
    while stack:
        jaxpr = stack.pop()
        for eqn in jaxpr.eqns:
            name = str(eqn.params.get("name", ""))
            if name.startswith(_PREFIX) and "_loop_at_" in name:
                return name[len(_PREFIX) :].split("_loop_at_")[0], _MARKED.get(name, "?")
            for p in eqn.params.values():
                inner = getattr(p, "jaxpr", None)
                if inner is not None and hasattr(inner, "eqns"):
                    stack.append(inner)
    return None


_MARKED: dict[str, str] = {}  # marker name -> "file:line" (filled by runtime._loop_marker)


def _wrap_while_transpose(rule):
    def transpose(cts, *invals, **params):
        try:
            return rule(cts, *invals, **params)
        except MissingRuleError as e:
            loop = _converted_loop(params["cond_jaxpr"])
            if loop is None:
                raise
            kind, where = loop
            raise type(e)(
                e.primitive,
                e.mode,
                f" Reverse-mode differentiation reached the `{kind}` loop at {where}, which "
                "autograph converted to a lax.while_loop because its condition is a traced "
                "value: its number of steps is known only at run time. Give it a bound: make "
                "`transforms.autograph.set_loop_options(maximum_iterations=N)` (in tf.function: "
                "`tf.autograph.experimental.set_loop_options(maximum_iterations=N)`) the first "
                "statement of the loop body, with N a Python int; the loop then runs as a "
                "lax.scan of N steps (stopping once the condition fails), which reverse mode "
                "differentiates. Forward mode works through the loop as it is.",
            ) from None

    transpose.__wrapped__ = rule
    return transpose


def install():
    """Wrap the `while` transpose rule once (whatever rule is registered then)."""
    rule = transpose_rules.get(P.while_p)
    if rule is not None and not getattr(rule, "__autograph_wrapped__", False):
        wrapped = _wrap_while_transpose(rule)
        wrapped.__autograph_wrapped__ = True
        transpose_rules[P.while_p] = wrapped
