"""`custom_gradient`, `cond` and `while_loop` for eager, tape-recorded code."""

from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp

from .core import apply, lifted_variables, paused, state
from .ops import _t
from .tape import flatten
from .tensor import Tensor, is_float


def _wrap(values):
    return [Tensor(v) for v in values]


def _unwrap_out(y):
    flat, tree = flatten(y)
    return [_t(t)._value for t in flat], tree


def custom_gradient(f=None):
    """Decorate `f(*x) -> (y, grad_fn)` so that tapes use `grad_fn` for the gradient of `y`.

    `grad_fn(*upstream)` returns the gradients of the inputs; if `f` reads Variables, it is
    called as `grad_fn(*upstream, variables=vars)` and returns `(input_grads, variable_grads)`.
    The op is one JAX `custom_vjp` function, so `grad_fn` can itself be differentiated (second
    order) when it is written with differentiable ops.

    Example:
      >>> @tf.custom_gradient
      ... def clip_grad(x):
      ...     return tf.identity(x), lambda dy: tf.clip_by_value(dy, -1.0, 1.0)
    """
    if f is None:
        return custom_gradient

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        xs = [_t(a) for a in args]
        # The body runs once now, unrecorded, for the outputs and the Variables it reads.
        saved_log = state.read_log
        state.read_log = []
        try:
            with paused():
                y, grad_fn0 = f(*xs, **kwargs)
            read = state.read_log
        finally:
            state.read_log = saved_log
        variables = list({id(v): v for v in read}.values())
        y_flat, y_tree = _unwrap_out(y)
        n_x = len(xs)
        if variables:
            params = inspect.signature(grad_fn0).parameters.values()
            if not any(p.name == "variables" or p.kind is p.VAR_KEYWORD for p in params):
                raise TypeError(
                    f"@custom_gradient function {f.__name__!r} reads Variables "
                    f"{[v.name for v in variables]}, so its grad_fn must accept a keyword "
                    "argument `variables` and return (input_grads, variable_grads)."
                )

        def run(values):
            x_vals, v_vals = values[:n_x], values[n_x:]
            lifted = {id(v): val for v, val in zip(variables, v_vals, strict=True)}
            with paused(), lifted_variables(lifted, []):
                return f(*_wrap(x_vals), **kwargs)

        @jax.custom_vjp
        def op(*values):
            return tuple(_unwrap_out(run(values)[0])[0])

        def fwd(*values):
            # The body itself rather than `op(*values)`: the same value, and fwd's program
            # holds no nested custom_vjp call.
            return tuple(_unwrap_out(run(values)[0])[0]), values

        def bwd(values, cts):
            _, grad_fn = run(values)
            dys = _wrap(cts)
            with paused():
                if variables:
                    gx, gv = grad_fn(*dys, variables=[v for v in variables])
                else:
                    gx, gv = grad_fn(*dys), []
            gx = gx if isinstance(gx, list | tuple) else [gx]
            grads = list(gx) + list(gv)
            if len(grads) != len(values):
                raise ValueError(
                    f"custom_gradient grad_fn of {f.__name__!r} returned {len(gx)} input "
                    f"gradients for {n_x} inputs (and {len(gv)} for {len(variables)} variables)."
                )
            out = []
            for g, v in zip(grads, values, strict=True):
                if g is None or not is_float(v.dtype):
                    out.append(None if is_float(v.dtype) else _float0(v))
                else:
                    out.append(jnp.broadcast_to(_t(g)._value.astype(v.dtype), v.shape))
            return tuple(out)

        op.defvjp(fwd, bwd)
        reads = [v._read_value_for_op() for v in variables]
        outs = apply(lambda *vals: op(*vals), [*xs, *reads], outputs=tuple(y_flat))
        return jax.tree_util.tree_unflatten(y_tree, list(outs))

    return wrapper


def _float0(v):
    import numpy as np

    return np.zeros(v.shape, jax.dtypes.float0)


def cond(pred, true_fn=None, false_fn=None, name=None):
    """Run `true_fn()` if `pred` else `false_fn()`; eagerly, only the branch taken is recorded.

    Inside `tf.function` (a traced predicate) both branches run and the results are selected,
    so both must be side-effect free and return the same structure.

    Example:
      >>> tf.cond(x > 0, lambda: x * 2, lambda: -x)
    """
    p = _t(pred)
    if not isinstance(p._value, jax.core.Tracer):
        return true_fn() if bool(p) else false_fn()
    from .ops import where

    a, b = true_fn(), false_fn()
    fa, tree = flatten(a)
    fb, _ = flatten(b)
    return jax.tree_util.tree_unflatten(tree, [where(p, x, y) for x, y in zip(fa, fb, strict=True)])


def while_loop(
    cond,
    body,
    loop_vars,
    shape_invariants=None,
    parallel_iterations=10,
    back_prop=True,
    swap_memory=False,
    maximum_iterations=None,
    name=None,
):
    """Repeat `loop_vars = body(*loop_vars)` while `cond(*loop_vars)`, at most
    `maximum_iterations` times.

    Eagerly, a Python loop whose ops are all recorded (so it is differentiable on a tape).
    Inside `tf.function`, where the condition is a traced tensor, one `lax.while_loop` (a
    bounded one with `maximum_iterations`, whose reverse mode stores residuals per step), with
    TF's checks that the body keeps the loop variables' structure, dtypes and shapes; a
    GradientTape differentiates through it. `shape_invariants`, `parallel_iterations` and
    `swap_memory` are accepted and have no effect (XLA decides).

    Example:
      >>> tf.while_loop(lambda i, x: i < 3, lambda i, x: (i + 1, x * 2), [0, x])
    """
    from ..autograph.loops import while_stmt

    del shape_invariants, parallel_iterations, swap_memory, back_prop, name
    single = not isinstance(loop_vars, list | tuple)
    box = [loop_vars] if single else list(loop_vars)

    def set_state(values):
        box[:] = values

    def step():
        out = body(*box)
        if single or (len(box) == 1 and not isinstance(out, list | tuple)):
            box[:] = [out]  # TF packs a bare result of a one-variable loop, too
        elif isinstance(out, list | tuple) and len(out) == len(box):
            box[:] = list(out)
        else:
            raise ValueError(
                f"The two structures don't have the same nested structure: loop_vars has "
                f"{len(box)} elements, the body returned {out!r}"
            )

    test = lambda: cond(*box)  # noqa: E731
    limit = maximum_iterations
    if limit is not None and isinstance(_t(limit)._value, jax.core.Tracer):
        # A traced bound: an iteration count travels with the loop variables and is tested
        # in the condition (reverse mode then recomputes from snapshots: no static bound).
        from .ops import logical_and

        steps, limit = [0], None
        bound = maximum_iterations
        test = lambda: logical_and(steps[0] < bound, cond(*box))  # noqa: E731
        inner_step, inner_set = step, set_state

        def step():
            inner_step()
            steps[0] = steps[0] + 1

        def set_state(values):
            steps[0] = values[-1]
            inner_set(list(values[:-1]))

        get_state = lambda: (*box, steps[0])  # noqa: E731
        names = [*(f"loop_vars[{i}]" for i in range(len(box))), "the iteration count"]
    else:
        limit = None if limit is None else int(_t(limit).numpy())
        get_state = lambda: tuple(box)  # noqa: E731
        names = [f"loop_vars[{i}]" for i in range(len(box))]
    while_stmt(
        test,
        step,
        get_state,
        set_state,
        names,
        [True] * len(names),
        {"maximum_iterations": limit},
        "tf.while_loop",
        False,
    )
    return box[0] if single else type(loop_vars)(box) if isinstance(loop_vars, tuple) else box
