"""`tf.TensorArray`: a list of same-shaped tensors written by index and stacked at the end
(TF's eager TensorArray: writes update it in place and return it)."""

from __future__ import annotations

import numpy as np

from .errors import InvalidArgumentError, OutOfRangeError
from .ops import _t, concat, stack, unstack
from .tensor import Tensor, TensorShape


class TensorArray:
    """A growable (with `dynamic_size=True`) array of tensors of one dtype and shape.

    Example:
      >>> ta = tf.TensorArray(tf.float32, size=3)
      >>> for i in range(3): ta = ta.write(i, x * i)
      >>> ta.stack()        # shape [3, *x.shape]; differentiable in every written value
    """

    def __init__(
        self,
        dtype,
        size=None,
        dynamic_size=None,
        clear_after_read=None,
        tensor_array_name=None,
        handle=None,
        flow=None,
        infer_shape=True,
        element_shape=None,
        colocate_with_first_write_call=True,
        name=None,
    ):
        self._dtype = np.dtype(dtype)
        n = 0 if size is None else int(size)
        self._items: list[Tensor | None] = [None] * n
        self._dynamic = bool(dynamic_size)
        self._clear_after_read = True if clear_after_read is None else bool(clear_after_read)
        self._infer_shape = infer_shape
        self._element_shape = None if element_shape is None else tuple(element_shape)

    @property
    def dtype(self):
        return self._dtype

    @property
    def dynamic_size(self) -> bool:
        return self._dynamic

    @property
    def element_shape(self) -> TensorShape | None:
        return None if self._element_shape is None else TensorShape(self._element_shape)

    def size(self, name=None) -> Tensor:
        """The number of elements (written or not)."""
        return Tensor(np.asarray(len(self._items), np.int32))

    def _check(self, value: Tensor):
        if value.dtype != self._dtype:
            raise InvalidArgumentError(
                None,
                None,
                f"TensorArray dtype is {self._dtype.name} but Op is trying to write dtype "
                f"{value.dtype.name}.",
            )
        shape = tuple(value.shape)
        if self._element_shape is not None and self._infer_shape:
            if len(shape) != len(self._element_shape) or any(
                a is not None and a != b for a, b in zip(self._element_shape, shape, strict=True)
            ):
                raise InvalidArgumentError(
                    None,
                    None,
                    f"Could not write to TensorArray: expected shape {self._element_shape} but "
                    f"the value has shape {shape}.",
                )
        if self._infer_shape and self._element_shape is None:
            self._element_shape = shape

    def write(self, index, value, name=None) -> TensorArray:
        """Store `value` at `index` (growing the array if `dynamic_size`); returns the array."""
        i = int(index)
        v = (
            _t(value)
            if isinstance(value, Tensor) or hasattr(value, "_read_value_for_op")
            else Tensor(np.asarray(value, self._dtype))
        )
        self._check(v)
        if i < 0:
            raise InvalidArgumentError(None, None, f"Tried to write to index {i} < 0.")
        if i >= len(self._items):
            if not self._dynamic:
                raise OutOfRangeError(
                    None,
                    None,
                    f"Tried to write to index {i} but array is not resizeable and size is: "
                    f"{len(self._items)}",
                )
            self._items.extend([None] * (i + 1 - len(self._items)))
        self._items[i] = v
        return self

    def read(self, index, name=None) -> Tensor:
        """The tensor at `index` (zeros of the element shape where nothing was written). With
        `clear_after_read` (the default, as in TF) the element reads as zeros afterwards."""
        i = int(index)
        if not 0 <= i < len(self._items):
            raise InvalidArgumentError(
                None, None, f"Tried to read from index {i} but array size is: {len(self._items)}"
            )
        item = self._item(i)
        if self._clear_after_read:
            self._items[i] = None
        return item

    def _item(self, i):
        item = self._items[i]
        if item is not None:
            return item
        if self._element_shape is None or any(d is None for d in self._element_shape):
            raise InvalidArgumentError(
                None,
                None,
                f"Could not read from TensorArray index {i} because it has not yet been "
                "written to.",
            )
        return Tensor(np.zeros(self._element_shape, self._dtype))

    def stack(self, name=None) -> Tensor:
        """All elements stacked on a new leading axis."""
        if not self._items:
            shape = () if self._element_shape is None else self._element_shape
            return Tensor(np.zeros((0, *[d or 0 for d in shape]), self._dtype))
        return stack([self._item(i) for i in range(len(self._items))])

    def gather(self, indices, name=None) -> Tensor:
        """The elements at `indices`, stacked."""
        return stack([self._item(int(i)) for i in np.asarray(indices).reshape(-1)])

    def concat(self, name=None) -> Tensor:
        """All elements concatenated along their first axis."""
        return concat([self._item(i) for i in range(len(self._items))], 0)

    def unstack(self, value, name=None) -> TensorArray:
        """Write the rows of `value` as elements 0, 1, ...; returns the array."""
        for i, row in enumerate(unstack(_t(value))):
            self.write(i, row)
        return self

    def scatter(self, indices, value, name=None) -> TensorArray:
        """Write row j of `value` at `indices[j]`; returns the array."""
        rows = unstack(_t(value))
        for i, row in zip(np.asarray(indices).reshape(-1), rows, strict=True):
            self.write(int(i), row)
        return self

    def close(self, name=None):
        self._items = []
