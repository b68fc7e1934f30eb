"""Converted `if` statements, conditional expressions and `and` / `or` / `not`: Python on
concrete values, `lax.cond` (or, under a recording tape inside tf.function, `where`) on traced
ones."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax, tree_util

from ..interpreter import eval_jaxpr
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
    st = State(get_state, set_state, names, live)
    pred = predicate(cond, f"the `if` at {where}")
    if tape_recording():
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
    tensor, _ = tf_types()
    for v in values:
        leaves, treedef = tree_util.tree_flatten(v, is_leaf=is_leaf)
        descs = []
        for leaf in leaves:
            kind = leaf_kind(leaf)
            if kind == "array":
                descs.append(("array", len(arrays), isinstance(leaf, tensor)))
                arrays.append(jnp.asarray(unwrap(leaf)))
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
    tensor, _ = tf_types()
    pred = cond if isinstance(cond, tensor) else tensor(unwrap(cond))
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
                    x = tensor(_as_dtype(unwrap(x), leaf[1], leaf[2]))
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
            if a[0] != "array" and b[0] != "array" and same_static(a[1], b[1]):
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
                avals[k][d[1]] if d[0] == "array" else aval_of(jnp.asarray(d[1]))
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
    return safe_repr(desc[1])


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
                    x = arrays[desc[1]] if desc[0] == "array" else number_array(desc[1])
                    outs.append(_as_dtype(x, leaf[1], leaf[2]))
        return outs

    return branch


def _as_dtype(x, dtype, weak):
    x = jnp.asarray(x)
    if x.dtype == dtype and (weak or not aval_of(x).weak_type):
        return x
    return lax.convert_element_type(x, dtype) if not weak else jnp.asarray(x, dtype)


def _assemble(plan, outs):
    it = iter(outs)
    values = []
    for kind, treedef, leaves in plan:
        if kind == "static":
            values.append(tree_util.tree_unflatten(treedef, [d[1] for d in leaves]))
            continue
        flat = [leaf[1] if leaf[0] == "static" else wrap(next(it), leaf[3]) for leaf in leaves]
        values.append(tree_util.tree_unflatten(treedef, flat))
    return values


def if_exp(cond, if_true, if_false, where):
    """`if_true() if cond else if_false()`; a traced `cond` becomes `lax.cond`."""
    if not is_traced(cond):
        return if_true() if cond else if_false()
    pred = predicate(cond, f"the conditional expression at {where}")
    box = {}

    def branch(fn):
        def run():
            leaves, treedef = tree_util.tree_flatten(fn(), is_leaf=is_leaf)
            tensor, _ = tf_types()
            box.setdefault("tensor", set()).update(
                i for i, x in enumerate(leaves) if isinstance(x, tensor)
            )
            box["tree"] = treedef
            return [jnp.asarray(unwrap(x)) for x in leaves]

        return run

    outs = lax.cond(pred, branch(if_true), branch(if_false))
    flat = [wrap(x, i in box["tensor"]) for i, x in enumerate(outs)]
    return tree_util.tree_unflatten(box["tree"], flat)


# --------------------------------------------------------------------------------------------------
# and / or / not
# --------------------------------------------------------------------------------------------------


def _logical(op, a, b):
    tensor, _ = tf_types()
    out = op(jnp.asarray(unwrap(a), bool), jnp.asarray(unwrap(b), bool))
    return wrap(out, isinstance(a, tensor) or isinstance(b, tensor))


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
    tensor, _ = tf_types()
    return wrap(jnp.logical_not(jnp.asarray(unwrap(value), bool)), isinstance(value, tensor))
