"""PRNG keys (typed `jax.random.key` of any implementation, and raw uint32 keys) threaded
through loop carries, `cond` operands and custom-rule arguments: every transform works, keys
get no tangent (float0 cotangents where JAX gives them), and derivatives equal JAX's."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_tree_allclose
from jax import lax

import transforms


def scan_f(x, key):
    def body(carry, _):
        key, acc = carry
        key, sub = jax.random.split(key)
        return (key, acc * jnp.sin(x) + jax.random.normal(sub, ())), None

    (_, acc), _ = lax.scan(body, (key, x), None, length=3)
    return acc


def fori_f(x, key):
    def body(i, carry):
        key, acc = carry
        key, sub = jax.random.split(key)
        return key, acc * jnp.cos(x) + jax.random.uniform(sub, ())

    return lax.fori_loop(0, 3, body, (key, x))[1]


def while_f(x, key):
    def body(carry):
        i, key, acc = carry
        key, sub = jax.random.split(key)
        return i + 1, key, acc * jnp.cos(x) + jax.random.uniform(sub, ())

    return lax.while_loop(lambda c: c[0] < 3, body, (0, key, x))[2]


def cond_f(x, key):
    return lax.cond(
        x > 0, lambda k, x: x * jax.random.normal(k, ()), lambda k, x: jnp.sin(x), key, x
    )


@jax.custom_jvp
def custom_jvp_f(x, key):
    return jnp.sin(x) * jax.random.normal(key, ())


custom_jvp_f.defjvp(
    lambda p, t: (custom_jvp_f(*p), jnp.cos(p[0]) * jax.random.normal(p[1], ()) * t[0])
)


@jax.custom_vjp
def custom_vjp_f(x, key):
    return jnp.sin(x) * jax.random.normal(key, ())


custom_vjp_f.defvjp(
    lambda x, key: (custom_vjp_f(x, key), (x, key)),
    lambda res, g: (jnp.cos(res[0]) * jax.random.normal(res[1], ()) * g, None),
)

KEYS = {
    "threefry": lambda: jax.random.key(0),
    "rbg": lambda: jax.random.key(1, impl="rbg"),
    "raw_uint32": lambda: jax.random.PRNGKey(2),
}
FORWARD = {"scan": scan_f, "fori": fori_f, "while": while_f, "cond": cond_f, "cj": custom_jvp_f}
REVERSE = {"scan": scan_f, "fori": fori_f, "cond": cond_f, "cj": custom_jvp_f, "cv": custom_vjp_f}
X = jnp.float64(0.7)


def _key_tangent(key):
    return np.zeros(np.shape(key), jax.dtypes.float0)


# Every construct with a typed and a raw key; the other implementation in a loop carry.
CASES = [
    (name, kind)
    for name in ("scan", "fori", "while", "cond", "cj", "cv")
    for kind in ("threefry", "raw_uint32")
] + [("scan", "rbg"), ("while", "rbg")]


@pytest.mark.parametrize("name, kind", CASES)
def test_keys_get_no_tangent(name, kind):
    key = KEYS[kind]()
    if name in FORWARD:
        f = FORWARD[name]
        tangents = (jnp.float64(1.0), _key_tangent(key))
        assert_tree_allclose(transforms.jvp(f, (X, key), tangents), jax.jvp(f, (X, key), tangents))
    if name in REVERSE:
        f = REVERSE[name]
        out, f_vjp = transforms.vjp(f, X, key)
        out_jax, f_vjp_jax = jax.vjp(f, X, key)
        # The key's cotangent is float0, of the key's shape, exactly as JAX's.
        assert_tree_allclose((out, f_vjp(1.0)), (out_jax, f_vjp_jax(1.0)))


def test_keys_second_order_jit_and_vmap():
    key = jax.random.key(3)
    assert_tree_allclose(transforms.hessian(scan_f)(X, key), jax.hessian(scan_f)(X, key))
    assert_tree_allclose(
        transforms.hessian(custom_jvp_f)(X, key), jax.hessian(custom_jvp_f)(X, key)
    )
    keys = jax.random.split(key, 2)
    grad_ours = jax.jit(jax.vmap(transforms.grad(cond_f), (None, 0)))
    assert_tree_allclose(grad_ours(X, keys), jax.vmap(jax.grad(cond_f), (None, 0))(X, keys))
