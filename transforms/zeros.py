"""Symbolic zeros: a tangent or cotangent known to be zero, carried as a type, never computed."""

from __future__ import annotations

import numpy as np
from jax import dtypes, lax
from jax.core import ShapedArray
from jax.extend.core import primitives as P


class Zero:
    """A value known to be zero, of abstract value `aval`. Emits no operation until instantiated."""

    __slots__ = ("aval",)

    def __init__(self, aval):
        self.aval = aval

    def __repr__(self):
        return f"Zero({self.aval.str_short()})"


def is_zero(x) -> bool:
    return type(x) is Zero


def tangent_dtype(dtype):
    """The dtype of a tangent (or cotangent) of a value of `dtype`: `float0` for ints and bools."""
    if dtypes.issubdtype(dtype, dtypes.extended):  # PRNG keys: no tangent space, like ints
        return dtypes.float0
    dtype = np.dtype(dtype)
    if dtypes.issubdtype(dtype, np.inexact):
        return dtype
    return dtypes.float0


def is_differentiable(aval) -> bool:
    """Whether values of `aval` have a tangent space: floats and complex; not ints, bools, keys."""
    return tangent_dtype(aval.dtype) != dtypes.float0


def tangent_aval(aval):
    """The abstract value of a tangent of a value with abstract value `aval`."""
    dtype = tangent_dtype(aval.dtype)
    if dtype == aval.dtype:
        return aval
    return ShapedArray(aval.shape, dtype)


def varying_axes(aval) -> tuple:
    """The manual mesh axes (inside `shard_map`) along which values of `aval` may differ."""
    manual = getattr(aval, "manual_axis_type", None)
    return tuple(sorted(getattr(manual, "varying", ()), key=str))


def full_like_aval(aval, value):
    """A concrete array of `aval`'s shape, dtype and weak type, filled with `value`.

    The weak type matters: a strong zero or seed where JAX has a weak one changes the types of
    results, and `jax.jit` retraces on it. Inside `shard_map` the array is typed as varying
    along the same mesh axes as `aval`, or it would not match.
    """
    if aval.dtype == dtypes.float0:
        return np.zeros(aval.shape, dtypes.float0)
    x = lax.full(aval.shape, value, aval.dtype)
    if getattr(aval, "weak_type", False):
        x = P.convert_element_type_p.bind(x, new_dtype=aval.dtype, weak_type=True, sharding=None)
    axes = varying_axes(aval)
    return lax.pcast(x, axes, to="varying") if axes else x


def zeros_like_aval(aval):
    """A concrete zero of `aval` (float0 zeros are NumPy arrays, as JAX expects)."""
    return full_like_aval(aval, 0)


def instantiate(x):
    """Materialise a symbolic zero; any other value passes through."""
    return zeros_like_aval(x.aval) if type(x) is Zero else x


def add_tangents(x, y):
    """Sum of two tangents, either of which may be a symbolic zero."""
    if type(x) is Zero:
        return y
    if type(y) is Zero:
        return x
    return lax.add(x, y)
