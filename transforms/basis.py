"""Standard bases and Jacobian assembly for `jacfwd`, `jacrev` and `hessian`.

A Jacobian is one batched JVP or VJP over the rows of the identity; these helpers build that
basis in the flattened argument space and fold the batched results back into pytrees.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import dtypes, tree_util
from jax.extend.core import primitives as P

from .arguments import _dtype
from .zeros import (
    full_like_aval,
)


def _std_basis(flat):
    """Rows of the identity in the flattened space of `flat`, as one array per leaf."""
    sizes = [int(np.prod(np.shape(x))) for x in flat]
    total = sum(sizes)
    dtype = jnp.result_type(*flat) if flat else jnp.float32
    eye = jnp.eye(total, dtype=dtype)
    out, start = [], 0
    for x, size in zip(flat, sizes, strict=True):
        block = eye[:, start : start + size].reshape((total, *np.shape(x)))
        # the basis has the leaf's type, weak type included, so results keep it (as in JAX)
        aval = jax.typeof(x)
        out.append(
            P.convert_element_type_p.bind(
                block, new_dtype=aval.dtype, weak_type=aval.weak_type, sharding=None
            )
        )
        start += size
    return out, total


def _chunked_vmap(fn, basis, total, chunk_size, out_axes):
    """`jax.vmap(fn, out_axes=out_axes)(basis)`, at most `chunk_size` basis vectors at a time.

    `out_axes` is an int or a tuple of (int | None) matching a tuple output; `None` outputs are
    not batched and are taken from the first chunk.
    """
    if chunk_size is not None and (isinstance(chunk_size, bool) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}.")
    if chunk_size is None or chunk_size >= total:
        return jax.vmap(fn, out_axes=out_axes)(basis)
    pieces = []
    for start in range(0, total, chunk_size):
        chunk = [b[start : start + chunk_size] for b in basis]
        pieces.append(jax.vmap(fn, out_axes=out_axes)(chunk))

    def join(axis, parts):
        if axis is None:
            return parts[0]
        return tree_util.tree_map(lambda *xs: jnp.concatenate(xs, axis=axis), *parts)

    if isinstance(out_axes, tuple):
        return tuple(join(a, [p[i] for p in pieces]) for i, a in enumerate(out_axes))
    return join(out_axes, pieces)


def _jac_block(c, out_shape, x):
    """One (output leaf, input leaf) block of a reverse-mode Jacobian, from stacked cotangents.

    An integer input (allow_int) has float0 cotangents; like JAX, its block is zeros of the
    input's own type.
    """
    shape = (*out_shape, *np.shape(x))
    if _dtype(c) == dtypes.float0:
        return full_like_aval(jax.typeof(x).update(shape=shape), 0)
    return _like_example(c.reshape(shape), x)


def _like_example(block, example):
    """A Jacobian block in the type JAX gives it: `example`'s dtype and weak type.

    JAX types a reverse-mode block like the input and a forward-mode block like the output
    (a Python float input gives weak blocks whichever rules the cotangent went through).
    """
    aval = jax.typeof(example)
    if dtypes.issubdtype(block.dtype, np.complexfloating) and not dtypes.issubdtype(
        aval.dtype, np.complexfloating
    ):
        block = jnp.real(block)
    if (block.dtype, jax.typeof(block).weak_type) == (aval.dtype, aval.weak_type):
        return block
    return P.convert_element_type_p.bind(
        block, new_dtype=aval.dtype, weak_type=aval.weak_type, sharding=None
    )


def _jac_in_tree(argnums, dyn):
    """The structure of a Jacobian's inner (input) part: the argument itself for int argnums."""
    if isinstance(argnums, int | np.integer):
        return tree_util.tree_structure(dyn[0])
    return tree_util.tree_structure(dyn)


def _unravel_in(j, dyn_flat, dyn_tree, out_shape, first, example=None):
    """Split the flat input axis of a Jacobian leaf into one array per input leaf.

    With `example`, each piece gets its dtype and weak type (`_like_example`)."""
    sizes = [int(np.prod(np.shape(x))) for x in dyn_flat]
    pieces, start = [], 0
    for x, size in zip(dyn_flat, sizes, strict=True):
        if first:  # the basis axis leads: (total, *out_shape)
            block = j[start : start + size]
            block = jnp.moveaxis(block.reshape((size, *out_shape)), 0, -1)
        else:  # the basis axis trails: (*out_shape, total)
            block = j[..., start : start + size]
        block = block.reshape((*out_shape, *np.shape(x)))
        pieces.append(block if example is None else _like_example(block, example))
        start += size
    return tree_util.tree_unflatten(dyn_tree, pieces)
