"""`call_hi_primitive`: JAX 0.10's higher-level primitives (`jax_remat3`, `hijax.VJPHiPrimitive`).

Such an equation carries a primitive object (`_prim`) that can expand itself into ordinary
(lower-level) JAX operations. A primitive that defines its own `jvp` gets it honoured, as a
`custom_jvp` rule is (in reverse mode too: it must be linear in the tangents). Otherwise we
differentiate the expansion, inlined, in both modes: the outer program keeps one flat
derivative, as for `jit` calls. (A `RematTraced` expansion is its checkpointed body: the
derivative is exact, the recomputation it asks for is not kept.) Rules given only as
`vjp_fwd`/`vjp_bwd` are not used yet: their primitives are differentiated through `expand`.
"""

from __future__ import annotations

from jax import tree_util

from .._jax import hijax as _hijax
from ..jvp import jvp_eval, jvp_rules
from ..tracing import shape_dtype, trace_to_closed
from ..zeros import instantiate

call_hi_primitive_p = _hijax.call_hi_primitive_p


def _expansion(prim, primals):
    """The primitive's expansion into lower-level operations, as a closed jaxpr of flat inputs."""

    def expand_flat(*args_flat):
        return call_hi_primitive_p.to_lojax(*args_flat, _prim=prim)

    return trace_to_closed(expand_flat, [shape_dtype(x) for x in primals])


def _call_hi_primitive_jvp(primals, tangents, *, _prim):
    if type(_prim).jvp is not _hijax.VJPHiPrimitive.jvp:  # the primitive's own rule
        args = tree_util.tree_unflatten(_prim.in_tree, primals)
        args_dot = tree_util.tree_unflatten(_prim.in_tree, [instantiate(t) for t in tangents])
        out, out_dot = _prim.jvp(args, args_dot)
        return _prim.out_tree.flatten_up_to(out), _prim.out_tree.flatten_up_to(out_dot)
    closed = _expansion(_prim, primals)
    return jvp_eval(closed.jaxpr, closed.consts, primals, tangents)


jvp_rules[call_hi_primitive_p] = _call_hi_primitive_jvp
