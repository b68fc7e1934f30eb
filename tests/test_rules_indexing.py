"""Gather, the scatter family and dynamic slicing, against JAX's autodiff and finite differences."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax
from rule_oracle import check_rule, check_transpose

RNG = np.random.default_rng(0)
X = RNG.standard_normal((4, 5))
U2 = RNG.standard_normal((2, 5))
IDX = jnp.array([0, 2])
DUP = jnp.array([1, 1, 3])
U3 = RNG.standard_normal((3, 5))

CASES = {
    "index_int": (lambda x: x[1], (X,)),
    "fancy_rows": (lambda x: x[jnp.array([3, 0, 3])], (X,)),
    "fancy_2d": (lambda x: x[jnp.array([0, 2]), 1:], (X,)),
    "fancy_pairs": (lambda x: x[jnp.array([0, 3, 3]), jnp.array([1, 4, 4])], (X,)),
    "take_axis1": (lambda x: jnp.take(x, jnp.array([4, 0, 0]), axis=1), (X,)),
    "take_fill": (lambda x: jnp.take(x, jnp.array([1, 7]), axis=0, mode="fill"), (X,)),
    "take_clip": (lambda x: jnp.take(x, jnp.array([1, 7, -3]), axis=1, mode="clip"), (X,)),
    "take_along": (
        lambda x: jnp.take_along_axis(x, jnp.array([[0, 1, 2, 3, 3]] * 4), axis=0),
        (X,),
    ),
    "set_unique": (lambda x, u: x.at[IDX].set(u), (X, U2)),
    "set_dup": (lambda x, u: x.at[DUP].set(u), (X, U3)),
    "set_scalar": (lambda x: x.at[1, 2].set(3.0), (X,)),
    "add_dup": (lambda x, u: x.at[DUP].add(u), (X, U3)),
    "add_drop": (lambda x, u: x.at[jnp.array([1, 9, 2])].add(u, mode="drop"), (X, U3)),
    "mul_unique": (lambda x, u: x.at[IDX].mul(u, unique_indices=True), (X, U2)),
    "min_dup": (lambda x, u: x.at[DUP].min(u), (X, U3)),
    "max_dup": (lambda x, u: x.at[DUP].max(u), (X, U3)),
    "dynamic_slice": (lambda x: lax.dynamic_slice(x, (jnp.int32(1), jnp.int32(2)), (2, 3)), (X,)),
    "dynamic_update_slice": (
        lambda x, u: lax.dynamic_update_slice(x, u, (jnp.int32(2), jnp.int32(0))),
        (X, U2),
    ),
    "gather_batched": (
        lambda x: jnp.take_along_axis(x, jnp.array([[2], [0], [4], [1]]), axis=1) ** 2,
        (X,),
    ),
}
SECOND_ORDER = {"fancy_pairs", "set_dup", "mul_unique", "max_dup"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_indexing_rules(name):
    f, args = CASES[name]
    check_rule(f, args, order=2 if name in SECOND_ORDER else 1)


def test_scatter_mul_repeated_indices():
    # JAX has no rule here (it needs unique indices): finite differences are the reference.
    check_rule(lambda x, u: x.at[DUP].mul(u), (X, U3), jax_oracle=False)
    check_rule(lambda x, u: x.at[DUP].mul(u), (X, U3), jax_oracle=False)


def test_scatter_mul_zero_updates_exact():
    # Zeros among the updates landing on one slot: the exclusive product, not a division.
    u = U3.copy()
    u[0, :2] = 0.0
    u[1, 0] = 0.0
    f = lambda x, u: x.at[DUP].mul(u)  # noqa: E731
    t_out, _ = check_rule(f, (X, u), jax_oracle=False)
    # Slot 1 gets updates 0 and 1: where both are zero the derivative vanishes, where one is
    # zero it is x times the other one.
    rng = np.random.default_rng(0)
    t_x = rng.standard_normal(X.shape)
    t_u = rng.standard_normal(u.shape)
    both_zero = t_x[1, 0] * u[0, 0] * u[1, 0] + X[1, 0] * (
        t_u[0, 0] * u[1, 0] + t_u[1, 0] * u[0, 0]
    )
    one_zero = X[1, 1] * t_u[0, 1] * u[1, 1]
    np.testing.assert_allclose(t_out[1, :2], [both_zero, one_zero], atol=1e-12)
    assert one_zero != 0.0


def test_scatter_min_ties_share_the_tangent():
    x = jnp.array([1.0, 2.0, 3.0])
    u = jnp.array([1.0, 5.0, 1.0])
    # At a tie the function has a kink; JAX's convention (the mean) is the reference.
    check_rule(lambda x, u: x.at[jnp.array([0, 1, 0])].min(u), (x, u), fd=False)


def test_gather_and_scatter_add_transposes():
    check_transpose(lambda x: x[jnp.array([0, 3, 3]), 1:4], (X,))
    check_transpose(lambda x, u: x.at[DUP].add(u), (X, U3))


@settings(max_examples=4, deadline=None)
@given(
    rows=st.integers(1, 5),
    idx=st.lists(st.integers(-5, 4), min_size=1, max_size=4),
    op=st.sampled_from(["get", "set", "add", "max"]),
)
def test_indexing_random_indices(rows, idx, op):
    x = np.random.default_rng(rows).standard_normal((rows, 3))
    idx = jnp.array([i % rows for i in idx])  # in range, repeats likely
    u = np.random.default_rng(7).standard_normal((len(idx), 3))
    if op == "get":
        check_rule(lambda x: x[idx], (x,))
    else:
        check_rule(lambda x, u: getattr(x.at[idx], op)(u), (x, u))


def test_under_jit_and_vmap():
    import jax

    import transforms

    def loss(x):
        return jnp.sum(jnp.sort(x.at[DUP].add(U3))[jnp.array([0, 2])] ** 2)

    ref = jax.grad(loss)(X)
    np.testing.assert_allclose(jax.jit(transforms.grad(loss))(X), ref, rtol=1e-12)
    batch = np.stack([X, 2 * X])
    np.testing.assert_allclose(
        jax.vmap(transforms.grad(loss))(batch), jax.vmap(jax.grad(loss))(batch), rtol=1e-12
    )
