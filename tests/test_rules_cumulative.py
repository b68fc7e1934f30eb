"""Cumulative reductions, sort and top_k, against JAX's autodiff and finite differences."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax
from rule_oracle import check_rule

RNG = np.random.default_rng(1)
X = RNG.standard_normal((3, 5))
POS = RNG.uniform(0.5, 2.0, (3, 5))

CASES = {
    "cumsum": (lambda x: jnp.cumsum(x, axis=1), (X,)),
    "cumsum_rev": (lambda x: lax.cumsum(x, axis=0, reverse=True), (X,)),
    "cumprod": (lambda x: jnp.cumprod(x, axis=1), (X,)),
    "cumprod_rev": (lambda x: lax.cumprod(x, axis=0, reverse=True), (X,)),
    "cummax": (lambda x: lax.cummax(x, axis=1), (X,)),
    "cummax_rev": (lambda x: lax.cummax(x, axis=1, reverse=True), (X,)),
    "cummin": (lambda x: lax.cummin(x, axis=0), (X,)),
    "cummin_rev": (lambda x: lax.cummin(x, axis=0, reverse=True), (X,)),
    "cumlogsumexp": (lambda x: lax.cumlogsumexp(x, axis=1), (X,)),
    "cumlogsumexp_rev": (lambda x: lax.cumlogsumexp(x, axis=1, reverse=True), (30 * X,)),
    "sort": (lambda x: jnp.sort(x, axis=1), (X,)),
    "sort_axis0": (lambda x: jnp.sort(x, axis=0) ** 2, (X,)),
    "argsort_take": (lambda x: x[0][jnp.argsort(x[1])] * x[2], (X,)),
    "sort_two_operands": (lambda x, y: lax.sort((x, y), dimension=1, num_keys=1), (X, POS)),
    "sort_two_keys": (
        lambda x, y: lax.sort((jnp.round(x), y, x * y), dimension=1, num_keys=2),
        (X, POS),
    ),
    "lexsort": (lambda x: x[2][jnp.lexsort((x[0], x[1]))], (X,)),
    "top_k": (lambda x: lax.top_k(x, 3)[0], (X,)),
    "approx_max_k": (lambda x: lax.approx_max_k(x, 2)[0] ** 2, (X,)),
    "approx_min_k": (lambda x: lax.approx_min_k(x, 2)[0], (X,)),
    "top_k_axis0": (lambda x: lax.top_k(x.T, 2)[0].T * x[:2], (X,)),
}
SECOND_ORDER = {"cumprod_rev", "sort_two_operands"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_cumulative_and_sort_rules(name):
    f, args = CASES[name]
    check_rule(f, args, order=2 if name in SECOND_ORDER else 1)


@pytest.mark.parametrize("op", [lax.cummax, lax.cummin])
@pytest.mark.parametrize("reverse", [False, True])
def test_cum_extremum_ties_follow_jax(op, reverse):
    x = jnp.array([[1.0, 3.0, 3.0, 2.0, 3.0, 3.0], [2.0, 2.0, 2.0, 1.0, 0.0, 2.0]])
    check_rule(lambda x: op(x, axis=1, reverse=reverse), (x,), fd=False)


def test_cumprod_with_zeros_is_exact():
    x = X.copy()
    x[0, 1] = 0.0
    x[1, 1:3] = 0.0
    check_rule(lambda x: jnp.cumprod(x, axis=1), (x,), order=2)


OPS = (lax.cumsum, lax.cumprod, lax.cumlogsumexp, lax.cummax)


@settings(max_examples=3, deadline=None)
@given(
    n=st.integers(1, 6),
    axis=st.integers(0, 1),
    reverse=st.booleans(),
    op=st.sampled_from(OPS),
    seed=st.integers(0, 99),
)
def test_cumulative_shapes(n, axis, reverse, op, seed):
    x = np.random.default_rng(seed).standard_normal((n, 3))
    check_rule(lambda x: op(x, axis=axis, reverse=reverse), (x,))
