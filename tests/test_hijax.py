"""`call_hi_primitive` (JAX 0.10's higher-level primitives) in both modes, against JAX.

With `jax_remat3`, `jax.checkpoint` emits `call_hi_primitive` equations; `hijax.VJPHiPrimitive`
subclasses do too. We differentiate their expansion, or their own `jvp` when they define one.
"""

import contextlib

import jax
import jax.numpy as jnp
import pytest
from helpers import assert_matches_jax, assert_tree_allclose
from jax.experimental import hijax

import transforms as T


@contextlib.contextmanager
def remat3():
    old = jax.config.jax_remat3
    jax.config.update("jax_remat3", True)
    try:
        yield
    finally:
        jax.config.update("jax_remat3", old)


def body(x):
    return jnp.sin(jnp.sin(x)) * x


X = jnp.array([0.3, 1.2, -0.7])


@pytest.mark.parametrize("policy", [None, jax.checkpoint_policies.dots_saveable])
def test_checkpoint_under_remat3_both_modes(policy):
    with remat3():
        f = jax.checkpoint(body, policy=policy)
        prims = {e.primitive.name for e in jax.make_jaxpr(f)(X).eqns}
        assert "call_hi_primitive" in prims, prims
        assert_matches_jax(f, (X,))

        def loss(x):
            return jnp.sum(f(x) ** 2)

        assert_tree_allclose(T.grad(loss)(X), jax.grad(loss)(X))
        assert_tree_allclose(T.hessian(loss)(X), jax.hessian(loss)(X))


class Cube(hijax.VJPHiPrimitive):
    """x -> x**3 given only by its expansion."""

    def __init__(self, aval):
        self.in_avals = (aval,)
        self.out_aval = aval
        self.params = {}
        super().__init__()

    def expand(self, x):
        return x * x * x


class CubeWithRule(Cube):
    """The same, with its own JVP rule (deliberately 2x the true one, so it is seen)."""

    def jvp(self, primals, tangents):
        (x,), (t,) = primals, tangents
        return self(x), 6.0 * x * x * t


def test_hi_primitive_differentiated_through_its_expansion():
    def f(x):
        return jnp.sin(Cube(jax.typeof(x))(x))

    def ref(x):
        return jnp.sin(x * x * x)

    assert_tree_allclose(T.jvp(f, (X,), (X,)), jax.jvp(ref, (X,), (X,)))
    g = T.grad(lambda x: jnp.sum(f(x)))(X)
    assert_tree_allclose(g, jax.grad(lambda x: jnp.sum(ref(x)))(X))


def test_hi_primitive_own_jvp_is_honoured_in_both_modes():
    def f(x):
        return CubeWithRule(jax.typeof(x))(x)

    y, y_dot = T.jvp(f, (X,), (jnp.ones(3),))
    assert_tree_allclose((y, y_dot), (X**3, 6.0 * X**2))
    assert_tree_allclose(T.grad(lambda x: jnp.sum(f(x)))(X), 6.0 * X**2)
