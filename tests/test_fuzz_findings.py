"""Regressions for what the differential fuzzer (and JAX's own tests) found, each against JAX.

- reverse mode through `reshape` with `dimensions` (what `jax.vmap(jnp.convolve)` emits);
- a NumPy array reaching `jax.vmap` of a `custom_jvp` function (`jax.nn.relu`);
- the dtype and weak type of Jacobians and gradients of Python scalars;
- `make_jaxpr(grad(f))` writes the output seed as a literal, as JAX does.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_matches_jax, assert_tree_allclose, type_of
from jax import lax

import transforms as T

# --- reshape with dimensions ----------------------------------------------------------------------


def test_grad_through_vmapped_convolve_matches_jax():
    def f(x, y):
        return jnp.sum(jax.vmap(jnp.convolve)(x, y) ** 2)

    x = jnp.arange(12.0).reshape(3, 4) / 7
    y = jnp.cos(jnp.arange(12.0)).reshape(3, 4)
    assert_tree_allclose(T.grad(f, (0, 1))(x, y), jax.grad(f, (0, 1))(x, y))


def test_reshape_with_dimensions_both_modes():
    def f(x):
        return jnp.sin(lax.reshape(x, (4, 6), dimensions=(2, 0, 1)))

    x = jnp.linspace(-1.0, 1.0, 24).reshape(2, 3, 4)
    assert_matches_jax(f, (x,))
    T.testing.check_transpose(lambda x: lax.reshape(x, (4, 6), dimensions=(2, 0, 1)), (x,))


# --- NumPy arrays under vmap of custom_jvp functions ----------------------------------------------

_A = np.linspace(-1.0, 1.0, 3)


def _relu_of_numpy_arg(a, b):
    return jnp.sum(jax.vmap(jax.nn.relu)(a) * b)


def _relu_of_closed_numpy(a, b):
    return jnp.sum(jax.vmap(jax.nn.relu)(_A) * b * a)


def _mixed_custom_jvp(a, b):  # logaddexp is a custom_jvp of two arguments: one NumPy, one traced
    return jnp.sum(jax.vmap(jnp.logaddexp)(a, b))


@pytest.mark.parametrize("f", [_relu_of_numpy_arg, _relu_of_closed_numpy, _mixed_custom_jvp])
@pytest.mark.parametrize("transform", ["grad", "jacrev", "hessian", "jacfwd"])
def test_numpy_array_into_vmapped_custom_jvp(f, transform):
    a, b = np.array([0.5, -1.0, 2.0]), jnp.array([1.0, 2.0, 3.0])
    ours = getattr(T, transform)(f, argnums=1)(a, b)
    theirs = getattr(jax, transform)(f, argnums=1)(a, b)
    assert_tree_allclose(ours, theirs)


def test_numpy_array_into_vmapped_custom_jvp_vjp():
    b = jnp.array([1.0, 2.0, 3.0])
    a = np.array([0.5, -1.0, 2.0])
    y, pullback = T.vjp(lambda b: _relu_of_numpy_arg(a, b), b)
    y_ref, pullback_ref = jax.vjp(lambda b: _relu_of_numpy_arg(a, b), b)
    assert_tree_allclose((y, pullback(1.0)), (y_ref, pullback_ref(1.0)))


# --- dtypes and weak types of results for Python scalars ------------------------------------------


def _bcast(x, n=3):
    # a weak array: a Python scalar broadcast keeps its weak type
    return lax.broadcast_in_dim(x, (n,), ())


WEAK_PROGRAMS = {
    "pad": lambda x: jnp.pad(_bcast(x), 1),
    "lax_pad": lambda x: lax.pad(_bcast(x), 0.0, [(1, 1, 0)]),
    "take": lambda x: jnp.take(_bcast(x) * jnp.arange(1.0, 4.0), jnp.array([2, 0])),
    "take_along_axis": lambda x: jnp.take_along_axis(_bcast(x), jnp.array([1, 0]), axis=0),
    "sort": lambda x: jnp.sort(_bcast(x) * jnp.array([3.0, 1.0, 2.0])),
    "dynamic_update_slice": lambda x: lax.dynamic_update_slice(_bcast(x), _bcast(x, 1), (1,)),
    "dynamic_update_slice_strong": lambda x: lax.dynamic_update_slice(_bcast(x), jnp.ones(1), (1,)),
    "dynamic_slice": lambda x: lax.dynamic_slice(_bcast(x), (1,), (2,)),
    "slice": lambda x: _bcast(x)[1:],
    "square": lambda x: _bcast(x) ** 2,
    "rev_square": lambda x: _bcast(x)[::-1] ** 2,
    "scatter_add": lambda x: _bcast(x).at[0].add(x),
    "sin": lambda x: jnp.sin(_bcast(x)),
    "scalar": lambda x: x**3,
}


@pytest.mark.parametrize("name", sorted(WEAK_PROGRAMS))
@pytest.mark.parametrize("transform", ["jacrev", "jacfwd", "hessian", "grad"])
def test_types_of_transforms_of_python_float(name, transform):
    g = WEAK_PROGRAMS[name]
    f = (lambda x: jnp.sum(g(x) ** 2)) if transform in ("hessian", "grad") else g
    ours, theirs = getattr(T, transform)(f)(1.5), getattr(jax, transform)(f)(1.5)
    assert type_of(ours) == type_of(theirs)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


@pytest.mark.parametrize(
    "f",
    [
        lambda z: jnp.real(z) ** 2,
        lambda z: jnp.imag(z) ** 2,
        lambda z: jnp.abs(z),
        lambda z: jnp.real(z * z),
        lambda z: jnp.sum(jnp.real(jnp.ones(3) * z)),
    ],
)
def test_grad_of_python_complex_has_jaxs_type(f):
    z = 1.0 + 2.0j
    ours, theirs = T.grad(f)(z), jax.grad(f)(z)
    assert type_of(ours) == type_of(theirs)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


# --- the output seed is a literal -----------------------------------------------------------------


@pytest.mark.parametrize("x", [1.0, np.float32(1.0), jnp.ones((), jnp.float64)])
def test_make_jaxpr_of_grad_writes_seed_as_literal(x):
    def f(x):
        return jnp.sin(x) * 2.0

    ours = jax.make_jaxpr(T.grad(f))(x)
    theirs = jax.make_jaxpr(jax.grad(f))(x)
    assert not ours.consts and not ours.jaxpr.constvars
    assert str(ours) == str(theirs)


def test_loop_carry_cotangent_is_as_weak_as_the_incoming_one():
    # Found by test_random_programs_match_jax: a Python-float (weak) carry with a strong
    # cotangent. JAX's scan transpose gives a strong cotangent; ours cast it to the carry's
    # weak type.
    f = lambda x: jax.lax.fori_loop(0, 3, lambda i, c: jnp.sin(c) + 0.5 * c, x)  # noqa: E731
    for ct in (jnp.asarray(np.float64(0.3)), jnp.asarray(0.3)):
        (ours,), (theirs,) = T.vjp(f, 0.7)[1](ct), jax.vjp(f, 0.7)[1](ct)
        assert ours.weak_type == theirs.weak_type == ct.weak_type
        np.testing.assert_allclose(ours, theirs, rtol=1e-14)
    # The same loop with a traced trip count runs as a while loop in reverse (JAX refuses).
    g = lambda x: jax.lax.fori_loop(0, jnp.asarray(3), lambda i, c: jnp.sin(c) + 0.5 * c, x)  # noqa: E731
    (ours,) = T.vjp(g, 0.7)[1](jnp.asarray(np.float64(0.3)))
    assert not ours.weak_type
