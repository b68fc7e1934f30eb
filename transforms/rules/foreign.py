"""Primitives JAX does not define, differentiated with the rules their authors registered.

A library that defines its own primitive (Equinox's `maybe_set`, lineax's `linear_solve`,
mpi4jax's collectives, a user following JAX's "How JAX primitives work") gives it derivative
rules the way JAX documents: `ad.defjvp`, `ad.deflinear`, or by assigning to
`jax.interpreters.ad.primitive_jvps` / `primitive_transposes`. Those rules are the author's math,
as a `custom_jvp` rule is, so we honour them, translating JAX's conventions at the boundary:
JAX's `Zero` for our `Zero`, JAX's `UndefinedPrimal` for our `UndefPrimal`, and `None` or a
JAX `Zero` cotangent for "nothing flows back".

This module is the only place in the engine that reads those tables, and only for primitives
that are not JAX's own: JAX's primitives are differentiated by our rules alone, and one of
them without a rule here raises `MissingRuleError`, whatever JAX's tables hold. Batching needs
nothing: `jax.vmap` is JAX's and uses the author's batching rule.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import jax
import jax.interpreters.ad as jax_ad
import jax.numpy as jnp
from jax.extend.core import Primitive

from ..jvp import jvp_rule_sources
from ..transpose import UndefPrimal, transpose_rule_sources
from ..zeros import Zero

# --- which primitives are JAX's own -----------------------------------------------------------

_jax_primitives: set = set()
_modules_scanned: set = set()


def _is_jax_module(name: str) -> bool:
    return name in ("jax", "jaxlib") or name.startswith(("jax.", "jaxlib."))


def is_jax_primitive(prim: Primitive) -> bool:
    """Whether `prim` is one of JAX's own primitives (defined in a module of `jax` or `jaxlib`).

    JAX defines each primitive as a module-level object of one of its modules, and a primitive
    only exists once its module has been imported, so scanning the loaded JAX modules (again
    whenever more have been imported) finds every one. A library's primitive lives in the
    library's module, never in JAX's.
    """
    if prim in _jax_primitives:
        return True
    for name, module in list(sys.modules.items()):
        if name in _modules_scanned or module is None or not _is_jax_module(name):
            continue
        _modules_scanned.add(name)
        for value in list(vars(module).values()):
            if isinstance(value, Primitive):
                _jax_primitives.add(value)
    return prim in _jax_primitives


# --- JAX's conventions <-> ours ---------------------------------------------------------------


def _to_jax(t):
    """Our symbolic zero as JAX's; anything else as is."""
    return jax_ad.Zero(t.aval) if type(t) is Zero else t


def _as_jax_value(x):
    """A primal value as JAX hands it to a rule: an array (or a tracer), never a host scalar.

    Our interpreters read a jaxpr literal as its host value (a Python `bool`, a `TypedFloat`, a
    typed NumPy scalar). Where JAX keeps a call (a `jit` in a linear program) the rule inside
    sees a tracer of the call's input; we inline calls, so the same rule met the literal itself
    (lineax's `linear_solve` transpose, under diffrax's `ImplicitAdjoint`, checks its operands
    are arrays). The array has the literal's type, weak or not.
    """
    if isinstance(x, (jax.Array, jax.core.Tracer, UndefPrimal)):
        return x
    return jnp.asarray(x)


def _tangent_from_jax(t):
    return Zero(t.aval) if type(t) is jax_ad.Zero else t


def _cotangent_from_jax(ct):
    # JAX's transposes say "no cotangent" with None or a symbolic Zero; so does our None.
    return None if ct is None or type(ct) is jax_ad.Zero else ct


def _authors_jvp(prim: Primitive, jax_rule: Callable) -> Callable:
    def rule(primals, tangents, **params):
        primals = [_as_jax_value(x) for x in primals]
        out, out_dot = jax_rule(primals, [_to_jax(t) for t in tangents], **params)
        if prim.multiple_results:
            return list(out), [_tangent_from_jax(t) for t in out_dot]
        return out, _tangent_from_jax(out_dot)

    return rule


def _authors_transpose(prim: Primitive, jax_rule: Callable) -> Callable:
    def rule(ct, *invals, **params):
        cts = [_to_jax(c) for c in ct] if prim.multiple_results else _to_jax(ct)
        jax_invals = [
            jax_ad.UndefinedPrimal(x.aval) if type(x) is UndefPrimal else _as_jax_value(x)
            for x in invals
        ]
        cts_in = jax_rule(cts, *jax_invals, **params)
        return [_cotangent_from_jax(c) for c in cts_in]

    return rule


def foreign_jvp_rule(prim: Primitive) -> Callable | None:
    """The JVP rule `prim`'s author registered with JAX, in our convention; or None."""
    jax_rule = jax_ad.primitive_jvps.get(prim)
    if jax_rule is None or is_jax_primitive(prim):
        return None
    return _authors_jvp(prim, jax_rule)


def foreign_transpose_rule(prim: Primitive) -> Callable | None:
    """The transpose rule `prim`'s author registered with JAX, in our convention; or None."""
    jax_rule = jax_ad.primitive_transposes.get(prim)
    if jax_rule is None or is_jax_primitive(prim):
        return None
    return _authors_transpose(prim, jax_rule)


jvp_rule_sources.append(foreign_jvp_rule)
transpose_rule_sources.append(foreign_transpose_rule)
