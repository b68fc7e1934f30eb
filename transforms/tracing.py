"""From Python functions to closed jaxprs, and structural keys for caching derivative programs."""

from __future__ import annotations

import contextlib
import functools
import inspect
import weakref
from collections import OrderedDict

import jax
import numpy as np
from jax import tree_util
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal, Var
from jax.extend.core.primitives import convert_element_type_p as _convert_p
from jax.sharding import AxisType

# The tracer itself: JAX's private modules, all behind `_jax`.
from ._jax import api_util as _api_util
from ._jax import core as _core
from ._jax import dtypes as _dtypes
from ._jax import linear_util as _lu
from ._jax import mesh as _mesh_lib
from ._jax import partial_eval as _pe
from .errors import traced_control_flow_error
from .interpreter import eqn_mesh
from .rule_first import custom_jvp_rule_p, derivative_trace, same_rule_as_enclosing, unreached


def shape_dtype(x):
    """What to trace with in place of the value `x`: its type, as `jax.make_jaxpr` reads it."""
    aval = jax.typeof(x)
    if getattr(aval, "is_high", False):
        # A JAX 0.10 hi-type (a Flax NNX Variable backed by mutable state): its type includes
        # its current state (QDD), which only the value knows; `make_jaxpr` reads it from there.
        return x
    return aval_struct(aval)


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


def trace_flat(
    fun, in_tree, avals_flat, *, rule_first: bool = True, order: int | None = None
) -> tuple[ClosedJaxpr, tree_util.PyTreeDef]:
    """Trace `fun(*unflatten(in_tree, args))` to a closed jaxpr over flat arguments.

    Returns the jaxpr and the output tree. Python control flow on traced values fails here; the
    error says what to use instead. With `rule_first` (a trace to be differentiated, `order`
    times: `rule_first.derivative_trace`), the `custom_jvp`/`custom_vjp` calls in it are traced
    as their rules (`rule_first.py`).
    """
    out_tree_box = []

    def flat_fun(*args_flat):
        with derivative_trace(order) if rule_first else contextlib.nullcontext():
            out = fun(*tree_util.tree_unflatten(in_tree, args_flat))
        out_flat, out_tree = tree_util.tree_flatten(out)
        out_tree_box.append(out_tree)
        return out_flat

    name_like(flat_fun, fun, in_tree, avals_flat)
    try:
        closed = trace_to_closed(flat_fun, avals_flat)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError) as e:
        raise traced_control_flow_error(e) from e
    # Only for eager calls: under an outer trace the derivative program is inlined into the
    # outer one, where literals belong (and make_jaxpr(grad(f)) reads as JAX's does).
    if _core.trace_ctx.is_top_level():
        closed = hoist_scalar_literals(closed)
    return closed, out_tree_box[-1]


# Past this many distinct scalar literals a program keeps them inline (keyed by value).
MAX_HOISTED_LITERALS = 64
_scalar_consts: dict = {}  # (dtype, weak_type, value bytes, mesh) -> a device scalar of that type


def mesh_context():
    """The meshes in context (`jax.set_mesh`, `use_abstract_mesh`), as part of a cache key.

    Under a mesh, arrays are placed on it and its axes are in the types, so a constant or a
    program built under one mesh must never serve a call under another.
    """
    return _mesh_lib.get_abstract_mesh(), _mesh_lib.get_concrete_mesh()


def hoist_scalar_literals(closed: ClosedJaxpr) -> ClosedJaxpr:
    """Inexact scalar literals of the top-level program as constants, one per distinct value.

    A Python float in the user's function (a learning-rate schedule, `0.99 ** step`, a
    temperature) is a literal in the jaxpr, and literals are part of a program's key, so every
    new value would make a new derivative program and a new XLA compilation. Constants are
    inputs of the compiled programs, keyed by type only: the same program serves every value.
    """
    jaxpr = closed.jaxpr
    hoisted: dict = {}  # literal key -> constvar
    values: list = []
    eqns = list(jaxpr.eqns)
    changed = False
    for i, eqn in enumerate(eqns):
        if not any(type(v) is Literal and _hoistable(v) for v in eqn.invars):
            continue
        if eqn_mesh(eqn) is not None:
            # Traced inside `auto_axes` / `explicit_axes`: its operands are typed with that
            # region's mesh, which a constant made out here would not be; it stays a literal.
            continue
        invars = []
        for v in eqn.invars:
            if type(v) is Literal and _hoistable(v):
                key = (
                    v.aval.dtype.str,
                    v.aval.weak_type,
                    np.asarray(v.val, v.aval.dtype).tobytes(),
                )
                var = hoisted.get(key)
                if var is None:
                    if len(hoisted) >= MAX_HOISTED_LITERALS:
                        invars.append(v)
                        continue
                    var = hoisted[key] = Var(v.aval)
                    values.append(_scalar_const(key, v))
                invars.append(var)
            else:
                invars.append(v)
        eqns[i] = eqn.replace(invars=invars)
        changed = True
    if not changed:
        return closed
    new = jaxpr.replace(constvars=[*jaxpr.constvars, *hoisted.values()], eqns=eqns)
    return ClosedJaxpr(new, [*closed.consts, *values])


def _hoistable(lit: Literal) -> bool:
    aval = lit.aval
    return aval.shape == () and np.issubdtype(aval.dtype, np.inexact)


def _scalar_const(key, lit: Literal):
    # A value of the literal's exact dtype and weak type (a NumPy scalar would be strongly
    # typed and change the weak types of results). A weak literal of Python's own float or
    # complex type is that Python number (nothing to put on a device: a new closure's first
    # call, a schedule's new value each step); others are device scalars, recurring ones reused.
    aval = lit.aval
    if aval.weak_type and aval.dtype == _python_dtype(aval.dtype):
        return complex(lit.val) if np.issubdtype(aval.dtype, np.complexfloating) else float(lit.val)
    key = (*key, mesh_context())
    const = _scalar_consts.get(key)
    if const is None:
        if len(_scalar_consts) >= 4 * MAX_HOISTED_LITERALS:
            _scalar_consts.clear()
        # Concrete even when called under an outer trace (jax.jit of our transforms): a traced
        # scalar here would leak into later calls through this cache.
        with jax.ensure_compile_time_eval():
            const = _convert_p.bind(
                np.asarray(lit.val, lit.aval.dtype),
                new_dtype=lit.aval.dtype,
                weak_type=lit.aval.weak_type,
                sharding=None,
            )
        _scalar_consts[key] = const
    return const


def _python_dtype(dtype):
    """The dtype JAX gives a Python float (complex) of `dtype`'s kind: 64-bit under x64."""
    widest = np.complex128 if np.issubdtype(dtype, np.complexfloating) else np.float64
    return jax.dtypes.canonicalize_dtype(widest)


def name_like(flat_fun, fun, in_tree, avals_flat) -> None:
    """Make JAX's tracing errors in `flat_fun` name `fun` and its arguments, as under jax.jit.

    ("... while tracing the function f at model.py:12 for transforms. This concrete value was
    not available in Python because it depends on the value of the argument x.") Our wrappers
    (argnums, has_aux) say what they call in `_transforms_calls`: (function, argnums or None).
    """
    try:
        argnums = None
        while (link := getattr(fun, "_transforms_calls", None)) is not None:
            fun, picked = link
            argnums = picked if picked is not None else argnums
        args = tuple(tree_util.tree_unflatten(in_tree, avals_flat))
        params = list(inspect.signature(fun).parameters.values())
        if argnums is not None:
            params = [params[i] for i in argnums]
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if len(params) < len(args) or any(p.kind not in positional for p in params):
            return
        sig = inspect.Signature(
            [inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in params]
        )
        sig = sig.replace(parameters=list(sig.parameters.values())[: len(args)])
        dbg = _api_util.debug_info("transforms", fun, args, {}, signature=sig)
        flat_fun.__fun_debug_info__ = dbg
    except Exception:  # noqa: BLE001 - names are a courtesy: generic ones otherwise
        pass


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
                _custom_jvp_key(eqn, memo)
                if eqn.primitive.name == "custom_jvp_call"
                else _custom_jvp_rule_key(eqn, memo)
                if eqn.primitive is custom_jvp_rule_p
                else _params_key(eqn.params, memo),
            )
        )
    parts.append(tuple(var(v) for v in jaxpr.outvars))
    key = tuple(parts)
    memo[id(jaxpr)] = key
    return key


def _custom_jvp_key(eqn, memo):
    # The rule is a Python callable, which cannot be keyed, but what it traces to can: the
    # derivative program evaluates exactly the jaxpr the rule gives for these input types (JAX
    # memoizes it, so the JVP rule asking again later costs nothing). Keyed, a program using
    # `jax.nn.relu` is cached and compiled like any other instead of re-differentiated per call.
    params = eqn.params
    if params["symbolic_zeros"]:  # the rule's jaxpr depends on which tangents are zero
        raise Unkeyable
    call_key = ("call_jaxpr", _param_key(params["call_jaxpr"], memo))
    # A rule usually computes its primal output by calling the function itself (`defjvps`'
    # `ans`), so its jaxpr holds the same custom_jvp_call again: that nested call is keyed as
    # the rule being keyed, which ends the recursion.
    in_progress = memo.setdefault("custom_jvp_in_progress", set())
    if call_key in in_progress or same_rule_as_enclosing(params["jvp_jaxpr_fun"]):
        return ("the enclosing rule", call_key)
    if unreached(params["jvp_jaxpr_fun"]):
        return ("no tangent reaches it", call_key)
    n_args = len(eqn.invars) - params["num_consts"]
    try:
        jvp_jaxpr, jvp_consts, out_zeros = params["jvp_jaxpr_fun"].call_wrapped(*([False] * n_args))
    except Exception as e:  # noqa: BLE001 - the JVP rule itself reports the user's error
        raise Unkeyable from e
    in_progress.add(call_key)
    try:
        rule_key = jaxpr_key(jvp_jaxpr, memo)
    finally:
        in_progress.discard(call_key)
    return (
        call_key,
        ("num_consts", params["num_consts"]),
        ("jvp", rule_key, tuple(_inner_const_key(c) for c in jvp_consts)),
        ("out_zeros", tuple(out_zeros)),
    )


def _custom_jvp_rule_key(eqn, memo):
    # The rule traced in place of the call (rule_first.py): what it traced to is the key. The
    # primal function, traced only if the equation is evaluated for its value alone, is not:
    # JAX's transforms, too, take the call's value from the rule wherever a tangent reaches it.
    params = eqn.params
    return (
        ("jvp", jaxpr_key(params["jvp_jaxpr"].jaxpr, memo)),
        ("num_consts", params["num_consts"]),
        ("in_zeros", params["in_zeros"]),
        ("out_zeros", params["out_zeros"]),
    )


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
    if type(p).__name__ == "PRNGImpl":  # random_wrap / random_seed: a registered singleton
        return ("prng_impl", _Same(p))
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


class PathKey(tuple):
    """The decisions Python control flow took while a jaxpr was traced (`concrete.py`).

    Part of the jaxpr's cache key; its type tells the engine the program is one path of many.
    """

    __slots__ = ()


_paths: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # closed jaxpr -> PathKey


_sightings: OrderedDict = OrderedDict()  # closed_key of a path -> how many traces took it


def set_path(closed: ClosedJaxpr, decisions: tuple) -> None:
    """Record the decisions taken while `closed` was traced: they become part of its key."""
    _paths[closed] = PathKey(decisions)
    key = closed_key(closed)
    if key is not None:
        _sightings[key] = _sightings.pop(key, 0) + 1
        if len(_sightings) > 1024:
            _sightings.popitem(last=False)


def path_of(closed: ClosedJaxpr):
    """The decisions taken while tracing `closed` (a `PathKey`), or None for abstract traces."""
    return _paths.get(closed)


def first_sight_of_path(key) -> bool:
    """Whether `key` (a derivative program's) holds a path traced only once so far."""
    return any(
        type(part) is tuple and part and type(part[-1]) is PathKey and _sightings.get(part, 0) <= 1
        for part in key
    )


# (closed jaxpr, mesh, its key): one call asks up to three times
_last_key: tuple = (None, None, None)


def closed_key(closed: ClosedJaxpr):
    """Key for a closed jaxpr: its structure and the types (not values) of its constants."""
    global _last_key
    mesh = mesh_context()
    last_closed, last_mesh, last_key = _last_key
    # Jaxprs are immutable; holding it keeps its id from being reused.
    if last_closed is closed and last_mesh == mesh:
        return last_key
    try:
        key = (jaxpr_key(closed.jaxpr), tuple(jax.typeof(c) for c in closed.consts), mesh)
        path = path_of(closed)
        if path is not None:
            key = (*key, path)
    except Unkeyable:
        key = None
    _last_key = (closed, mesh, key)
    return key
