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

    def batch_dim_rule(self, axis_data, dims):
        return dims[0]  # elementwise: the batch axis stays where it is


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


class CubeWithVJP(Cube):
    """x -> x**3 with reverse-mode rules only (deliberately 2x the true derivative, so that the
    rule is seen to be used, not the expansion)."""

    def vjp_fwd(self, nzs_in, x):
        return self(x), x * x

    def vjp_bwd_retval(self, x_squared, g):
        return (6.0 * x_squared * g,)


class CubeWithAccumulatingVJP(CubeWithVJP):
    """The same rules written against the accumulator API (`vjp_bwd`)."""

    vjp_bwd_retval = hijax.VJPHiPrimitive.vjp_bwd_retval

    def vjp_bwd(self, x_squared, g, x_accum):
        x_accum.accum(6.0 * x_squared * g)


@pytest.mark.parametrize("prim", [CubeWithVJP, CubeWithAccumulatingVJP])
def test_hi_primitive_own_vjp_is_honoured_in_reverse_mode(prim):
    def loss(x):
        return jnp.sum(jnp.sin(prim(jax.typeof(x))(x)))

    expected = jax.grad(loss)(X)  # JAX uses the same rules
    assert_tree_allclose(expected, jnp.cos(X**3) * 6.0 * X**2)
    assert_tree_allclose(T.grad(loss)(X), expected)
    assert_tree_allclose(jax.jit(T.grad(loss))(X), expected)
    assert_tree_allclose(T.vjp(loss, X)[1](1.0)[0], expected)
    batch = jnp.stack([X, 2 * X])
    assert_tree_allclose(jax.vmap(T.grad(loss))(batch), jax.vmap(jax.grad(loss))(batch))
    # linearize: the rule's bwd, transposed
    _, f_lin = T.linearize(loss, X)
    assert_tree_allclose(f_lin(jnp.ones(3)), jnp.sum(expected))
    # forward mode has no rule of the primitive's: the expansion (the true derivative)
    _, y_dot = T.jvp(lambda x: prim(jax.typeof(x))(x), (X,), (jnp.ones(3),))
    assert_tree_allclose(y_dot, 3.0 * X**2)


def test_custom_remat_under_checkpoint_uses_its_rules():
    from jax._src.ad_checkpoint import custom_remat

    def f(x):
        return jnp.sin(x) * x

    def f1(x):
        s = jnp.sin(x)
        return s * x, s

    def f2(s, x):
        return s * x, (s, x)

    def fbwd(residuals, g):
        s, x = residuals
        return None, 2.0 * g * (s + x * jnp.cos(x))  # 2x the true gradient: seen to be used

    h = custom_remat(f, f1, f2, fbwd)

    def loss(x):
        return jnp.sum(jax.checkpoint(h)(x))

    with remat3():
        expected = jax.grad(loss)(X)
        assert_tree_allclose(expected, 2.0 * (jnp.sin(X) + X * jnp.cos(X)))
        assert_tree_allclose(T.grad(loss)(X), expected)
        assert_tree_allclose(jax.jit(T.grad(loss))(X), expected)


class Scale(hijax.VJPHiPrimitive):
    """x -> 3 x, linear; `transpose` given deliberately as 5 g (so that it is seen)."""

    def __init__(self, aval):
        self.in_avals = (aval,)
        self.out_aval = aval
        self.params = {}
        super().__init__()

    def expand(self, x):
        return 3.0 * x


class ScaleWithTranspose(Scale):
    def transpose(self, g, x_accum):
        x_accum.accum(5.0 * g)


@pytest.mark.parametrize("prim, factor", [(Scale, 3.0), (ScaleWithTranspose, 5.0)])
def test_hi_primitive_in_a_linear_program_is_transposed(prim, factor):
    def f(x):
        return prim(jax.typeof(x))(x)

    (ct,) = T.linear_transpose(f, X)(jnp.ones(3))
    assert_tree_allclose(ct, factor * jnp.ones(3))
    if prim is ScaleWithTranspose:
        (theirs,) = jax.linear_transpose(f, X)(jnp.ones(3))
        assert_tree_allclose(ct, theirs)
