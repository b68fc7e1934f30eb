"""lax's binary ops broadcast rank-0 operands and size-1 axes; rules must follow in both modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import transforms as T

OPS = [lax.mul, lax.add, lax.sub, lax.div, lax.max, lax.min, lax.pow, lax.atan2, lax.rem]


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.__name__)
def test_size_one_and_scalar_broadcasting(op):
    g = lambda a, b: jnp.sum(jnp.sin(op(a, b)))  # noqa: E731
    a = jnp.linspace(0.5, 1.5, 3).reshape(1, 3)
    b = jnp.linspace(0.7, 2.0, 12).reshape(4, 3)
    s = jnp.float64(1.3)
    for args in [(a, b), (b, a), (s, b), (b, s)]:
        ours, theirs = T.grad(g, (0, 1))(*args), jax.grad(g, (0, 1))(*args)
        for o, t in zip(ours, theirs, strict=True):
            assert o.shape == t.shape
            np.testing.assert_allclose(o, t, rtol=1e-10, atol=1e-12)
        tangents = tuple(jnp.cos(x) for x in args)
        np.testing.assert_allclose(
            T.jvp(g, args, tangents)[1], jax.jvp(g, args, tangents)[1], rtol=1e-10, atol=1e-12
        )


def test_custom_jvp_rule_with_a_jit_mixing_primal_and_tangent():
    # The user's rule computes primal and tangent in one jit: partial evaluation must split it.
    @jax.custom_jvp
    def f(x):
        return jnp.sin(x)

    @f.defjvp
    def f_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return jax.jit(lambda x, t: (jnp.sin(x), jnp.cos(x) * t))(x, t)

    h = lambda x: f(x) * x  # noqa: E731
    np.testing.assert_allclose(T.grad(h)(0.7), jax.grad(h)(0.7), rtol=1e-12)
    np.testing.assert_allclose(T.grad(T.grad(h))(0.7), jax.grad(jax.grad(h))(0.7), rtol=1e-12)
    zeta = lambda x: jax.scipy.special.zeta(3.0, x)  # noqa: E731
    np.testing.assert_allclose(T.grad(T.grad(zeta))(1.5), jax.grad(jax.grad(zeta))(1.5), rtol=1e-10)
