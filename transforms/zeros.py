"""Symbolic zeros: a tangent or cotangent known to be zero, carried as a type, never computed."""

from __future__ import annotations

import jax
import numpy as np
from jax import dtypes, lax
from jax.core import ShapedArray
from jax.extend.core import primitives as P
from jax.sharding import AxisType, PartitionSpec


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
    if getattr(aval, "is_high", False):  # a JAX 0.10 hi-type says what its tangents are
        return aval.to_tangent_aval()
    dtype = tangent_dtype(aval.dtype)
    if dtype == aval.dtype:
        return aval
    return ShapedArray(aval.shape, dtype)


def varying_axes(aval) -> tuple:
    """The manual mesh axes (inside `shard_map`) along which values of `aval` may differ."""
    manual = getattr(aval, "manual_axis_type", None)
    return tuple(sorted(getattr(manual, "varying", ()), key=str))


def explicit_sharding(aval):
    """`aval`'s sharding when its mesh has Explicit axes, else None.

    On Explicit axes the layout is part of the type, so a cotangent must be built with its
    primal's sharding (JAX checks it); elsewhere the compiler chooses layouts.
    """
    sharding = getattr(aval, "sharding", None)
    mesh = getattr(sharding, "mesh", None)
    if mesh is None or AxisType.Explicit not in mesh.axis_types:
        return None
    return sharding


def explicit_placement(x):
    """Where `x` is laid out when its type has Explicit mesh axes, else None.

    A concrete array answers with its concrete sharding (its devices), so that a value can be
    moved there outside any `jax.set_mesh`; a traced value with its type's (abstract) sharding.
    """
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
        return explicit_sharding(x)  # read off the array: no abstract value built per call
    return explicit_sharding(jax.typeof(x))


def with_placement(t, placement):
    """Tangent `t` resharded to `placement` (from `explicit_placement` of its primal).

    On Explicit axes a tangent's type is its primal's, sharding included (JAX asserts it under
    `jax_enable_checks`); JAX's jvp gets there at the first jitted function (every `jnp`
    function is one), whose JVP is traced with the primal's tangent type. Casting at the entry
    gives every rule the tangent it expects, and the outputs JAX's shardings.
    """
    if placement is None or type(t) is Zero:
        return t
    if same_layout(jax.typeof(t).sharding, placement, np.ndim(t)):
        return t
    return jax.sharding.reshard(t, placement)


def same_layout(a, b, ndim: int) -> bool:
    """Whether shardings `a` and `b` split the same dimensions over the same mesh axes."""

    def spec(s):
        return tuple(s.spec) + (None,) * (ndim - len(s.spec))

    mesh_a, mesh_b = getattr(a, "mesh", None), getattr(b, "mesh", None)
    if mesh_a is None or mesh_b is None or not hasattr(a, "spec"):
        return False
    return mesh_a.abstract_mesh == mesh_b.abstract_mesh and spec(a) == spec(b)


def stacked_aval(aval, length: int):
    """The abstract value of `length` values of `aval` stacked on a new leading axis.

    The sharding's spec grows with the shape: the new axis is not split over the mesh.
    """
    shape = (length, *aval.shape)
    sharding = getattr(aval, "sharding", None)
    if sharding is None or not hasattr(sharding, "spec"):
        return aval.update(shape=shape)
    spec = PartitionSpec(None, *sharding.spec)
    return aval.update(shape=shape, sharding=sharding.update(spec=spec))


def full_like_aval(aval, value):
    """A concrete array of `aval`'s shape, dtype and weak type, filled with `value`.

    The weak type matters: a strong zero or seed where JAX has a weak one changes the types of
    results, and `jax.jit` retraces on it. Inside `shard_map` the array is typed as varying
    along the same mesh axes as `aval`, or it would not match.
    """
    if aval.dtype == dtypes.float0:
        return np.zeros(aval.shape, dtypes.float0)
    x = lax.full(aval.shape, value, aval.dtype, sharding=explicit_sharding(aval))
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
