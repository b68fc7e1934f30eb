"""`GradientTape`: records eager ops and differentiates them with the functional core.

`gradient` collects the recorded ops that lead from the sources to the target, replays them as
a pure function of the sources' values (`_Plan.replay`) and differentiates that with
`transforms.vjp`. The differentiation is itself one op (`apply(..., generator=tape)`), so a tape
recording outside sees it and can differentiate it again: nested tapes give higher derivatives.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from .. import api, engine
from ..zeros import instantiate
from .core import apply, state
from .nests import (
    UnconnectedGradients,
    _unconnected,
    flatten,
    in_order_of,
    skeleton,
    unflatten_like,
)
from .replay import (
    _Node,
    _Plan,
)
from .tensor import Tensor, is_float
from .variable import Variable

__all__ = [
    "GradientTape",
    "UnconnectedGradients",
    "flatten",
    "in_order_of",
    "skeleton",
    "unflatten_like",
]


class GradientTape:
    """Record operations for automatic differentiation (TF's `tf.GradientTape`).

    Inside `with GradientTape() as tape:`, ops on watched tensors and on trainable Variables are
    recorded; `tape.gradient(target, sources)` differentiates them with `transforms.vjp`.

    Args:
      persistent: allow several `gradient`/`jacobian` calls (otherwise one, then freed).
      watch_accessed_variables: watch trainable Variables read inside automatically.

    Example:
      >>> x = tf.Variable(3.0)
      >>> with tf.GradientTape() as tape: y = x * x
      >>> tape.gradient(y, x).numpy()
      6.0
    """

    def __init__(self, persistent=False, watch_accessed_variables=True):
        self._persistent = bool(persistent)
        self._watch_accessed = bool(watch_accessed_variables)
        self._recording = False
        self._stopped = 0
        self._used = False
        self._clear()

    def _clear(self):
        self._nodes: list[_Node] = []
        self._tracked: dict[int, Tensor] = {}  # id -> tensor: watched, or computed from watched
        self._reads: dict[int, list[Tensor]] = {}  # id(variable) -> its watched reads
        self._watched_vars: dict[int, Variable] = {}
        self._explicit_vars: set[int] = set()

    # --- context ----------------------------------------------------------------------------------
    def __enter__(self):
        if self._recording:
            raise ValueError(
                "Tape is still recording, This can happen if you try to re-enter an "
                "already-active tape."
            )
        state.recorders.append(self)
        self._recording = True
        return self

    def __exit__(self, *exc):
        self._pop()
        return False

    def _pop(self):
        if self in state.recorders:
            state.recorders.remove(self)
        self._recording = False

    def _is_recording(self) -> bool:
        return self._recording and not self._stopped

    def _records_own_gradients(self) -> bool:
        return self._persistent and self._is_recording()

    # --- recording (called by core.apply and Variable reads) --------------------------------------
    def _record(self, fn, inputs, outputs):
        if not self._is_recording():
            return
        tracked = self._tracked
        if not any(id(t) in tracked for t in inputs):
            return
        self._nodes.append(_Node(fn, list(inputs), outputs))
        for o in outputs:
            if is_float(o.dtype):
                tracked[id(o)] = o

    def _record_read(self, var, t):
        if not self._is_recording():
            return
        if id(var) in self._explicit_vars or (self._watch_accessed and var.trainable):
            self._watched_vars.setdefault(id(var), var)
            if is_float(t.dtype):
                self._tracked[id(t)] = t
                self._reads.setdefault(id(var), []).append(t)

    # --- public API -------------------------------------------------------------------------------
    def watch(self, tensor):
        """Watch a tensor, a Variable, or a nest of them: gradients can be taken with respect to it.

        Example:
          >>> a = tf.constant(2.0)
          >>> with tf.GradientTape() as t: t.watch(a); b = a * a
          >>> t.gradient(b, a).numpy()
          4.0
        """
        leaves, _ = flatten(tensor)
        for x in leaves:
            if isinstance(x, Variable):
                self._explicit_vars.add(id(x))
                self._watched_vars.setdefault(id(x), x)
            elif isinstance(x, Tensor):
                if is_float(x.dtype):
                    self._tracked[id(x)] = x
            else:
                raise ValueError(
                    f"Passed in object {x!r} of type {type(x).__name__!r}, not tf.Tensor or "
                    "tf.Variable; wrap it with tf.constant(...) before watching it."
                )

    def watched_variables(self):
        """The Variables this tape watched, in creation order (TF keeps them ordered by
        variable id), also after a non-persistent tape's `gradient`."""
        return tuple(sorted(self._watched_vars.values(), key=lambda v: v._uid))

    class _StopRecording:
        def __init__(self, tape):
            self.tape = tape

        def __enter__(self):
            if not self.tape._recording:
                raise ValueError("Tape must be recording (inside its `with` block) to stop it.")
            self.tape._stopped += 1

        def __exit__(self, *exc):
            self.tape._stopped -= 1
            return False

    def stop_recording(self):
        """A context in which this tape records nothing.

        Example:
          >>> with tf.GradientTape() as t:
          ...     with t.stop_recording(): y = x * x   # not differentiated
        """
        return GradientTape._StopRecording(self)

    def reset(self):
        """Forget everything recorded so far (the tape keeps recording if inside its block)."""
        self._clear()
        self._used = False

    def _check_usable(self):
        if self._used:
            raise RuntimeError(
                "A non-persistent GradientTape can only be used to compute one set of gradients "
                "(or jacobians); create it with persistent=True to call gradient more than once."
            )
        if self._recording and not self._persistent:
            # TF stops a non-persistent tape that is asked for gradients inside its block.
            self._pop()

    def _release(self):
        if not self._persistent:
            self._used = True
            watched = self._watched_vars
            self._clear()
            # TF frees the recorded ops but still reports what the tape watched.
            self._watched_vars = watched

    def _leaves_of(self, sources):
        """Per source: the recorded tensors that stand for it (a Variable's watched reads)."""
        per_source = []
        for s in sources:
            if isinstance(s, Variable):
                per_source.append(
                    list(self._reads.get(id(s), ())) if id(s) in self._watched_vars else []
                )
            elif isinstance(s, Tensor):
                per_source.append([s] if id(s) in self._tracked else [])
            else:
                raise ValueError(
                    f"Sources must be tf.Tensor or tf.Variable (or nests of them), got "
                    f"{type(s).__name__}."
                )
        return per_source

    def _targets_of(self, target, what="target"):
        if target is None:
            raise TypeError(
                f"Argument `{what}` should be a list or nested structure of Tensors or Variables "
                "to be differentiated, but received None."
            )
        flat, tree = flatten(target)
        out = []
        for t in flat:
            if isinstance(t, Variable):
                # A value, not a recorded read: TF differentiates a target Variable as its
                # handle, so it is connected to itself only (see _add_self_gradients).
                t = Tensor(t._current())
            if not isinstance(t, Tensor):
                raise TypeError(
                    f"Argument `{what}` holds {type(t).__name__}, not a Tensor or Variable."
                )
            out.append(t)
        return out, tree

    def gradient(
        self,
        target,
        sources,
        output_gradients=None,
        unconnected_gradients=UnconnectedGradients.NONE,
    ):
        """Gradient of `target` (summed over its elements and leaves) with respect to `sources`.

        Args:
          target: a Tensor or Variable, or a nest of them (their sum is differentiated).
          sources: a Tensor or Variable, or a nest of them; the result has this structure.
          output_gradients: cotangents for `target` (same structure); ones by default.
          unconnected_gradients: `NONE` (None for unconnected sources) or `ZERO` (zeros).

        Returns:
          The gradients, structured like `sources`; None for sources that are unconnected,
          unwatched or not floating point (zeros with `UnconnectedGradients.ZERO`).

        Example:
          >>> with tf.GradientTape() as t: y = w * w
          >>> t.gradient(y, w)
        """
        mode = _unconnected(unconnected_gradients)
        self._check_usable_no_pop()
        targets, _ = self._targets_of(target)
        src_flat, src_tree = flatten(sources)
        all_seeds = self._seeds(targets, output_gradients)
        self._check_usable()
        per_source = self._leaves_of(src_flat)
        plan = _Plan(self._nodes, [t for ts in per_source for t in ts], targets)
        seeds = [s for s, m in zip(all_seeds, plan.target_masks, strict=True) if m]
        leaf_grads = {}
        if plan.leaves:
            n_in = len(plan.in_ids)

            n_leaves = len(plan.leaves)
            nonzeros = (True,) * n_leaves + (False,) * (n_in - n_leaves)

            def grad_op(*values):
                # The replay differentiated by the engine directly: eagerly, one cached
                # compiled program per recorded structure (forward and backward fused).
                closed = plan.closed(values[:n_in])
                _, cts = engine.value_and_grad_flat(
                    closed, list(values[:n_in]), nonzeros, list(values[n_in:])
                )
                return tuple(instantiate(c) for c in cts)

            grads = apply(grad_op, [*plan.leaves, *plan.boundary, *seeds], generator=self)
            leaf_grads = {id(t): g for t, g in zip(plan.leaves, grads, strict=True)}
        result = [
            self._sum_leaves([leaf_grads[id(t)] for t in ts if id(t) in leaf_grads], s, mode)
            for ts, s in zip(per_source, src_flat, strict=True)
        ]
        self._add_self_gradients(result, flatten(target)[0], all_seeds, src_flat)
        self._release()
        return unflatten_like(sources, src_tree, result)

    def _add_self_gradients(self, result, target_flat, seeds, src_flat, jacobian=False):
        """Add d target / d target for each target that is itself a source (TF: the seed, or
        an identity Jacobian for `jacobian`), watched or not. A watched Tensor
        target is already its own leaf in the plan, so only the other cases are added here."""
        for i, s in enumerate(src_flat):
            if isinstance(s, Tensor) and id(s) in self._tracked:
                continue
            own = []
            for j, t in enumerate(target_flat):
                if t is not s or not is_float(s.dtype):
                    continue
                if not jacobian:
                    own.append(seeds[j])
                else:
                    n = math.prod(s.shape)
                    eye = jnp.eye(n, dtype=s.dtype).reshape(tuple(s.shape) * 2)
                    own.append(Tensor(eye))
            if not own:
                continue
            parts = ([result[i]] if result[i] is not None else []) + own
            result[i] = parts[0] if len(parts) == 1 else self._sum_leaves(parts, s, None)

    def _check_usable_no_pop(self):
        if self._used:
            self._check_usable()

    def _seeds(self, targets, output_gradients):
        if output_gradients is None:
            return [Tensor(np.ones(t.shape, t.dtype)) for t in targets]
        og_flat, _ = flatten(output_gradients)
        if len(og_flat) != len(targets):
            raise ValueError(
                f"output_gradients has {len(og_flat)} entries but target has {len(targets)}; "
                "give one cotangent per target tensor (None for ones)."
            )
        seeds = []
        for g, t in zip(og_flat, targets, strict=True):
            if g is None:
                seeds.append(Tensor(jnp.ones(t.shape, t.dtype)))
                continue
            g = g._read_value_for_op() if isinstance(g, Variable) else g
            g = g if isinstance(g, Tensor) else Tensor(jnp.asarray(g, t.dtype))
            if tuple(g.shape) != tuple(t.shape):
                raise ValueError(
                    f"Mismatch in shape: output_gradients of shape {tuple(g.shape)} for a "
                    f"target of shape {tuple(t.shape)}."
                )
            if g.dtype != t.dtype and is_float(t.dtype):
                g = Tensor(g._value.astype(t.dtype))
            seeds.append(g)
        return seeds

    def _sum_leaves(self, grads, source, mode):
        if not grads:
            if mode is UnconnectedGradients.ZERO:
                value = source._current() if isinstance(source, Variable) else source._value
                return Tensor(jnp.zeros(value.shape, value.dtype))
            return None
        if len(grads) == 1:
            return grads[0]

        def add_n(*gs):
            total = gs[0]
            for g in gs[1:]:
                total = total + g
            return total

        return apply(add_n, grads, generator=self)

    def jacobian(
        self,
        target,
        sources,
        unconnected_gradients=UnconnectedGradients.NONE,
        parallel_iterations=None,
        experimental_use_pfor=True,
    ):
        """Jacobian of `target` with respect to `sources`: each block has shape
        `target.shape + source.shape`.

        A nested target is allowed (TF accepts only one tensor): the result has the target
        structure outside and the source structure inside.

        Example:
          >>> with tf.GradientTape() as t: y = x * x          # x of shape [3], watched
          >>> t.jacobian(y, x).shape
          TensorShape([3, 3])
        """
        del parallel_iterations, experimental_use_pfor
        mode = _unconnected(unconnected_gradients)
        self._check_usable_no_pop()
        targets, tgt_tree = self._targets_of(target)
        src_flat, src_tree = flatten(sources)
        self._check_usable()
        per_source = self._leaves_of(src_flat)
        plan = _Plan(self._nodes, [t for ts in per_source for t in ts], targets)
        blocks = {}
        if plan.leaves:
            n_leaves, n_in = len(plan.leaves), len(plan.in_ids)

            def jacobian_op(*values):
                f = plan.replay(values[n_leaves:n_in])
                outs, pullback = api.vjp(f, *values[:n_leaves])
                result = []
                for j, out in enumerate(outs):

                    def row(ct, j=j):
                        cts = [jnp.zeros_like(o) for o in outs]
                        cts[j] = ct.reshape(outs[j].shape)
                        return pullback(cts)

                    basis = jnp.eye(out.size, dtype=out.dtype)
                    rows = jax.vmap(row)(basis)
                    result += [
                        r.reshape(out.shape + v.shape)
                        for r, v in zip(rows, values[:n_leaves], strict=True)
                    ]
                return tuple(result)

            flat = apply(jacobian_op, [*plan.leaves, *plan.boundary], generator=self)
            it = iter(flat)
            for tgt in plan.targets:
                for leaf in plan.leaves:
                    blocks[(id(tgt), id(leaf))] = next(it)
        tgt_results = []
        target_flat, _ = flatten(target)
        for t, orig, tmask in zip(targets, target_flat, plan.target_masks, strict=True):
            row = []
            for ts, s in zip(per_source, src_flat, strict=True):
                grads = [
                    blocks[(id(t), id(leaf))]
                    for leaf, bit in zip(plan.leaves, plan.leaf_bits, strict=True)
                    if any(leaf is x for x in ts) and bit & tmask
                ]
                if not grads and mode is UnconnectedGradients.ZERO:
                    value = s._current() if isinstance(s, Variable) else s._value
                    row.append(Tensor(jnp.zeros(t.shape + value.shape, value.dtype)))
                else:
                    row.append(self._sum_leaves(grads, s, UnconnectedGradients.NONE))
            self._add_self_gradients(row, [orig], [None], src_flat, jacobian=True)
            tgt_results.append(unflatten_like(sources, src_tree, row))
        self._release()
        return unflatten_like(target, tgt_tree, tgt_results)

    def batch_jacobian(
        self,
        target,
        source,
        unconnected_gradients=UnconnectedGradients.NONE,
        parallel_iterations=None,
        experimental_use_pfor=True,
    ):
        """Per-example Jacobians: `target[i]` with respect to `source[i]`, for each row i.

        Assumes rows do not interact. The result has shape
        `[batch] + target.shape[1:] + source.shape[1:]`.

        Example:
          >>> with tf.GradientTape() as t: y = x ** 2           # x of shape [4, 3], watched
          >>> t.batch_jacobian(y, x).shape
          TensorShape([4, 3, 3])
        """
        del parallel_iterations, experimental_use_pfor
        mode = _unconnected(unconnected_gradients)
        self._check_usable_no_pop()
        (t,), _ = self._targets_of(target)
        (s,), _ = flatten(source)
        if not t.shape or not s.shape or t.shape[0] != s.shape[0]:
            raise ValueError(
                f"batch_jacobian needs target and source with the same leading (batch) "
                f"dimension; got shapes {tuple(t.shape)} and {tuple(s.shape)}."
            )
        self._check_usable()
        (leaves,) = self._leaves_of([s])
        plan = _Plan(self._nodes, leaves, [t])
        if not plan.leaves:
            self._release()
            if mode is UnconnectedGradients.ZERO:
                return Tensor(jnp.zeros(t.shape + s.shape[1:], s.dtype))
            return None
        n_leaves, n_in = len(plan.leaves), len(plan.in_ids)
        batch, rest = t.shape[0], t.shape[1:]
        size = math.prod(rest)

        def batch_jacobian_op(*values):
            f = plan.replay(values[n_leaves:n_in])
            (out,), pullback = api.vjp(f, *values[:n_leaves])

            def row(e):  # the same output coordinate for every example at once
                ct = jnp.broadcast_to(e.reshape(rest), out.shape)
                return pullback([ct])

            basis = jnp.eye(size, dtype=out.dtype)
            rows = jax.vmap(row)(basis)  # per leaf: [size, batch, *source_rest]
            result = []
            for r, v in zip(rows, values[:n_leaves], strict=True):
                r = jnp.moveaxis(r, 0, 1)
                result.append(r.reshape((batch, *rest, *v.shape[1:])))
            return tuple(result)

        grads = apply(batch_jacobian_op, [*plan.leaves, *plan.boundary], generator=self)
        out = self._sum_leaves(list(grads), s, mode)
        self._release()
        return out
