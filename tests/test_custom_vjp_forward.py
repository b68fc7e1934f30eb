"""Forward mode and second order through `jax.custom_vjp`, which JAX refuses.

The JVP is the user's `bwd` transposed at the residuals `fwd` computed; where `bwd` is not
linear in its cotangent, the primal function's own derivative (a documented choice). Oracles:
closed forms, finite differences, and JAX's reverse-over-reverse (which JAX can compute).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.experimental.ode import odeint

import transforms as T
from transforms.rules.custom_vjp_forward import CustomVJPForwardError
from transforms.testing import check_grads


def _close(a, b, tol=1e-11):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol)


# --- JAX's log1pexp example, written with custom_vjp ----------------------------------------------


@jax.custom_vjp
def log1pexp(x):
    return jnp.log1p(jnp.exp(x))


def _log1pexp_fwd(x):
    return log1pexp(x), x


def _log1pexp_bwd(x, ct):
    return (ct * jax.nn.sigmoid(x),)  # stable where exp(x) / (1 + exp(x)) is inf / inf


log1pexp.defvjp(_log1pexp_fwd, _log1pexp_bwd)
XS = jnp.array([-2.0, 0.3, 1.5, 5.0])


def test_log1pexp_jvp_jacfwd_hessian_hvp():
    sig = jax.nn.sigmoid(XS)
    t = jnp.array([1.0, -0.5, 2.0, 0.25])
    out, t_out = T.jvp(log1pexp, (XS,), (t,))
    _close(out, jax.nn.softplus(XS))
    _close(t_out, sig * t)
    _close(T.jacfwd(log1pexp)(XS), jnp.diag(sig))
    loss = lambda x: jnp.sum(log1pexp(x))  # noqa: E731
    _close(T.hessian(loss)(XS), jnp.diag(sig * (1 - sig)))
    _close(T.hvp(loss, (XS,), (t,)), sig * (1 - sig) * t)
    _close(T.linearize(log1pexp, XS)[1](t), sig * t)
    f_lin = T.linearize(log1pexp, XS)[1]
    _close(jax.vmap(f_lin)(jnp.eye(4)), jnp.diag(sig))  # the linear function, batched
    _close(jax.jit(T.jacfwd(log1pexp))(XS), jnp.diag(sig))
    check_grads(log1pexp, (XS,), order=2, modes=("fwd",))


def test_log1pexp_forward_mode_uses_the_stable_rule():
    # The primal's own derivative is exp(x) / (1 + exp(x)) = inf / inf at x = 800.
    big = jnp.array([800.0])
    assert np.isnan(jax.jvp(lambda x: jnp.log1p(jnp.exp(x)), (big,), (jnp.ones(1),))[1][0])
    _close(T.jvp(log1pexp, (big,), (jnp.ones(1),))[1], jnp.ones(1))
    _close(T.hessian(lambda x: log1pexp(x)[0])(big), jnp.zeros((1, 1)))


def test_grad_of_grad_through_custom_vjp():
    loss = lambda x: jnp.sum(log1pexp(x))  # noqa: E731
    _close(T.jacrev(T.grad(loss))(XS), jax.jacrev(jax.grad(loss))(XS))
    _close(T.grad(lambda x: T.grad(loss)(x)[1])(XS), jax.grad(lambda x: jax.grad(loss)(x)[1])(XS))


def test_bwd_that_is_not_differentiable_says_which_function():
    @jax.custom_vjp
    def host_sin(x):
        return jnp.sin(x)

    def host_cos(x):
        shape = jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x))
        return jax.pure_callback(np.cos, shape, x)

    host_sin.defvjp(lambda x: (jnp.sin(x), x), lambda x, ct: (ct * host_cos(x),))
    assert float(T.grad(host_sin)(1.0)) == pytest.approx(np.cos(1.0), rel=1e-14)
    with pytest.raises(NotImplementedError, match="bwd rule of the custom_vjp function 'host_sin'"):
        T.grad(T.grad(host_sin))(1.0)


# --- a bwd that is not linear in its cotangent ----------------------------------------------------


@jax.custom_vjp
def clip_gradient(x):
    return x


clip_gradient.defvjp(lambda x: (x, None), lambda _, ct: (jnp.clip(ct, -1.0, 1.0),))


def test_bwd_not_linear_uses_the_primal_derivative_and_linearize_raises():
    f = lambda x: clip_gradient(x) * 3.0  # noqa: E731
    # Reverse mode honours the clipping; forward mode is the primal's own derivative (3).
    assert float(T.grad(f)(2.0)) == 1.0
    assert float(T.jvp(f, (2.0,), (1.0,))[1]) == 3.0
    with pytest.raises(CustomVJPForwardError, match="'clip_gradient'") as info:
        T.linearize(f, 2.0)[1](1.0)
    assert isinstance(info.value, TypeError)


# --- a fixed-point solver, differentiated implicitly ----------------------------------------------


def _newton_step(a, x):
    return 0.5 * (x + a / x)


@jax.custom_vjp
def sqrt_fixed_point(a):
    """x = 0.5 (x + a / x) by iteration to tolerance: sqrt(a)."""
    return lax.while_loop(
        lambda x: jnp.abs(_newton_step(a, x) - x) > 1e-13, lambda x: _newton_step(a, x), a
    )


def _fp_fwd(a):
    x = sqrt_fixed_point(a)
    return x, (a, x)


def _fp_bwd(res, ct):
    # Implicit function theorem at x* = g(a, x*): da = ct (1 - dg/dx)^-1 dg/da.
    a, x = res
    dg_dx = 0.5 * (1.0 - a / x**2)
    dg_da = 0.5 / x
    return (ct * dg_da / (1.0 - dg_dx),)


sqrt_fixed_point.defvjp(_fp_fwd, _fp_bwd)


def test_fixed_point_solver_second_order():
    a = 2.0
    _close(sqrt_fixed_point(a), np.sqrt(a))
    _close(T.jvp(sqrt_fixed_point, (a,), (1.0,))[1], 0.5 / np.sqrt(a))
    _close(T.hessian(sqrt_fixed_point)(a), -0.25 * a**-1.5)
    _close(T.jacfwd(T.jacfwd(sqrt_fixed_point))(a), -0.25 * a**-1.5)
    _close(T.grad(T.grad(sqrt_fixed_point))(a), jax.grad(jax.grad(sqrt_fixed_point))(a))
    check_grads(sqrt_fixed_point, (a,), order=2, modes=("fwd", "rev"))


# --- odeint: the Hessian of an ODE solution in its parameters (JAX issue 7401) -------------------


def _ode_solution(p):
    def rhs(y, t, p):
        return -p[0] * y + p[1] * jnp.sin(y)

    ys = odeint(rhs, jnp.array([1.0]), jnp.array([0.0, 0.5]), p, rtol=1e-10, atol=1e-10)
    return ys[-1, 0]


def test_odeint_hessian_in_its_parameters():
    p = jnp.array([0.7, 0.3])
    hessian = jax.jit(T.hessian(_ode_solution))(p)
    # JAX computes it reverse-over-reverse only; our forward-over-reverse agrees to the
    # solver's tolerance (forward mode differentiates the discretised adjoint solve).
    _close(hessian, jax.jit(jax.jacrev(jax.jacrev(_ode_solution)))(p), tol=1e-7)
    grad = jax.jit(jax.grad(_ode_solution))
    eps = 1e-5
    fd = np.stack([(grad(p + eps * e) - grad(p - eps * e)) / (2 * eps) for e in np.eye(2)])
    _close(hessian, fd, tol=1e-6)
