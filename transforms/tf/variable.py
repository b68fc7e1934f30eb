"""`Variable`: mutable state whose reads are watched by tapes (TF semantics)."""

from __future__ import annotations

import itertools

import jax
import numpy as np

from .core import state, visible_recorders
from .module import scoped_name
from .tensor import ArrayTyped, Tensor, _as_value

_names = itertools.count()

# Objects that stand for a Variable elsewhere (tf.keras registers one: a Keras Variable -> its
# twin). Each maps an object to its Variable, or returns None.
stand_ins: list = []


def as_variable(x):
    """`x` itself, or what stands for it: a Keras Variable's twin (its value, a Tensor, inside
    a Keras call being recorded)."""
    for find in stand_ins:
        v = find(x)
        if v is not None:
            return v
    return x


class Variable(ArrayTyped):
    """A mutable tensor. Trainable variables read inside a `GradientTape` are watched.

    Args:
      initial_value: the starting value (or a callable returning it).
      trainable: whether tapes watch it automatically.
      name: its name (`"Variable"` by default); `.name` adds TF's `":0"`.
      dtype: the dtype to convert `initial_value` to.

    Example:
      >>> v = tf.Variable(3.0)
      >>> v.assign_add(1.0).numpy()
      4.0
    """

    __array_priority__ = 100

    def __init__(self, initial_value=None, trainable=True, name=None, dtype=None, shape=None):
        if initial_value is None:
            raise ValueError("initial_value must be specified.")
        # Concrete even when created while tf.function traces (optimizer slots on a first call).
        with jax.ensure_compile_time_eval():
            if callable(initial_value):
                initial_value = initial_value()
            value = _as_value(initial_value, dtype)
        if isinstance(value, jax.core.Tracer):
            raise ValueError(
                "tf.Variable created from a symbolic tensor inside tf.function; create "
                "Variables outside the function (or on its first call from concrete values)."
            )
        self._value = value
        self._trainable = bool(trainable)
        self._name = scoped_name(name if name is not None else "Variable")
        self._uid = next(_names)
        del shape
        if state.created_log is not None:
            state.created_log.append(self)

    # --- reads ------------------------------------------------------------------------------------
    def _current(self):
        if state.read_log is not None:
            state.read_log.append(self)
        lifted = state.var_values
        if lifted is not None:
            if id(self) in lifted:
                return lifted[id(self)]
            if state.var_log is not None:
                state.var_log.append(self)
            if state.var_lift is not None:
                lifted[id(self)] = state.var_lift(self)
                return lifted[id(self)]
        return self._value

    def _read_value_for_op(self) -> Tensor:
        """A read of the variable: a new tensor that watching tapes count as a use of it."""
        t = Tensor(self._current())
        for r in visible_recorders():
            r._record_read(self, t)
        return t

    def value(self) -> Tensor:
        return self._read_value_for_op()

    def read_value(self) -> Tensor:
        return self._read_value_for_op()

    # --- writes -----------------------------------------------------------------------------------
    def _new_value(self, value):
        if isinstance(value, Tensor | Variable):
            new = value._read_value_for_op()._value if isinstance(value, Variable) else value._value
            if np.dtype(new.dtype) != self.dtype:
                raise TypeError(
                    f"Cannot assign a value of dtype {np.dtype(new.dtype).name} to variable "
                    f"{self._name!r} of dtype {self.dtype.name}; tf.cast it first."
                )
        else:
            new = _as_value(value, self.dtype)
        if tuple(new.shape) != tuple(self._value.shape):
            raise ValueError(
                f"Cannot assign a value of shape {tuple(new.shape)} to variable {self._name!r} "
                f"of shape {tuple(self._value.shape)}."
            )
        return new

    def _write(self, new):
        lifted = state.var_values
        if lifted is not None:
            if id(self) not in lifted:
                if state.var_log is not None:
                    state.var_log.append(self)
                if state.var_lift is not None:
                    state.var_lift(self)  # an input too: the program starts from its value
            lifted[id(self)] = new
        else:
            if isinstance(new, jax.core.Tracer):
                raise ValueError(
                    f"Assigning a symbolic value to variable {self._name!r} outside the "
                    "tf.function that computed it."
                )
            self._value = self._placed(new)
        return self

    def _placed(self, new):
        """`new` on the devices, and with the sharding, of the current value.

        As in TF a variable keeps its placement when assigned: a parameter sharded over a mesh
        stays sharded the same way after an update, whatever layout the update came in.
        """
        old = self._value
        if (
            isinstance(old, jax.Array)
            and isinstance(new, jax.Array)
            and new.sharding != old.sharding
        ):
            return jax.device_put(new, old.sharding)
        return new

    def assign(self, value, use_locking=None, name=None, read_value=True):
        """Set the value (same shape and dtype). Returns the variable."""
        return self._write(self._new_value(value))

    def assign_add(self, delta, use_locking=None, name=None, read_value=True):
        """Add `delta` to the value. Returns the variable."""
        delta = self._new_value(delta)
        return self._write(self._current() + delta)

    def assign_sub(self, delta, use_locking=None, name=None, read_value=True):
        """Subtract `delta` from the value. Returns the variable."""
        delta = self._new_value(delta)
        return self._write(self._current() - delta)

    # --- metadata ---------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"{self._name}:0"

    @property
    def trainable(self) -> bool:
        return self._trainable

    def numpy(self):
        """The current value as NumPy (a NumPy scalar for rank 0)."""
        return Tensor(self._current()).numpy()

    def __array__(self, dtype=None, copy=None):
        arr = np.asarray(self._current())
        return arr if dtype is None else arr.astype(dtype)

    def __jax_array__(self):
        return self._current()

    def __float__(self):
        return float(self._current())

    def __int__(self):
        return int(self._current())

    def __index__(self):
        return int(self._current())

    def __bool__(self):
        return bool(self._read_value_for_op())

    def __len__(self):
        return len(Tensor(self._current()))

    def __iter__(self):
        return iter(self._read_value_for_op())

    __hash__ = None  # as in TF2: compare elementwise; use .ref() as a dict key

    def ref(self):
        from .tensor import _Ref

        return _Ref(self)

    def __repr__(self):
        text = repr(self.numpy()) if self.ndim else str(self.numpy())
        if "\n" in text:
            text = "\n" + text
        return (
            f"<tf.Variable '{self.name}' shape={tuple(self.shape)} dtype={self.dtype.name}, "
            f"numpy={text}>"
        )

    __str__ = __repr__

    def __format__(self, spec):
        return format(self.numpy(), spec)
