"""Engine behaviours that real JAX libraries (Flax NNX, Equinox, diffrax) met, without them.

Each test is the smallest program of plain JAX that showed the failure; tests/test_libraries.py
runs the libraries themselves.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from helpers import assert_tree_allclose

import transforms


def _literal_outputs(x):
    # `jnp.array(-1.0)` and `jnp.array(3)` are literals of the traced program: returned as
    # they are, they came back as host scalars (`TypedFloat`) where JAX gives an `Array`.
    return jnp.sum(x**2), (jnp.array(-1.0), jnp.array(3), 2.0 * jnp.ones(()))


def test_literal_outputs_are_arrays_eagerly():
    x = jnp.array([1.0, 2.0])
    (value, aux), grads = transforms.value_and_grad(_literal_outputs, has_aux=True)(x)
    primals_out = {
        "value_and_grad": (value, aux),
        "jvp": transforms.jvp(_literal_outputs, (x,), (x,))[0],
        "vjp": transforms.vjp(_literal_outputs, x)[0],
        "linearize": transforms.linearize(_literal_outputs, x)[0],
    }
    for name, outs in primals_out.items():
        assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(outs)), name
        assert_tree_allclose(outs, _literal_outputs(x))
    assert_tree_allclose(grads, jax.grad(lambda x: _literal_outputs(x)[0])(x))
    assert aux[0][()] == -1.0  # subscriptable, as an Array is
