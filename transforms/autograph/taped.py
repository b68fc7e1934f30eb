"""A converted loop under a recording GradientTape inside tf.function: one operation on the tape.

A loop on traced values becomes `lax.while_loop` / `lax.scan`, whose body a tape cannot record
op by op. So the whole loop is recorded as one operation: a function from the loop's initial
state, and from the tensors its body reads that a tape tracks, to its final state. The tape's
gradient differentiates that function with our engine, as any other op (reverse mode through
the loop: `rules/while_reverse.py`), which is what TensorFlow's tape does with `tf.while_loop`.

Finding the tensors the body reads takes one trace of the loop with a recorder that only looks
(`_Capture`); the operation then traces it again with those tensors as arguments.
"""

from __future__ import annotations

from jax import tree_util

from .values import is_leaf, leaf_kind, number_array, tf_types, unwrap, wrap


def supported() -> bool:
    """Whether every recorder is a GradientTape (a ForwardAccumulator sees no loop op)."""
    from ..tf.core import state
    from ..tf.tape import GradientTape

    return all(isinstance(r, GradientTape | _Capture) for r in state.recorders)


class _Capture:
    """A recorder that records nothing: it notes the tracked tensors and the Variables that the
    loop body uses."""

    def __init__(self, tracked: dict):
        self._tracked = tracked  # what a loop nested in the body asks of its recorders
        self.inputs: dict = {}  # id -> Tensor tracked by a tape before the loop
        self.variables: dict = {}  # id -> Variable read inside the loop

    def _record(self, fn, inputs, outputs):
        for t in inputs:
            if id(t) in self._tracked:
                self.inputs.setdefault(id(t), t)

    def _record_read(self, var, t):
        self.variables.setdefault(id(var), var)


def _recorders(new):
    from ..tf.core import state

    old, state.recorders = state.recorders, new
    return old


def record_loop(st, run_loop):
    """Run the converted loop `run_loop()` over state `st` as one op of the recording tapes."""
    from ..tf.core import apply, state

    tensor, _ = tf_types()
    tapes = list(state.recorders)
    tracked = {k: t for tape in tapes for k, t in tape._tracked.items()}
    init = st.get()

    # 1. Which tracked tensors and Variables the body reads.
    capture = _Capture(tracked)
    saved = _recorders([capture])
    try:
        run_loop()
    finally:
        _recorders(saved)
        st.set(init)
    captured = list(capture.inputs.values())

    # 2. The loop's initial state as tensors: the state's own tensors (a tracked one keeps its
    # identity, so the tape links it), reads of the lifted Variables the body reads.
    leaves, treedefs = [], []
    for v in init:
        flat, treedef = tree_util.tree_flatten(v, is_leaf=is_leaf)
        leaves.append(flat)
        treedefs.append(treedef)
    n_user = len(init) - len(st.keys)
    inputs, slots = [], []  # slots: (value index, leaf index) of each state input
    for i, flat in enumerate(leaves):
        for j, leaf in enumerate(flat):
            kind = leaf_kind(leaf)
            if i >= n_user:  # a lifted Variable's value
                var = capture.variables.get(st.keys[i - n_user])
                inputs.append(var._read_value_for_op() if var is not None else tensor(leaf))
            elif kind == "array":
                inputs.append(leaf if isinstance(leaf, tensor) else tensor(unwrap(leaf)))
            elif kind == "number":
                inputs.append(tensor(number_array(leaf)))
            else:
                continue
            slots.append((i, j))
    n_state = len(inputs)
    box = {}

    def loop_op(*arrays):
        # The loop as a function of arrays: the captured tensors hold the arguments meanwhile.
        old_values = [t._value for t in captured]
        saved = _recorders([])
        try:
            for t, a in zip(captured, arrays[n_state:], strict=True):
                t._value = a
            start = [list(flat) for flat in leaves]
            for (i, j), a in zip(slots, arrays[:n_state], strict=True):
                start[i][j] = wrap(a, i < n_user)
            st.set(
                [tree_util.tree_unflatten(t, flat) for t, flat in zip(treedefs, start, strict=True)]
            )
            run_loop()
            final = st.get()
        finally:
            for t, v in zip(captured, old_values, strict=True):
                t._value = v
            _recorders(saved)
            st.set(init)
        outs, layout = [], []
        for v in final:
            flat, treedef = tree_util.tree_flatten(v, is_leaf=is_leaf)
            kinds = []
            for leaf in flat:
                if leaf_kind(leaf) in ("array", "number"):
                    kinds.append(("out", len(outs)))
                    outs.append(unwrap(leaf) if leaf_kind(leaf) == "array" else leaf)
                else:
                    kinds.append(("static", leaf))
            layout.append((treedef, kinds))
        box["layout"] = layout
        return tuple(number_array(o) if not hasattr(o, "dtype") else o for o in outs)

    results = apply(loop_op, [*inputs, *captured])
    results = results if isinstance(results, tuple) else (results,)
    final = []
    for treedef, kinds in box["layout"]:
        flat = [results[k[1]] if k[0] == "out" else k[1] for k in kinds]
        final.append(tree_util.tree_unflatten(treedef, flat))
    st.set(final)
