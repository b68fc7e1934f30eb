"""Shared test helpers: JAX's own autodiff as the oracle, with exact type comparison.

Import from any test file (`from helpers import assert_matches_jax`); pytest puts `tests/` on the
path. Values are compared with tolerances; shapes, dtypes and weak types must match exactly,
because a tangent whose dtype differs from JAX's makes `jax.jit` retrace and breaks user code.
"""

from __future__ import annotations

import jax
import numpy as np
from jax import dtypes, tree_util

import transforms
from transforms.testing import _random_like

__all__ = ["assert_matches_jax", "assert_tree_allclose", "type_of", "random_like"]


def random_like(rng, x):
    """A random tangent/cotangent for `x` (float0 zeros for integer `x`)."""
    return _random_like(rng, x)


def type_of(x):
    """(shape, dtype, weak_type) of an array, NumPy array or Python scalar."""
    dt = getattr(x, "dtype", None)
    if dt is not None and np.dtype(dt) == dtypes.float0:
        return (np.shape(x), np.dtype(dtypes.float0), False)
    aval = jax.typeof(x)
    return (aval.shape, np.dtype(aval.dtype), bool(aval.weak_type))


def assert_tree_allclose(actual, expected, *, atol=1e-12, rtol=1e-10, what="value", types=True):
    """Same structure, same types (shape/dtype/weak type) and close values, leaf by leaf."""
    a_leaves, a_tree = tree_util.tree_flatten(actual)
    e_leaves, e_tree = tree_util.tree_flatten(expected)
    assert a_tree == e_tree, f"{what}: structure {a_tree} != JAX's {e_tree}"
    for i, (a, e) in enumerate(zip(a_leaves, e_leaves, strict=True)):
        if types:
            assert type_of(a) == type_of(e), (
                f"{what}: leaf {i} has type {type_of(a)}, JAX gives {type_of(e)}"
            )
        if np.dtype(getattr(e, "dtype", np.float64)) == dtypes.float0:
            continue
        np.testing.assert_allclose(
            np.asarray(a), np.asarray(e), atol=atol, rtol=rtol, err_msg=f"{what}: leaf {i}"
        )


def _tols(args):
    single = any(
        np.dtype(getattr(x, "dtype", np.float64)) in (np.float32, np.complex64)
        for x in tree_util.tree_leaves(args)
    )
    return (1e-5, 1e-5) if single else (1e-12, 1e-10)


def assert_matches_jax(f, args, *, seed=0, atol=None, rtol=None, modes=("fwd", "rev")):
    """Our jvp and vjp of `f` at `args` agree with JAX's: values, dtypes and weak types.

    Random tangents and cotangents (same for both engines). Returns nothing; raises
    AssertionError naming the mode and the leaf that differs.
    """
    d_atol, d_rtol = _tols(args)
    atol = d_atol if atol is None else atol
    rtol = d_rtol if rtol is None else rtol
    rng = np.random.default_rng(seed)
    args = tuple(args)
    tangents = tree_util.tree_map(lambda x: random_like(rng, x), args)
    if "fwd" in modes:
        ours = transforms.jvp(f, args, tangents)
        theirs = jax.jvp(f, args, tangents)
        assert_tree_allclose(ours[0], theirs[0], atol=atol, rtol=rtol, what="jvp primal out")
        assert_tree_allclose(ours[1], theirs[1], atol=atol, rtol=rtol, what="jvp tangent out")
    if "rev" in modes:
        out, f_vjp = transforms.vjp(f, *args)
        out_j, f_vjp_j = jax.vjp(f, *args)
        assert_tree_allclose(out, out_j, atol=atol, rtol=rtol, what="vjp primal out")
        cts = tree_util.tree_map(lambda y: random_like(rng, y), out_j)
        assert_tree_allclose(f_vjp(cts), f_vjp_j(cts), atol=atol, rtol=rtol, what="vjp cotangents")
