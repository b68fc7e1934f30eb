"""Windowed reductions and pooling, against JAX's autodiff and finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax
from rule_oracle import check_rule, check_transpose

RNG = np.random.default_rng(2)
X = RNG.standard_normal((2, 5, 6))  # distinct values: no ties inside a window
NEG_INF = -jnp.inf


def rw(x, init, op, dims, strides, padding, base=None, wdil=None):
    return lax.reduce_window(x, init, op, dims, strides, padding, base, wdil)


CASES = {
    "sum_valid": (lambda x: rw(x, 0.0, lax.add, (1, 2, 3), (1, 1, 2), "VALID"), (X,)),
    "sum_same": (lambda x: rw(x, 0.0, lax.add, (1, 3, 3), (1, 2, 2), "SAME"), (X,)),
    "sum_dilated": (
        lambda x: rw(
            x, 0.0, lax.add, (1, 2, 2), (1, 2, 1), ((0, 0), (1, 2), (0, 1)), (1, 2, 1), (1, 1, 2)
        ),
        (X,),
    ),  # fmt: skip
    "avg_pool": (lambda x: rw(x, 0.0, lax.add, (1, 2, 2), (1, 2, 2), "VALID") / 4.0, (X,)),
    "max_valid": (lambda x: rw(x, NEG_INF, lax.max, (1, 2, 3), (1, 1, 2), "VALID"), (X,)),
    "max_pool_same": (lambda x: rw(x, NEG_INF, lax.max, (1, 3, 3), (1, 2, 2), "SAME"), (X,)),
    "max_dilated": (
        lambda x: rw(
            x, NEG_INF, lax.max, (1, 2, 2), (1, 1, 2), ((0, 0), (1, 0), (0, 1)), None, (1, 2, 1)
        ),
        (X,),
    ),  # fmt: skip
    "min_valid": (lambda x: rw(x, jnp.inf, lax.min, (1, 3, 2), (1, 2, 1), "VALID"), (X,)),
    "prod_generic": (lambda x: rw(x, 1.0, lax.mul, (1, 2, 2), (1, 1, 1), "VALID"), (X,)),
    "generic_padded": (
        lambda x: rw(x, 0.5, lambda a, b: a * b, (1, 2, 2), (1, 2, 1), ((0, 0), (1, 0), (0, 1))),
        (X,),
    ),
    "generic_dilated": (
        lambda x: rw(x, 2.0, lax.mul, (1, 2, 1), (1, 1, 1), ((0, 0), (1, 1), (0, 0)), (1, 2, 1)),
        (X,),
    ),
}
SECOND_ORDER = {"sum_dilated", "max_valid"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_window_rules(name):
    f, args = CASES[name]
    # JAX has no reverse rule for max pooling with window dilation: our two modes and finite
    # differences are the reference there.
    # and JAX's generic reduce_window has a forward rule only.
    oracle = (
        False if name == "max_dilated" else "jvp" if name.startswith(("generic", "prod")) else True
    )
    check_rule(f, args, order=2 if name in SECOND_ORDER else 1, jax_oracle=oracle)


def test_reduce_window_sum_transpose():
    check_transpose(
        lambda x: rw(x, 0.0, lax.add, (1, 2, 3), (1, 2, 2), ((0, 0), (2, 1), (1, 0)), (1, 1, 2),
                     (1, 2, 1)),
        (X,),
    )  # fmt: skip


def test_generic_reduce_window_second_order():
    # JAX has no reverse rule here: compare forward-over-reverse with a difference of gradients.
    import transforms

    f = CASES["generic_padded"][0]
    t = RNG.standard_normal(X.shape)
    g = transforms.grad(lambda x: jnp.sum(jnp.sin(f(x))))
    ours = transforms.jvp(g, (X,), (t,))[1]
    eps = 1e-5
    np.testing.assert_allclose(ours, (g(X + eps * t) - g(X - eps * t)) / (2 * eps), atol=1e-6)


def test_through_jax_max_pool_gradient():
    # jax.grad of max pooling emits select_and_scatter_add; we differentiate that program.
    def pooled_grad(x):
        return jax.grad(lambda x: jnp.sum(rw(x, NEG_INF, lax.max, (2, 2), (2, 2), "VALID") ** 2))(x)

    check_rule(pooled_grad, (X[0, :4],))


@settings(max_examples=4, deadline=None)
@given(
    n=st.integers(3, 6),
    k=st.integers(1, 3),
    s=st.integers(1, 2),
    lo=st.integers(0, 2),
    bd=st.integers(1, 2),
    wd=st.integers(1, 2),
    reducer=st.sampled_from(["sum", "max"]),
)
def test_window_configurations(n, k, s, lo, bd, wd, reducer):
    x = np.random.default_rng(n * 7 + k).standard_normal((n,))
    op, init = (lax.add, 0.0) if reducer == "sum" else (lax.max, NEG_INF)
    # Padding with -inf for a max reduction: keep each window at least one real element.
    pad = ((lo, 0),) if reducer == "sum" else ((0, 0),)
    check_rule(
        lambda x: rw(x, init, op, (k,), (s,), pad, (bd,), (wd,)),
        (x,),
        jax_oracle=reducer == "sum" or wd == 1,
    )
