"""Nested calls (`jit`, `closed_call`) and users' own rules (`custom_jvp`, `custom_vjp`)."""

from __future__ import annotations

import jax
import numpy as np
from jax.extend.core import ClosedJaxpr, Primitive, new_jaxpr_eqn
from jax.extend.core import primitives as P
from jax.interpreters import batching, mlir

from ..interpreter import eval_jaxpr
from ..jvp import current_mode, jvp_eval, jvp_rules
from ..partial_eval import fresh_vars, partial_eval_rules, split_jaxpr
from ..rule_first import custom_jvp_rule_p, custom_vjp_rule_p, primal_jaxpr
from ..transpose import backward_pass, is_undefined, transpose_rules
from ..zeros import Zero, instantiate, tangent_aval
from .custom_vjp_forward import (
    BwdNotLinearError,
    bwd_scope,
    debug_name,
    function_name,
    is_symbolic_zero,
    not_linear_error,
    tangents_by_transposing_bwd,
)


def _closed(params_jaxpr):
    if isinstance(params_jaxpr, ClosedJaxpr):
        return params_jaxpr.jaxpr, params_jaxpr.consts
    return params_jaxpr, ()


def _call_jvp(jaxpr_param):
    # Inline the call: the outer program keeps one flat derivative, which partial evaluation and
    # dead-code elimination can see through.
    def rule(primals, tangents, **params):
        jaxpr, consts = _closed(params[jaxpr_param])
        return jvp_eval(jaxpr, consts, primals, tangents)

    return rule


def _call_transpose(jaxpr_param):
    def rule(cts, *invals, **params):
        jaxpr, consts = _closed(params[jaxpr_param])
        mask = [is_undefined(x) for x in invals]
        residuals = [x for x in invals if not is_undefined(x)]
        cts_in = iter(backward_pass(jaxpr, consts, residuals, mask, cts))
        return [next(cts_in) if m else None for m in mask]

    return rule


def _call_partial_eval(jaxpr_param):
    # Our JVP inlines calls, but a call can still reach partial evaluation whole, mixing primal
    # and tangent work: from a user's custom_jvp rule, whose JVP program is evaluated as is.
    # Split its body, and emit the halves as two `closed_call`s joined by residuals.
    def rule(eqn, unknowns):
        jaxpr, consts = _closed(eqn.params[jaxpr_param])
        split = split_jaxpr(jaxpr, unknowns)
        residuals = fresh_vars([v.aval for v in split.residuals])
        known_in = [v for v, u in zip(eqn.invars, unknowns, strict=True) if not u]
        unknown_in = [v for v, u in zip(eqn.invars, unknowns, strict=True) if u]
        outs = list(zip(eqn.outvars, split.out_unknowns, strict=True))
        known_eqn = new_jaxpr_eqn(
            known_in,
            [*(v for v, u in outs if not u), *residuals],
            P.closed_call_p,
            {"call_jaxpr": ClosedJaxpr(split.known, consts)},
            eqn.effects,
            eqn.source_info,
        )
        unknown_eqn = new_jaxpr_eqn(
            [*residuals, *unknown_in],
            [v for v, u in outs if u],
            P.closed_call_p,
            {"call_jaxpr": ClosedJaxpr(split.linear, ())},
            eqn.effects,
            eqn.source_info,
        )
        return [known_eqn], [unknown_eqn], split.out_unknowns

    return rule


# remat (jax.checkpoint) is not a plain call: see rules/checkpoint.py.
for _p, _name in ((P.jit_p, "jaxpr"), (P.closed_call_p, "call_jaxpr")):
    jvp_rules[_p] = _call_jvp(_name)
    transpose_rules[_p] = _call_transpose(_name)
    partial_eval_rules[_p] = _call_partial_eval(_name)


# --- custom_jvp: call the user's rule -------------------------------------------------------------


def _custom_jvp_call_jvp(
    primals, tangents, *, call_jaxpr, jvp_jaxpr_fun, num_consts, symbolic_zeros
):
    consts, args = primals[:num_consts], primals[num_consts:]
    arg_tangents = tangents[num_consts:]
    in_zeros = tuple(type(t) is Zero for t in arg_tangents)
    if symbolic_zeros:
        jvp_jaxpr, jvp_consts, out_zeros = jvp_jaxpr_fun.call_wrapped(*in_zeros)
        nz = [t for t in arg_tangents if type(t) is not Zero]
    else:
        jvp_jaxpr, jvp_consts, out_zeros = jvp_jaxpr_fun.call_wrapped(*([False] * len(args)))
        nz = [instantiate(t) for t in arg_tangents]
    del consts  # the user's rule closes over what it needs; consts here are call_jaxpr's
    outs = eval_jaxpr(jvp_jaxpr, jvp_consts, *args, *nz)
    return _rule_outputs(outs, out_zeros)


def _rule_outputs(outs, out_zeros):
    # A JVP rule's jaxpr gives the primal outputs, then the tangents that are not zero.
    n = len(out_zeros)
    out_primals, nz_out = outs[:n], iter(outs[n:])
    out_tangents = [
        Zero(tangent_aval(jax.typeof(p))) if z else next(nz_out)
        for p, z in zip(out_primals, out_zeros, strict=True)
    ]
    return out_primals, out_tangents


def _custom_jvp_rule_jvp(primals, tangents, *, jvp_jaxpr, num_consts, in_zeros, out_zeros, **_):
    # The rule traced in place of the call (rule_first.py), over (its consts, primals, tangents
    # not symbolically zero). Its consts are what it closes over: as for `custom_jvp_call`,
    # their tangents are not used.
    nz = []
    for t, zero in zip(tangents[num_consts:], in_zeros, strict=True):
        if not zero:
            nz.append(instantiate(t))
        elif type(t) is not Zero:  # the tracer's dependence analysis missed an input
            raise AssertionError(
                "internal error: a custom_jvp rule traced with a symbolic zero for an input "
                "that a tangent reaches"
            )
    outs = eval_jaxpr(jvp_jaxpr.jaxpr, (), *primals, *nz)
    return _rule_outputs(outs, out_zeros)


jvp_rules[P.custom_jvp_call_p] = _custom_jvp_call_jvp
jvp_rules[custom_jvp_rule_p] = _custom_jvp_rule_jvp
# A custom_jvp function inside a linear program is applied to tangents (lineax's linear_solve
# JVP does this), so it is linear there: transpose its primal body, as JAX does.
transpose_rules[P.custom_jvp_call_p] = _call_transpose("call_jaxpr")


# --- custom_vjp: the user's fwd runs in the primal program, bwd in the transposed one ------------
# Forward mode transposes bwd instead (rules/custom_vjp_forward.py).

custom_lin_p = Primitive("transforms_custom_lin")
custom_lin_p.multiple_results = True


@custom_lin_p.def_abstract_eval
def _custom_lin_abstract_eval(*_, out_avals, **__):
    return out_avals


def _as_arrays(residuals) -> list:
    """Residuals as bwd sees them in JAX, where a `jit` around the call hands it tracers.

    Evaluated eagerly, a residual can be a host value. A jaxpr literal that is an array
    evaluates to a NumPy array, which bwd may index with traced indices (odeint's does); a
    Python number the user passed as an argument (`float`, `int`, `complex` exactly) reaches
    bwd as itself, and diffrax's BacksolveAdjoint takes a float that is not an array for no
    parameter (`eqx.filter(args, eqx.is_inexact_array)`: a zero gradient for `args=0.5`).
    Scalar literals (`TypedFloat`, a `bool`) stay as they are: JAX hands those to bwd as is,
    and Equinox's checkpointed loop reads such a bool as a filter.
    """
    return [
        jax.numpy.asarray(r)
        if isinstance(r, np.ndarray | np.generic) or type(r) in (float, int, complex)
        else r
        for r in residuals
    ]


def _custom_lin_forward(*invals, num_res, bwd, out_avals, symbolic_zeros, in_zeros, num_consts):
    # Evaluated forward (the linear program of `linearize`): bwd transposed, at the residuals.
    residuals, nz_tangents = _as_arrays(invals[:num_res]), iter(invals[num_res:])
    arg_tangents = [Zero(None) if z else next(nz_tangents) for z in in_zeros]
    try:
        tangents = tangents_by_transposing_bwd(
            bwd.value.call_wrapped, residuals, arg_tangents, out_avals, bwd.name
        )
    except BwdNotLinearError as e:
        raise not_linear_error(bwd.name, e.__cause__) from e
    return [instantiate(t) for t in tangents]


custom_lin_p.def_impl(_custom_lin_forward)
mlir.register_lowering(custom_lin_p, mlir.lower_fun(_custom_lin_forward, multiple_results=True))


def batch_by_vmapping(forward):
    """A batching rule for a primitive evaluated by `forward`: vmap `forward` itself."""

    def rule(args, dims, **params):
        outs = jax.vmap(lambda *a: forward(*a, **params), in_axes=tuple(dims))(*args)
        return outs, [0] * len(outs)

    return rule


batching.primitive_batchers[custom_lin_p] = batch_by_vmapping(_custom_lin_forward)
for _p in (custom_jvp_rule_p, custom_vjp_rule_p):  # their value alone: the rule's primal outputs
    batching.primitive_batchers[_p] = batch_by_vmapping(_p.impl)


class _Opaque:
    """Holds a Python callable as an equation parameter: hashed and compared by identity."""

    __slots__ = ("value", "name")

    def __init__(self, value, name=""):
        self.value = value
        self.name = name  # the custom_vjp function's, for error messages

    def __hash__(self):
        return id(self.value)

    def __eq__(self, other):
        return type(other) is _Opaque and other.value is self.value


def _custom_vjp_call_jvp(
    primals, tangents, *, call_jaxpr, fwd_jaxpr_thunk, num_consts, bwd, out_trees, symbolic_zeros
):
    perturbed = tuple(type(t) is not Zero for t in tangents[num_consts:])
    fwd_jaxpr, fwd_consts = fwd_jaxpr_thunk.call_wrapped(*perturbed)
    res_and_outs = eval_jaxpr(fwd_jaxpr, fwd_consts, *primals[num_consts:])
    return _custom_vjp_from_fwd(
        primals,
        tangents,
        res_and_outs,
        num_consts=num_consts,
        bwd=bwd,
        out_trees=out_trees,
        symbolic_zeros=symbolic_zeros,
        name=function_name(call_jaxpr),
        primal=lambda: _closed(call_jaxpr),
    )


def _custom_vjp_rule_jvp(
    primals, tangents, *, fwd_jaxpr, num_consts, bwd, out_trees, symbolic_zeros, fun, **params
):
    # fwd traced in place of the call (rule_first.py), over (its consts, the arguments); its
    # Python objects are held by identity (rule_first.Held).
    bwd, fun = bwd.value, fun.value
    res_and_outs = eval_jaxpr(fwd_jaxpr.jaxpr, (), *primals)
    args = primals[num_consts:]
    return _custom_vjp_from_fwd(
        primals,
        tangents,
        res_and_outs,
        num_consts=num_consts,
        bwd=bwd,
        out_trees=out_trees,
        symbolic_zeros=symbolic_zeros,
        name=debug_name(fun.debug_info),
        primal=lambda: primal_jaxpr({"fun": fun}, [jax.typeof(a) for a in args]),
        primal_takes_consts=False,
    )


def _custom_vjp_from_fwd(
    primals,
    tangents,
    res_and_outs,
    *,
    num_consts,
    bwd,
    out_trees,
    symbolic_zeros,
    name,
    primal,
    primal_takes_consts=True,
):
    # `primal()` gives the function itself, traced: (jaxpr, consts), over the call's consts and
    # arguments when `primal_takes_consts`, else over the arguments.
    arg_tangents = tangents[num_consts:]
    perturbed = tuple(type(t) is not Zero for t in arg_tangents)
    _, res_tree, input_fwds = out_trees()
    num_res_out = res_tree.num_leaves - sum(f is not None for f in input_fwds)
    res_out, outs = res_and_outs[:num_res_out], res_and_outs[num_res_out:]
    res_iter = iter(res_out)
    residuals = [next(res_iter) if f is None else primals[f] for f in input_fwds]
    out_avals = tuple(tangent_aval(jax.typeof(o)) for o in outs)
    if current_mode() == "forward":
        # No linear program to transpose later: the JVP is bwd transposed, emitted now; or,
        # for a bwd that is not linear, the primal's own JVP (rules/custom_vjp_forward.py).
        try:
            tangents_out = tangents_by_transposing_bwd(
                bwd.call_wrapped, residuals, list(arg_tangents), out_avals, name
            )
        except BwdNotLinearError:
            jaxpr, consts = primal()
            if primal_takes_consts:
                return jvp_eval(jaxpr, consts, primals, tangents)
            return jvp_eval(jaxpr, consts, primals[num_consts:], arg_tangents)
        return outs, list(tangents_out)
    nz_tangents = [instantiate(t) for t in arg_tangents if type(t) is not Zero]
    tangents_out = custom_lin_p.bind(
        *residuals,
        *nz_tangents,
        num_res=len(residuals),
        bwd=_Opaque(bwd, name),
        out_avals=out_avals,
        symbolic_zeros=symbolic_zeros,
        in_zeros=tuple(not p for p in perturbed),
        num_consts=num_consts,
    )
    return outs, list(tangents_out)


def _custom_lin_transpose(
    cts, *invals, num_res, bwd, out_avals, symbolic_zeros, in_zeros, num_consts
):
    residuals = _as_arrays(invals[:num_res])
    if symbolic_zeros:
        # A rule defined with `symbolic_zeros=True` is told which cotangents are zero, as JAX
        # tells it: a `SymbolicZero` in their place (Equinox's filter_custom_vjp sees None).
        cts = [
            jax.custom_derivatives.SymbolicZero(a) if type(c) is Zero else c
            for c, a in zip(cts, out_avals, strict=True)
        ]
    else:
        cts = [instantiate(Zero(a)) if type(c) is Zero else c for c, a in zip(cts, out_avals)]
    # The scope names the function in the errors of an outer derivative of bwd's operations.
    with jax.named_scope(bwd_scope(bwd.name)):
        cts_in = list(bwd.value.call_wrapped(*residuals, *cts))
    # bwd returns cotangents for the call's consts first (zeros), then for its arguments.
    cts_in = cts_in[len(cts_in) - len(in_zeros) :]
    result = [None] * num_res
    for ct, zero in zip(cts_in, in_zeros, strict=True):
        if zero:
            continue
        result.append(None if is_symbolic_zero(ct) else ct)
    return result


jvp_rules[P.custom_vjp_call_p] = _custom_vjp_call_jvp
jvp_rules[custom_vjp_rule_p] = _custom_vjp_rule_jvp
transpose_rules[custom_lin_p] = _custom_lin_transpose

_unused = np
