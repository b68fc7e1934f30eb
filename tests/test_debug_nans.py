"""debug_nans: a NaN or Inf born in a derivative program names the primitive, the rule and the
user's source line, in forward and reverse mode; off, nothing changes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import transforms as T
from transforms import DerivativeNaNError


def _line_of(marker):
    with open(__file__) as f:
        for i, line in enumerate(f, start=1):
            if marker in line and "_line_of" not in line:
                return i
    raise AssertionError(marker)


def sqrt_at_zero(x):
    y = jnp.sin(x) + 1.0
    return y * jnp.sqrt(x)  # MARK-SQRT


def guarded_badly(x):
    # The classic trap: the unused branch's derivative is inf at 0, and 0 * inf = nan.
    return jnp.sum(jnp.where(x > 0.0, jnp.sqrt(x), 0.0))  # MARK-WHERE


def log_of_zero(x):
    return jnp.sum(x**2 + 0.0 * jnp.log(x))  # MARK-LOG


SQRT_LINE = f"test_debug_nans.py:{_line_of('# MARK-SQRT')} (sqrt_at_zero)"
WHERE_LINE = f"test_debug_nans.py:{_line_of('# MARK-WHERE')} (guarded_badly)"
LOG_LINE = f"test_debug_nans.py:{_line_of('# MARK-LOG')} (log_of_zero)"


def check(err, primitive, rule_part, source, stage_part):
    e = err.value
    assert isinstance(e, FloatingPointError)
    assert e.primitive == primitive, str(e)
    assert rule_part in e.rule, str(e)
    assert e.source.endswith(source), str(e)
    assert stage_part in e.stage, str(e)
    msg = str(e)
    assert f"'{primitive}'" in msg and source in msg and "jnp.where" in msg


@pytest.mark.parametrize(
    "api, rule, stage",
    [
        (lambda: T.grad(sqrt_at_zero)(0.0), "jvp(sqrt)", "gradient"),
        (lambda: T.value_and_grad(sqrt_at_zero)(0.0), "jvp(sqrt)", "gradient"),
        (lambda: T.jvp(sqrt_at_zero, (0.0,), (1.0,)), "jvp(sqrt)", "forward"),
        (lambda: T.vjp(sqrt_at_zero, 0.0)[1](1.0), "transpose(div)", "reverse"),
        (lambda: T.linearize(sqrt_at_zero, 0.0)[1](1.0), "jvp(sqrt)", "linearized"),
        (lambda: T.jacrev(sqrt_at_zero)(0.0), "transpose(div)", "jacrev"),
        (lambda: T.jacfwd(sqrt_at_zero)(0.0), "jvp(sqrt)", "jacfwd"),
        (lambda: T.hessian(sqrt_at_zero)(0.0), "jvp(sqrt)", "hessian"),
    ],
)
def test_sqrt_at_zero_is_reported(api, rule, stage):
    with T.debug_nans(), pytest.raises(DerivativeNaNError) as err:
        api()
    check(err, "div", rule, SQRT_LINE, stage)


def test_where_trap_is_reported_in_both_modes():
    x = jnp.array([0.0, 1.0])
    with T.debug_nans():
        with pytest.raises(DerivativeNaNError) as err:
            T.grad(guarded_badly)(x)
        check(err, "div", "jvp(sqrt)", WHERE_LINE, "gradient")
        with pytest.raises(DerivativeNaNError) as err:
            T.jvp(guarded_badly, (x,), (jnp.ones(2),))
        check(err, "div", "jvp(sqrt)", WHERE_LINE, "forward")
    # Off: the NaN silently reaches the gradient, as in JAX.
    assert np.isnan(np.asarray(T.grad(guarded_badly)(x))[0])


def test_infs_can_be_ignored():
    x = jnp.array([0.0, 1.0])
    with T.debug_nans(), pytest.raises(DerivativeNaNError) as err:
        T.grad(log_of_zero)(x)
    check(err, "log", "jvp(log)", LOG_LINE, "gradient")
    # NaNs only: log(0) = -inf passes; the NaN comes from 0 * -inf in the function itself.
    with T.debug_nans(infs=False), pytest.raises(DerivativeNaNError) as err:
        T.grad(log_of_zero)(x)
    assert err.value.primitive == "mul"
    assert "nan" in str(err.value) and LOG_LINE in str(err.value)


def test_nested_gradient_reverse_over_reverse():
    def f(x):
        return jnp.sqrt(x) * x  # MARK-NESTED

    line = f"test_debug_nans.py:{_line_of('# MARK-NESTED')} ({f.__qualname__})"
    with T.debug_nans(), pytest.raises(DerivativeNaNError) as err:
        T.grad(T.grad(f))(0.0)
    assert err.value.source.endswith(line)
    assert "sqrt" in err.value.rule


def test_switch_and_context_manager_restore():
    assert not T.debug_nans_enabled()
    T.debug_nans(True)
    try:
        assert T.debug_nans_enabled()
        with pytest.raises(DerivativeNaNError):
            T.grad(sqrt_at_zero)(0.0)
        with T.debug_nans(False):
            assert not T.debug_nans_enabled()
            assert np.isinf(T.grad(sqrt_at_zero)(0.0))
        assert T.debug_nans_enabled()
    finally:
        T.debug_nans(False)
    assert not T.debug_nans_enabled()
    with pytest.raises(DerivativeNaNError):
        with T.debug_nans():
            T.grad(sqrt_at_zero)(0.0)
    assert not T.debug_nans_enabled()  # restored after the exception too
    assert np.isinf(T.grad(sqrt_at_zero)(0.0))  # and cached programs are not debug ones


def test_no_false_alarms_and_same_values():
    def f(x, w):
        h = jax.nn.softplus(x @ w)  # a custom_jvp inside a jit
        return jnp.sum(jnp.tanh(h) ** 2) + jax.jit(lambda v: jnp.sum(jnp.exp(v)))(w)

    x, w = jnp.ones((2, 3)), jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)
    expected = [
        T.grad(f, argnums=(0, 1))(x, w),
        T.jvp(f, (x, w), (x, w)),
        T.hessian(lambda w: f(x, w))(w),
        T.grad(lambda w: jnp.sum(T.grad(f, argnums=1)(x, w) ** 2))(w),
    ]
    with T.debug_nans():
        got = [
            T.grad(f, argnums=(0, 1))(x, w),
            T.jvp(f, (x, w), (x, w)),
            T.hessian(lambda w: f(x, w))(w),
            T.grad(lambda w: jnp.sum(T.grad(f, argnums=1)(x, w) ** 2))(w),
        ]
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_nan_in_the_arguments_is_not_blamed_on_a_rule():
    # Nothing in the program introduced it: the NaN was there from the start.
    with T.debug_nans():
        g = T.grad(lambda x: jnp.sum(jnp.sin(x)))(jnp.array([jnp.nan, 1.0]))
    assert np.isnan(g[0]) and g[1] == np.cos(1.0)


def test_custom_vjp_backward_is_checked():
    @jax.custom_vjp
    def f(x):
        return x

    def f_fwd(x):
        return x, x

    def f_bwd(x, ct):
        return (ct / x,)  # MARK-BWD

    f.defvjp(f_fwd, f_bwd)
    line = f"test_debug_nans.py:{_line_of('# MARK-BWD')} ({f_bwd.__qualname__})"
    with T.debug_nans(), pytest.raises(DerivativeNaNError) as err:
        T.grad(f)(0.0)
    assert err.value.primitive == "div"
    assert err.value.source.endswith(line), str(err.value)
