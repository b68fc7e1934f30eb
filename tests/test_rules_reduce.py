"""lax.reduce with a user's reducer (the variadic `reduce` primitive): forward mode, as in JAX."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import transforms as T
from transforms.errors import MissingRuleError

RNG = np.random.default_rng(0)
X = jnp.asarray(RNG.standard_normal((3, 5)))
Y = jnp.asarray(RNG.standard_normal((3, 5)))


def max_and_sum(x, y, axis):
    return lax.reduce(
        (x, y), (-jnp.inf, 0.0), lambda a, b: (jnp.maximum(a[0], b[0]), a[1] + b[1]), (axis,)
    )


def logsumexp_reduce(x):
    return lax.reduce(x, -jnp.inf, jnp.logaddexp, (0, 1))


def max_with_index(x):
    # The argmax reducer users write by hand: (value, index) pairs, first maximum wins.
    def pick(a, b):
        keep = (a[0] > b[0]) | ((a[0] == b[0]) & (a[1] < b[1]))
        return jnp.where(keep, a[0], b[0]), jnp.where(keep, a[1], b[1])

    idx = jnp.broadcast_to(jnp.arange(x.shape[1], dtype=x.dtype), x.shape)
    return lax.reduce((x, idx), (-jnp.inf, jnp.inf), pick, (1,))


@pytest.mark.parametrize("axis", [0, 1])
def test_jvp_matches_jax(axis):
    tangents = tuple(jnp.asarray(RNG.standard_normal(a.shape)) for a in (X, Y))
    ours = T.jvp(lambda x, y: max_and_sum(x, y, axis), (X, Y), tangents)
    ref = jax.jvp(lambda x, y: max_and_sum(x, y, axis), (X, Y), tangents)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), ours, ref)


def test_second_order_forward_matches_jax():
    ours = T.jacfwd(T.jacfwd(logsumexp_reduce))(X)
    ref = jax.jacfwd(jax.jacfwd(logsumexp_reduce))(X)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-14)
    # And the value itself: the Hessian of logsumexp is diag(p) - p p^T.
    p = jax.nn.softmax(X.reshape(-1))
    np.testing.assert_allclose(
        ours.reshape(15, 15), jnp.diag(p) - jnp.outer(p, p), rtol=1e-10, atol=1e-14
    )


def test_hand_written_argmax_reducer():
    # jax.jacfwd fails on this one (a symbolic zero reaches its rule); the answer is known:
    # d max_j x_ij / d x = one-hot at the (first) argmax; the index output has zero tangent.
    jac_value = T.jacfwd(lambda x: max_with_index(x)[0])(X)
    expected = jax.nn.one_hot(jnp.argmax(X, axis=1), 5)
    for i in range(3):
        np.testing.assert_allclose(jac_value[i, i], expected[i])
        np.testing.assert_allclose(jnp.delete(jac_value[i], i, axis=0), 0.0)
    _, (_, index_dot) = T.jvp(max_with_index, (X,), (jnp.ones_like(X),))
    np.testing.assert_allclose(index_dot, 0.0)


def test_under_jit_and_vmap():
    f = jax.jit(jax.vmap(lambda x, t: T.jvp(logsumexp_reduce, (x,), (t,))[1]))
    xs = jnp.stack([X, 2 * X])
    ts = jnp.ones_like(xs)
    expected = jnp.stack([jax.jvp(logsumexp_reduce, (x,), (t,))[1] for x, t in zip(xs, ts)])
    np.testing.assert_allclose(f(xs, ts), expected, rtol=1e-12)


def test_reverse_mode_says_what_to_do():
    with pytest.raises(MissingRuleError, match="reduce.*reverse mode.*forward mode"):
        T.grad(lambda x: logsumexp_reduce(x))(X)


def test_init_values_are_not_differentiated():
    def f(x, init):
        return lax.reduce(x, init, lax.add, (0,))

    with pytest.raises(NotImplementedError, match="init values"):
        T.jvp(f, (X, 0.0), (X, 1.0))
