"""stack / unstack / split / tile / optimization_barrier: both modes against JAX, and the
dot-product test for their transposes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import transforms as T

CASES = {
    "stack": lambda x: jnp.stack([x, 2 * x, x**2], axis=1),
    "split": lambda x: jnp.concatenate(jnp.split(x**2, 3, axis=1)[::-1], axis=0),
    "unstack": lambda x: jnp.stack(jnp.unstack(x**2)[::-1]),
    "tile": lambda x: jnp.tile(x**2, (2, 1, 3)),
    "optimization_barrier": lambda x: jax.lax.optimization_barrier((x**2, x))[0] * 3,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_jax_both_modes(name):
    f = CASES[name]
    x = jnp.arange(6.0).reshape(2, 3) + 0.5
    y, f_vjp = T.vjp(f, x)
    ct = jnp.cos(jnp.arange(y.size).reshape(y.shape))
    np.testing.assert_allclose(f_vjp(ct)[0], jax.vjp(f, x)[1](ct)[0], rtol=1e-12)
    t = jnp.sin(x)
    np.testing.assert_allclose(T.jvp(f, (x,), (t,))[1], jax.jvp(f, (x,), (t,))[1], rtol=1e-12)


@pytest.mark.parametrize("name", ["stack", "split", "unstack", "tile"])
def test_transpose_dot_product(name):
    # The structural op alone is linear: <t, L^T c> == <L t, c>.
    linear = {
        "stack": lambda x: jnp.stack([x, x[::-1]], axis=0),
        "split": lambda x: jnp.split(x, [1], axis=1)[1],
        "unstack": lambda x: jnp.unstack(x, axis=1)[2],
        "tile": lambda x: jnp.tile(x, (3, 2)),
    }[name]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3))
    c = rng.normal(size=np.shape(linear(x)))
    (lt_c,) = T.linear_transpose(linear, x)(c)
    np.testing.assert_allclose(np.vdot(x, lt_c), np.vdot(linear(x), c), rtol=1e-12)


def test_device_put_is_the_identity_on_derivatives():
    d = jax.devices()[-1]
    f = lambda x: jnp.sum(jax.device_put(x, d) ** 2)  # noqa: E731
    x = jnp.arange(3.0)
    np.testing.assert_allclose(T.grad(f)(x), jax.grad(f)(x))
    np.testing.assert_allclose(T.jvp(f, (x,), (x,))[1], jax.jvp(f, (x,), (x,))[1])
