"""Converted `while` and `for` loops: Python on concrete values, `lax.while_loop` /
`lax.scan` on traced ones, with the loop-carried state checked as TensorFlow checks it."""

from __future__ import annotations

import builtins

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax, tree_util

from ..rules.while_stored import bounded_while_loop
from . import taped
from .branches import (
    and_,
    if_stmt,
)
from .values import (
    State,
    Undefined,
    UndefinedReturn,
    aval_of,
    is_leaf,
    is_traced,
    leaf_kind,
    number_array,
    predicate,
    safe_repr,
    same_static,
    tape_recording,
    tf_types,
    unwrap,
    wrap,
)

# --------------------------------------------------------------------------------------------------
# Loops
# --------------------------------------------------------------------------------------------------

_RETURN_IN_LOOP = (
    "a return statement cannot be placed inside this TensorFlow loop; this may happen if a "
    "return statement depends on a static Python condition such as a hyperparameter"
)


def set_loop_options(maximum_iterations=None, **unused):
    """Options of the loop whose body starts with this call (TF's
    `tf.autograph.experimental.set_loop_options`); the converter reads them, so calling it
    does nothing. `maximum_iterations` (a Python int) bounds a `while` on traced values: reverse
    mode then stores each step's residuals instead of recomputing from snapshots."""


class TracedRange:
    """`range(start, stop, step)` (or `tf.range`) with a traced bound, as the iterable of a
    converted `for`."""

    def __init__(self, start, stop, step, tensor, dtype):
        self.start, self.stop, self.step, self.tensor, self.dtype = start, stop, step, tensor, dtype


def range_(fn, *args, **kwargs):
    """`fn(*args)` where `fn` is `range` or `tf.range`: a TracedRange when a bound is traced."""
    is_tf_range = getattr(fn, "__module__", "") == "transforms.tf.ops" and fn.__name__ == "range"
    if (fn is builtins.range or is_tf_range) and builtins.any(is_traced(a) for a in args):
        start, stop, step = (0, args[0], 1) if len(args) == 1 else (*args, 1)[:3]
        start, stop, step = (
            kwargs.get("start", start),
            kwargs.get("limit", stop),
            kwargs.get("delta", step),
        )
        if is_tf_range:
            is_f = builtins.any(
                leaf_kind(v) != "number"
                and jnp.issubdtype(jnp.asarray(unwrap(v)).dtype, jnp.floating)
                or isinstance(v, float)
                for v in (start, stop, step)
            )
            dtype = kwargs.get("dtype") or (np.float32 if is_f else np.int32)
        else:
            dtype = jnp.result_type(*[jnp.asarray(unwrap(v)) for v in (start, stop, step)])
        return TracedRange(start, stop, step, is_tf_range, dtype)
    return fn(*args, **kwargs)


def while_stmt(test, body, get_state, set_state, names, live, opts, where, has_return):
    """`while test(): body()`; a traced test makes it a `lax.while_loop` (stopped after
    `maximum_iterations` steps when that option is given)."""
    limit = (opts or {}).get("maximum_iterations")
    count = 0
    while limit is None or count < limit:
        t = test()
        if is_traced(t):
            left = None if limit is None else limit - count
            return _traced_loop(
                test, body, get_state, set_state, names, live, left, where, has_return, kind="while"
            )
        if not t:
            return
        body()
        count += 1


def for_stmt(
    iterable, extra_test, body, get_state, set_state, names, live, opts, where, has_return
):
    """`for x in iterable: body(x)` (stopping when `extra_test()` is false: a `break` or a
    `return` ran). A traced array loops over its leading axis (`lax.scan`); a range with a
    traced bound becomes a `lax.while_loop`; anything else runs as a Python loop."""
    if isinstance(iterable, TracedRange):
        return _for_range(
            iterable, extra_test, body, get_state, set_state, names, live, opts, where, has_return
        )
    if is_traced(iterable):
        return _for_array(
            iterable, extra_test, body, get_state, set_state, names, live, where, has_return
        )
    for item in iterable:
        if extra_test is not None:
            t = extra_test()
            if is_traced(t):
                # A traced break: the remaining Python iterations run only where it did not.
                if_stmt(
                    t,
                    lambda item=item: body(item),
                    lambda: None,
                    get_state,
                    set_state,
                    names,
                    live,
                    where,
                )
                continue
            if not t:
                break
        body(item)


def _for_range(rng, extra_test, body, get_state, set_state, names, live, opts, where, has_return):
    index = [None]
    start, stop, step = (jnp.asarray(unwrap(v), rng.dtype) for v in (rng.start, rng.stop, rng.step))
    index[0] = start

    def get():
        return (*get_state(), index[0])

    def set_(values):
        set_state(values[:-1])
        index[0] = values[-1]

    def test():
        i = jnp.asarray(unwrap(index[0]))
        more = jnp.where(step > 0, i < stop, i > stop)
        return more if extra_test is None else and_(lambda: more, extra_test)

    def step_body():
        i = unwrap(index[0])
        index[0] = i + step
        body(wrap(i, rng.tensor))

    limit = (opts or {}).get("maximum_iterations")
    _traced_loop(
        test,
        step_body,
        get,
        set_,
        [*names, "the loop index"],
        [*live, True],
        limit,
        where,
        has_return,
        kind="for",
    )


def _for_array(xs, extra_test, body, get_state, set_state, names, live, where, has_return):
    if has_return:
        raise NotImplementedError(_RETURN_IN_LOOP)
    tensor, _ = tf_types()
    as_tensor = isinstance(xs, tensor)
    xs_value = unwrap(xs)
    if xs_value.ndim == 0:
        raise TypeError(f"Cannot iterate over a scalar (the `for` at {where}).")
    st = State(get_state, set_state, names, live)

    def attempt(carry):
        init = carry.start(st.get(), lambda: body(wrap(xs_value[0], as_tensor)))

        def step(state, x):
            active, values = (state[0], state[1:]) if extra_test is not None else (None, state)
            st.set(carry.rebuild(values))
            if extra_test is None:
                body(wrap(x, as_tensor))
                return tuple(carry.after_iteration(st.get())), None
            active = jnp.logical_and(active, predicate(extra_test(), f"the `for` at {where}"))

            def run(_):
                st.set(carry.rebuild(values))
                body(wrap(x, as_tensor))
                return tuple(carry.after_iteration(st.get()))

            new = lax.cond(active, run, lambda _: tuple(values), None)
            return (active, *new), None

        init_carry = tuple(init) if extra_test is None else (jnp.asarray(True), *init)
        final, _ = lax.scan(step, init_carry, xs_value)
        return final if extra_test is None else final[1:]

    _run_or_record(st, attempt, "for", where)


def _run_or_record(st, attempt, kind, where):
    """Run the traced loop (`attempt(carry)` builds it, retried while the carry's dtypes
    settle); under a recording GradientTape (inside tf.function), as one op of the tape
    (taped.py), so that the tape's gradient differentiates through it."""

    def run():
        carry = _Carry(st, where, "loop")
        final = carry.run(lambda: attempt(carry))
        st.set(carry.rebuild(final, outside=True))

    if not tape_recording():
        return run()
    if not taped.supported():
        raise NotImplementedError(
            f"A ForwardAccumulator inside tf.function cannot see into the converted `{kind}` "
            f"loop at {where} (its condition is a tensor). Put the accumulator around the call "
            "of the tf.function instead: it differentiates the whole compiled program."
        )
    taped.record_loop(st, run)


def _traced_loop(test, body, get_state, set_state, names, live, limit, where, has_return, kind):
    if has_return:
        raise NotImplementedError(_RETURN_IN_LOOP)
    st = State(get_state, set_state, names, live)

    def attempt(carry):
        init = carry.start(st.get(), body)

        def pred(values):
            st.set(carry.rebuild(values))
            return predicate(test(), f"the `{kind}` loop at {where}")

        def step(values):
            st.set(carry.rebuild(values))
            body()
            return tuple(carry.after_iteration(st.get()))

        if limit is None:
            return lax.while_loop(pred, step, tuple(init))
        # Bounded: reverse mode stores each step's residuals (rules/while_stored.py).
        return bounded_while_loop(pred, step, tuple(init), int(limit))

    _run_or_record(st, attempt, kind, where)


class _Retrace(Exception):
    """A loop variable started as a Python number and the body made it an array of another
    dtype: trace the loop again with that dtype from the start."""


class _Carry:
    """The loop-carried state: which leaves travel through the loop as arrays, and the checks
    TF makes after one iteration (same structure, shape and dtype)."""

    def __init__(self, st, where, what):
        self.st, self.where = st, where
        self.number_dtypes: dict = {}  # (var, leaf) -> dtype found by a retrace
        self.variable_leaves: set = set()  # Variables the body replaces by tensors
        self.tensor_leaves: set = set()

    def run(self, attempt):
        for _ in range(64):  # each retry fixes one more leaf's dtype, so this ends
            try:
                return attempt()
            except _Retrace:
                continue
            finally:
                self.st.set(self.init_values)
        raise RuntimeError("autograph: loop state dtypes did not settle")  # pragma: no cover

    def start(self, values, body):
        """Lay out the initial state; variables undefined before the loop but needed after it
        are initialised with zeros shaped like their value after one iteration (as TF does)."""
        self.init_values = values
        st = self.st
        missing = [
            i
            for i, v in enumerate(values)
            if isinstance(v, Undefined) and st.live[i] and not isinstance(v, UndefinedReturn)
        ]
        if missing:
            values = list(values)
            shaped = self._first_iteration(values, body, missing)
            for i in missing:
                values[i] = shaped[i]
        self.layout = []
        arrays = []
        tensor, _ = tf_types()
        for i, v in enumerate(values):
            if isinstance(v, Undefined):
                self.layout.append(("static", tree_util.tree_structure(0), [v]))
                continue
            leaves, treedef = tree_util.tree_flatten(v, is_leaf=is_leaf)
            kinds = []
            for j, leaf in enumerate(leaves):
                kind = leaf_kind(leaf)
                if kind == "variable" and (i, j) in self.variable_leaves:
                    kind = "array"
                if kind in ("array", "number"):
                    x = jnp.asarray(unwrap(leaf)) if kind == "array" else number_array(leaf)
                    if (i, j) in self.number_dtypes:
                        x = lax.convert_element_type(x, self.number_dtypes[(i, j)])
                    kinds.append(("dynamic", len(arrays), isinstance(leaf, tensor), kind))
                    arrays.append(x)
                else:
                    kinds.append(("static", leaf))
            self.layout.append(("leaves", treedef, kinds))
        self.avals = [aval_of(a) for a in arrays]
        return arrays

    def _first_iteration(self, values, body, missing):
        st = self.st
        box = {}

        def once():
            st.set(values)
            body()
            after = st.get()
            st.forget_new_variables()
            for i in missing:
                if isinstance(after[i], Undefined):
                    raise ValueError(f"'{st.names[i]}' must be defined before the loop.")
            box["after"] = after
            leaves = [tree_util.tree_flatten(after[i], is_leaf=is_leaf) for i in missing]
            box["trees"] = [t for _, t in leaves]
            return [
                [jnp.asarray(unwrap(x)) if leaf_kind(x) == "array" else number_array(x) for x in ls]
                for ls, _ in leaves
            ]

        try:
            shapes = jax.eval_shape(once)
        finally:
            st.set(values)
        tensor, _ = tf_types()
        out = {}
        for i, tree, avals in zip(missing, box["trees"], shapes, strict=True):
            orig = tree_util.tree_flatten(box["after"][i], is_leaf=is_leaf)[0]
            zeros = [
                wrap(jnp.zeros(a.shape, a.dtype), isinstance(o, tensor))
                for a, o in zip(avals, orig, strict=True)
            ]
            out[i] = tree_util.tree_unflatten(tree, zeros)
        return out

    def rebuild(self, arrays, outside=False):
        values = []
        for i, (kind, treedef, leaves) in enumerate(self.layout):
            if kind == "static":
                values.append(leaves[0])
                continue
            flat = []
            for j, leaf in enumerate(leaves):
                if leaf[0] == "static":
                    flat.append(leaf[1])
                else:
                    as_tensor = leaf[2] or (outside and (i, j) in self.tensor_leaves)
                    flat.append(wrap(arrays[leaf[1]], as_tensor))
            values.append(tree_util.tree_unflatten(treedef, flat))
        return values

    def after_iteration(self, values):
        """The new carry after one iteration, checked against the state before the loop."""
        st = self.st
        st.forget_new_variables()
        tensor, _ = tf_types()
        out = []
        for i, ((kind, treedef, leaves), v) in enumerate(zip(self.layout, values, strict=True)):
            name = st.names[i]
            if kind == "static":
                continue
            if isinstance(v, Undefined):
                raise ValueError(f"'{name}' must be defined before the loop.")
            flat, new_tree = tree_util.tree_flatten(v, is_leaf=is_leaf)
            if new_tree != treedef:
                raise TypeError(
                    f"'{name}' does not have the same nested structure after one iteration.\n\n"
                    f"  before: {treedef}\n  after: {new_tree}"
                )
            for j, (leaf, x) in enumerate(zip(leaves, flat, strict=True)):
                if leaf[0] == "static":
                    if not same_static(leaf[1], x):
                        replaced = leaf_kind(x) in ("array", "variable")
                        if leaf_kind(leaf[1]) == "variable" and replaced:
                            self.variable_leaves.add((i, j))
                            raise _Retrace
                        raise TypeError(
                            f"'{name}' is {safe_repr(leaf[1])} before the loop at {self.where} "
                            f"but {safe_repr(x)} after one iteration; a loop over traced values "
                            "can only change arrays (or numbers) from one iteration to the next"
                        )
                    continue
                if leaf_kind(x) not in ("array", "number", "variable"):
                    raise TypeError(
                        f"'{name}' is an array before the loop at {self.where} but "
                        f"{safe_repr(x)} after one iteration"
                    )
                if isinstance(x, tensor):
                    self.tensor_leaves.add((i, j))
                new = jnp.asarray(unwrap(x))
                before = self.avals[leaf[1]]
                if new.shape != before.shape:
                    raise ValueError(
                        f"'{name}' has shape {before.shape} before the loop, but shape "
                        f"{new.shape} after one iteration. A loop over traced values keeps each "
                        "variable's shape (lax.while_loop / lax.scan carry); pad it to a fixed "
                        "shape before the loop."
                    )
                if new.dtype != before.dtype:
                    new_weak = aval_of(new).weak_type
                    if leaf[3] == "number" and not new_weak and (i, j) not in self.number_dtypes:
                        self.number_dtypes[(i, j)] = new.dtype
                        raise _Retrace
                    if not new_weak:
                        raise TypeError(
                            f"'{name}' has dtype {np.dtype(before.dtype).name} before the loop, "
                            f"but dtype {np.dtype(new.dtype).name} after one iteration"
                        )
                    new = lax.convert_element_type(new, before.dtype)
                out.append(new)
        return out
