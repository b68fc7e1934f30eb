"""One trace for `tf.function`s whose `input_signature` has `None` dimensions.

TF traces such a function once and runs the one graph for every size. XLA needs static
shapes, so we trace the Python function once with symbolic sizes (`jax.export`'s shape
polymorphism: a `None` becomes a dimension variable), and keep that jaxpr. Each concrete size
gets its own XLA program by evaluating the symbolic jaxpr with the sizes substituted
(`specialise`), which is a trace of the jaxpr, not of the user's Python: side effects and the
tracing count stay TF's. Where the Python function cannot be traced symbolically (it branches
on a size, reshapes with a computed shape) or its jaxpr holds something that cannot be
specialised (a `custom_vjp` call), the caller falls back to one trace per concrete size.
"""

from __future__ import annotations

import jax
import numpy as np
from jax import export

from .. import _jax
from ..zeros import tangent_aval, zeros_like_aval


class Unspecialisable(Exception):
    """The symbolic jaxpr holds an equation whose parameters cannot be made concrete."""


def symbolic_shapes(shapes):
    """Abstract shapes for `shapes` (tuples whose `None`s are unknown sizes): each `None` becomes
    its own dimension variable, all in one scope."""
    scope = export.SymbolicScope()
    names = iter(f"d{i}" for i in range(sum(s.count(None) for s in shapes)))
    out = []
    for shape in shapes:
        spelled = ", ".join(next(names) if d is None else str(d) for d in shape)
        out.append(tuple(export.symbolic_shape(f"({spelled},)", scope=scope)) if shape else ())
    return out


def specialise(jaxpr, consts):
    """`jaxpr` (with symbolic dimensions) as a function of concrete arrays: the sizes are read
    off the arguments and substituted into every equation."""

    def run(*args):
        return _evaluate(jaxpr, consts, _sizes(jaxpr.invars, args), args)

    return run


def _sizes(invars, args) -> dict:
    env: dict = {}
    for v, a in zip(invars, args, strict=True):
        shape = np.shape(a)
        for d, n in zip(v.aval.shape, shape, strict=True):
            if export.is_symbolic_dim(d) and str(d).isidentifier():
                env.setdefault(str(d), int(n))
    for v, a in zip(invars, args, strict=True):
        if tuple(_concrete(v.aval.shape, env)) != tuple(np.shape(a)):
            raise TypeError(f"shape {np.shape(a)} does not match the traced shape {v.aval.shape}")
    return env


def _evaluate(jaxpr, consts, env, args):
    core = _jax.core
    values: dict = {}

    def read(v):
        return v.val if type(v) is core.Literal else values[v]

    for v, x in zip(jaxpr.constvars, consts, strict=True):
        values[v] = x
    for v, x in zip(jaxpr.invars, args, strict=True):
        values[v] = x
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        if name == "dim_as_value":
            outs = [jax.numpy.asarray(_concrete(eqn.params["dim"], env), eqn.outvars[0].aval.dtype)]
        elif name == "jit":
            inner = eqn.params["jaxpr"]
            outs = _evaluate(inner.jaxpr, inner.consts, env, invals)
        elif name == "custom_jvp_call":
            outs = _custom_jvp(eqn.params, env, invals)
        else:
            params = {k: _concrete(p, env) for k, p in eqn.params.items()}
            outs = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(params))
            if not eqn.primitive.multiple_results:
                outs = [outs]
        for v, x in zip(eqn.outvars, outs, strict=True):
            values[v] = x
    return [read(v) for v in jaxpr.outvars]


def _concrete(value, env):
    """`value` (an equation parameter) with every symbolic dimension replaced by its size."""
    core = _jax.core
    if export.is_symbolic_dim(value):
        return int(_jax.evaluate_dim(value, env))
    if isinstance(value, tuple):
        return tuple(_concrete(v, env) for v in value)
    if isinstance(value, list):
        return [_concrete(v, env) for v in value]
    if isinstance(value, core.ClosedJaxpr):
        return _specialised_closed(value, env)
    if isinstance(value, core.Jaxpr):
        closed = _specialised_closed(core.ClosedJaxpr(value, ()), env)
        if closed.consts:
            raise Unspecialisable("an open sub-jaxpr gained constants")
        return closed.jaxpr
    if isinstance(value, core.ShapedArray):
        return value.update(shape=_concrete(value.shape, env))
    if isinstance(value, _jax.linear_util.WrappedFun):
        # A traced rule (custom_vjp's fwd and bwd): it would trace again at symbolic sizes.
        raise Unspecialisable(f"a traced function parameter ({value})")
    return value


def _struct(aval, env):
    shape = _concrete(aval.shape, env)
    return jax.ShapeDtypeStruct(shape, aval.dtype, weak_type=getattr(aval, "weak_type", False))


def _specialised_closed(closed, env):
    avals = [_struct(v.aval, env) for v in closed.jaxpr.invars]
    return jax.make_jaxpr(lambda *a: _evaluate(closed.jaxpr, closed.consts, env, a))(*avals)


def _custom_jvp(params, env, invals):
    # Rebuilt with the public API so the rule survives for whoever differentiates the
    # specialised program (a tape recording the call): primal and rule both evaluated at the
    # concrete sizes.
    call_jaxpr, num_consts = params["call_jaxpr"], params["num_consts"]
    jvp_jaxpr_fun = params["jvp_jaxpr_fun"]

    @jax.custom_jvp
    def f(*args):
        return _evaluate(call_jaxpr.jaxpr, call_jaxpr.consts, env, args)

    @f.defjvp
    def f_jvp(primals, tangents):
        args, arg_tangents = primals[num_consts:], tangents[num_consts:]
        jvp_jaxpr, jvp_consts, out_zeros = jvp_jaxpr_fun.call_wrapped(*([False] * len(args)))
        outs = _evaluate(jvp_jaxpr, jvp_consts, env, [*args, *arg_tangents])
        n = len(out_zeros)
        out_primals, nonzero = outs[:n], iter(outs[n:])
        out_tangents = [
            _zeros_tangent(p) if zero else next(nonzero)
            for p, zero in zip(out_primals, out_zeros, strict=True)
        ]
        return out_primals, out_tangents

    return f(*invals)


def _zeros_tangent(primal):
    return zeros_like_aval(tangent_aval(jax.typeof(primal)))
