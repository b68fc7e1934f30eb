"""Higher order and composition: nested transforms, perturbation confusion, jit/vmap, user rules.

Our transforms emit ordinary lax operations, so they nest with each other and with jax.jit and
jax.vmap in any order. JAX's autodiff is the oracle; finite differences check the Hessian.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_tree_allclose

import transforms as T
from transforms.testing import check_grads

X = jnp.array([0.3, -1.2, 0.8])


def same(ours, theirs, **kw):
    assert_tree_allclose(ours, theirs, **kw)


def loss(x):
    return jnp.sum(jnp.sin(x) * jnp.exp(-(x**2)) + x**3 / 3.0)


# --- nesting our own transforms --------------------------------------------------------------


def test_grad_six_levels_deep():
    ours, theirs = jnp.sin, jnp.sin
    for _ in range(6):
        ours, theirs = T.grad(ours), jax.grad(theirs)
    x = 0.7
    same(ours(x), theirs(x))
    assert float(ours(x)) == pytest.approx(-np.sin(x), rel=1e-12)  # d⁶/dx⁶ sin = -sin


def test_grad_six_levels_of_a_product():
    f = lambda x: x**7 * jnp.cos(x)  # noqa: E731
    ours, theirs = f, f
    for _ in range(6):
        ours, theirs = T.grad(ours), jax.grad(theirs)
    same(ours(1.3), theirs(1.3), rtol=1e-9)


def test_jvp_of_grad_and_grad_of_jvp():
    v = jnp.array([1.0, 0.5, -2.0])
    expected = jax.jvp(jax.grad(loss), (X,), (v,))
    same(T.jvp(T.grad(loss), (X,), (v,)), expected)
    # grad of a directional derivative: d/dx <∇f(x), v> = H v
    dir_deriv = lambda x: T.jvp(loss, (x,), (v,))[1]  # noqa: E731
    same(T.grad(dir_deriv)(X), expected[1])
    same(T.vjp(T.grad(loss), X)[1](v), jax.vjp(jax.grad(loss), X)[1](v))


def test_forward_over_forward_and_reverse_over_reverse():
    for outer in (T.jacfwd, T.jacrev):
        for inner in (T.jacfwd, T.jacrev):
            same(outer(inner(loss))(X), jax.hessian(loss)(X))


def test_hessian_against_finite_differences():
    H = np.asarray(T.hessian(loss)(X))
    eps = 1e-5
    g = lambda x: np.asarray(T.grad(loss)(jnp.asarray(x)))  # noqa: E731
    fd = np.stack([(g(X + eps * e) - g(X - eps * e)) / (2 * eps) for e in np.eye(3)], axis=1)
    np.testing.assert_allclose(H, fd, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(H, H.T, rtol=1e-12)
    check_grads(T.grad(loss), (X,), order=2)


# --- perturbation confusion: d/dx [x · d/dy (x + y)](1) = 1 -----------------------------------


def _inner_rev(x):
    return x * T.grad(lambda y: x + y)(1.0)


def _inner_fwd(x):
    return x * T.jvp(lambda y: x + y, (1.0,), (1.0,))[1]


@pytest.mark.parametrize("inner", [_inner_rev, _inner_fwd], ids=["inner_rev", "inner_fwd"])
@pytest.mark.parametrize("outer", ["rev", "fwd"])
def test_perturbation_confusion(inner, outer):
    if outer == "rev":
        d = T.grad(inner)(1.0)
    else:
        d = T.jvp(inner, (1.0,), (1.0,))[1]
    assert float(d) == 1.0


def test_closure_over_outer_value():
    # d/dx [ d/dy (x * y²) at y = x ] = d/dx 2x² = 4x
    f = lambda x: T.grad(lambda y: x * y**2)(x)  # noqa: E731
    assert float(T.grad(f)(1.5)) == pytest.approx(6.0)
    assert float(T.jvp(f, (1.5,), (1.0,))[1]) == pytest.approx(6.0)
    # the inner function closes over an outer array: only explicit dependence differentiates
    g = lambda a: T.grad(lambda x: jnp.sum(a * x**2))(X)  # noqa: E731
    same(T.jacrev(g)(X), jax.jacrev(lambda a: jax.grad(lambda x: jnp.sum(a * x**2))(X))(X))


def test_outer_transform_sees_inner_constants_as_constants():
    c = jnp.array(2.0)
    f = lambda x: T.grad(lambda y: c * y * x)(x) * c  # noqa: E731  (= c² x)
    assert float(T.grad(f)(3.0)) == pytest.approx(4.0)


# --- composition with jax.jit and jax.vmap ----------------------------------------------------


def test_jit_of_grad_and_grad_of_jit():
    same(jax.jit(T.grad(loss))(X), jax.grad(loss)(X))
    same(T.grad(jax.jit(loss))(X), jax.grad(loss)(X))
    # our grad of a jitted function holding our grad
    same(T.grad(jax.jit(T.grad(jnp.tanh)))(0.3), jax.grad(jax.grad(jnp.tanh))(0.3))
    # jit'ed derivative retraces only when types change
    traces = []
    f = jax.jit(T.grad(lambda x: traces.append(1) or jnp.sum(x**2)))
    f(X), f(X + 1.0)
    assert len(traces) == 1


def test_vmap_of_grad_and_grad_of_vmap():
    xs = jnp.stack([X, X * 2.0, -X])
    same(jax.vmap(T.grad(loss))(xs), jax.vmap(jax.grad(loss))(xs))
    per_row = lambda xs: jnp.sum(jax.vmap(loss)(xs))  # noqa: E731
    same(T.grad(per_row)(xs), jax.grad(per_row)(xs))
    same(jax.vmap(T.jacrev(jnp.sin))(xs), jax.vmap(jax.jacrev(jnp.sin))(xs))
    same(jax.vmap(T.jacfwd(jnp.sin))(xs), jax.vmap(jax.jacfwd(jnp.sin))(xs))


def test_jit_of_hessian_and_vmap_of_jacrev():
    same(jax.jit(T.hessian(loss))(X), jax.hessian(loss)(X))
    xs = jnp.stack([X, -X])
    f = lambda x: jnp.outer(jnp.sin(x), x)  # noqa: E731
    same(jax.vmap(T.jacrev(f))(xs), jax.vmap(jax.jacrev(f))(xs))
    same(jax.jit(jax.vmap(T.hessian(loss)))(xs), jax.vmap(jax.hessian(loss))(xs))


def test_jax_autodiff_through_our_derivative():
    # our derivative programs are plain lax ops, so JAX can differentiate them too
    same(jax.grad(T.grad(jnp.sin))(0.4), jax.grad(jax.grad(jnp.sin))(0.4))
    same(T.grad(jax.grad(jnp.sin))(0.4), jax.grad(jax.grad(jnp.sin))(0.4))


# --- users' own rules: custom_jvp and custom_vjp ----------------------------------------------


@jax.custom_jvp
def softplus(x):
    return jnp.log1p(jnp.exp(x))


@softplus.defjvp
def _softplus_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return softplus(x), t * jax.nn.sigmoid(x)


@jax.custom_jvp
def fake_sin(x):
    return jnp.sin(x)


@fake_sin.defjvp
def _fake_sin_jvp(primals, tangents):
    # Deliberately not the true derivative, so the test proves the user's rule is called.
    (x,), (t,) = primals, tangents
    return jnp.sin(x), 3.0 * t * x


def test_custom_jvp_honoured_both_modes():
    for f in (fake_sin, softplus):
        g = lambda x, f=f: jnp.sum(f(x) * x)  # noqa: E731
        same(T.grad(g)(X), jax.grad(g)(X))
        same(T.jvp(f, (X,), (X,)), jax.jvp(f, (X,), (X,)))
        same(T.jacrev(f)(X), jax.jacrev(f)(X))
    assert float(T.grad(fake_sin)(2.0)) == 6.0  # the user's (wrong on purpose) rule: 3 t x
    same(T.grad(fake_sin)(2.0), jax.grad(fake_sin)(2.0))


def test_custom_jvp_second_order():
    same(T.grad(T.grad(softplus))(0.3), jax.grad(jax.grad(softplus))(0.3))
    same(
        T.hessian(lambda x: jnp.sum(softplus(x)))(X), jax.hessian(lambda x: jnp.sum(softplus(x)))(X)
    )
    same(T.grad(T.grad(fake_sin))(0.3), jax.grad(jax.grad(fake_sin))(0.3))  # = 3


def test_custom_jvp_under_jit_and_vmap():
    same(jax.jit(T.grad(lambda x: jnp.sum(softplus(x))))(X), jax.nn.sigmoid(X))
    same(jax.vmap(T.grad(softplus))(X), jax.nn.sigmoid(X))


@jax.custom_vjp
def clip_grad(x, lo):
    return x


def _clip_fwd(x, lo):
    return x, lo


def _clip_bwd(lo, ct):
    return jnp.clip(ct, lo, -lo), jnp.zeros_like(lo)


clip_grad.defvjp(_clip_fwd, _clip_bwd)


@jax.custom_vjp
def scaled_sin(x, s):
    return jnp.sin(x) * s


def _scaled_fwd(x, s):
    return scaled_sin(x, s), (jnp.cos(x), x, s)


def _scaled_bwd(res, ct):
    cos_x, x, s = res
    # the x-gradient is scaled by 10: visibly the user's rule, not the true derivative
    return ct * cos_x * s * 10.0, jnp.sum(ct * jnp.sin(x))


scaled_sin.defvjp(_scaled_fwd, _scaled_bwd)


def test_custom_vjp_honoured_in_reverse():
    f = lambda x: jnp.sum(clip_grad(x * 5.0, -1.0) ** 2)  # noqa: E731
    same(T.grad(f)(X), jax.grad(f)(X))
    g = lambda x, s: jnp.sum(scaled_sin(x, s) * x)  # noqa: E731
    same(T.grad(g, (0, 1))(X, 2.0), jax.grad(g, (0, 1))(X, 2.0))
    same(T.grad(g, 1)(X, 2.0), jax.grad(g, 1)(X, 2.0))
    same(T.jacrev(lambda x: scaled_sin(x, 2.0))(X), jax.jacrev(lambda x: scaled_sin(x, 2.0))(X))
    same(jax.jit(T.grad(g))(X, 2.0), jax.grad(g)(X, 2.0))
    same(
        jax.vmap(T.grad(lambda x: scaled_sin(x, 2.0)))(X),
        jax.vmap(jax.grad(lambda x: scaled_sin(x, 2.0)))(X),
    )


def test_forward_mode_through_custom_vjp_transposes_the_users_bwd():
    # JAX refuses; ours is the user's rule transposed (x-derivative scaled by 10, as in bwd):
    # d/dx = 10 s cos(x), d/ds = sin(x). tests/test_custom_vjp_forward.py has more.
    f = lambda x: scaled_sin(x, 2.0)  # noqa: E731
    with pytest.raises(TypeError):
        jax.jvp(f, (X,), (X,))
    tx = jnp.linspace(0.5, 1.5, X.size).reshape(X.shape)
    out, t_out = T.jvp(scaled_sin, (X, 2.0), (tx, 0.3))
    same(out, jnp.sin(X) * 2.0)
    np.testing.assert_allclose(t_out, 20.0 * jnp.cos(X) * tx + 0.3 * jnp.sin(X), rtol=1e-12)
    same(T.jacfwd(f)(X), jax.jacrev(f)(X))


def test_custom_vjp_not_differentiated_input_is_fine_in_forward_mode():
    # A custom_vjp function whose inputs carry no tangent is just evaluated.
    f = lambda x: x * jnp.sum(scaled_sin(jnp.ones(2), 2.0))  # noqa: E731
    same(T.jvp(f, (X,), (X,)), jax.jvp(f, (X,), (X,)))


def test_custom_vjp_nondiff_argnums():
    @functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
    def app(fn, x):
        return fn(x)

    app.defvjp(lambda fn, x: (fn(x), x), lambda fn, x, ct: (ct * 2.0 * x,))
    g = lambda x: jnp.sum(app(jnp.square, x))  # noqa: E731
    same(T.grad(g)(X), jax.grad(g)(X))
