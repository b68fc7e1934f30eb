"""Checking derivatives: finite differences and dot-product (transpose) tests.

Public, so that users writing their own rules (`jax.custom_jvp`, `jax.custom_vjp`) can check
them the way the library checks its own:

    from transforms.testing import check_grads
    check_grads(my_fun, (x,), order=2)

Both checks pick random directions from a fixed seed, so a failure reproduces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import dtypes, tree_util
from jax.extend.core import primitives as P

__all__ = ["check_grads", "check_transpose", "inner_product"]

# Per-dtype defaults: (finite-difference step, atol, rtol). Central differences have error
# O(eps**2) from truncation and O(ulp / eps) from rounding; these balance the two.
_DEFAULTS = {
    np.dtype(np.float16): (3e-2, 1e-1, 1e-1),
    np.dtype(dtypes.bfloat16): (3e-2, 1e-1, 1e-1),
    np.dtype(np.float32): (3e-3, 2e-2, 2e-2),
    np.dtype(np.float64): (1e-5, 1e-6, 1e-6),
    np.dtype(np.complex64): (3e-3, 2e-2, 2e-2),
    np.dtype(np.complex128): (1e-5, 1e-6, 1e-6),
}


def _is_inexact(x) -> bool:
    return dtypes.issubdtype(jnp.result_type(x), np.inexact)


def _defaults(leaves):
    """The loosest defaults over the inexact leaves (the least precise dtype decides)."""
    found = [
        _DEFAULTS.get(np.dtype(jnp.result_type(x)), _DEFAULTS[np.dtype(np.float32)])
        for x in leaves
        if _is_inexact(x)
    ]
    if not found:
        return _DEFAULTS[np.dtype(np.float64)]
    return tuple(max(vals) for vals in zip(*found, strict=True))


def _random_like(rng: np.random.Generator, x):
    """A random direction with `x`'s shape and dtype (float0 zeros for integer `x`)."""
    dt = np.dtype(jnp.result_type(x))
    shape = np.shape(x)
    if not dtypes.issubdtype(dt, np.inexact):
        return np.zeros(shape, dtypes.float0)
    v = rng.standard_normal(shape)
    if dtypes.issubdtype(dt, np.complexfloating):
        v = v + 1j * rng.standard_normal(shape)
    v = jnp.asarray(v, dtype=dt)
    if jax.typeof(x).weak_type:
        # A weak-typed primal (a Python scalar) gets a weak-typed direction, as `1.0` would be.
        v = P.convert_element_type_p.bind(v, new_dtype=dt, weak_type=True, sharding=None)
    return v


def inner_product(xs, ys) -> float:
    """`Re sum(x * y)` over matching pytrees: the pairing under which `vjp` transposes `jvp`.

    Integer (float0) leaves contribute nothing. With this bilinear pairing the transpose of
    complex multiplication by `c` is multiplication by `c` (not `conj(c)`), JAX's convention.

    Example:
      >>> inner_product((jnp.ones(2),), (jnp.arange(2.0),))
      1.0
    """
    total = 0.0
    for x, y in zip(tree_util.tree_leaves(xs), tree_util.tree_leaves(ys), strict=True):
        if np.dtype(np.asarray(x).dtype) == dtypes.float0:
            continue
        if np.dtype(np.asarray(y).dtype) == dtypes.float0:
            continue
        x = np.asarray(x, dtype=np.result_type(np.asarray(x).dtype, np.float64))
        y = np.asarray(y, dtype=np.result_type(np.asarray(y).dtype, np.float64))
        if np.shape(x) != np.shape(y):
            raise ValueError(f"inner_product: shapes differ, {np.shape(x)} and {np.shape(y)}.")
        total += float(np.real(np.sum(x * y)))
    return total


def _norm(xs) -> float:
    leaves = [
        np.abs(np.asarray(x, np.complex128))
        for x in tree_util.tree_leaves(xs)
        if np.asarray(x).dtype != dtypes.float0
    ]
    return float(np.sqrt(sum(float(np.sum(v * v)) for v in leaves)))


def _axpy(a: float, v, x):
    """x + a * v, leaf by leaf, in x's dtype; integer leaves are held fixed."""

    def one(x, v):
        if not _is_inexact(x):
            return x
        dt = jnp.result_type(x)
        return jnp.asarray(jnp.asarray(x, dt) + jnp.asarray(a * np.asarray(v), dt), dt)

    return tree_util.tree_map(one, x, v)


def _sub_scaled(a, b, scale):
    """(a - b) * scale leaf by leaf in float64 (complex128 for complex), zeros for int outputs."""

    def one(a, b):
        a = np.asarray(a)
        if not dtypes.issubdtype(a.dtype, np.inexact):
            return np.zeros(a.shape, dtypes.float0)
        wide = np.complex128 if dtypes.issubdtype(a.dtype, np.complexfloating) else np.float64
        return (a.astype(wide) - np.asarray(b).astype(wide)) * scale

    return tree_util.tree_map(one, a, b)


def _numerical_jvp(f, args, tangents, eps):
    """Central difference (f(x + eps t) - f(x - eps t)) / (2 eps)."""
    plus = f(*_axpy(eps, tangents, args))
    minus = f(*_axpy(-eps, tangents, args))
    return _sub_scaled(plus, minus, 0.5 / eps)


def _close(actual: float, expected: float, atol: float, rtol: float, scale: float) -> bool:
    return abs(actual - expected) <= atol * max(scale, 1.0) + rtol * abs(expected)


def _assert_trees_close(actual, expected, atol, rtol, what):
    a_leaves, a_tree = tree_util.tree_flatten(actual)
    e_leaves, e_tree = tree_util.tree_flatten(expected)
    if a_tree != e_tree:
        raise AssertionError(f"{what}: output structures differ, {a_tree} and {e_tree}.")
    for i, (a, e) in enumerate(zip(a_leaves, e_leaves, strict=True)):
        a, e = np.asarray(a), np.asarray(e)
        if e.dtype == dtypes.float0 or a.dtype == dtypes.float0:
            continue
        if a.shape != e.shape:
            raise AssertionError(f"{what}: leaf {i} has shape {a.shape}, expected {e.shape}.")
        err = np.abs(a.astype(np.complex128) - e.astype(np.complex128))
        bound = atol + rtol * np.abs(e.astype(np.complex128))
        if not np.all(err <= bound):
            worst = int(np.argmax(err - bound))
            raise AssertionError(
                f"{what}: leaf {i} (shape {a.shape}) differs from finite differences.\n"
                f"  max abs error {float(np.max(err)):.3g} (atol={atol:g}, rtol={rtol:g}); "
                f"at flat index {worst}: got {a.ravel()[worst]!r}, expected {e.ravel()[worst]!r}.\n"
                f"  ours:     {a!r}\n  numeric:  {e!r}"
            )


def check_grads(
    f: Callable,
    args: Sequence,
    order: int,
    modes: Sequence[str] = ("fwd", "rev"),
    atol: float | None = None,
    rtol: float | None = None,
    eps: float | None = None,
    seed: int = 0,
) -> None:
    """Check `transforms`' derivatives of `f` at `args` against central finite differences.

    Forward mode (`"fwd"`): `jvp(f, args, t)` against `(f(x + eps t) - f(x - eps t)) / 2 eps`
    for a random direction `t`. Reverse mode (`"rev"`): for a random output cotangent `c`,
    `<vjp(c), t>` against `<c, numerical jvp>`. Orders above 1 check the derivative functions
    themselves (`x -> jvp(f, x, t)[1]`, `x -> vjp(f, x)[1](c)`) recursively, so `order=2` also
    checks the Hessian-vector products of forward-over-forward and reverse-over-reverse.

    Args:
      f: function of `len(args)` positional arguments (pytrees of arrays) returning a pytree.
      args: the point; integer leaves are held fixed.
      order: highest derivative order to check (1, 2, ...).
      modes: any of `"fwd"` and `"rev"`.
      atol, rtol, eps: tolerances and finite-difference step; default by the least precise
        inexact dtype among the arguments (float64: eps=1e-5, atol=rtol=1e-6).
      seed: seed of the random directions.

    Raises:
      AssertionError: saying which mode and order disagreed, with both values.

    Example:
      >>> from transforms.testing import check_grads
      >>> check_grads(jnp.sin, (jnp.arange(3.0),), order=2)   # passes silently
      >>> check_grads(lambda x: x ** 3, (2.0,), order=3, modes=("rev",))
    """
    from .api import jvp, vjp

    if not isinstance(args, tuple | list):
        raise TypeError(f"check_grads: args must be a tuple or list, got {type(args).__name__}.")
    if order < 1:
        raise ValueError(f"check_grads: order must be at least 1, got {order}.")
    for m in modes:
        if m not in ("fwd", "rev"):
            raise ValueError(f"check_grads: unknown mode {m!r}; use 'fwd' and/or 'rev'.")
    args = tuple(tree_util.tree_map(jnp.asarray, a) for a in args)
    # The least precise dtype among inputs *and* outputs sets the step and tolerances.
    out_shapes = jax.eval_shape(f, *args)
    d_eps, d_atol, d_rtol = _defaults(
        tree_util.tree_leaves(args)
        + [jnp.zeros((), s.dtype) for s in tree_util.tree_leaves(out_shapes)]
    )
    eps = d_eps if eps is None else eps
    atol = d_atol if atol is None else atol
    rtol = d_rtol if rtol is None else rtol
    rng = np.random.default_rng(seed)

    def _check(f, args, order, path):
        tangents = tree_util.tree_map(lambda x: _random_like(rng, x), args)
        if "fwd" in modes:
            _, out_dot = jvp(f, args, tangents)
            expected = _numerical_jvp(f, args, tangents, eps)
            _assert_trees_close(
                out_dot, expected, atol, rtol, f"check_grads: forward mode, order {path}"
            )
            if order > 1:
                _check(lambda *x: jvp(f, x, tangents)[1], args, order - 1, path + "·fwd")
        if "rev" in modes:
            out, f_vjp = vjp(f, *args)
            cts = tree_util.tree_map(lambda y: _random_like(rng, y), out)
            cts_in = f_vjp(cts)
            actual = inner_product(cts_in, tangents)
            numeric = _numerical_jvp(f, args, tangents, eps)
            expected = inner_product(cts, numeric)
            scale = _norm(cts) * _norm(numeric)
            if not _close(actual, expected, atol, rtol, scale):
                raise AssertionError(
                    f"check_grads: reverse mode, order {path}: <vjp(c), t> = {actual!r} but "
                    f"<c, numerical jvp(t)> = {expected!r} (difference {actual - expected:.3g}; "
                    f"atol={atol:g}, rtol={rtol:g})."
                )
            if order > 1:
                _check(lambda *x: vjp(f, *x)[1](cts), args, order - 1, path + "·rev")

    _check(f, tuple(args), order, "1")


def check_transpose(
    f: Callable,
    args: Sequence,
    *,
    linear: bool = False,
    atol: float | None = None,
    rtol: float | None = None,
    seed: int = 0,
) -> None:
    """Dot-product test of a transpose: `<t, Lᵀ c> == <L t, c>` for random `t` and `c`.

    With `linear=False`, `L` is the linearization of `f` at `args` (`transforms.linearize`) and
    `Lᵀ` its transpose (`transforms.vjp`'s pullback), which exercises the transpose rule of every
    linear primitive in `f`'s tangent program. With `linear=True`, `f` must itself be linear:
    `L = f` and `Lᵀ = transforms.linear_transpose(f, *args)`. Unlike finite differences this
    test is exact up to rounding, so default tolerances are tight (1e-10 in float64).

    Example:
      >>> from transforms.testing import check_transpose
      >>> check_transpose(lambda x: x[::2] * 3.0, (jnp.arange(5.0),), linear=True)
      >>> check_transpose(jnp.tanh, (jnp.arange(3.0),))
    """
    from .api import linear_transpose, linearize, vjp

    args = tuple(tree_util.tree_map(jnp.asarray, a) for a in args)
    out_shapes = jax.eval_shape(f, *args)
    leaves = [x for x in tree_util.tree_leaves(args) if _is_inexact(x)]
    leaves += [
        jnp.zeros((), s.dtype)
        for s in tree_util.tree_leaves(out_shapes)
        if dtypes.issubdtype(s.dtype, np.inexact)
    ]
    single = any(np.dtype(jnp.result_type(x)) in (np.float32, np.complex64) for x in leaves)
    tol = 1e-4 if single and leaves else 1e-10
    atol = tol if atol is None else atol
    rtol = tol if rtol is None else rtol
    rng = np.random.default_rng(seed)
    tangents = tree_util.tree_map(lambda x: _random_like(rng, x), args)
    if linear:
        out = f(*tangents)
        lin_t = out
        f_t = linear_transpose(f, *args)
        cts = tree_util.tree_map(lambda y: _random_like(rng, y), out)
        cts_in = f_t(cts)
    else:
        out, f_jvp = linearize(f, *args)
        lin_t = f_jvp(*tangents)
        _, f_vjp = vjp(f, *args)
        cts = tree_util.tree_map(lambda y: _random_like(rng, y), out)
        cts_in = f_vjp(cts)
    lhs = inner_product(tangents, cts_in)
    rhs = inner_product(lin_t, cts)
    scale = _norm(lin_t) * _norm(cts) + _norm(tangents) * _norm(cts_in)
    if not _close(lhs, rhs, atol, rtol, scale):
        raise AssertionError(
            f"check_transpose: <t, Lᵀc> = {lhs!r} but <Lt, c> = {rhs!r} (difference "
            f"{lhs - rhs:.3g}; atol={atol:g}, rtol={rtol:g}): the transpose does not match the "
            "linear map."
        )
