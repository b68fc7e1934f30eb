"""Patterns that JAX libraries (Equinox, Flax NNX, numpyro) lean on, reduced to plain JAX.

Each test is the smallest program we found that reaches what a library's own tests reached, with
JAX's autodiff as the oracle.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from helpers import assert_tree_allclose
from jax import lax

import transforms

X = jnp.array([[0.3, -1.2, 0.5], [1.1, 0.4, -0.7]])


def _batch_norm(x):
    # Equinox's BatchNorm: statistics across a vmapped axis by name. Traced, the pmean over the
    # mapped axis is a psum over a positional axis, which drops that axis like reduce_sum.
    def one(row):
        mean = lax.pmean(row, "batch")
        var = lax.pmean((row - mean) ** 2, "batch")
        return (row - mean) / jnp.sqrt(var + 1e-5)

    return jnp.sum(jax.vmap(one, axis_name="batch")(x) * jnp.arange(3.0))


def test_psum_over_a_vmapped_axis_transposes_to_a_broadcast():
    assert_tree_allclose(transforms.grad(_batch_norm)(X), jax.grad(_batch_norm)(X))
    assert_tree_allclose(transforms.hessian(_batch_norm)(X), jax.hessian(_batch_norm)(X))
    single = X[:1]  # a batch of one, as in Equinox's test
    assert_tree_allclose(transforms.grad(_batch_norm)(single), jax.grad(_batch_norm)(single))


MARKER = object()


def _with_aux(x):
    aux = ("a string", MARKER, 3, 2.5, np.ones(2), jnp.sin(x))
    return jnp.sum(x**2), aux


def _assert_aux_as_jax(ours, theirs):
    assert ours[0] == "a string" and ours[1] is MARKER
    assert [type(a) for a in ours[:5]] == [type(a) for a in theirs[:5]]
    assert_tree_allclose(ours[2:], theirs[2:])


def test_aux_leaves_that_are_not_arrays_come_back_untouched():
    x = X[0]
    _, _, aux = transforms.vjp(_with_aux, x, has_aux=True)
    _assert_aux_as_jax(aux, jax.vjp(_with_aux, x, has_aux=True)[2])
    _, _, aux = transforms.jvp(_with_aux, (x,), (x,), has_aux=True)
    _assert_aux_as_jax(aux, jax.jvp(_with_aux, (x,), (x,), has_aux=True)[2])
    _, _, aux = transforms.linearize(_with_aux, x, has_aux=True)
    _assert_aux_as_jax(aux, jax.linearize(_with_aux, x, has_aux=True)[2])
    (_, aux), g = transforms.value_and_grad(_with_aux, has_aux=True)(x)
    (_, aux_jax), g_jax = jax.value_and_grad(_with_aux, has_aux=True)(x)
    _assert_aux_as_jax(aux, aux_jax)
    assert_tree_allclose(g, g_jax)
    _assert_aux_as_jax(
        transforms.jacrev(_with_aux, has_aux=True)(x)[1], jax.jacrev(_with_aux, has_aux=True)(x)[1]
    )


def test_custom_vjp_with_symbolic_zeros_is_told_which_cotangents_are_zero():
    seen = []

    @jax.custom_vjp
    def f(x, y):
        return x * y, jnp.sin(x), y

    def fwd(x, y):
        return f(x.value, y.value), (x.value, y.value)

    def bwd(res, cts):
        seen.append(tuple(type(c).__name__ for c in cts))
        x, y = res
        ct_prod, ct_sin, ct_y = (
            jnp.zeros_like(x) if type(c) is jax.custom_derivatives.SymbolicZero else c for c in cts
        )
        return ct_prod * y + ct_sin * jnp.cos(x), ct_prod * x + ct_y

    f.defvjp(fwd, bwd, symbolic_zeros=True)

    def loss(x, y):
        prod, _, _ = f(x, y)  # the second and third outputs are unused: zero cotangents
        return jnp.sum(prod)

    x, y = X[0], X[1]
    expected = jax.grad(loss, argnums=(0, 1))(x, y)
    assert_tree_allclose(transforms.grad(loss, argnums=(0, 1))(x, y), expected)
    assert seen[0] == seen[1] == ("ArrayImpl", "SymbolicZero", "SymbolicZero")


def test_float0_tangent_from_a_custom_rule_counts_as_zero():
    # Equinox's rules hand back float0 zeros for integer outputs (diffrax's step counts); an
    # integer-only primitive after them, with no derivative rule at all, must not be asked for one.
    from jax.extend.core import Primitive
    from jax.interpreters import mlir

    double_int_p = Primitive("test_double_int")
    double_int_p.def_impl(lambda i: i * 2)
    double_int_p.def_abstract_eval(lambda i: jax.core.ShapedArray(i.shape, i.dtype))
    mlir.register_lowering(double_int_p, mlir.lower_fun(lambda i: i * 2, multiple_results=False))

    @jax.custom_jvp
    def with_count(x):
        return jnp.sin(x), jnp.int32(3)

    with_count.defjvp(
        lambda p, t: (with_count(*p), (jnp.cos(p[0]) * t[0], np.zeros((), jax.dtypes.float0)))
    )

    def f(x):
        y, n = with_count(x)
        return y * double_int_p.bind(n)

    x = jnp.float64(0.4)
    assert_tree_allclose(transforms.jvp(f, (x,), (1.0,)), jax.jvp(f, (x,), (1.0,)))
    assert_tree_allclose(transforms.grad(f)(x), jax.grad(f)(x))


def test_custom_jvp_function_applied_to_tangents_is_transposed():
    # lineax's linear_solve JVP applies custom_jvp functions to tangents: in the linear program
    # they are linear, and reverse mode transposes their bodies.
    @jax.custom_jvp
    def twice(t):
        return 2.0 * t

    twice.defjvp(lambda p, t: (twice(*p), twice(*t)))

    @jax.custom_jvp
    def g(x):
        return jnp.sin(x)

    g.defjvp(lambda p, t: (g(*p), twice(t[0]) * jnp.cos(p[0]) / 2.0))

    f = lambda x: jnp.sum(g(x) * x)  # noqa: E731
    assert_tree_allclose(transforms.grad(f)(X[0]), jax.grad(f)(X[0]))
    assert_tree_allclose(transforms.hessian(f)(X[0]), jax.hessian(f)(X[0]))
