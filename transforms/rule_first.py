"""Users' rules first: under our derivative traces a `custom_jvp`/`custom_vjp` call is traced as
its rule, never as its primal, as JAX's own transforms do.

JAX's `grad`/`jvp`/`vjp` meet a `custom_jvp` function in a JVP trace, which calls its `jvp` rule
and never the function itself; a `custom_vjp` function's `fwd` runs in place of the function.
We differentiate a jaxpr traced beforehand, and `jax.make_jaxpr` traces the primal body of such
a call (JAX's jaxpr tracer needs its output types) and leaves the rule for later. Users put
prints and other side effects in these functions, and libraries rely on the order: Flax NNX's
`custom_vjp` wrapper reads module state that its `fwd` leaves, and a primal traced first leaves
that state holding its own, dead, tracers.

So in the top frame of our derivative traces (`derivative_trace`), a call that a tangent may
reach (`_maybe_perturbed`) records an equation of its own (`custom_jvp_rule_p`,
`custom_vjp_rule_p`) holding the rule, traced now, in the live trace (what it closes over
becomes the equation's inputs), with the output types the rule gives. Their JVP rules
(rules/calls.py) evaluate that traced rule; bound for their value alone they give the rule's
primal outputs. A call no tangent reaches is traced as JAX's tracer does (its primal: JAX's
transforms never see it either). A custom_jvp rule with `symbolic_zeros=True` is told which of
its inputs no tangent reaches; a custom_vjp's with it is traced as JAX's tracer does (its fwd is
told which inputs are perturbed, known only when differentiating). In a trace to be
differentiated twice (a Hessian), a rule's (or fwd's) own calls are traced rule first too, as
JAX's outer JVP trace meets them.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref

import jax
import numpy as np
from jax.extend.core import ClosedJaxpr, Primitive, Var
from jax.extend.core import primitives as P
from jax.interpreters import mlir

from ._jax import core as _core
from ._jax import effects as _effects
from ._jax import linear_util as _lu
from ._jax import partial_eval as _pe
from ._jax import source_info_util as _source_info
from .zeros import Zero, instantiate

__all__ = [
    "custom_jvp_rule_p",
    "custom_vjp_rule_p",
    "derivative_trace",
    "primal_jaxpr",
    "rebind_traced",
    "same_rule_as_enclosing",
    "unreached",
]

# The jaxpr traces (by identity) of functions being traced to be differentiated, each with the
# number of derivatives to be taken of it (its order: 2 for a Hessian).
_derivative_traces: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _RulesInProgress(threading.local):
    def __init__(self):
        # (function, rule, input types) of each custom_jvp rule being traced first
        self.stack: list[tuple] = []
        self.rebinding = False
        self.orders: list[int] = []  # of the derivative traces in progress, innermost last


def rebind_traced(eqn, invals, params):
    """Bind a `custom_jvp_call`/`custom_vjp_call` equation of a traced program again.

    Its rule is JAX's, lifted from the traced one (memoized: no Python runs again), and its
    `fwd` refuses perturbed closed-over values, which only a JVP trace knows: it is traced as
    JAX's tracer does, not rule first.
    """
    _rules_in_progress.rebinding = True
    try:
        return eqn.primitive.bind(*invals, **params)
    finally:
        _rules_in_progress.rebinding = False


_rules_in_progress = _RulesInProgress()


def unreached(jvp_jaxpr_fun) -> bool:
    """Whether a `custom_jvp_call` of a derivative trace is on values no tangent reaches.

    Its rule is never asked for (JAX's transforms would not ask either), so keying the call
    needs its primal only.
    """
    return getattr(jvp_jaxpr_fun.f, "transforms_unreached", False)


def same_rule_as_enclosing(jvp_jaxpr_fun) -> bool:
    """Whether a `custom_jvp_call`'s rule is the rule it was traced in, at the same types.

    A rule usually computes its primal output by calling the function itself (`defjvps`' `ans`,
    `jax.nn.relu`): that nested call's rule traces to the enclosing rule's program, so keying
    the enclosing one keys both, without tracing the rule again (JAX traces it once).
    """
    return getattr(jvp_jaxpr_fun.f, "transforms_same_rule_as_enclosing", False)


@contextlib.contextmanager
def derivative_trace(order: int | None = None, linear_from: int | None = None):
    """Enter first thing inside a function being traced to be differentiated (its top frame).

    `order`: how many derivatives will be taken of it; by default one more than of the
    derivative trace it is traced inside (`grad` of `grad`), else 1. `linear_from`: for a JVP
    rule, where its tangent inputs start.
    """
    orders = _rules_in_progress.orders
    if order is None:
        order = orders[-1] + 1 if orders else 1
    trace = _core.trace_ctx.trace
    _derivative_traces[trace] = order
    if linear_from is not None:
        _linear_from[trace] = linear_from
    orders.append(order)
    try:
        yield
    finally:
        orders.pop()


def _value_of_jvp_rule(*args, jvp_jaxpr, num_consts, in_zeros, out_zeros, **_):
    # Bound where no tangent reached it after all (eagerly, lowered, batched): the rule's primal
    # outputs, as a JVP trace with zero tangents would give.
    tangents = [
        instantiate(Zero(_core.typeof(x).to_tangent_aval()))
        for x, z in zip(args[num_consts:], in_zeros, strict=True)
        if not z
    ]
    return _core.eval_jaxpr(jvp_jaxpr.jaxpr, (), *args, *tangents)[: len(out_zeros)]


def _value_of_fwd(*args, fwd_jaxpr, num_res_out, **_):
    # fwd's primal outputs (after its residuals), as a JVP trace would take them.
    return _core.eval_jaxpr(fwd_jaxpr.jaxpr, (), *args)[num_res_out:]


class Held:
    """A Python object (a custom_vjp's `bwd`, its function, its output trees) as an equation
    parameter: JAX hashes parameters when it binds, and these are compared by identity.
    Callable (it calls the object), so a program holding one is never keyed by it
    (`tracing._param_key`): such objects are made anew by every trace.
    """

    __slots__ = ("value", "__weakref__")  # JAX's caches hold parameters weakly

    def __init__(self, value):
        self.value = value

    def __hash__(self):
        return id(self.value)

    def __eq__(self, other):
        return type(other) is Held and other.value is self.value

    def __call__(self, *args, **kwargs):
        return self.value(*args, **kwargs)


def _rule_primitive(name, value):
    prim = Primitive(name)
    prim.multiple_results = True

    def abstract_eval(*args, out_avals, **params):
        closed = params["jvp_jaxpr"] if "jvp_jaxpr" in params else params["fwd_jaxpr"]
        return list(out_avals), _input_effects(closed, len(args))

    prim.def_effectful_abstract_eval(abstract_eval)
    prim.def_impl(value)
    mlir.register_lowering(prim, mlir.lower_fun(value, multiple_results=True), cacheable=False)
    return prim


custom_jvp_rule_p = _rule_primitive("custom_jvp_rule", _value_of_jvp_rule)
custom_vjp_rule_p = _rule_primitive("custom_vjp_rule", _value_of_fwd)


def _reset(*funs) -> None:
    # A WrappedFun records its output tree in stores, which refuse a second, different value.
    for fun in funs:
        for store in fun.stores:
            if store:
                store.reset()


def primal_jaxpr(params, in_avals) -> tuple:
    """The primal function of a rule equation, traced now: (jaxpr, consts).

    For the rules that need the function itself (forward mode through a `custom_vjp` whose
    `bwd` is not linear), as JAX's tracer would have traced it.
    """
    fun = params["fun"]
    fun = fun.value if type(fun) is Held else fun
    _reset(fun)
    jaxpr, _, consts = _pe.trace_to_jaxpr_dynamic(fun, list(in_avals))
    return jaxpr, consts


def _emit(trace, prim, tracers, params, source_info):
    closed = params["jvp_jaxpr"] if prim is custom_jvp_rule_p else params["fwd_jaxpr"]
    return trace.emit_eqn(
        tracers,
        list(params["out_avals"]),
        prim,
        params,
        _input_effects(closed, len(tracers)),
        source_info=source_info,
    )


def _input_effects(closed: ClosedJaxpr, n_inputs: int):
    # Effects on the equation's inputs, by position; the rule's tangent inputs are not inputs of
    # the equation (a JVP rule's jaxpr takes them after the primals).
    kept = set()
    for eff in _core.positional_effects(closed):
        if isinstance(eff, _effects.JaxprInputEffect) and eff.input_index >= n_inputs:
            continue
        kept.add(eff)
    return kept


def _traced_as_jax_does(trace, symbolic_zeros, tracers) -> str | None:
    """Why this call is traced as JAX's tracer does (its primal first), or None: rule first.

    `symbolic_zeros`: whether the rule must be told which tangents are zero and cannot be (a
    custom_vjp's; a custom_jvp's is told which inputs no tangent reaches).
    """
    rebinding, _rules_in_progress.rebinding = _rules_in_progress.rebinding, False
    if rebinding:
        return "rebinding a traced call"
    if symbolic_zeros or trace.requires_low or trace not in _derivative_traces:
        return "not ours to trace"
    if not _maybe_perturbed(trace, tracers):
        return "unreached"
    return None


def _maybe_perturbed(trace, tracers) -> bool:
    """Whether a tangent may reach any of `tracers`: they depend on the trace's inputs.

    Where none can (the call is on a constant, on a non-differentiated argument, through
    `stop_gradient` or a piecewise-constant operation, or on integers), JAX's transforms never
    see the call and trace its primal: so do we. A wrong "maybe" only costs a trace, never a
    wrong derivative. In a rule's trace (`derivative_trace(linear_from=...)`), a call on the
    rule's tangents is part of a linear program, to be transposed: it keeps its primal body,
    as under JAX.
    """
    reached = _reached.get(trace)
    if reached is None:
        invars = trace.frame.invars
        n = _linear_from.get(trace, len(invars))
        reached = _reached[trace] = _Reached(invars[:n], invars[n:])
    from .jvp import zero_tangent_primitives  # noqa: PLC0415 - jvp imports this module

    eqns = trace.frame.tracing_eqns
    for eqn in eqns[reached.n_eqns :]:  # forward, once per equation: the values inputs reach
        eqn = eqn() if isinstance(eqn, weakref.ref) else eqn
        if eqn is None or eqn.primitive is _stop_gradient_p:
            continue
        if eqn.primitive in zero_tangent_primitives:  # floor, round, sign: tangents are zero
            continue
        outs = [v for v in eqn.outvars if _differentiable(v.aval)]
        if any(_reaches(x, reached.vars) for x in eqn.in_tracers):
            reached.vars.update(outs)
        if any(_reaches(x, reached.linear) for x in eqn.in_tracers):
            reached.linear.update(outs)
    reached.n_eqns = len(eqns)
    mine = [t for t in tracers if getattr(t, "_trace", None) is trace]
    return any(_reaches(t, reached.vars) for t in mine) and not any(
        _reaches(t, reached.linear) for t in mine
    )


def _reaches(tracer, reached_vars) -> bool:
    var = getattr(tracer, "val", None)
    return type(var) is Var and var in reached_vars


class _Reached:
    """The variables of a derivative trace that its inputs reach (so far); `linear`: those
    that a rule's tangent inputs reach."""

    __slots__ = ("vars", "linear", "n_eqns")

    def __init__(self, invars, linear_invars):
        self.vars = {v for v in invars if _differentiable(v.aval)}
        self.linear = {v for v in linear_invars if _differentiable(v.aval)}
        self.n_eqns = 0


_reached: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # trace -> _Reached
_linear_from: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # rule's trace -> n primals
_stop_gradient_p = getattr(P, "stop_gradient_p", None)


def _differentiable(aval) -> bool:
    dtype = getattr(aval, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, np.inexact)


def _jvp_first(method):
    @functools.wraps(method)
    def process(self, prim, fun, jvp, tracers, /, *, symbolic_zeros):
        reason = _traced_as_jax_does(self, False, tracers)
        if reason is not None:
            n_eqns = len(self.frame.tracing_eqns)
            out = method(self, prim, fun, jvp, tracers, symbolic_zeros=symbolic_zeros)
            if not symbolic_zeros:
                _mark(self, n_eqns, fun, jvp, unreached=reason == "unreached")
            return out
        source_info = _source_info.current()
        tracers = [self.to_jaxpr_tracer(t, source_info) for t in tracers]
        in_avals = [t.aval for t in tracers]
        tangent_avals = [a.to_tangent_aval() for a in in_avals]
        # As JAX's JVP trace calls the rule: every tangent present, or (symbolic_zeros=True) a
        # symbolic zero for the inputs no tangent reaches.
        if symbolic_zeros:
            reached = _reached[self]
            in_zeros = tuple(not _reaches(t, reached.vars) for t in tracers)
        else:
            in_zeros = (False,) * len(in_avals)
        zero_avals = tuple(a for a, z in zip(tangent_avals, in_zeros, strict=True) if z)
        tangent_avals = [a for a, z in zip(tangent_avals, in_zeros, strict=True) if not z]
        _reset(jvp)
        rule, out_zeros = _pe._jvp_jaxpr_zeros(jvp, in_zeros, zero_avals)
        order = _derivative_traces[self]
        if order > 1:
            # A derivative of the rule will be taken too (a Hessian): its own calls are traced
            # rule first, as JAX's outer JVP trace meets them.
            rule = _in_derivative_trace(rule, order - 1, len(in_avals))
        _rules_in_progress.stack.append((fun.f, jvp.f, tuple(in_avals)))
        try:
            with _core.set_current_trace(None):
                jaxpr, _, consts = _pe.trace_to_jaxpr_dynamic(
                    rule.with_unknown_names(), [*in_avals, *tangent_avals]
                )
        finally:
            _rules_in_progress.stack.pop()
        out_zeros = tuple(out_zeros())
        out_avals = [v.aval for v in jaxpr.outvars[: len(out_zeros)]]
        closed = ClosedJaxpr(_pe.convert_constvars_jaxpr(jaxpr), ())
        const_tracers = [self.to_jaxpr_tracer(c, source_info) for c in consts]
        params = dict(
            jvp_jaxpr=closed,
            num_consts=len(consts),
            in_zeros=in_zeros,
            out_zeros=out_zeros,
            out_avals=tuple(out_avals),
        )
        return _emit(self, custom_jvp_rule_p, [*const_tracers, *tracers], params, source_info)

    process.transforms_rule_first = True
    return process


def _in_derivative_trace(fun, order, linear_from):
    def traced(*args):
        with derivative_trace(order, linear_from):
            return fun.call_wrapped(*args)

    return _lu.wrap_init(traced, debug_info=fun.debug_info)


def _mark(trace, n_eqns, fun, jvp, unreached) -> None:
    # The equation JAX's tracer just emitted for a call that is not traced rule first: its rule
    # will never be asked for (no tangent reaches the call), or is the rule being traced.
    eqns = trace.frame.tracing_eqns
    if len(eqns) != n_eqns + 1:
        return
    eqn = eqns[-1]
    eqn = eqn() if isinstance(eqn, weakref.ref) else eqn
    if eqn is None or eqn.primitive is not P.custom_jvp_call_p:
        return
    rule_fun = eqn.params["jvp_jaxpr_fun"].f
    if unreached:
        rule_fun.transforms_unreached = True
    elif _rules_in_progress.stack:
        f, rule, in_avals = _rules_in_progress.stack[-1]
        args = eqn.in_tracers[eqn.params["num_consts"] :]
        if fun.f is f and jvp.f is rule and tuple(t.aval for t in args) == in_avals:
            rule_fun.transforms_same_rule_as_enclosing = True


def _fwd_first(method):
    @functools.wraps(method)
    def process(self, prim, fun, fwd, bwd, tracers, /, *, out_trees, symbolic_zeros):
        if _traced_as_jax_does(self, symbolic_zeros, tracers) is not None:
            return method(
                self,
                prim,
                fun,
                fwd,
                bwd,
                tracers,
                out_trees=out_trees,
                symbolic_zeros=symbolic_zeros,
            )
        source_info = _source_info.current()
        tracers = [self.to_jaxpr_tracer(t, source_info) for t in tracers]
        in_avals = [
            _core.AvalQDD(t.aval, _core.cur_qdd(t)) if t.aval.has_qdd else t.aval for t in tracers
        ]
        # As JAX's JVP trace calls fwd: each argument paired with "perturbed" (which fwd sees
        # only with symbolic_zeros=True).
        _reset(fwd)
        fwd_ = _pe._interleave_fun(fwd.with_unknown_names(), (True,) * len(tracers))
        order = _derivative_traces[self]
        if order > 1:  # fwd will be differentiated too: its own calls are traced rule first
            fwd_ = _in_derivative_trace(fwd_, order - 1, None)
        with _core.set_current_trace(None):
            jaxpr, _, consts = _pe.trace_to_jaxpr_dynamic(fwd_, in_avals)
        num_consts = len(consts)
        _, res_tree, input_fwds = out_trees()
        num_res_out = res_tree.num_leaves - sum(f is not None for f in input_fwds)
        out_avals = [v.aval for v in jaxpr.outvars[num_res_out:]]
        closed = ClosedJaxpr(_pe.convert_constvars_jaxpr(jaxpr), ())

        def out_trees_():
            # Forwarded residuals index the equation's inputs, which start with fwd's consts.
            out_tree, res_tree, input_fwds = out_trees()
            return out_tree, res_tree, [f if f is None else f + num_consts for f in input_fwds]

        const_tracers = [self.to_jaxpr_tracer(c, source_info) for c in consts]
        params = dict(
            fwd_jaxpr=closed,
            num_consts=num_consts,
            out_avals=tuple(out_avals),
            bwd=Held(bwd),
            out_trees=Held(out_trees_),
            num_res_out=num_res_out,
            fun=Held(fun),
            symbolic_zeros=symbolic_zeros,
        )
        return _emit(self, custom_vjp_rule_p, [*const_tracers, *tracers], params, source_info)

    process.transforms_rule_first = True
    return process


for _name, _wrap in (
    ("process_custom_jvp_call", _jvp_first),
    ("process_custom_vjp_call", _fwd_first),
):
    _method = getattr(_pe.DynamicJaxprTrace, _name)
    if not getattr(_method, "transforms_rule_first", False):
        setattr(_pe.DynamicJaxprTrace, _name, _wrap(_method))
