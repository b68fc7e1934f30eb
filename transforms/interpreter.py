"""The one interpreter loop every transform shares, plus dead-code elimination.

A transform is a `step(eqn, invals) -> outvals` function; `interpret` runs it over a jaxpr with an
environment from variables to whatever the transform keeps per variable (a value, a
primal/tangent pair, ...). Literals are read through `literal`, so each transform says what a
constant means in its own space.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.extend.core import Jaxpr, Literal
from jax.extend.core import primitives as P
from jax.extend.core.primitives import convert_element_type_p as _convert_p

from . import debug as _debug
from ._jax import ArrayImpl as _ArrayImpl
from ._jax import TypedNdArray as _TypedNdArray
from ._jax import core as _core
from ._jax import mesh as _mesh_lib
from .rule_first import rebind_traced


class Env:
    """Variables to values. `read` handles `Literal`s with the transform's `literal` function."""

    __slots__ = ("values", "literal")

    def __init__(self, literal: Callable[[Literal], Any] = lambda lit: lit.val):
        self.values: dict = {}
        self.literal = literal

    def read(self, v):
        if type(v) is Literal:
            return self.literal(v)
        return self.values[v]

    def write(self, v, value) -> None:
        self.values[v] = value

    def read_many(self, vs) -> list:
        return [self.read(v) for v in vs]

    def write_many(self, vs, values) -> None:
        for v, value in zip(vs, values, strict=True):
            self.values[v] = value


def interpret(
    jaxpr: Jaxpr,
    consts: Sequence,
    args: Sequence,
    step: Callable,
    literal: Callable[[Literal], Any] = lambda lit: lit.val,
) -> list:
    """Run `step` over every equation of `jaxpr`, in order; returns the values of its outvars.

    `step(eqn, invals)` returns the list of values of `eqn.outvars` (one per outvar).
    """
    env = Env(literal)
    env.write_many(jaxpr.constvars, consts)
    env.write_many(jaxpr.invars, args)
    for eqn in jaxpr.eqns:
        mesh = eqn_mesh(eqn)
        if mesh is None:
            outs = step(eqn, env.read_many(eqn.invars))
        else:
            with mesh:
                outs = step(eqn, env.read_many(eqn.invars))
        env.write_many(eqn.outvars, outs)
    return env.read_many(jaxpr.outvars)


def eqn_mesh(eqn):
    """The mesh `eqn` was traced under, as a context to enter; None when it is the current one.

    Why: inside `jax.sharding.auto_axes` / `explicit_axes` the mesh's axis types change, and
    every value there is typed with that mesh; an equation (and whatever its rules emit) must be
    bound under the same mesh, or JAX refuses ("context mesh should match the aval mesh").
    """
    mesh = eqn.ctx.cur_abstract_mesh
    if mesh.empty:
        return None
    current = _mesh_lib.get_abstract_mesh()
    if mesh is current or mesh == current:
        return None
    return _mesh_lib.use_abstract_mesh(mesh)


def bind(eqn, invals):
    """Apply `eqn`'s primitive to `invals` (eagerly, or into whatever trace is current)."""
    # Call-like primitives (shard_map, closed_call, custom_jvp_call) turn their jaxpr parameter
    # into `subfuns`, which their `bind` reads from the parameters (jax >= 0.7).
    params = eqn.primitive.get_bind_params(eqn.params)
    if eqn.primitive in _CUSTOM_CALLS:
        out = rebind_traced(eqn, invals, params)
    else:
        out = eqn.primitive.bind(*invals, **params)
    return out if eqn.primitive.multiple_results else [out]


def eval_step(eqn, invals):
    if _debug.ENABLED:  # re-emitted equations keep their source (for debug_nans reports)
        with _debug.attribute(eqn):
            return bind(eqn, invals)
    return bind(eqn, invals)


def eval_jaxpr(jaxpr: Jaxpr, consts: Sequence, *args) -> list:
    """Evaluate `jaxpr`, binding each primitive: eager on arrays, staged under a trace."""
    if not _at_top_level():
        return interpret(jaxpr, consts, args, eval_step)
    return literal_outputs_as_arrays(jaxpr, interpret(jaxpr, consts, args, _eager_step))


def literal_outputs_as_arrays(jaxpr: Jaxpr, outs: list) -> list:
    """Eager outputs of `jaxpr` with its literal outputs as device arrays of the literal's type.

    A literal's value is a host scalar (`TypedFloat`, ...); an eager call of the function under
    `jax.jit`, or JAX's own transforms, hand back an `Array` there (`jnp.array(-1.0)` returned
    as a function's aux would not be subscriptable).
    """
    if not any(type(v) is Literal for v in jaxpr.outvars):
        return outs
    return [
        _literal_array(v) if type(v) is Literal else out
        for v, out in zip(jaxpr.outvars, outs, strict=True)
    ]


def _literal_array(lit: Literal):
    x = jax.device_put(np.asarray(lit.val, lit.aval.dtype))
    if lit.aval.weak_type:
        x = _convert_p.bind(x, new_dtype=lit.aval.dtype, weak_type=True, sharding=None)
    return x


def _at_top_level() -> bool:
    return type(_core.trace_ctx.trace) is _core.EvalTrace and not _debug.ENABLED


_default_bind_params = _core.Primitive.get_bind_params
# Device arrays, and the typed host arrays jaxpr literals hold (their type is their own).
_EAGER_TYPES = (_ArrayImpl, _TypedNdArray)
_CUSTOM_CALLS = (P.custom_jvp_call_p, P.custom_vjp_call_p)


def _eager_step(eqn, invals):
    # Long programs run op by op (engine.MAX_COMPILED_EQNS). Outside any trace, on committed
    # arrays, `bind` only re-checks what the jaxpr already guarantees (canonical dtypes, no
    # escaped tracers) before calling the primitive's implementation: a third of the cost.
    prim = eqn.primitive
    if (
        eqn.effects
        or type(prim).get_bind_params is not _default_bind_params
        or "to_lojax" in vars(prim)  # a higher-level primitive: bind lowers it
        or not all(type(x) in _EAGER_TYPES for x in invals)
    ):
        return eval_step(eqn, invals)
    out = prim.impl(*invals, **eqn.params)
    return out if prim.multiple_results else [out]


def dce_eqns(eqns: Sequence, live_outvars: Sequence) -> tuple[list, set]:
    """Keep only the equations whose outputs reach `live_outvars` (one backward pass, O(n)).

    Returns the kept equations in order and the set of variables they (and the outputs) read.
    Equations with effects are always kept.
    """
    live = {v for v in live_outvars if type(v) is not Literal}
    kept = []
    for eqn in reversed(eqns):
        if eqn.effects or any(v in live for v in eqn.outvars):
            kept.append(eqn)
            live.update(v for v in eqn.invars if type(v) is not Literal)
    kept.reverse()
    return kept, live
