"""`call_hi_primitive`: JAX 0.10's higher-level primitives (`jax_remat3`, `hijax.VJPHiPrimitive`).

Such an equation carries a primitive object (`_prim`) that can expand itself into ordinary
(lower-level) JAX operations. A primitive that defines its own `jvp` gets it honoured, as a
`custom_jvp` rule is (in reverse mode too: it must be linear in the tangents). Otherwise we
differentiate the expansion, inlined, in both modes: the outer program keeps one flat
derivative, as for `jit` calls. (A `RematTraced` expansion is its checkpointed body: the
derivative is exact, the recomputation it asks for is not kept.)

A primitive with reverse-mode rules (`vjp_fwd` and `vjp_bwd_retval` or `vjp_bwd`) gets them
honoured in reverse mode as a `custom_vjp`'s are: `vjp_fwd` runs in the primal program and its
residuals feed a linear equation (`hi_lin_p`) whose transpose is the primitive's `vjp_bwd`;
evaluated forward (the linear program of `linearize`), that equation is `vjp_bwd` transposed.
Forward mode uses `jvp` when defined, else the expansion. `custom_remat`'s primitive has no
expansion: its recomputation (a `custom_vjp` carrying the user's `fbwd`) stands in for one.
"""

from __future__ import annotations

import jax
from jax import tree_util
from jax.extend.core import Primitive
from jax.interpreters import batching, mlir

from .._jax import CustomRemat as _CustomRemat
from .._jax import hijax as _hijax
from ..jvp import current_mode, jvp_eval, jvp_rules
from ..tracing import aval_struct, trace_to_closed
from ..transpose import backward_pass, is_undefined, transpose_rules
from ..zeros import Zero, instantiate, is_zero, tangent_aval
from .calls import _Opaque, batch_by_vmapping
from .custom_vjp_forward import tangents_by_transposing_bwd

call_hi_primitive_p = _hijax.call_hi_primitive_p


def _expansion(prim, in_avals):
    """The primitive's expansion into lower-level operations, as a closed jaxpr of flat inputs."""

    def expand_flat(*args_flat):
        if isinstance(prim, _CustomRemat):
            # `custom_remat(f, f1, f2, fbwd)` has no expansion of its own; its recomputation
            # is `f2_fbwd`, a custom_vjp of `f` with rules `f2` / `fbwd`, which we honour.
            _, recompute = prim.remat(None, *args_flat)
            return recompute(*args_flat)
        return call_hi_primitive_p.to_lojax(*args_flat, _prim=prim)

    return trace_to_closed(expand_flat, [aval_struct(a) for a in in_avals])


def _overrides(prim, name) -> bool:
    """Whether a user's primitive defines rule `name`. JAX's own primitives (`RematTraced`,
    `CheckpointName`) write theirs with JAX's autodiff, which is not our engine: their
    expansion is differentiated instead."""
    if type(prim).__module__.split(".")[0] in ("jax", "jaxlib"):
        return False
    return getattr(type(prim), name) is not getattr(_hijax.VJPHiPrimitive, name)


def _has_vjp_rules(prim) -> bool:
    return _overrides(prim, "vjp_fwd") and (
        _overrides(prim, "vjp_bwd_retval") or _overrides(prim, "vjp_bwd")
    )


class _Accum:
    """What a primitive's `vjp_bwd` adds an input's cotangent to (`accum`)."""

    __slots__ = ("aval", "value")

    def __init__(self, aval):
        self.aval, self.value = aval, None

    def accum(self, x):
        if x is None or is_zero(x) or isinstance(x, jax.custom_derivatives.SymbolicZero):
            return
        self.value = x if self.value is None else self.value + x


def _input_cotangents(prim, residuals, cts_flat) -> list:
    """The primitive's `vjp_bwd` at `residuals`: one cotangent per flat input (None: zero)."""
    cts = tree_util.tree_unflatten(prim.out_tree, cts_flat)
    if _overrides(prim, "vjp_bwd_retval"):
        grads = prim.vjp_bwd_retval(residuals, cts)
        flat = prim.in_tree.flatten_up_to(grads)
    else:
        accums = [_Accum(tangent_aval(a)) for a in prim.in_avals_flat]
        prim.vjp_bwd(residuals, cts, *tree_util.tree_unflatten(prim.in_tree, accums))
        flat = [a.value for a in accums]
    return [
        None if g is None or isinstance(g, jax.custom_derivatives.SymbolicZero) else g for g in flat
    ]


hi_lin_p = Primitive("transforms_hi_lin")
hi_lin_p.multiple_results = True


@hi_lin_p.def_abstract_eval
def _hi_lin_abstract_eval(*_, out_avals, **__):
    return out_avals


def _hi_lin_forward(*invals, prim, res_tree, nz_in, out_avals):
    # Evaluated forward (the linear program of `linearize`): vjp_bwd transposed.
    n_res = res_tree.num_leaves
    residuals, nz_tangents = invals[:n_res], iter(invals[n_res:])
    arg_tangents = [next(nz_tangents) if nz else Zero(None) for nz in nz_in]

    def bwd_call(*args):
        res = tree_util.tree_unflatten(res_tree, args[:n_res])
        return [
            jax.numpy.zeros(a.shape, a.dtype) if g is None else g
            for g, a in zip(
                _input_cotangents(prim.value, res, list(args[n_res:])),
                [tangent_aval(a) for a in prim.value.in_avals_flat],
                strict=True,
            )
        ]

    tangents = tangents_by_transposing_bwd(
        bwd_call, list(residuals), arg_tangents, out_avals, prim.name
    )
    return [instantiate(t) for t in tangents]


hi_lin_p.def_impl(_hi_lin_forward)
mlir.register_lowering(hi_lin_p, mlir.lower_fun(_hi_lin_forward, multiple_results=True))


batching.primitive_batchers[hi_lin_p] = batch_by_vmapping(_hi_lin_forward)


def _hi_lin_transpose(cts, *invals, prim, res_tree, nz_in, out_avals):
    n_res = res_tree.num_leaves
    residuals = tree_util.tree_unflatten(res_tree, invals[:n_res])
    cts = [instantiate(Zero(a)) if is_zero(c) else c for c, a in zip(cts, out_avals, strict=True)]
    grads = _input_cotangents(prim.value, residuals, cts)
    return [None] * n_res + [g for g, nz in zip(grads, nz_in, strict=True) if nz]


transpose_rules[hi_lin_p] = _hi_lin_transpose


def _vjp_rules_jvp(prim, primals, tangents):
    """Reverse mode with the primitive's own vjp_fwd / vjp_bwd."""
    nz_in = tuple(not is_zero(t) for t in tangents)
    args = tree_util.tree_unflatten(prim.in_tree, primals)
    out, residuals, *_ = prim.vjp_fwd(tree_util.tree_unflatten(prim.in_tree, list(nz_in)), *args)
    out_flat = prim.out_tree.flatten_up_to(out)
    res_flat, res_tree = tree_util.tree_flatten(residuals)
    out_avals = tuple(tangent_aval(a) for a in prim.out_avals_flat)
    nz_tangents = [instantiate(t) for t in tangents if not is_zero(t)]
    outs_dot = hi_lin_p.bind(
        *res_flat,
        *nz_tangents,
        prim=_Opaque(prim, type(prim).__name__),
        res_tree=res_tree,
        nz_in=nz_in,
        out_avals=out_avals,
    )
    return out_flat, list(outs_dot)


def _call_hi_primitive_jvp(primals, tangents, *, _prim):
    if current_mode() != "forward" and _has_vjp_rules(_prim):
        return _vjp_rules_jvp(_prim, primals, tangents)
    if _overrides(_prim, "jvp"):  # the primitive's own rule
        args = tree_util.tree_unflatten(_prim.in_tree, primals)
        args_dot = tree_util.tree_unflatten(_prim.in_tree, [instantiate(t) for t in tangents])
        out, out_dot = _prim.jvp(args, args_dot)
        return _prim.out_tree.flatten_up_to(out), _prim.out_tree.flatten_up_to(out_dot)
    closed = _expansion(_prim, [jax.typeof(x) for x in primals])
    return jvp_eval(closed.jaxpr, closed.consts, primals, tangents)


jvp_rules[call_hi_primitive_p] = _call_hi_primitive_jvp


def _call_hi_primitive_transpose(cts, *invals, _prim):
    """In a linear program: the primitive's own `transpose` (linear inputs get accumulators,
    the others their values), else its expansion transposed."""
    linear = [is_undefined(x) for x in invals]
    cts = [
        instantiate(Zero(tangent_aval(a))) if is_zero(c) else c
        for c, a in zip(cts, _prim.out_avals_flat, strict=True)
    ]
    if _overrides(_prim, "transpose"):
        accums = [_Accum(x.aval) if lin else None for x, lin in zip(invals, linear, strict=True)]
        args = [a if lin else x for a, x, lin in zip(accums, invals, linear, strict=True)]
        _prim.transpose(
            tree_util.tree_unflatten(_prim.out_tree, cts),
            *tree_util.tree_unflatten(_prim.in_tree, args),
        )
        return [a.value if lin else None for a, lin in zip(accums, linear, strict=True)]
    avals = [x.aval if lin else jax.typeof(x) for x, lin in zip(invals, linear, strict=True)]
    closed = _expansion(_prim, avals)
    residuals = [x for x, lin in zip(invals, linear, strict=True) if not lin]
    cts_in = iter(backward_pass(closed.jaxpr, closed.consts, residuals, linear, cts))
    return [next(cts_in) if lin else None for lin in linear]


transpose_rules[call_hi_primitive_p] = _call_hi_primitive_transpose
