"""`tf.TensorSpec`: the shape (dimensions may be None) and dtype a tensor must have, as used by
`tf.function(input_signature=...)` and `get_concrete_function`."""

from __future__ import annotations

import numpy as np

from .tensor import Tensor, TensorShape


def _dims(shape):
    if shape is None:
        return None
    if isinstance(shape, int):
        return (shape,)
    return tuple(None if d is None else int(d) for d in shape)


def _dtype_name(dtype) -> str:
    return f"tf.{np.dtype(dtype).name}"


class TensorSpec:
    """Describes a tensor: `shape` (None for an unknown dimension, or None for any rank) and
    `dtype` (TF's `tf.TensorSpec`).

    Example:
      >>> spec = tf.TensorSpec([None, 3], tf.float32)
      >>> spec.is_compatible_with(tf.zeros([5, 3]))
      True
    """

    __slots__ = ("_shape", "_dtype", "_name")

    def __init__(self, shape, dtype=np.float32, name=None):
        self._shape = _dims(shape)
        self._dtype = np.dtype(dtype)
        self._name = name

    @classmethod
    def from_tensor(cls, tensor, name=None) -> TensorSpec:
        """The spec of `tensor` (its full shape and dtype)."""
        return cls(tuple(tensor.shape), tensor.dtype, name)

    @property
    def shape(self) -> TensorShape | None:
        return None if self._shape is None else TensorShape(self._shape)

    @property
    def dtype(self):
        return self._dtype

    @property
    def name(self):
        return self._name

    def is_fully_defined(self) -> bool:
        return self._shape is not None and all(d is not None for d in self._shape)

    def is_compatible_with(self, other) -> bool:
        """Same dtype, and shapes that agree wherever both dimensions are known."""
        if isinstance(other, TensorSpec):
            shape, dtype = other._shape, other._dtype
        else:
            shape, dtype = tuple(other.shape), np.dtype(other.dtype)
        if dtype != self._dtype:
            return False
        if self._shape is None or shape is None:
            return True
        if len(shape) != len(self._shape):
            return False
        return all(
            a is None or b is None or a == b for a, b in zip(self._shape, shape, strict=True)
        )

    def __eq__(self, other):
        return (
            isinstance(other, TensorSpec)
            and self._shape == other._shape
            and self._dtype == other._dtype
            and self._name == other._name
        )

    def __hash__(self):
        return hash((self._shape, self._dtype.str, self._name))

    def __repr__(self):
        shape = "<unknown>" if self._shape is None else str(self._shape)
        return f"TensorSpec(shape={shape}, dtype={_dtype_name(self._dtype)}, name={self._name!r})"


def spec_of(value) -> TensorSpec:
    """The spec of a tensor-like value (what TF prints in a failed-binding message)."""
    if isinstance(value, TensorSpec):
        return value
    if isinstance(value, Tensor) or hasattr(value, "shape"):
        return TensorSpec(tuple(value.shape), value.dtype)
    from .tensor import _as_value

    v = _as_value(value)
    return TensorSpec(tuple(v.shape), v.dtype)
