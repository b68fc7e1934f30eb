"""Tracing with the concrete values present: Python control flow on argument values, outside jit.

JAX's grad differentiates with the real values present, so `if x > 0:` on an argument works
outside `jit`. We differentiate a jaxpr, traced first; abstract tracing cannot decide such a
branch. When it meets one (and the arguments are concrete), `trace_flat` traces again with a
`ConcreteTrace`: each of its tracers carries the concrete value computed from the real inputs
next to the symbolic value being recorded into the jaxpr. `bool()`, `int()`, `float()`,
`.item()` on them answer from the concrete value, so the jaxpr is the program of the path taken,
and its derivative follows that path, as JAX's does.

The answers given (the *decisions*) are part of the derivative-program cache key
(`tracing.closed_key`). Every eager call traces afresh, so each call's decisions are checked
against the cache: a loop that takes the same branches reuses one derivative program, and a
changed decision finds (or builds) the program of its own path.

Nesting: a transform called on `ConcreteTracer`s (ours, from an outer transform's concrete
trace) traces concretely from their values, and records its decisions in the outer trace's log
too. `jax.custom_jvp` / `jax.custom_vjp` functions and their rules are traced with the concrete
values of their arguments (`fwd`'s residuals for `bwd`); a tangent or cotangent inside a rule
has no concrete value (it is a program input), so a branch on one raises JAX's error.
"""

from __future__ import annotations

import threading
import weakref

import jax
import jax.numpy as jnp
import numpy as np
from jax import tree_util

from . import tracing
from ._jax import ArrayImpl as _ArrayImpl
from ._jax import TypedNdArray as _TypedNdArray
from ._jax import core as _core
from ._jax import linear_util as _lu
from .rule_first import derivative_trace

__all__ = ["ConcreteTracer", "concrete_value", "trace_flat"]


# --- the decisions a trace made -------------------------------------------------------------


class _Logs(threading.local):
    def __init__(self):
        self.stack: list[list] = []  # one decision list per concrete trace in progress


_logs = _Logs()


def _record(kind: str, tracer, value) -> None:
    if not _logs.stack:
        return
    arr = np.asarray(value)
    decision = (kind, tracer.aval.str_short(), arr.dtype.str, arr.shape, arr.tobytes())
    for log in _logs.stack:  # an inner transform's decisions shape the outer jaxpr too
        log.append(decision)


# --- tracer and trace -----------------------------------------------------------------------


class ConcreteTracer(_core.Tracer):
    """A traced value together with its concrete value (`None` where it has none).

    The concrete value is computed when first asked for (a branch, `int()`, a shape JAX needs),
    not when the operation is traced: most values of a traced function only feed the jaxpr,
    and computing them op by op would double the cost of every call.
    """

    __slots__ = ("_value", "_node", "_index", "symbolic")

    def __init__(self, trace, concrete, symbolic, node=None, index=0):
        super().__init__(trace, jax.typeof(symbolic))
        # `concrete` may itself be a ConcreteTracer (of an inner or outer concrete trace): its
        # value, resolved on demand.
        self._value, self._node, self._index = concrete, node, index
        self.symbolic = symbolic

    @property
    def concrete(self):
        if self._node is not None:
            self._value = _evaluate(self._node)[self._index]
            self._node = None
        while isinstance(self._value, ConcreteTracer):
            self._value = self._value.concrete
        return self._value

    def to_concrete_value(self):
        # JAX's own queries (`concrete_or_error`, `is_concrete`) see the value, as they see a
        # JVPTracer's primal under jax.grad; only Python's conversions below are decisions.
        return self.concrete

    def _decide(self, kind, convert, fallback):
        if self.concrete is None:
            return fallback()
        _record(kind, self, self.concrete)
        return convert(self.concrete)

    def __bool__(self):
        _core.check_bool_conversion(self)
        return self._decide("bool", bool, super().__bool__)

    def __int__(self):
        return self._decide("int", int, super().__int__)

    def __index__(self):
        return self._decide("index", lambda v: np.asarray(v).__index__(), super().__index__)

    def __float__(self):
        # jax.grad raises here (while allowing `.item()`); the value is there, so we answer.
        return self._decide("float", float, super().__float__)

    def __complex__(self):
        return self._decide("complex", complex, super().__complex__)

    def item(self, *args):
        """The concrete value as a Python scalar (a decision: part of the cache key)."""
        if self.concrete is None:  # JAX's concretization error
            return _core.concrete_or_error(None, self, "This occurred in the item() method")
        _record("item", self, self.concrete)
        return np.asarray(self.concrete).item(*args)

    def tolist(self):
        if self.concrete is None:
            return super().tolist()
        _record("tolist", self, self.concrete)
        return np.asarray(self.concrete).tolist()

    def full_lower(self):
        return self


def concrete_value(x):
    """The concrete value of an argument: itself, a tracer's concrete value, or None.

    Tracers of our concrete traces have one, and so have JAX's JVP tracers outside jit (their
    primal's): our grad inside JAX's branches as JAX's grad inside its own does.
    Tracers of jit and vmap have none.
    """
    for _ in range(64):  # a tracer's concrete value may be another tracer (a staged constant)
        if not isinstance(x, _core.Tracer):
            return x
        x = x.concrete if isinstance(x, ConcreteTracer) else x.to_concrete_value()
    return None


_EAGER_TYPES = (_ArrayImpl, _TypedNdArray)
_default_bind_params = _core.Primitive.get_bind_params

# Effects the traced program performs when it runs: not performed a second time while tracing.
_EFFECTS_ONCE = frozenset({"debug_callback", "debug_print"})


class _Application:
    """One primitive applied to concrete values not computed yet: its outputs, once asked for."""

    __slots__ = ("primitive", "params", "sources", "n_outs", "outs")

    def __init__(self, primitive, params, sources, n_outs):
        self.primitive, self.params, self.sources = primitive, params, sources
        self.n_outs = n_outs
        self.outs = None


def _pending_inputs(node):
    return [
        s._node
        for s in node.sources
        if isinstance(s, ConcreteTracer) and s._node is not None and s._node.outs is None
    ]


def _evaluate(node: _Application) -> list:
    """The concrete outputs of `node`, evaluating the applications it depends on first.

    Iterative (an explicit stack), so a chain of 100,000 operations does not overflow Python's.
    """
    stack = [node]
    while stack:
        top = stack[-1]
        if top.outs is not None:
            stack.pop()
            continue
        pending = _pending_inputs(top)
        if pending:
            stack.extend(pending)
            continue
        stack.pop()
        concretes = [_resolve(s) for s in top.sources]
        top.outs = _apply(top.primitive, top.params, concretes, top.n_outs)
        top.sources = None  # the inputs may now be freed
    return node.outs


def _resolve(source):
    return source.concrete if isinstance(source, ConcreteTracer) else source


def _apply(primitive, params, concretes, n_outs) -> list:
    """`primitive` on concrete values, eagerly: a list of outputs (None where unknown)."""
    if any(c is None for c in concretes):
        return [None] * n_outs
    # Eagerly, whichever trace is current (a caller may bind into us directly).
    with _core.set_current_trace(_core.eval_trace):
        if all(type(c) in _EAGER_TYPES for c in concretes) and (
            type(primitive).get_bind_params is _default_bind_params
        ):
            # on device arrays `bind` only re-checks what tracing checked
            out = primitive.impl(*concretes, **params)
        else:
            out = primitive.bind(*concretes, **params)
    return list(out) if primitive.multiple_results else [out]


class ConcreteTrace(_core.Trace):
    """Binds each primitive twice: on the concrete values, and into `parent` (the jaxpr)."""

    __slots__ = ("parent",)

    def __init__(self, parent):
        super().__init__()
        self.parent = parent

    def _split(self, x):
        """(concrete source, symbolic value) of an operand: the source is a tracer of this
        trace (its value computed when needed) or a value."""
        if isinstance(x, ConcreteTracer) and x._trace is self:
            return x, x.symbolic
        # A constant, or a value closed over from an enclosing transform: the jaxpr holds it as
        # a constant (an outer tracer becomes a constant of an outer-traced program).
        return concrete_value(x), x

    def _wrap(self, concrete, symbolic):
        return ConcreteTracer(self, concrete, symbolic)

    def stage_value(self, val):
        # `jnp.array(numpy_array)` lifts the value into the current trace: into the jaxpr,
        # with itself as the concrete value.
        concrete, symbolic = self._split(val)
        with _core.set_current_trace(self.parent):
            symbolic = self.parent.stage_value(symbolic)
        return ConcreteTracer(self, concrete, symbolic)

    def process_primitive(self, primitive, tracers, params, /):
        pairs = [self._split(t) for t in tracers]
        with _core.set_current_trace(self.parent):
            symbolic_out = primitive.bind(*(s for _, s in pairs), **params)
        outs = symbolic_out if primitive.multiple_results else [symbolic_out]
        if primitive.name in _EFFECTS_ONCE:
            wrapped = [self._wrap(None, s) for s in outs]
        else:
            node = _Application(primitive, params, [c for c, _ in pairs], len(outs))
            wrapped = [ConcreteTracer(self, None, s, node, i) for i, s in enumerate(outs)]
        return wrapped if primitive.multiple_results else wrapped[0]

    def process_call(self, call_primitive, f, tracers, params, /):
        del call_primitive, params  # inlined: the jaxpr records the body's operations
        with _core.set_current_trace(self):
            return f.call_wrapped(*tracers)

    def process_custom_jvp_call(self, primitive, fun, jvp, tracers, /, *, symbolic_zeros):
        pairs = [self._split(t) for t in tracers]
        concretes = [c for c, _ in pairs]
        out_box: list = []

        def fun_concrete(*symbolic):
            out_c, out_s = run_concrete(fun.call_wrapped, concretes, symbolic)
            out_box[:] = out_c
            return out_s

        def jvp_concrete(*symbolic):
            # Called while a derivative program is traced: the primals are the ones of this call
            # (such programs are never cached: their equations hold Python callables).
            for store in jvp.stores:
                store and store.reset()
            n = len(concretes)
            known = [*concretes, *([None] * (len(symbolic) - n))]
            out_c, out_s = run_concrete(jvp.call_wrapped, known, symbolic)
            # Traced first in place of `fun` (rule_first.py), the rule gives the call's values.
            out_box[:] = out_c[: len(out_c) // 2]
            return out_s

        fun2 = _lu.wrap_init(fun_concrete, debug_info=fun.debug_info)
        jvp2 = _lu.wrap_init(jvp_concrete, debug_info=jvp.debug_info)
        with _core.set_current_trace(self.parent):
            symbolic_out = self.parent.process_custom_jvp_call(
                primitive, fun2, jvp2, [s for _, s in pairs], symbolic_zeros=symbolic_zeros
            )
        concrete_out = out_box if len(out_box) == len(symbolic_out) else [None] * len(symbolic_out)
        return [self._wrap(c, s) for c, s in zip(concrete_out, symbolic_out, strict=True)]

    def process_custom_vjp_call(
        self, primitive, fun, fwd, bwd, tracers, /, *, out_trees, symbolic_zeros
    ):
        pairs = [self._split(t) for t in tracers]
        concretes = [c for c, _ in pairs]
        out_box: list = []
        fwd_box: list = []

        def fun_concrete(*symbolic):
            out_c, out_s = run_concrete(fun.call_wrapped, concretes, symbolic)
            out_box[:] = out_c
            return out_s

        def fwd_concrete(*interleaved):
            # (argument, is_zero) pairs, as JAX calls a custom_vjp's fwd.
            for store in fwd.stores:
                store and store.reset()
            known = [c for pair in zip(concretes, [None] * len(concretes)) for c in pair]
            known[1::2] = interleaved[1::2]
            out_c, out_s = run_concrete(fwd.call_wrapped, known, interleaved)
            fwd_box[:] = out_c
            # Traced first in place of `fun` (rule_first.py), fwd gives the call's values.
            n_out = out_trees()[0].num_leaves
            out_box[:] = out_c[len(out_c) - n_out :]
            return out_s

        def bwd_concrete(*symbolic):
            # bwd sees fwd's residuals with their values; cotangents have none.
            _, _, input_fwds = out_trees()
            computed = iter(fwd_box if fwd_box else [None] * len(input_fwds))
            residuals = [next(computed) if f is None else concretes[f] for f in input_fwds]
            known = [*residuals, *([None] * (len(symbolic) - len(residuals)))]
            return run_concrete(bwd.call_wrapped, known, symbolic)[1]

        fun2 = _lu.wrap_init(fun_concrete, debug_info=fun.debug_info)
        fwd2 = _lu.wrap_init(fwd_concrete, debug_info=fwd.debug_info)
        bwd2 = _lu.wrap_init(bwd_concrete, debug_info=bwd.debug_info)
        with _core.set_current_trace(self.parent):
            symbolic_out = self.parent.process_custom_vjp_call(
                primitive,
                fun2,
                fwd2,
                bwd2,
                [s for _, s in pairs],
                out_trees=out_trees,
                symbolic_zeros=symbolic_zeros,
            )
        concrete_out = out_box if len(out_box) == len(symbolic_out) else [None] * len(symbolic_out)
        return [self._wrap(c, s) for c, s in zip(concrete_out, symbolic_out, strict=True)]

    def process_shard_map(self, *args, **kwargs):
        raise NotImplementedError(
            "Python control flow on argument values in a function that calls shard_map: the "
            "branch is taken on concrete values, which shard_map's body does not see. Write the "
            "branch with jax.lax.cond or jnp.where, or move it out of the function."
        )

    process_map = process_shard_map

    def cur_qdd(self, x):
        return None


def run_concrete(fn, concretes, symbolic):
    """Run `fn` on values known both ways; returns (concrete outputs, symbolic outputs).

    `symbolic` are values of the trace current now (the jaxpr being recorded); `concretes` their
    values (None where unknown). Non-array outputs (a custom rule's bool flags) pass through.
    """
    trace = ConcreteTrace(_core.trace_ctx.trace)
    ins = [
        ConcreteTracer(trace, c, s) if _is_array_like(s) else s
        for c, s in zip(concretes, symbolic, strict=True)
    ]
    with _core.set_current_trace(trace):
        outs = fn(*ins)
    out_c, out_s = [], []
    for o in outs:
        if isinstance(o, ConcreteTracer) or _is_array_like(o):
            c, s = trace._split(o)
        else:
            c, s = o, o
        out_c.append(c)
        out_s.append(s)
    return out_c, out_s


def _is_array_like(x) -> bool:
    if type(x) is bool:  # a flag (JAX passes custom_vjp's fwd which inputs are zero)
        return False
    return isinstance(x, _core.Tracer | jax.Array | np.ndarray | np.generic | int | float | complex)


# --- entry point ------------------------------------------------------------------------------


# User functions seen branching on a value: later calls go straight to the concrete trace.
_branching: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _as_array(x, struct):
    if isinstance(x, _core.Tracer):
        return x
    return jax.device_put(x) if struct.weak_type else jnp.asarray(x, struct.dtype)


def _user_function(fun):
    while (link := getattr(fun, "_transforms_calls", None)) is not None:  # argnums, has_aux
        fun = link[0]
    return fun


def _seen_branching(fun) -> bool:
    # Keyed by the function object, not its code: our own wrappers (a jacrev of anything) share
    # one code object, and code objects compare by value.
    try:
        return fun in _branching
    except TypeError:  # not weakly referenceable or not hashable
        return False


def _mark_branching(fun) -> None:
    try:
        _branching[fun] = True
    except TypeError:
        pass


def trace_flat(fun, in_tree, args_flat, *, order: int | None = None):
    """`tracing.trace_flat` on the arguments' types; on Python control flow, on their values.

    Abstract tracing first: most functions have no such branch, and their traced program is
    the same for every value. When it fails on a branch and every argument has a concrete value
    (outside jit: arrays, or tracers of an enclosing concrete trace), trace the path taken; a
    function seen branching once is traced concretely from then on (no failed attempt first).
    Otherwise (under jit or vmap) the error raised is JAX's, its type and message as JAX's.
    `order`: how many derivatives will be taken of it (`rule_first.derivative_trace`).
    """
    avals = [tracing.shape_dtype(x) for x in args_flat]
    concretes = [concrete_value(x) for x in args_flat]
    # Python scalars and NumPy arrays as device arrays of their traced type, once
    concretes = [
        c if c is None or type(c) in _EAGER_TYPES else _as_array(c, a)
        for c, a in zip(concretes, avals, strict=True)
    ]
    target = _user_function(fun)
    if _seen_branching(target) and not any(c is None for c in concretes):
        return trace_concrete(fun, in_tree, concretes, avals, order)
    try:
        return tracing.trace_flat(fun, in_tree, avals, order=order)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError):
        if any(c is None for c in concretes):
            raise
    _mark_branching(target)
    return trace_concrete(fun, in_tree, concretes, avals, order)


def trace_concrete(fun, in_tree, concretes, avals, order=None):
    """Trace `fun` along the path its concrete arguments take; returns (closed, out tree)."""
    out_tree_box = []
    log: list = []

    def flat_fun(*symbolic):
        def call(*args_flat):
            out = fun(*tree_util.tree_unflatten(in_tree, args_flat))
            out_flat, out_tree = tree_util.tree_flatten(out)
            out_tree_box.append(out_tree)
            return out_flat

        with derivative_trace(order):
            return run_concrete(call, concretes, symbolic)[1]

    tracing.name_like(flat_fun, fun, in_tree, avals)
    _logs.stack.append(log)
    try:
        closed = tracing.trace_to_closed(flat_fun, avals)
    finally:
        # by identity: logs are lists, and equal lists are not the same log
        del _logs.stack[next(i for i, x in enumerate(_logs.stack) if x is log)]
    if _core.trace_ctx.is_top_level():  # as tracing.trace_flat: a new Python float in the
        closed = tracing.hoist_scalar_literals(closed)  # function is a new input, not program
    tracing.set_path(closed, tuple(log))
    return closed, out_tree_box[-1]
