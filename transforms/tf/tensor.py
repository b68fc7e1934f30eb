"""`Tensor`: an immutable JAX array with TensorFlow's surface (dtype rules, printing, operators)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

float16 = np.dtype("float16")
bfloat16 = jnp.dtype("bfloat16")
float32 = np.dtype("float32")
float64 = np.dtype("float64")
int8 = np.dtype("int8")
int16 = np.dtype("int16")
int32 = np.dtype("int32")
int64 = np.dtype("int64")
uint8 = np.dtype("uint8")
bool_ = np.dtype("bool")
complex64 = np.dtype("complex64")
complex128 = np.dtype("complex128")
# TF's `tf.bool`; `bool` would shadow the builtin here.
DType = np.dtype


class TensorShape(tuple):
    """A tuple of dimensions that prints like TF's and has `as_list()` and `rank`. A size that
    a `tf.function` signature leaves open (`None`) is symbolic while tracing: it computes like a
    number and shows as None, as in TF."""

    def as_list(self):
        return [None if jax.export.is_symbolic_dim(d) else d for d in self]

    def __repr__(self):
        return f"TensorShape({self.as_list()})"

    def __str__(self):
        dims = ", ".join(str(d) for d in self.as_list())
        return f"({dims},)" if len(self) == 1 else f"({dims})"

    @property
    def rank(self):
        return len(self)

    @property
    def ndims(self):
        return len(self)

    def num_elements(self):
        return int(np.prod(self)) if self else 1


def is_float(dtype) -> bool:
    return jnp.issubdtype(dtype, jnp.inexact)


def _default_dtype(value):
    """TF's dtype for a Python value: float32 for floats, int32 for ints, numpy keeps its own."""
    if isinstance(value, bool):
        return bool_
    if isinstance(value, int):
        return int32
    if isinstance(value, float):
        return float32
    if isinstance(value, complex):
        return complex64
    if isinstance(value, np.ndarray | np.generic | jax.Array):
        return None
    arr = np.asarray(value)
    if arr.dtype == np.float64:
        return float32
    if arr.dtype == np.int64:
        return int32
    if arr.dtype == np.complex128:
        return complex64
    return arr.dtype


def _as_value(value, dtype=None):
    """A jax array (or tracer) for a Python/NumPy/JAX value, with TF's default dtypes."""
    if isinstance(value, Tensor):
        value = value._value
    elif hasattr(value, "_read_value_for_op"):
        value = value._read_value_for_op()._value
    elif isinstance(value, list | tuple):
        value = [_unwrap_nested(v) for v in value]
    if dtype is None:
        dtype = _default_dtype(value)
    if isinstance(value, jax.core.Tracer):
        return value if dtype is None else value.astype(dtype)
    return jnp.asarray(value, dtype=dtype)


def _unwrap_nested(v):
    if isinstance(v, Tensor):
        return np.asarray(v._value) if not isinstance(v._value, jax.core.Tracer) else v._value
    if hasattr(v, "_read_value_for_op"):
        return _unwrap_nested(v._read_value_for_op())
    if isinstance(v, list | tuple):
        return [_unwrap_nested(u) for u in v]
    return v


class ArrayTyped:
    """`shape`, `dtype` and `ndim` of the array in `_value` (shared by Tensor and Variable)."""

    __slots__ = ()

    @property
    def shape(self) -> TensorShape:
        return TensorShape(self._value.shape)

    @property
    def dtype(self):
        return np.dtype(self._value.dtype)

    @property
    def ndim(self) -> int:
        return self._value.ndim

    def get_shape(self) -> TensorShape:
        return self.shape


class Tensor(ArrayTyped):
    """An immutable multi-dimensional array, as TF's eager `tf.Tensor` (a JAX array inside).

    Ops on tensors run at once; while a `GradientTape` records they are also recorded.

    Example:
      >>> t = tf.constant([1.0, 2.0])
      >>> (t * 2).numpy()
      array([2., 4.], dtype=float32)
    """

    # `_keras_mask`: the mask a Keras layer attached (`Embedding(mask_zero=True)`), as Keras does
    # on TF's tensors; a later top-level Keras call reads it (unset when there is none).
    __slots__ = ("_value", "_keras_mask", "__weakref__")
    __array_priority__ = 100

    def __init__(self, value):
        self._value = value

    # --- metadata ---------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        # Eager tensors have no name in TF either; this mirrors the attribute's existence.
        return ""

    # --- conversion -------------------------------------------------------------------------------
    def numpy(self):
        """The value as a NumPy array (a NumPy scalar for rank 0), like TF's `Tensor.numpy()`."""
        if isinstance(self._value, jax.core.Tracer):
            raise TypeError(
                "numpy() is not available on a symbolic tensor inside tf.function; return the "
                "tensor from the function and call numpy() on the result instead."
            )
        arr = np.asarray(self._value)
        return arr[()] if arr.ndim == 0 else arr

    def __array__(self, dtype=None, copy=None):
        arr = np.asarray(self._value)
        return arr if dtype is None else arr.astype(dtype)

    def __jax_array__(self):
        return self._value

    def __float__(self):
        return float(self._value)

    def __int__(self):
        return int(self._value)

    def __index__(self):
        return int(self._value)

    def __bool__(self):
        if isinstance(self._value, jax.core.Tracer):
            raise TypeError(
                "Using a symbolic tensor as a Python bool inside tf.function is not supported "
                "here: AutoGraph converts the `if`/`while`/`for` statements of the decorated "
                "function and of the Python functions it calls (defined with `def`, from a "
                "source file), not lambdas, library code or `bool()` calls. Use tf.cond / "
                "tf.where, or move the branch into a `def` function."
            )
        if self._value.shape != ():
            raise ValueError(
                f"The truth value of a tensor of shape {tuple(self.shape)} is ambiguous; reduce "
                "it first (tf.reduce_any / tf.reduce_all)."
            )
        return bool(self._value)

    def __len__(self):
        if not self._value.shape:
            raise TypeError("Scalar tensor has no `len()`")
        return self._value.shape[0]

    def __iter__(self):
        if not self._value.shape:
            raise TypeError("Cannot iterate over a scalar tensor.")
        return (self[i] for i in range(self._value.shape[0]))

    __hash__ = None  # TF2 tensors compare elementwise, so they are unhashable (as in TF).

    def ref(self):
        return _Ref(self)

    # --- printing ---------------------------------------------------------------------------------
    def __str__(self):
        if isinstance(self._value, jax.core.Tracer):
            return f'Tensor("symbolic", shape={tuple(self.shape)}, dtype={self.dtype.name})'
        text = str(self.numpy())
        if "\n" in text:
            text = "\n" + text
        return f"tf.Tensor({text}, shape={tuple(self.shape)}, dtype={self.dtype.name})"

    def __repr__(self):
        if isinstance(self._value, jax.core.Tracer):
            return f"<tf.Tensor: shape={tuple(self.shape)}, dtype={self.dtype.name} (symbolic)>"
        text = repr(self.numpy()) if self.ndim else str(self.numpy())
        if "\n" in text:
            text = "\n" + text
        return f"<tf.Tensor: shape={tuple(self.shape)}, dtype={self.dtype.name}, numpy={text}>"

    def __format__(self, spec):
        return format(self.numpy(), spec)

    # --- operators (the ops module fills these in; see ops._install_operators) --------------------


class _Ref:
    """A hashable reference to a tensor (TF's `Tensor.ref()`)."""

    __slots__ = ("_t",)

    def __init__(self, t):
        self._t = t

    def deref(self):
        return self._t

    def __hash__(self):
        return id(self._t)

    def __eq__(self, other):
        return isinstance(other, _Ref) and other._t is self._t
