"""The conventions at kinks that the docs state: we follow JAX's everywhere (docs/tf_migration.md).

Each case is a non-differentiable point where frameworks disagree; the derivative there must be
exactly JAX's, in both modes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import transforms as T

CASES = [
    ("abs at 0", jnp.abs, 0.0),
    ("abs at -0.0", jnp.abs, -0.0),
    ("relu at 0", jax.nn.relu, 0.0),
    ("maximum tie", lambda x: jnp.maximum(x, 0.0), 0.0),
    ("minimum tie", lambda x: jnp.minimum(x, 0.0), 0.0),
    ("clip at lower bound", lambda x: jnp.clip(x, 0.0, 1.0), 0.0),
    ("clip at upper bound", lambda x: jnp.clip(x, 0.0, 1.0), 1.0),
    ("sign at 0", jnp.sign, 0.0),
    ("max over ties", lambda x: jnp.max(jnp.stack([x, x, x - 1.0])), 2.0),
]


@pytest.mark.parametrize("name,f,x", CASES, ids=[c[0] for c in CASES])
def test_kink_matches_jax(name, f, x):
    expected = jax.grad(f)(x)
    assert np.array_equal(T.grad(f)(x), expected), name
    _, ours_fwd = T.jvp(f, (x,), (1.0,))
    assert np.array_equal(ours_fwd, jax.jvp(f, (x,), (1.0,))[1]), name


def test_abs_at_zero_is_one():
    # Stated in the migration guide: TensorFlow gives 0 here, JAX (and we) give 1.
    assert T.grad(jnp.abs)(0.0) == 1.0
    assert T.grad(jnp.abs)(-1.0) == -1.0


def test_max_ties_split_evenly():
    g = T.grad(jnp.max)(jnp.array([1.0, 3.0, 3.0]))
    assert np.array_equal(g, jnp.array([0.0, 0.5, 0.5]))


def test_abs_on_arrays_both_modes():
    x = jnp.array([[-1.5, 0.0], [-0.0, 2.0]])
    f = lambda x: jnp.sum(jnp.abs(x) * jnp.arange(1.0, 5.0).reshape(2, 2))
    assert np.array_equal(T.grad(f)(x), jax.grad(f)(x))
    t = jnp.ones_like(x)
    assert np.array_equal(T.jvp(jnp.abs, (x,), (t,))[1], jax.jvp(jnp.abs, (x,), (t,))[1])
