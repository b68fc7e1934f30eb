"""Eager op dispatch: run an op now, and show it to every active tape and forward accumulator.

An op is a jax-traceable function of the input tensors' arrays. `apply` evaluates it and hands
`(fn, inputs, outputs)` to the recorders (tapes, accumulators) that may see it. Recorders live
on a per-thread stack; ops that a recorder emits itself (a tape's gradient, an accumulator's
tangents) are shown only to the recorders entered before it, so each sees exactly the
computations it must differentiate.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

from .tensor import Tensor, is_float


class _State(threading.local):
    def __init__(self):
        self.recorders: list = []  # GradientTape / ForwardAccumulator, outermost first
        self.paused = 0  # >0 inside custom_gradient bodies: record nothing
        # tf.function and custom_gradient lift Variables into traced values: id(var) -> Tensor
        self.var_values: dict | None = None
        self.var_log: list | None = None  # Variables touched while var_values is set
        # tf.function: called with a Variable first touched in its trace; returns its traced value
        self.var_lift = None
        self.var_forgotten: list | None = None  # Variables autograph dropped from var_values
        self.read_log: list | None = None  # every Variable read (custom_gradient collects them)
        self.created_log: list | None = None  # Variables created while tf.function traces


state = _State()


def visible_recorders(generator=None) -> list:
    """The recorders that see an op emitted by `generator` (None: an ordinary user op)."""
    if state.paused:
        return []
    stack = state.recorders
    if generator is None:
        return list(stack)
    for i, r in enumerate(stack):
        if r is generator:
            # A persistent tape still recording inside its context also records its own
            # gradient (TF does too): that is how it can differentiate its gradients later.
            own = [r] if getattr(r, "_records_own_gradients", lambda: False)() else []
            return stack[:i] + own
    return list(stack)


def apply(fn, inputs, *, generator=None, outputs=None):
    """Run op `fn` on `inputs` (Tensors) and record it; returns a Tensor or a tuple of them.

    `outputs`, when given, are values already computed for this op (custom_gradient).
    """
    if outputs is None:
        out = fn(*[t._value for t in inputs])
    else:
        out = outputs
    multi = isinstance(out, tuple | list)
    outs = [Tensor(o) for o in (out if multi else (out,))]
    for r in visible_recorders(generator):
        r._record(fn, inputs, outs)
    return tuple(outs) if multi else outs[0]


def float_outputs(outs) -> list[bool]:
    return [is_float(o.dtype) for o in outs]


@contextmanager
def paused():
    """Record nothing inside (the body of a custom_gradient function)."""
    state.paused += 1
    try:
        yield
    finally:
        state.paused -= 1


@contextmanager
def lifted_variables(values: dict, log: list, lift=None, forgotten=None):
    """Variables read inside see `values[id(var)]` and assignments update it (traced programs).

    `lift(var)`, when given, is called for a Variable not in `values` on its first touch; its
    result becomes the Variable's value inside. `forgotten` collects Variables that autograph
    dropped again because they were first touched inside a traced block."""
    saved = state.var_values, state.var_log, state.var_lift, state.var_forgotten
    state.var_values, state.var_log = values, log
    state.var_lift, state.var_forgotten = lift, forgotten
    try:
        yield
    finally:
        state.var_values, state.var_log, state.var_lift, state.var_forgotten = saved


@contextmanager
def created_variables(log: list | None):
    """Variables created inside are appended to `log` (tf.function's singleton rule); `None`:
    creations inside are not logged (state the library makes for itself, such as RNG streams)."""
    saved = state.created_log
    state.created_log = log
    try:
        yield
    finally:
        state.created_log = saved
