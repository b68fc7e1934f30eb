"""Pullbacks and linear maps are pytrees (`jax.tree_util.Partial`), as JAX's are.

`vjp`, `linearize` and `linear_transpose` return a `Partial` whose leaves are the residuals:
it can be returned from `jax.jit` (JAX's gradient-checkpointing docs do
`jax.jit(lambda x: jax.vjp(f, x))`), passed into it, flattened and unflattened, and calling it
checks its arguments with JAX's exception types and sentences.
"""

import contextlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_tree_allclose
from jax import tree_util

import transforms as T


@contextlib.contextmanager
def raises(exc_type, *patterns):
    with pytest.raises(exc_type) as info:
        yield
    for p in patterns:
        assert re.search(p, str(info.value)), f"{p!r} not in:\n{info.value}"


def f(x, y):
    return {"a": jnp.sin(x) * y, "b": jnp.cos(x * y).sum()}


X, Y = jnp.linspace(0.1, 1.0, 3), jnp.array([0.5, -1.0, 2.0])
CT = {"a": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array(0.3)}
TS = (jnp.array([0.2, 0.1, -1.0]), jnp.array([1.0, 1.0, 0.5]))


def test_vjp_is_a_partial_over_its_residuals():
    _, pullback = T.vjp(f, X, Y)
    assert isinstance(pullback, tree_util.Partial)
    assert callable(pullback.func)
    leaves, treedef = tree_util.tree_flatten(pullback)
    assert leaves and all(isinstance(r, jax.Array) for r in leaves)
    assert list(pullback.args) == leaves
    rebuilt = tree_util.tree_unflatten(treedef, leaves)
    assert_tree_allclose(rebuilt(CT), jax.vjp(f, X, Y)[1](CT))


def test_vjp_returned_from_and_passed_into_jit():
    y, pullback = jax.jit(lambda x, y: T.vjp(f, x, y))(X, Y)
    y_ref, pullback_ref = jax.vjp(f, X, Y)
    assert_tree_allclose(y, y_ref)
    assert_tree_allclose(pullback(CT), pullback_ref(CT))
    assert_tree_allclose(jax.jit(lambda pb, ct: pb(ct))(pullback, CT), pullback_ref(CT))
    # and a pullback built eagerly, passed into jit
    _, eager = T.vjp(f, X, Y)
    assert_tree_allclose(jax.jit(lambda pb, ct: pb(ct))(eager, CT), pullback_ref(CT))


def test_checkpointing_docs_pattern():
    # JAX's gradient-checkpointing docs: jax.jit(lambda x: jax.vjp(f, x)), here with remat.
    g = jax.checkpoint(lambda x: jnp.sin(jnp.sin(x)))
    _, pullback = jax.jit(lambda x: T.vjp(g, x))(X)
    assert_tree_allclose(pullback(jnp.ones(3)), jax.vjp(g, X)[1](jnp.ones(3)))


def test_vjp_with_has_aux_and_integer_input():
    def h(x, n):
        return jnp.sin(x) * n, {"aux": x}

    y, pullback, aux = jax.jit(lambda x: T.vjp(h, x, 3, has_aux=True))(X)
    y_ref, pullback_ref, aux_ref = jax.vjp(h, X, 3, has_aux=True)
    assert_tree_allclose((y, aux), (y_ref, aux_ref))
    assert_tree_allclose(pullback(jnp.ones(3)), pullback_ref(jnp.ones(3)))


def test_linearize_is_a_partial_and_crosses_jit():
    y, f_jvp = jax.jit(lambda x, y: T.linearize(f, x, y))(X, Y)
    y_ref, f_jvp_ref = jax.linearize(f, X, Y)
    assert isinstance(f_jvp, tree_util.Partial) and tree_util.tree_leaves(f_jvp)
    assert_tree_allclose(y, y_ref)
    assert_tree_allclose(f_jvp(*TS), f_jvp_ref(*TS))
    assert_tree_allclose(jax.jit(lambda lf, t: lf(*t))(f_jvp, TS), f_jvp_ref(*TS))


def test_linear_transpose_is_a_partial_and_crosses_jit():
    a = jnp.array([[1.0, 2.0], [3.0, 4.0], [0.5, -1.0]])

    def lin(x):
        return a @ x

    f_t = T.linear_transpose(lin, jnp.ones(2))
    f_t_ref = jax.linear_transpose(lin, jnp.ones(2))
    assert isinstance(f_t, tree_util.Partial)
    ct = jnp.array([1.0, -1.0, 2.0])
    assert_tree_allclose(f_t(ct), f_t_ref(ct))
    assert_tree_allclose(jax.jit(lambda ft, c: ft(c))(f_t, ct), f_t_ref(ct))
    built_in_jit = jax.jit(lambda x: T.linear_transpose(lin, x))(jnp.ones(2))
    assert_tree_allclose(built_in_jit(ct), f_t_ref(ct))


def test_pullback_under_vmap_and_tree_map():
    _, pullback = T.vjp(lambda x: jnp.sin(x) * 2.0, X)
    cts = jnp.stack([jnp.ones(3), jnp.arange(3.0)])
    assert_tree_allclose(
        jax.vmap(pullback)(cts), jax.vmap(jax.vjp(lambda x: jnp.sin(x) * 2.0, X)[1])(cts)
    )
    doubled = tree_util.tree_map(lambda r: r, pullback)
    assert_tree_allclose(doubled(jnp.ones(3)), pullback(jnp.ones(3)))


# --- argument checks: JAX's exception types and sentences -----------------------------------------


def test_vjp_called_with_too_many_arguments():
    _, pullback = T.vjp(lambda x: (x, x), 1.0)
    with raises(TypeError, "applied to <lambda> was called with 2 arguments", "single argument"):
        pullback(1.0, 1.0)
    with raises(TypeError, "missing 1 required positional argument"):
        pullback()


def test_vjp_cotangent_checks():
    _, pullback = T.vjp(jnp.sin, np.float32(1.0))
    with raises(ValueError, r"unexpected JAX type \(e.g. shape/dtype\) for argument to VJP"):
        pullback(jnp.ones(2, jnp.float32))
    with raises(ValueError, "unexpected JAX type", "got int32"):
        pullback(jnp.int32(1))
    with raises(ValueError, "unexpected tree structure"):
        pullback((np.float32(1.0),))


def test_linearized_function_checks():
    _, f_jvp = T.linearize(f, X, Y)
    with raises(TypeError, "expected PyTreeDef"):
        f_jvp(TS[0])
    with raises(ValueError, "linearized function called on tangent values inconsistent"):
        f_jvp(jnp.ones(2), TS[1])


def test_linear_transpose_checks():
    f_t = T.linear_transpose(lambda x: 2.0 * x, jnp.ones(2))
    with raises(TypeError, "cotangent type does not match function output"):
        f_t(jnp.ones(3))
    with raises(TypeError, "cotangent tree does not match function output"):
        f_t((jnp.ones(2),))


INTEGER_LINEAR = [
    (lambda x: 2 * x, (jnp.arange(3),)),
    (lambda x: x + x, (jnp.arange(3, dtype=jnp.int32),)),
    (lambda x: -x - x[::-1], (jnp.arange(4),)),
    (lambda x: jnp.sum(x), (jnp.arange(5),)),
    (lambda x: x.reshape(2, 2).T, (jnp.arange(4),)),
    (lambda x: jnp.concatenate([x, 3 * x]), (jnp.arange(3),)),
    (lambda x: x[1:], (jnp.arange(3),)),
    (lambda x, y: x + 2 * y, (jnp.arange(3), jnp.arange(3))),
    (lambda x: jnp.cumsum(x), (jnp.arange(4),)),
]


@pytest.mark.parametrize("case", range(len(INTEGER_LINEAR)))
def test_linear_transpose_of_an_integer_linear_map(case):
    # JAX transposes int -> int functions with integer cotangents; so do we.
    f, xs = INTEGER_LINEAR[case]
    ct = jax.tree.map(lambda y: 3 * jnp.ones_like(y), f(*xs))
    ours = T.linear_transpose(f, *xs)(ct)
    theirs = jax.linear_transpose(f, *xs)(ct)
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_linear_transpose_of_integer_maps_where_jax_gives_float0():
    # JAX answers float0 here (its dot_general transpose and its unused inputs); the transpose
    # of x -> M @ x over the integers is M^T, and an input nothing reaches gets integer zeros.
    m = jnp.arange(12).reshape(3, 4)
    (ct,) = T.linear_transpose(lambda x: m @ x, jnp.arange(4))(jnp.ones(3, int))
    assert ct.dtype == jnp.int64 and np.array_equal(ct, m.T @ jnp.ones(3, int))
    (ct,) = T.linear_transpose(lambda x: jnp.zeros(3, int), jnp.arange(3))(jnp.ones(3, int))
    assert ct.dtype == jnp.int64 and np.array_equal(ct, np.zeros(3))


@pytest.mark.parametrize(
    "f, x, sides",
    [
        (lambda x: x.astype(jnp.int32), jnp.arange(3.0), "[dtype('float64')] -> [dtype('int32')]"),
        (lambda x: x.astype(jnp.float32), jnp.arange(3), "[dtype('int64')] -> [dtype('float32')]"),
    ],
)
def test_linear_transpose_between_floats_and_integers_raises_jax_error(f, x, sides):
    with pytest.raises(TypeError) as ours:
        T.linear_transpose(f, x)
    with pytest.raises(TypeError) as theirs:
        jax.linear_transpose(f, x)
    assert str(theirs.value) in str(ours.value) and sides in str(ours.value)
