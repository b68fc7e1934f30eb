"""`ForwardAccumulator`: forward-mode derivatives of eager ops, on `transforms.jvp`."""

from __future__ import annotations

import jax.numpy as jnp
from jax import tree_util

from .. import api
from .core import apply, state
from .tape import UnconnectedGradients, _unconnected, flatten
from .tensor import Tensor, _as_value, is_float
from .variable import Variable


class ForwardAccumulator:
    """Compute Jacobian-vector products of eager ops (TF's `tf.autodiff.ForwardAccumulator`).

    Inside `with ForwardAccumulator(primals, tangents) as acc:`, each op on a tensor with a
    tangent gets its output tangent from `transforms.jvp`; `acc.jvp(t)` returns it. The tangent
    computations are ops themselves, so an enclosing tape can differentiate them (and the
    accumulator sees an inner tape's gradient), which gives Hessian-vector products.

    Example:
      >>> with tf.autodiff.ForwardAccumulator(x, tf.constant(1.0)) as acc: y = x * x
      >>> acc.jvp(y).numpy()   # 2 * x
      6.0
    """

    def __init__(self, primals, tangents):
        p_flat, p_tree = flatten(primals)
        t_flat, t_tree = flatten(tangents)
        if p_tree != t_tree:
            raise ValueError(
                f"primals and tangents must have the same structure; got {p_tree} and {t_tree}."
            )
        self._tangents: dict[int, Tensor] = {}
        self._alive: dict[int, Tensor] = {}  # keeps ids stable while tangents are held
        self._var_tangents: dict[int, Tensor] = {}
        for p, t in zip(p_flat, t_flat, strict=True):
            if not isinstance(p, Tensor | Variable):
                raise TypeError(
                    f"ForwardAccumulator primals must be Tensors or Variables, got {type(p)}."
                )
            if not is_float(p.dtype):
                continue
            t = t if isinstance(t, Tensor) else Tensor(_as_value(t, p.dtype))
            if tuple(t.shape) != tuple(p.shape):
                raise ValueError(
                    f"Tangent of shape {tuple(t.shape)} for a primal of shape {tuple(p.shape)}."
                )
            if t.dtype != p.dtype:
                t = Tensor(t._value.astype(p.dtype))
            if isinstance(p, Variable):
                self._var_tangents[id(p)] = t
            else:
                self._set(p, t)
        self._active = False

    def _set(self, primal, tangent):
        self._tangents[id(primal)] = tangent
        self._alive[id(primal)] = primal

    def __enter__(self):
        state.recorders.append(self)
        self._active = True
        return self

    def __exit__(self, *exc):
        if self in state.recorders:
            state.recorders.remove(self)
        self._active = False
        return False

    def _record_read(self, var, t):
        tangent = self._var_tangents.get(id(var))
        if tangent is not None:
            self._set(t, tangent)

    def _record(self, fn, inputs, outputs):
        idx = [i for i, t in enumerate(inputs) if id(t) in self._tangents]
        out_idx = [i for i, o in enumerate(outputs) if is_float(o.dtype)]
        if not idx or not out_idx:
            return
        n = len(inputs)

        def jvp_op(*values):
            primals, tangents = values[:n], values[n:]

            def f(*diff):
                full = list(primals)
                for i, v in zip(idx, diff, strict=True):
                    full[i] = v
                res = fn(*full)
                res = res if isinstance(res, tuple | list) else (res,)
                return [res[i] for i in out_idx]

            _, out_dot = api.jvp(f, [primals[i] for i in idx], list(tangents))
            return tuple(out_dot)

        tangents = [self._tangents[id(inputs[i])] for i in idx]
        out_dots = apply(jvp_op, [*inputs, *tangents], generator=self)
        for i, t in zip(out_idx, out_dots, strict=True):
            self._set(outputs[i], t)

    def jvp(self, primals, unconnected_gradients=UnconnectedGradients.NONE):
        """The tangent of each tensor in `primals` (a nest): None (or zeros) when unconnected."""
        mode = _unconnected(unconnected_gradients)
        flat, tree = flatten(primals)
        out = []
        for p in flat:
            if isinstance(p, Variable):
                t = self._var_tangents.get(id(p))
            else:
                t = self._tangents.get(id(p))
            if t is None and mode is UnconnectedGradients.ZERO:
                value = p._current() if isinstance(p, Variable) else p._value
                t = Tensor(jnp.zeros(value.shape, value.dtype))
            out.append(t)
        return tree_util.tree_unflatten(tree, out)
