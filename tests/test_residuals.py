"""The residual pass (transforms/residuals.py): cheap residuals are recomputed, never wrong."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import transforms as T
from transforms import engine, residuals


@pytest.fixture
def pass_switch():
    """Yields a setter for the pass; restores it (and clears cached programs) afterwards."""
    before = residuals.ENABLED

    def set_enabled(on: bool):
        residuals.ENABLED = on
        engine.clear_caches()

    yield set_enabled
    set_enabled(before)


def _softmax_attention(params, x):
    wq, wk, wv = params
    q, k, v = x @ wq, x @ wk, x @ wv
    att = jax.nn.softmax(jnp.einsum("bqd,bkd->bqk", q, k) / np.sqrt(q.shape[-1]), axis=-1)
    return jnp.mean(jnp.einsum("bqk,bkd->bqd", att, v) ** 2)


def _layer_norm(params, x):
    (g,) = params
    mu = jnp.mean(x, -1, keepdims=True)
    var = jnp.mean((x - mu) ** 2, -1, keepdims=True)
    return jnp.sum(jnp.tanh((x - mu) * lax.rsqrt(var + 1e-5) * g))


def _quotients(params, x):
    (a,) = params
    y = x / (1.0 + a**2)
    return jnp.sum(y / jnp.sum(y) + jnp.maximum(y, 0.1) * a)


def _scan_of_quotients(params, xs):
    (w,) = params

    def step(h, x):
        h = jnp.tanh(h @ w) / (1.0 + jnp.sum(h**2)) + x
        return h, h / (2.0 + x**2)

    h, ys = lax.scan(step, jnp.zeros(xs.shape[1:]), xs)
    return jnp.sum(h) + jnp.sum(ys**2)


def _case(name):
    rng = np.random.default_rng(0)
    if name == "attention":
        return _softmax_attention, (
            [jnp.asarray(rng.standard_normal((8, 8)) / 3) for _ in range(3)],
            jnp.asarray(rng.standard_normal((2, 5, 8))),
        )
    if name == "layer_norm":
        return _layer_norm, (
            [jnp.asarray(rng.standard_normal(6))],
            jnp.asarray(rng.standard_normal((4, 6))),
        )
    if name == "quotients":
        return _quotients, (
            [jnp.asarray(rng.standard_normal((3, 4)))],
            jnp.asarray(rng.standard_normal((3, 4))),
        )
    return _scan_of_quotients, (
        [jnp.asarray(rng.standard_normal((4, 4)) / 2)],
        jnp.asarray(rng.standard_normal((6, 3, 4))),
    )


def _residual_bytes(f, *args):
    _, pullback = T.vjp(f, *args)
    return sum(np.asarray(r).nbytes for r in jax.tree.leaves(pullback))


@pytest.mark.parametrize("name", ["attention", "layer_norm", "quotients", "scan"])
def test_recomputed_residuals_give_the_same_derivatives(name, pass_switch):
    f, args = _case(name)
    pass_switch(False)
    off = T.grad(f)(*args)
    off_bytes = _residual_bytes(f, *args)
    pass_switch(True)
    on = T.grad(f)(*args)
    on_jit = jax.jit(T.grad(f))(*args)
    on_bytes = _residual_bytes(f, *args)
    oracle = jax.grad(f)(*args)
    for a, b, c, d in zip(*(jax.tree.leaves(t) for t in (on, on_jit, off, oracle)), strict=True):
        np.testing.assert_allclose(a, c, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(b, d, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(a, d, rtol=1e-12, atol=1e-14)
    assert on_bytes <= off_bytes


def test_attention_pullback_stores_less_than_without_the_pass_and_than_jax(pass_switch):
    f, args = _case("attention")
    pass_switch(False)
    off = _residual_bytes(f, *args)
    pass_switch(True)
    on = _residual_bytes(f, *args)
    _, theirs = jax.vjp(f, *args)
    jax_bytes = sum(np.asarray(r).nbytes for r in jax.tree.leaves(theirs))
    # The quotient rule's coefficient -(p / r) / r is rebuilt from p / r and r, both saved.
    assert on < off
    assert on <= jax_bytes


def test_transcendentals_of_saved_values_stay_saved(pass_switch):
    pass_switch(True)

    def f(x):
        # exp(x) is saved for its own derivative; the cosine of it is a transcendental of a
        # saved value: it stays a residual instead of costing a cos on every backward pass.
        return jnp.sum(jnp.sin(jnp.exp(x)))

    x = jnp.linspace(-1.0, 1.0, 7)
    _, pullback = T.vjp(f, x)
    assert len(jax.tree.leaves(pullback)) == 2  # exp(x) and cos(exp(x))
    np.testing.assert_allclose(pullback(1.0)[0], jax.grad(f)(x), rtol=1e-14)


def test_division_by_a_broadcast_denominator_keeps_row_sized_coefficients():
    # A softmax divides by row sums broadcast over the row. Reverse mode keeps the row sums'
    # factor and the numerator (saved anyway), not a full-size -out / denominator.
    def normalise(x):
        e = jnp.exp(x)
        return jnp.sum((e / jnp.sum(e, axis=-1, keepdims=True)) ** 2)

    x = jnp.linspace(-1.0, 1.0, 4 * 8 * 16).reshape(4, 8, 16)
    _, ours = T.vjp(normalise, x)
    _, theirs = jax.vjp(normalise, x)
    full = [r for r in jax.tree.leaves(ours) if np.shape(r) == x.shape]
    jax_full = [r for r in jax.tree.leaves(theirs) if np.shape(r) == x.shape]
    assert len(full) <= len(jax_full), (len(full), len(jax_full))
    np.testing.assert_allclose(T.grad(normalise)(x), jax.grad(normalise)(x), rtol=1e-12)


def test_compiled_attention_gradient_needs_no_more_temporaries_than_jax():
    # The bench's attention workload (issue 23): XLA's temporaries for the compiled gradient,
    # which are deterministic. A full-size quotient-rule coefficient made them 1.36x JAX's.
    from bench.compiled import attention

    w = attention(np.random.default_rng(0), quick=False)

    def temp_bytes(g):
        compiled = jax.jit(g).lower(w.params, w.data).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    assert temp_bytes(T.grad(w.loss)) <= temp_bytes(jax.grad(w.loss))


def _rule_rows():
    from test_rules_table import ROWS

    return [r for r in ROWS if r.oracle and r.fd and np.float64 in r.dtypes]


def _vjp_and_second_order(f, args, seed=3):
    rng = np.random.default_rng(seed)
    out = f(*args)
    ct = jax.tree.map(lambda o: jnp.asarray(rng.standard_normal(np.shape(o)), o.dtype), out)
    first = T.vjp(f, *args)[1](ct)

    def inner(*xs):  # a scalar of the first-order cotangents: its gradient is second order
        cts = T.vjp(f, *xs)[1](ct)
        floats = [c for c in jax.tree.leaves(cts) if jnp.issubdtype(c.dtype, jnp.inexact)]
        return sum(jnp.sum(jnp.real(c) ** 2) for c in floats)

    inexact = tuple(i for i, a in enumerate(args) if jnp.issubdtype(a.dtype, jnp.inexact))
    return first, T.grad(inner, argnums=inexact)(*args) if inexact else ()


def test_every_rule_gives_the_same_bits_with_and_without_the_pass(pass_switch):
    # Issue 23 item 5: the optimised derivative programs against the unoptimised ones, across
    # the rule table (float64, first and second order). Op by op the recomputed equations are
    # the same operations on the same saved values, so the results are identical, not close.
    from test_rules_table import _make_args

    checked, changed = 0, 0
    with jax.disable_jit():
        for row in _rule_rows():
            args = _make_args(row, row.shapes[-1], np.float64)
            pass_switch(False)
            off = _vjp_and_second_order(row.fun, args)
            n_off = len(jax.tree.leaves(T.vjp(row.fun, *args)[1]))
            pass_switch(True)
            on = _vjp_and_second_order(row.fun, args)
            changed += len(jax.tree.leaves(T.vjp(row.fun, *args)[1])) < n_off
            for a, b in zip(jax.tree.leaves(on), jax.tree.leaves(off), strict=True):
                np.testing.assert_array_equal(a, b, err_msg=row.name)
            checked += 1
    assert checked > 80 and changed > 0, (checked, changed)
