"""From Python functions to closed jaxprs, and structural keys for caching derivative programs."""

from __future__ import annotations

import functools

import jax
import numpy as np
from jax import tree_util
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal
from jax.sharding import AxisType

# The tracer itself: JAX's private modules, all behind `_jax`.
from ._jax import api_util as _api_util
from ._jax import core as _core
from ._jax import dtypes as _dtypes
from ._jax import linear_util as _lu
from ._jax import mesh as _mesh_lib
from ._jax import partial_eval as _pe
from .errors import TracedControlFlowError


def shape_dtype(x):
    return aval_struct(jax.typeof(x))


def aval_struct(aval):
    """A `ShapeDtypeStruct` to trace with, keeping everything jit or shard_map would type-check.

    Inside `shard_map` the varying/invariant typing (`manual_axis_type`) must survive, or the
    traced program would mix the two kinds without the conversions JAX inserts.
    """
    manual = getattr(aval, "manual_axis_type", None)
    if manual is not None and (manual.varying or manual.unreduced or manual.reduced):
        return jax.ShapeDtypeStruct(
            aval.shape,
            aval.dtype,
            weak_type=aval.weak_type,
            sharding=aval.sharding,
            manual_axis_type=manual,
        )
    # On a mesh with Explicit axes the layout is part of the type as well.
    sharding = getattr(aval, "sharding", None)
    if AxisType.Explicit in getattr(getattr(sharding, "mesh", None), "axis_types", ()):
        return jax.ShapeDtypeStruct(
            aval.shape, aval.dtype, weak_type=aval.weak_type, sharding=sharding
        )
    return jax.ShapeDtypeStruct(aval.shape, aval.dtype, weak_type=aval.weak_type)


def trace_flat(fun, in_tree, avals_flat) -> tuple[ClosedJaxpr, tree_util.PyTreeDef]:
    """Trace `fun(*unflatten(in_tree, args))` to a closed jaxpr over flat arguments.

    Returns the jaxpr and the output tree. Python control flow on traced values fails here; the
    error says what to use instead.
    """
    out_tree_box = []

    def flat_fun(*args_flat):
        out = fun(*tree_util.tree_unflatten(in_tree, args_flat))
        out_flat, out_tree = tree_util.tree_flatten(out)
        out_tree_box.append(out_tree)
        return out_flat

    try:
        closed = trace_to_closed(flat_fun, avals_flat)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError) as e:
        raise TracedControlFlowError(e) from e
    return closed, out_tree_box[-1]


def _canonicalize_custom_call_inputs(method):
    """Wrap a `DynamicJaxprTrace.process_custom_*_call` to canonicalize NumPy/Python inputs.

    Why: under `jax.vmap`, a NumPy array the user vmaps over reaches a `custom_jvp`/`custom_vjp`
    call (`jax.nn.relu`) uncanonicalized, and JAX 0.10's jaxpr tracer asserts "non-canonical
    constant of type ndarray" (JAX's own make_jaxpr, and jit of its grad, fail the same way;
    JAX's eager `grad` does not, because there the value meets the eval trace). Every eager call
    of ours traces, so we canonicalize those inputs as `Primitive.bind` does for other ones.
    """

    @functools.wraps(method)
    def process(self, prim, *subfuns_and_tracers, **params):
        *subfuns, tracers = subfuns_and_tracers
        if any(_is_non_canonical(x) for x in tracers):
            canonical = _dtypes.canonicalize_value
            tracers = [canonical(x) if _is_non_canonical(x) else x for x in tracers]
        return method(self, prim, *subfuns, tracers, **params)

    process.transforms_canonicalizes = True
    return process


def _is_non_canonical(x) -> bool:
    return type(x) in (int, float, complex, bool) or isinstance(x, np.ndarray | np.generic)


for _name in ("process_custom_jvp_call", "process_custom_vjp_call"):
    _method = getattr(_pe.DynamicJaxprTrace, _name)
    if not getattr(_method, "transforms_canonicalizes", False):
        setattr(_pe.DynamicJaxprTrace, _name, _canonicalize_custom_call_inputs(_method))


def trace_to_closed(fn, structs) -> ClosedJaxpr:
    """`jax.make_jaxpr(fn)(*structs)` for a flat function of `ShapeDtypeStruct`s, faster.

    Every eager call traces the user's function afresh (a cache keyed on the function object
    could serve a stale program to a changed closure), so tracing is on the hot path.
    `make_jaxpr` goes through `jit`'s argument, sharding and cache machinery, a third of the
    time for a small model; without a mesh in context, with no sharding or manual axes in the
    types, the dynamic tracer alone gives the same jaxpr.
    """
    if not all(type(s) is jax.ShapeDtypeStruct and s.sharding is None for s in structs) or not (
        _mesh_lib.get_abstract_mesh().empty
    ):
        return jax.make_jaxpr(fn)(*structs)
    avals = [_core.ShapedArray(s.shape, s.dtype, weak_type=s.weak_type) for s in structs]
    debug = _api_util.debug_info("transforms", fn, tuple(structs), {})
    jaxpr, _, consts = _pe.trace_to_jaxpr_dynamic(_lu.wrap_init(fn, debug_info=debug), avals)
    return ClosedJaxpr(jaxpr, consts)


def any_tracer(values) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in values)


# --- structural keys ------------------------------------------------------------------------------


class Unkeyable(Exception):
    """A jaxpr holds something (a Python callable, an array parameter) we cannot key on."""


def jaxpr_key(jaxpr: Jaxpr, memo: dict | None = None):
    """A hashable key equal for structurally identical jaxprs (same ops, params, types, wiring).

    Constant *values* are not part of the key (they are inputs of compiled programs); literal
    values are. Raises `Unkeyable` when a parameter cannot be keyed (for example the Python
    callables of custom_jvp/custom_vjp), in which case callers do not cache.
    """
    memo = {} if memo is None else memo
    cached = memo.get(id(jaxpr))
    if cached is not None:
        return cached
    ids: dict = {}

    def var(v):
        if type(v) is Literal:
            val = v.val
            if isinstance(val, (np.ndarray, np.generic)) or hasattr(val, "dtype"):
                arr = np.asarray(val)
                if arr.size > 16:
                    raise Unkeyable
                return ("lit", arr.dtype.str, arr.shape, arr.tobytes(), v.aval.weak_type)
            return ("lit", type(val).__name__, val, v.aval)
        n = ids.get(v)
        if n is None:
            n = ids[v] = len(ids)
        return n

    parts = [
        tuple((var(v), v.aval) for v in jaxpr.constvars),
        tuple((var(v), v.aval) for v in jaxpr.invars),
    ]
    for eqn in jaxpr.eqns:
        parts.append(
            (
                eqn.primitive.name,
                tuple(var(v) for v in eqn.invars),
                tuple(var(v) for v in eqn.outvars),
                _params_key(eqn.params, memo),
            )
        )
    parts.append(tuple(var(v) for v in jaxpr.outvars))
    key = tuple(parts)
    memo[id(jaxpr)] = key
    return key


def _params_key(params, memo):
    items = []
    for name in sorted(params):
        items.append((name, _param_key(params[name], memo)))
    return tuple(items)


class _Same:
    """Keys an object by identity (holding it, so its id cannot be reused while keyed)."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __hash__(self):
        return id(self.obj)

    def __eq__(self, other):
        return type(other) is _Same and other.obj is self.obj


def _inner_const_key(c):
    # Constants of an inner closed jaxpr (a user's jax.jit closing over an array) are baked into
    # the derivative program, unlike the outer constants that compiled programs take as inputs:
    # their values belong in the key. Small ones by value; large ones by identity (JAX hands back
    # the same constant objects when it reuses a traced inner function, and arrays are immutable).
    aval = jax.typeof(c)
    if isinstance(c, (np.ndarray, np.generic)) and c.size <= 64:
        return ("value", aval, np.asarray(c).tobytes())
    return ("object", aval, _Same(c))


_HASHABLE_PARAM_TYPES = (jax.sharding.Mesh, jax.sharding.AbstractMesh)


def _param_key(p, memo):
    if isinstance(p, ClosedJaxpr):
        consts = tuple(_inner_const_key(c) for c in p.consts)
        return ("closed", jaxpr_key(p.jaxpr, memo), consts)
    if isinstance(p, Jaxpr):
        return ("jaxpr", jaxpr_key(p, memo))
    if isinstance(p, (tuple, list)):
        return (type(p).__name__, tuple(_param_key(x, memo) for x in p))
    if isinstance(p, _HASHABLE_PARAM_TYPES):  # callable, but compared by value: a mesh
        return p
    if callable(p) and not isinstance(p, type):
        raise Unkeyable
    if isinstance(p, np.ndarray) or isinstance(p, jax.Array):
        raise Unkeyable
    try:
        hash(p)
    except TypeError as e:
        raise Unkeyable from e
    return p


_last_key: tuple = (None, None)  # (closed jaxpr, its key): one call asks up to three times


def closed_key(closed: ClosedJaxpr):
    """Key for a closed jaxpr: its structure and the types (not values) of its constants."""
    global _last_key
    last_closed, last_key = _last_key
    if last_closed is closed:  # jaxprs are immutable; holding it keeps its id from being reused
        return last_key
    try:
        key = (jaxpr_key(closed.jaxpr), tuple(jax.typeof(c) for c in closed.consts))
    except Unkeyable:
        key = None
    _last_key = (closed, key)
    return key
