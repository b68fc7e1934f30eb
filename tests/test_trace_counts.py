"""How many times a `custom_jvp`/`custom_vjp` function and its rules run in Python: never more
under our transforms than under JAX's (issue #16).

Users put prints and other side effects in these functions, and libraries rely on which of them
runs: JAX's `grad` calls a `custom_jvp`'s rule and never the function itself, and a
`custom_vjp`'s `fwd` in place of the function. Each test counts the calls under JAX's transform
and under ours, in the same test, on fresh functions (so no trace cache of either side is hit).
"""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import pytest
from helpers import assert_tree_allclose

import transforms

X = jnp.array([0.5, 1.5, 2.5])


def _counted_custom_jvp(counts, rule_calls_f):
    @jax.custom_jvp
    def f(x):
        counts["primal"] += 1
        return jnp.sin(x) * x

    @f.defjvp
    def f_jvp(primals, tangents):
        counts["jvp"] += 1
        (x,), (dx,) = primals, tangents
        y = f(x) if rule_calls_f else jnp.sin(x) * x
        return y, (jnp.cos(x) * x + jnp.sin(x)) * dx

    return f


def _counted_custom_vjp(counts, fwd_calls_f):
    @jax.custom_vjp
    def f(x):
        counts["primal"] += 1
        return jnp.sin(x) * x

    def f_fwd(x):
        counts["fwd"] += 1
        return (f(x) if fwd_calls_f else jnp.sin(x) * x), x

    def f_bwd(x, g):
        counts["bwd"] += 1
        return ((jnp.cos(x) * x + jnp.sin(x)) * g,)

    f.defvjp(f_fwd, f_bwd)
    return f


def _loss(c):
    return lambda x: jnp.sum(c(x) * 2.0)


# Each case: (lib, the custom function) -> a value. Reverse-mode cases apply to both kinds.
REVERSE = {
    "grad": lambda lib, c: lib.grad(_loss(c))(X),
    "value_and_grad": lambda lib, c: lib.value_and_grad(_loss(c))(X),
    "vjp": lambda lib, c: lib.vjp(_loss(c), X)[1](1.0),
    "jacrev": lambda lib, c: lib.jacrev(c)(X),
    "grad of grad": lambda lib, c: lib.grad(lambda x: jnp.sum(lib.grad(_loss(c))(x)))(X),
    "vmap inside": lambda lib, c: lib.grad(lambda x: jnp.sum(jax.vmap(c)(x)))(X),
    # Inside jit or scan JAX traces the function too (to a jaxpr), then asks its rule.
    "jit inside": lambda lib, c: lib.grad(lambda x: jnp.sum(jax.jit(c)(x)))(X),
    "scan inside": lambda lib, c: lib.grad(
        lambda x: jax.lax.scan(lambda s, xi: (s + c(xi), None), 0.0, x)[0]
    )(X),
    # No tangent reaches the call: JAX traces the function itself, and so must we.
    "not differentiated argument": lambda lib, c: lib.grad(
        lambda x, y: jnp.sum(c(y) * x), argnums=0
    )(X, X),
    "stop_gradient": lambda lib, c: lib.grad(lambda x: jnp.sum(c(jax.lax.stop_gradient(x)) * x))(X),
    "constant": lambda lib, c: lib.grad(lambda x: jnp.sum(c(jnp.ones(3)) * x))(X),
    "piecewise constant": lambda lib, c: lib.grad(lambda x: jnp.sum(c(jnp.floor(x)) * x))(X),
}
FORWARD = {
    "jvp": lambda lib, c: lib.jvp(_loss(c), (X,), (X,)),
    "linearize": lambda lib, c: lib.linearize(_loss(c), X)[1](X),
    "jacfwd": lambda lib, c: lib.jacfwd(c)(X),
    "hessian": lambda lib, c: lib.hessian(_loss(c))(X),
}


def _counts(lib, make, case, jit):
    # Our derivative programs are cached by structure: each count starts from none, so that a
    # count does not depend on which tests ran before.
    transforms.clear_caches()
    counts = collections.Counter()
    c = make(counts)
    run = (lambda: case(lib, c)) if not jit else jax.jit(lambda: case(lib, c))
    return counts, run()


def _assert_no_more_than_jax(make, case, jit):
    counts_jax, want = _counts(jax, make, case, jit)
    counts_ours, got = _counts(transforms, make, case, jit)
    assert_tree_allclose(got, want)
    for what in sorted(set(counts_jax) | set(counts_ours)):
        assert counts_ours[what] <= counts_jax[what], (
            f"{what} ran {counts_ours[what]} times under ours, {counts_jax[what]} under JAX "
            f"(ours {dict(counts_ours)}, JAX {dict(counts_jax)})"
        )


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("rule_calls_f", [False, True], ids=["own_primal", "rule_calls_f"])
@pytest.mark.parametrize("name", [*REVERSE, *FORWARD])
def test_custom_jvp_runs_no_more_than_under_jax(name, rule_calls_f, jit):
    case = {**REVERSE, **FORWARD}[name]
    _assert_no_more_than_jax(lambda n: _counted_custom_jvp(n, rule_calls_f), case, jit)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("fwd_calls_f", [False, True], ids=["own_primal", "fwd_calls_f"])
@pytest.mark.parametrize("name", list(REVERSE))
def test_custom_vjp_runs_no_more_than_under_jax(name, fwd_calls_f, jit):
    _assert_no_more_than_jax(lambda n: _counted_custom_vjp(n, fwd_calls_f), REVERSE[name], jit)


def _counted_symbolic_zeros_custom_jvp(counts):
    # Two inputs, one of them a constant in the cases below: its tangent is a symbolic zero.
    @jax.custom_jvp
    def f(x, y):
        counts["primal"] += 1
        return jnp.sin(x) * y

    def f_jvp(primals, tangents):
        counts["jvp"] += 1
        (x, y), (dx, dy) = primals, tangents
        out = jnp.sin(x) * y
        dout = jnp.zeros_like(out)
        if type(dx) is not jax.custom_derivatives.SymbolicZero:
            dout = dout + jnp.cos(x) * y * dx
        if type(dy) is not jax.custom_derivatives.SymbolicZero:
            counts["tangent of y"] += 1
            dout = dout + jnp.sin(x) * dy
        return out, dout

    f.defjvp(f_jvp, symbolic_zeros=True)
    return f


SYMBOLIC_ZEROS = {
    "grad, one input constant": lambda lib, c: lib.grad(lambda x: jnp.sum(c(x, 2.0 * X)))(X),
    "grad, both inputs": lambda lib, c: lib.grad(lambda x: jnp.sum(c(x, x)))(X),
    "jvp, one input constant": lambda lib, c: lib.jvp(lambda x: c(x, X), (X,), (X,)),
    "hessian": lambda lib, c: lib.hessian(lambda x: jnp.sum(c(x, X)))(X),
}


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("name", list(SYMBOLIC_ZEROS))
def test_symbolic_zeros_custom_jvp_runs_no_more_than_under_jax(name, jit):
    # The rule is told which tangents are symbolic zeros, as JAX tells it ("tangent of y"
    # counts the calls that were given one for y).
    _assert_no_more_than_jax(_counted_symbolic_zeros_custom_jvp, SYMBOLIC_ZEROS[name], jit)


def test_third_derivative_through_a_custom_vjp_whose_bwd_differentiates():
    # A fixed point with a function among its nondiff_argnums, whose bwd calls our vjp (the
    # implicit-differentiation notebook): differentiated three times, the rule's equation is
    # bound again inside traces, and JAX hashes its parameters there (bwd, the function).
    from functools import partial

    def iterate(step, x0):
        def keep_going(s):
            return (jnp.abs(s[0] - s[1]) > 1e-14) & (s[2] < 200)

        return jax.lax.while_loop(
            keep_going, lambda s: (step(s[0]), s[0], s[2] + 1), (step(x0), x0, 0)
        )[0]

    @partial(jax.custom_vjp, nondiff_argnums=(0,))
    def fixed_point(phi, theta, x0):
        return iterate(lambda x: phi(x, theta), x0)

    def fwd(phi, theta, x0):
        x = fixed_point(phi, theta, x0)
        return x, (theta, x)

    def bwd(phi, res, x_bar):
        theta, x = res
        _, pull_x = transforms.vjp(lambda y: phi(y, theta), x)
        u = iterate(lambda u: x_bar + pull_x(u)[0], jnp.zeros_like(x_bar))
        _, pull_theta = transforms.vjp(lambda th: phi(x, th), theta)
        return pull_theta(u)[0], jnp.zeros_like(x)

    fixed_point.defvjp(fwd, bwd)

    def sqrt(a):
        return fixed_point(lambda x, a: 0.5 * (x + a / x), a, a)

    a = 2.0
    d3 = transforms.grad(transforms.grad(transforms.grad(sqrt)))
    for fn, exact in (
        (transforms.grad(sqrt), 0.5 * a**-0.5),
        (transforms.grad(transforms.grad(sqrt)), -0.25 * a**-1.5),
    ):
        assert_tree_allclose(fn(a), exact)
    assert_tree_allclose(d3(a), 0.375 * a**-2.5)
    assert_tree_allclose(jax.jit(d3)(a), 0.375 * a**-2.5)
