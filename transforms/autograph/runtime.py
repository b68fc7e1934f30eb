"""What converted code calls: each statement decides, on every call, Python or `jax.lax`.

The converter (`converter.py`) turns `if`, `while` and `for` into calls of `if_stmt`,
`while_stmt` and `for_stmt` with the statement's blocks as functions, and the variables the
blocks assign as *state* (`get_state()` reads them, `set_state(values)` writes them back). When
the condition (or the iterated value) is a concrete Python value the statement runs as plain
Python, so Python values still unroll; when it is a JAX tracer (a `transforms.tf` Tensor holding
one included) the blocks are traced once each into `lax.cond`, `lax.while_loop` or `lax.scan`,
with the state as their operands and results.

State values are pytrees. Their array leaves (and Python numbers that differ between branches or
change in a loop) travel through the lax construct; every other leaf (a list, a module, a
Variable object) must be the same object at the end of each branch or iteration.
"""

from __future__ import annotations

import builtins

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax, tree_util

from ..interpreter import eval_jaxpr

# --------------------------------------------------------------------------------------------------
# Undefined variables
# --------------------------------------------------------------------------------------------------


class Undefined:
    """The value of a local variable before its first assignment (the converter pre-binds every
    local so that the blocks it moves into nested functions can assign it)."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self):
        return f"<undefined {self.name}>"

    def __getattr__(self, attr):
        raise _unbound(self.name)


def _unbound(name):
    return UnboundLocalError(
        f"cannot access local variable '{name}' where it is not associated with a value"
    )


def _fail(self, *args, **kwargs):
    raise _unbound(self.name)


for _op in (
    "__bool__ __call__ __iter__ __len__ __getitem__ __neg__ __pos__ __abs__ __add__ __radd__ "
    "__sub__ __rsub__ __mul__ __rmul__ __truediv__ __rtruediv__ __floordiv__ __rfloordiv__ "
    "__mod__ __rmod__ __pow__ __rpow__ __matmul__ __rmatmul__ __lt__ __le__ __gt__ __ge__ "
    "__array__ __jax_array__ __float__ __int__ __index__"
).split():
    setattr(Undefined, _op, _fail)


class UndefinedReturn(Undefined):
    """The return value before a `return` ran."""

    __slots__ = ()

    def __init__(self):
        super().__init__("return value")


def ret(value):
    """The function's result: None when no `return` ran (Python's)."""
    return None if isinstance(value, UndefinedReturn) else value


# --------------------------------------------------------------------------------------------------
# Values: traced or not, tensors of transforms.tf
# --------------------------------------------------------------------------------------------------


def _tf_types():
    from ..tf.tensor import Tensor
    from ..tf.variable import Variable

    return Tensor, Variable


def _unwrap(x):
    tensor, variable = _tf_types()
    if isinstance(x, tensor):
        return x._value
    if isinstance(x, variable):
        return x._read_value_for_op()._value
    return x


def is_traced(x) -> bool:
    """True when `x` is a JAX tracer (or a transforms.tf Tensor/Variable holding one)."""
    return isinstance(_unwrap(x), jax.core.Tracer)


def _is_leaf(x):
    tensor, variable = _tf_types()
    return isinstance(x, tensor | variable | Undefined)


def _kind(leaf):
    tensor, variable = _tf_types()
    if isinstance(leaf, Undefined):
        return "undefined"
    if isinstance(leaf, variable):
        return "variable"  # static while it stays the same Variable, else its value
    if isinstance(leaf, tensor | jax.Array | np.ndarray | np.generic):
        return "array"
    if isinstance(leaf, bool | int | float | complex):
        return "number"
    return "static"


def _tf_mode():
    """Inside a transforms.tf.function trace: every array a statement yields is a Tensor, and
    Python numbers become tensors with TF's dtypes (int32, float32)."""
    return _lifted_variables() is not None


def _tape_recording():
    from ..tf.core import state

    return state.var_values is not None and bool(state.recorders) and not state.paused


def _number_array(x):
    if _tf_mode() and not isinstance(x, bool):
        dtype = {int: np.int32, float: np.float32, complex: np.complex64}[type(x)]
        return jnp.asarray(x, dtype)
    return jnp.asarray(x)


def _wrap(value, as_tensor):
    tensor, _ = _tf_types()
    if isinstance(value, tensor):
        return value
    if as_tensor or _tf_mode():
        return tensor(value)
    return value


def _predicate(cond, what):
    value = jnp.asarray(_unwrap(cond))
    if value.shape != ():
        raise ValueError(
            f"The condition of {what} is a traced value of shape {value.shape}: its truth value "
            "is ambiguous. Reduce it to a scalar first (jnp.any / jnp.all, tf.reduce_any / "
            "tf.reduce_all)."
        )
    return value if value.dtype == bool else value != 0


def _aval(x):
    return jax.typeof(x)


def _same_static(a, b):
    if a is b:
        return True
    return type(a) is type(b) and isinstance(a, bool | int | float | complex | str) and a == b


# --------------------------------------------------------------------------------------------------
# State of one statement: the user's variables, plus Variables a tf.function has lifted
# --------------------------------------------------------------------------------------------------


def _lifted_variables():
    from ..tf.core import state

    return state.var_values


class _State:
    """Reads and writes the variables a statement assigns. Inside a `transforms.tf.function`
    trace the lifted Variables' values are part of it, so `v.assign(...)` in a branch or a loop
    body works like an assignment to a local."""

    def __init__(self, get_state, set_state, names, live):
        self._get, self._set = get_state, set_state
        self._n = len(names)
        self.lifted = _lifted_variables()
        self.keys = list(self.lifted) if self.lifted is not None else []
        self.names = [*names, *["a tf.Variable"] * len(self.keys)]
        self.live = [*live, *[True] * len(self.keys)]

    def get(self):
        values = list(self._get())
        return values + [self.lifted[k] for k in self.keys]

    def set(self, values):
        self._set(tuple(values[: self._n]))
        for k, v in zip(self.keys, values[self._n :], strict=True):
            self.lifted[k] = _unwrap(v)  # lifted Variables hold arrays, not Tensors

    def forget_new_variables(self):
        # A Variable first touched inside a traced block is not part of this statement's state;
        # its traced value must not leak out. tf.function retraces with it lifted from the start.
        if self.lifted is not None:
            known = set(self.keys)
            from ..tf.core import state

            for k in [k for k in self.lifted if k not in known]:
                del self.lifted[k]
                if state.var_forgotten is not None:
                    state.var_forgotten.append(k)


# --------------------------------------------------------------------------------------------------
# if / conditional expressions
# --------------------------------------------------------------------------------------------------

_BRANCH = ("main", "else")


def if_stmt(cond, body, orelse, get_state, set_state, names, live, where):
    """`if cond: body() else: orelse()`; a traced `cond` becomes `lax.cond` over the state."""
    if not is_traced(cond):
        if cond:
            body()
        else:
            orelse()
        return
    st = _State(get_state, set_state, names, live)
    pred = _predicate(cond, f"the `if` at {where}")
    if _tape_recording():
        return _select_if(st, cond, body, orelse)
    init = st.get()
    traced = [_trace_block(st, init, fn) for fn in (body, orelse)]
    plan = _merge_branches(st, traced)
    branches = [_replay(closed, slots, plan, k) for k, (closed, slots) in enumerate(traced)]
    outs = lax.cond(pred, *branches)
    st.set(_assemble(plan, outs))


def _trace_block(st, init, fn):
    """Trace `fn` from state `init`: (closed jaxpr of its array results, per-variable record)."""
    box = {}

    def run():
        st.set(init)
        fn()
        values = st.get()
        st.forget_new_variables()
        arrays, record, _ = _record(values)
        box["record"] = record
        return arrays

    try:
        closed = jax.make_jaxpr(run)()
    finally:
        st.set(init)
    return closed, box["record"]


def _record(values):
    """The array leaves of `values`, and per variable (treedef, leaf descriptors)."""
    arrays, record, originals = [], [], []
    tensor, _ = _tf_types()
    for v in values:
        leaves, treedef = tree_util.tree_flatten(v, is_leaf=_is_leaf)
        descs = []
        for leaf in leaves:
            kind = _kind(leaf)
            if kind == "array":
                descs.append(("array", len(arrays), isinstance(leaf, tensor)))
                arrays.append(jnp.asarray(_unwrap(leaf)))
                originals.append(leaf)
            elif kind == "variable":
                descs.append(("variable", leaf, len(arrays)))
                read = leaf._read_value_for_op()
                arrays.append(jnp.asarray(read._value))
                originals.append(read)
            else:
                descs.append((kind, leaf, False))
        record.append((treedef, descs))
    return arrays, record, originals


def _select_if(st, cond, body, orelse):
    """A converted `if` under a GradientTape recording inside tf.function: both branches run as
    recorded ops and `where` picks each result (what transforms.tf.cond does), so the tape sees
    every op."""
    from ..tf import ops

    init = st.get()
    recorded = []
    try:
        for fn in (body, orelse):
            st.set(init)
            fn()
            values = st.get()
            st.forget_new_variables()
            recorded.append(_record(values))
    finally:
        st.set(init)
    avals = [[jax.typeof(a) for a in arrays] for arrays, _, _ in recorded]
    plan = _merge_branches(st, [(avals[k], recorded[k][1]) for k in range(2)], have_avals=True)
    tensor, _ = _tf_types()
    pred = cond if isinstance(cond, tensor) else tensor(_unwrap(cond))
    picked = []
    for (kind, _, leaves), rec0, rec1 in zip(plan, recorded[0][1], recorded[1][1], strict=True):
        if kind != "leaves":
            continue
        for leaf, d0, d1 in zip(leaves, rec0[1], rec1[1], strict=True):
            if leaf[0] != "dynamic":
                continue
            xs = []
            for d, (_, _, originals) in zip((d0, d1), recorded, strict=True):
                x = originals[d[1]] if d[0] == "array" else d[1]
                if not isinstance(x, tensor):
                    x = tensor(_as_dtype(_unwrap(x), leaf[1], leaf[2]))
                elif x.dtype != leaf[1]:
                    x = ops.cast(x, leaf[1])
                xs.append(x)
            picked.append(ops.where(pred, xs[0], xs[1]))
    st.set(_assemble(plan, picked))


def _merge_branches(st, traced, have_avals=False):
    """Per variable: its value after the `if` (static), or how each branch yields its arrays."""
    (c0, r0), (c1, r1) = traced
    avals = [c0, c1] if have_avals else [c0.out_avals, c1.out_avals]
    plan = []
    for i, (name, live) in enumerate(zip(st.names, st.live, strict=True)):
        (t0, d0), (t1, d1) = r0[i], r1[i]
        undefined = [len(d) == 1 and d[0][0] == "undefined" for d in (d0, d1)]
        if any(undefined):
            if all(undefined):
                plan.append(("static", t0, d0))
                continue
            k = undefined.index(True)
            if isinstance(((d0, d1)[k])[0][1], UndefinedReturn):
                raise ValueError(f"the {_BRANCH[k]} branch must also have a return statement.")
            if live:
                raise ValueError(f"'{name}' must also be initialized in the {_BRANCH[k]} branch")
            plan.append(("static", t0 if k else t1, [("undefined", Undefined(name), False)]))
            continue
        if t0 != t1:
            for k, t in enumerate((t0, t1)):
                if t == tree_util.tree_structure(None):
                    raise ValueError(f"'{name}' is None at the end of the {_BRANCH[k]} branch.")
            raise TypeError(
                f"'{name}' must have the same nested structure in the main and else branches: "
                f"{t0} and {t1}"
            )
        leaves = []
        for j, (a, b) in enumerate(zip(d0, d1, strict=True)):
            if a[0] != "array" and b[0] != "array" and _same_static(a[1], b[1]):
                leaves.append(("static", a[1]))
                continue
            # A Variable replaced by a tensor in one branch: the branches choose its value.
            if a[0] == "variable":
                a = d0[j] = ("array", a[2], True)
            if b[0] == "variable":
                b = d1[j] = ("array", b[2], True)
            if "static" in (a[0], b[0]) or "undefined" in (a[0], b[0]):
                raise TypeError(
                    f"'{name}' holds {_show(a, avals[0])} in the main branch but "
                    f"{_show(b, avals[1])} in the else branch; a branch on a traced value can only "
                    "choose between arrays (or numbers)"
                )
            av = [
                avals[k][d[1]] if d[0] == "array" else _aval(jnp.asarray(d[1]))
                for k, d in enumerate((a, b))
            ]
            if av[0].shape != av[1].shape:
                raise ValueError(
                    f"'{name}' has shape {av[0].shape} in the main branch, but shape "
                    f"{av[1].shape} in the else branch; a conditional on a traced value "
                    "(lax.cond) needs one shape for both"
                )
            dtype, weak = _join_dtypes(name, av, ("in the main branch", "in the else branch"))
            leaves.append(("dynamic", dtype, weak, a[2] or b[2]))
        plan.append(("leaves", t0, leaves))
    return plan


def _show(desc, avals):
    if desc[0] == "array":
        return f"an array {avals[desc[1]].str_short()}"
    return _safe_repr(desc[1])


def _safe_repr(x):
    # The repr of a symbolic tf Tensor would try to read its value.
    if is_traced(x):
        return f"a traced value {jax.typeof(_unwrap(x)).str_short()}"
    return repr(x)


def _join_dtypes(name, av, where):
    d0, d1 = av[0].dtype, av[1].dtype
    w0, w1 = av[0].weak_type, av[1].weak_type
    if d0 == d1:
        return d0, w0 and w1
    if w0 != w1:
        return (d1 if w0 else d0), False
    raise TypeError(
        f"'{name}' has dtype {np.dtype(d0).name} {where[0]}, but dtype {np.dtype(d1).name} "
        f"{where[1]}"
    )


def _replay(closed, record, plan, k):
    """Branch `k` for lax.cond: evaluate its traced jaxpr and lay out the merged results."""

    def branch():
        arrays = eval_jaxpr(closed.jaxpr, closed.consts)
        outs = []
        for (kind, _, leaves), (_, descs) in zip(plan, record, strict=True):
            if kind != "leaves":
                continue
            for leaf, desc in zip(leaves, descs, strict=True):
                if leaf[0] == "dynamic":
                    x = arrays[desc[1]] if desc[0] == "array" else _number_array(desc[1])
                    outs.append(_as_dtype(x, leaf[1], leaf[2]))
        return outs

    return branch


def _as_dtype(x, dtype, weak):
    x = jnp.asarray(x)
    if x.dtype == dtype and (weak or not _aval(x).weak_type):
        return x
    return lax.convert_element_type(x, dtype) if not weak else jnp.asarray(x, dtype)


def _assemble(plan, outs):
    it = iter(outs)
    values = []
    for kind, treedef, leaves in plan:
        if kind == "static":
            values.append(tree_util.tree_unflatten(treedef, [d[1] for d in leaves]))
            continue
        flat = [leaf[1] if leaf[0] == "static" else _wrap(next(it), leaf[3]) for leaf in leaves]
        values.append(tree_util.tree_unflatten(treedef, flat))
    return values


def if_exp(cond, if_true, if_false, where):
    """`if_true() if cond else if_false()`; a traced `cond` becomes `lax.cond`."""
    if not is_traced(cond):
        return if_true() if cond else if_false()
    pred = _predicate(cond, f"the conditional expression at {where}")
    box = {}

    def branch(fn):
        def run():
            leaves, treedef = tree_util.tree_flatten(fn(), is_leaf=_is_leaf)
            tensor, _ = _tf_types()
            box.setdefault("tensor", set()).update(
                i for i, x in enumerate(leaves) if isinstance(x, tensor)
            )
            box["tree"] = treedef
            return [jnp.asarray(_unwrap(x)) for x in leaves]

        return run

    outs = lax.cond(pred, branch(if_true), branch(if_false))
    flat = [_wrap(x, i in box["tensor"]) for i, x in enumerate(outs)]
    return tree_util.tree_unflatten(box["tree"], flat)


# --------------------------------------------------------------------------------------------------
# and / or / not
# --------------------------------------------------------------------------------------------------


def _logical(op, a, b):
    tensor, _ = _tf_types()
    out = op(jnp.asarray(_unwrap(a), bool), jnp.asarray(_unwrap(b), bool))
    return _wrap(out, isinstance(a, tensor) or isinstance(b, tensor))


def and_(*operands):
    """`a and b and ...` with each operand a function: lazy on Python values, logical_and on
    traced ones."""
    value = operands[0]()
    for nxt in operands[1:]:
        if not is_traced(value):
            if not value:
                return value
            value = nxt()
        else:
            value = _logical(jnp.logical_and, value, nxt())
    return value


def or_(*operands):
    """`a or b or ...`: lazy on Python values, logical_or on traced ones."""
    value = operands[0]()
    for nxt in operands[1:]:
        if not is_traced(value):
            if value:
                return value
            value = nxt()
        else:
            value = _logical(jnp.logical_or, value, nxt())
    return value


def not_(value):
    """`not value`: logical_not on a traced value."""
    if not is_traced(value):
        return not value
    tensor, _ = _tf_types()
    return _wrap(jnp.logical_not(jnp.asarray(_unwrap(value), bool)), isinstance(value, tensor))


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
    does nothing. `maximum_iterations` (a Python int) bounds a `while` on traced values: it then
    runs as a `lax.scan` of that length, which reverse mode can differentiate."""


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
                _kind(v) != "number"
                and jnp.issubdtype(jnp.asarray(_unwrap(v)).dtype, jnp.floating)
                or isinstance(v, float)
                for v in (start, stop, step)
            )
            dtype = kwargs.get("dtype") or (np.float32 if is_f else np.int32)
        else:
            dtype = jnp.result_type(*[jnp.asarray(_unwrap(v)) for v in (start, stop, step)])
        return TracedRange(start, stop, step, is_tf_range, dtype)
    return fn(*args, **kwargs)


def while_stmt(test, body, get_state, set_state, names, live, opts, where, has_return):
    """`while test(): body()`; a traced test makes it a `lax.while_loop` (a `lax.scan` of
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
    start, stop, step = (
        jnp.asarray(_unwrap(v), rng.dtype) for v in (rng.start, rng.stop, rng.step)
    )
    index[0] = start

    def get():
        return (*get_state(), index[0])

    def set_(values):
        set_state(values[:-1])
        index[0] = values[-1]

    def test():
        i = jnp.asarray(_unwrap(index[0]))
        more = jnp.where(step > 0, i < stop, i > stop)
        return more if extra_test is None else and_(lambda: more, extra_test)

    def step_body():
        i = _unwrap(index[0])
        index[0] = i + step
        body(_wrap(i, rng.tensor))

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
    _no_tape("for", where)
    tensor, _ = _tf_types()
    as_tensor = isinstance(xs, tensor)
    xs_value = _unwrap(xs)
    if xs_value.ndim == 0:
        raise TypeError(f"Cannot iterate over a scalar (the `for` at {where}).")
    st = _State(get_state, set_state, names, live)
    carry = _Carry(st, where, "loop")

    def attempt():
        init = carry.start(st.get(), lambda: body(_wrap(xs_value[0], as_tensor)))

        def step(state, x):
            active, values = (state[0], state[1:]) if extra_test is not None else (None, state)
            st.set(carry.rebuild(values))
            if extra_test is None:
                body(_wrap(x, as_tensor))
                return tuple(carry.after_iteration(st.get())), None
            active = jnp.logical_and(active, _predicate(extra_test(), f"the `for` at {where}"))

            def run(_):
                st.set(carry.rebuild(values))
                body(_wrap(x, as_tensor))
                return tuple(carry.after_iteration(st.get()))

            new = lax.cond(active, run, lambda _: tuple(values), None)
            return (active, *new), None

        init_carry = tuple(init) if extra_test is None else (jnp.asarray(True), *init)
        final, _ = lax.scan(step, init_carry, xs_value)
        return final if extra_test is None else final[1:]

    final = carry.run(attempt)
    st.set(carry.rebuild(final, outside=True))


def _no_tape(kind, where):
    if _tape_recording():
        raise NotImplementedError(
            f"A GradientTape recording inside tf.function cannot see into the converted `{kind}` "
            f"loop at {where} (its condition is a tensor). Put the tape around the call of the "
            "tf.function instead: it differentiates the whole compiled program, loops included."
        )


def _traced_loop(test, body, get_state, set_state, names, live, limit, where, has_return, kind):
    if has_return:
        raise NotImplementedError(_RETURN_IN_LOOP)
    _no_tape(kind, where)
    st = _State(get_state, set_state, names, live)
    carry = _Carry(st, where, "loop")

    def attempt():
        init = carry.start(st.get(), body)

        def pred(values):
            st.set(carry.rebuild(values))
            return _predicate(test(), f"the `{kind}` loop at {where}")

        def step(values):
            st.set(carry.rebuild(values))
            body()
            return tuple(carry.after_iteration(st.get()))

        if limit is None:
            return lax.while_loop(pred, step, tuple(init))

        # Bounded: a scan of `limit` steps that stops changing the state once the test fails.
        def scan_step(state, _):
            active, values = state[0], state[1:]
            active = jnp.logical_and(active, pred(values))
            new = lax.cond(active, lambda v: step(v), lambda v: tuple(v), tuple(values))
            return (active, *new), None

        final, _ = lax.scan(scan_step, (jnp.asarray(True), *init), None, length=int(limit))
        return final[1:]

    final = carry.run(attempt)
    st.set(carry.rebuild(final, outside=True))


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
        tensor, _ = _tf_types()
        for i, v in enumerate(values):
            if isinstance(v, Undefined):
                self.layout.append(("static", tree_util.tree_structure(0), [v]))
                continue
            leaves, treedef = tree_util.tree_flatten(v, is_leaf=_is_leaf)
            kinds = []
            for j, leaf in enumerate(leaves):
                kind = _kind(leaf)
                if kind == "variable" and (i, j) in self.variable_leaves:
                    kind = "array"
                if kind in ("array", "number"):
                    x = jnp.asarray(_unwrap(leaf)) if kind == "array" else _number_array(leaf)
                    if (i, j) in self.number_dtypes:
                        x = lax.convert_element_type(x, self.number_dtypes[(i, j)])
                    kinds.append(("dynamic", len(arrays), isinstance(leaf, tensor), kind))
                    arrays.append(x)
                else:
                    kinds.append(("static", leaf))
            self.layout.append(("leaves", treedef, kinds))
        self.avals = [_aval(a) for a in arrays]
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
            leaves = [tree_util.tree_flatten(after[i], is_leaf=_is_leaf) for i in missing]
            box["trees"] = [t for _, t in leaves]
            return [
                [jnp.asarray(_unwrap(x)) if _kind(x) == "array" else _number_array(x) for x in ls]
                for ls, _ in leaves
            ]

        try:
            shapes = jax.eval_shape(once)
        finally:
            st.set(values)
        tensor, _ = _tf_types()
        out = {}
        for i, tree, avals in zip(missing, box["trees"], shapes, strict=True):
            orig = tree_util.tree_flatten(box["after"][i], is_leaf=_is_leaf)[0]
            zeros = [
                _wrap(jnp.zeros(a.shape, a.dtype), isinstance(o, tensor))
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
                    flat.append(_wrap(arrays[leaf[1]], as_tensor))
            values.append(tree_util.tree_unflatten(treedef, flat))
        return values

    def after_iteration(self, values):
        """The new carry after one iteration, checked against the state before the loop."""
        st = self.st
        st.forget_new_variables()
        tensor, _ = _tf_types()
        out = []
        for i, ((kind, treedef, leaves), v) in enumerate(zip(self.layout, values, strict=True)):
            name = st.names[i]
            if kind == "static":
                continue
            if isinstance(v, Undefined):
                raise ValueError(f"'{name}' must be defined before the loop.")
            flat, new_tree = tree_util.tree_flatten(v, is_leaf=_is_leaf)
            if new_tree != treedef:
                raise TypeError(
                    f"'{name}' does not have the same nested structure after one iteration.\n\n"
                    f"  before: {treedef}\n  after: {new_tree}"
                )
            for j, (leaf, x) in enumerate(zip(leaves, flat, strict=True)):
                if leaf[0] == "static":
                    if not _same_static(leaf[1], x):
                        if _kind(leaf[1]) == "variable" and _kind(x) in ("array", "variable"):
                            self.variable_leaves.add((i, j))
                            raise _Retrace
                        raise TypeError(
                            f"'{name}' is {_safe_repr(leaf[1])} before the loop at {self.where} "
                            f"but {_safe_repr(x)} after one iteration; a loop over traced values "
                            "can only change arrays (or numbers) from one iteration to the next"
                        )
                    continue
                if _kind(x) not in ("array", "number", "variable"):
                    raise TypeError(
                        f"'{name}' is an array before the loop at {self.where} but "
                        f"{_safe_repr(x)} after one iteration"
                    )
                if isinstance(x, tensor):
                    self.tensor_leaves.add((i, j))
                new = jnp.asarray(_unwrap(x))
                before = self.avals[leaf[1]]
                if new.shape != before.shape:
                    raise ValueError(
                        f"'{name}' has shape {before.shape} before the loop, but shape "
                        f"{new.shape} after one iteration. A loop over traced values keeps each "
                        "variable's shape (lax.while_loop / lax.scan carry); pad it to a fixed "
                        "shape before the loop."
                    )
                if new.dtype != before.dtype:
                    new_weak = _aval(new).weak_type
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


# --------------------------------------------------------------------------------------------------
# print
# --------------------------------------------------------------------------------------------------


def print_(fn, *args, **kwargs):
    """`fn(*args)` where `fn` may be `print`: with traced arguments, print their values when the
    program runs (`jax.debug.callback`), not once while tracing."""
    if fn is not builtins.print or not builtins.any(is_traced(a) for a in args):
        return fn(*args, **kwargs)
    traced = [i for i, a in enumerate(args) if is_traced(a)]
    values = [_unwrap(args[i]) for i in traced]

    def show(*arrays):
        out = list(args)
        for i, a in zip(traced, arrays, strict=True):
            out[i] = np.asarray(a)
        builtins.print(*out, **kwargs)

    jax.debug.callback(show, *values)
