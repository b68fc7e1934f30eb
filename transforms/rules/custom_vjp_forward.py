"""Forward mode through `jax.custom_vjp`, which JAX refuses: the JVP is the transpose of `bwd`.

A `custom_vjp` function `f` gives `fwd(x) -> (f(x), res)` and `bwd(res, ct_out) -> ct_in`, the
vector-Jacobian product `ct_in = J(x)^T ct_out`. `bwd` is linear in `ct_out`, so transposing it
(with our own transpose machinery, `transpose.backward_pass`) at the residuals `fwd` computed
gives the Jacobian-vector product: `t_out = J(x) t_in = transpose(ct -> bwd(res, ct))(t_in)`.
The program emitted is made of `fwd`'s and `bwd`'s own operations, so an outer transform
(`jacfwd` of `jacfwd`, `hessian`, `hvp`) differentiates straight through it when `bwd` is
itself differentiable.

A `bwd` that is not linear in its cotangent has no transpose: gradient clipping
(`jnp.clip(ct, -1, 1)`), or a `bwd` that solves an adjoint equation with adaptive steps whose
sizes depend on the cotangent (`jax.experimental.ode.odeint`'s). There forward mode uses the
primal function's own derivative: the JVP of the program `custom_vjp` wraps, as if it had no
rule. This is a documented choice: for odeint it is the derivative of the discretised solution
(equal to the adjoint's to the solver's tolerance); for clipping it is the unclipped
derivative, so forward and reverse mode differ exactly where the rule meant them to.
`linearize`, whose linear function holds only `bwd` and its residuals, raises
`CustomVJPForwardError` (a `TypeError`, JAX's type for its own refusal) naming the function.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.extend.core import ClosedJaxpr

from ..errors import MissingRuleError
from ..transpose import backward_pass
from ..zeros import Zero
from .while_reverse import WhileConditionTangentError


class CustomVJPForwardError(TypeError):
    """Forward mode reached a `custom_vjp` function whose `bwd` cannot be transposed."""


class BwdNotLinearError(Exception):
    """`bwd` could not be transposed (the cause says at which operation)."""


# What transposing a program that is not linear in its linear inputs raises.
_NOT_LINEAR = (MissingRuleError, AssertionError, WhileConditionTangentError)


def function_name(call_jaxpr) -> str:
    """The user's name for a `custom_vjp` function, from its traced program's debug info."""
    jaxpr = call_jaxpr.jaxpr if isinstance(call_jaxpr, ClosedJaxpr) else call_jaxpr
    return debug_name(getattr(jaxpr, "debug_info", None))


def debug_name(debug_info) -> str:
    """A traced function's name, from JAX's debug info (`"<unnamed>"` without one)."""
    src = getattr(debug_info, "func_src_info", None) or ""
    return src.split(" at ")[0] or "<unnamed>"


_BWD_SCOPE = "custom_vjp_bwd"


def bwd_scope(name: str) -> str:
    """The name scope a `custom_vjp`'s bwd runs in (its operations carry it)."""
    return f"{_BWD_SCOPE}({name})"


def inside_bwd(eqn) -> str:
    """For an error at `eqn`: which custom_vjp's bwd emitted it, as a sentence (or "")."""
    stack = str(getattr(eqn.source_info, "name_stack", ""))
    start = stack.rfind(_BWD_SCOPE + "(")
    if start < 0:
        return ""
    name = stack[start + len(_BWD_SCOPE) + 1 :].split(")")[0]
    return (
        f" It is in the bwd rule of the custom_vjp function '{name}', which is being "
        "differentiated (a derivative of a gradient): that bwd is not differentiable."
    )


def is_symbolic_zero(x) -> bool:
    """`bwd` may return `None` or JAX's symbolic zero for an input with no cotangent."""
    return x is None or type(x) is Zero or type(x).__name__ in ("Zero", "SymbolicZero")


def _differentiable(x) -> bool:
    return np.issubdtype(jax.typeof(x).dtype, np.inexact)


def _sds(aval):
    return jax.ShapeDtypeStruct(aval.shape, aval.dtype, weak_type=aval.weak_type)


def tangents_by_transposing_bwd(bwd_call, residuals, arg_tangents, out_avals, name: str):
    """Output tangents of a `custom_vjp` function: `bwd` at `residuals`, transposed.

    `bwd_call(*residuals, *cts)` returns the cotangents of the call's inputs (any leading
    entries for its consts, then one per argument); `arg_tangents` has one tangent per
    argument (`Zero` where unperturbed); `out_avals` are the outputs' tangent types. Returns one
    tangent per output (`Zero` where no input tangent reaches it).
    """
    n_args, n_res = len(arg_tangents), len(residuals)
    # Integer arguments carry float0 tangents: nothing to transpose onto.
    perturbed = [type(t) is not Zero and _differentiable(t) for t in arg_tangents]
    present_box = []

    def bwd_flat(*args):
        ct_in = list(bwd_call(*args[:n_res], *args[n_res:]))[-n_args:]
        present = [not is_symbolic_zero(c) for c in ct_in]
        present_box.append(present)
        return [c for c, p, t in zip(ct_in, present, perturbed, strict=True) if p and t]

    res_avals = [jax.typeof(r) for r in residuals]
    bwd_closed = jax.make_jaxpr(bwd_flat)(*map(_sds, res_avals), *map(_sds, out_avals))
    t_in = [t for t, p, q in zip(arg_tangents, present_box[-1], perturbed, strict=True) if p and q]
    mask = [False] * n_res + [True] * len(out_avals)
    try:
        return backward_pass(bwd_closed.jaxpr, bwd_closed.consts, residuals, mask, t_in)
    except _NOT_LINEAR as e:
        raise BwdNotLinearError(name) from e


def not_linear_error(name: str, cause: Exception) -> CustomVJPForwardError:
    """The error `linearize` raises for a `custom_vjp` whose `bwd` is not linear."""
    detail = f"{type(cause).__name__}: {str(cause).splitlines()[0]}" if cause else ""
    return CustomVJPForwardError(
        f"can't apply forward-mode autodiff (linearize) to the custom_vjp function '{name}': "
        "its linear function is the transpose of bwd, which must be linear in the cotangent, "
        f"and this bwd is not ({detail}). jvp / jacfwd / hessian use the primal function's own "
        "derivative there; linearize has only bwd and its residuals. Give the function a "
        "jax.custom_jvp rule, or use transforms.jvp."
    )
