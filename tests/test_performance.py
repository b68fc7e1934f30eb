"""The speed machinery must never change an answer.

Eager calls run derivative programs cached on the *structure* of the traced jaxpr; these tests
check that a changed closure, constant, global or inner jit constant is never served a stale
program, that eager and jitted results agree, that reverse mode keeps only the residuals it
needs, and that the benchmark harness still runs (on its smallest sizes; no timing assertions).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import transforms as T
from transforms import engine, tracing

X = jnp.array([0.3, -0.7, 1.1, 0.5])


def _v(x):
    """A tangent direction for `x`."""
    return jnp.cos(3.0 * x) - 0.5


# Every public transform, as (ours, JAX's) acting on a scalar function of one array.
APIS = {
    "grad": (T.grad, jax.grad),
    "value_and_grad": (T.value_and_grad, jax.value_and_grad),
    "jacfwd": (T.jacfwd, jax.jacfwd),
    "jacrev": (T.jacrev, jax.jacrev),
    "hessian": (T.hessian, jax.hessian),
    "hvp": (
        lambda f: lambda x: T.hvp(f, (x,), (_v(x),)),
        lambda f: lambda x: jax.jvp(jax.grad(f), (x,), (_v(x),))[1],
    ),
    "jvp": (
        lambda f: lambda x: T.jvp(f, (x,), (_v(x),)),
        lambda f: lambda x: jax.jvp(f, (x,), (_v(x),)),
    ),
    "vjp": (
        lambda f: lambda x: T.vjp(f, x)[1](1.0),
        lambda f: lambda x: jax.vjp(f, x)[1](1.0),
    ),
}


def _check(api, f):
    ours, theirs = APIS[api]
    got, want = ours(f)(X), theirs(f)(X)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), got, want)


@pytest.mark.parametrize("api", APIS)
def test_changed_closure_scalar_is_never_stale(api):
    # The scalar becomes a literal in the jaxpr: each value is its own program.
    for scale in (1.0, 2.0, -3.0):
        _check(api, lambda x, s=scale: s * jnp.sum(jnp.sin(x) * x**2))


@pytest.mark.parametrize("api", APIS)
def test_changed_closure_array_is_never_stale(api):
    # The array becomes a constant: one program, the constant passed in on every call.
    for seed in range(3):
        w = jnp.asarray(np.random.default_rng(seed).standard_normal(4))
        _check(api, lambda x, w=w: jnp.sum(jnp.tanh(w * x) * x))


@pytest.mark.parametrize("api", ["grad", "jacrev", "hessian", "hvp", "jvp"])
@pytest.mark.parametrize("size", [4, 100])
def test_changed_constant_inside_inner_jit_is_never_stale(api, size):
    # Constants of an inner jax.jit live inside the jaxpr's parameters, not among its consts.
    x = jnp.linspace(0.1, 1.0, size)
    for value in (1.0, 2.5):
        c = np.full(size, value)
        inner = jax.jit(lambda z, c=c: jnp.sin(z * c))
        f = lambda z, inner=inner: jnp.sum(inner(z) ** 2)
        ours, theirs = APIS[api]
        got, want = ours(f)(x), theirs(f)(x)
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), got, want)


@pytest.mark.parametrize("api", ["grad", "jacfwd", "hessian"])
def test_changed_structure_and_global_are_never_stale(api):
    global _POWER
    for n in (1, 2, 3):  # the closure changes the program's length
        _POWER = float(n)  # and a global changes one of its literals

        def f(x, n=n):
            for _ in range(n):
                x = jnp.sin(x) * _POWER  # noqa: B023 - read at trace time, on purpose
            return jnp.sum(x)

        _check(api, f)


_POWER = 1.0


def test_structurally_equal_functions_share_one_program():
    engine.clear_caches()
    g = T.grad(lambda x: jnp.sum(jnp.sin(x) * 2.0))
    g(X)
    n = len(engine._programs.data)
    for _ in range(3):
        g(X)
    # A different function object that traces to the same jaxpr is served the same program.
    h = T.grad(lambda y: jnp.sum(jnp.sin(y) * 2.0))
    np.testing.assert_allclose(h(X), 2.0 * jnp.cos(X))
    assert len(engine._programs.data) == n
    # Eager Hessians trace only the function: repeated calls reuse one compiled program.
    hess = T.hessian(lambda x: jnp.sum(x**3))
    hess(X)
    m = len(engine._programs.data)
    hess(X + 1.0)
    assert len(engine._programs.data) == m


def test_a_python_float_that_changes_every_step_reuses_one_program():
    # A loss over a schedule (`0.99 ** step`) traces to a new literal every step. Literals are
    # hoisted into constants, which compiled programs take as inputs: one program serves all
    # 200 steps, with every step's value.
    from transforms import tiered

    w = jnp.array([0.3, -0.2, 0.5])
    before = set(engine._compiled_cache.data)
    for step in range(200):
        decay = 0.99**step

        def loss(w):
            return jnp.sum(jnp.tanh(w * decay) ** 2) * decay  # noqa: B023 - this step's value

        g = T.grad(loss)(w)
        if step % 50 == 0 or step == 199:
            tiered.wait(timeout=120)
            np.testing.assert_allclose(g, jax.grad(loss)(w), rtol=1e-12)
    new = [k for k in engine._compiled_cache.data if k not in before]
    assert len(new) <= 2, new
    executors = [engine._compiled_cache.data[k][1] for k in new]
    assert any(e.compiled is not None for e in executors)  # and it got compiled


def test_custom_jvp_and_random_programs_are_cached():
    # jax.nn.relu is a custom_jvp function and dropout draws from jax.random (random_wrap and
    # random_bits carry a PRNG implementation): both are keyed like any other program, so
    # repeated calls reuse one derivative program instead of re-differentiating every call.
    x = jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)
    w = jnp.linspace(-0.5, 0.5, 8).reshape(4, 2)

    def relu_loss(w):
        return jnp.sum(jax.nn.relu(x @ w) ** 2)

    def dropout_loss(w, key):
        keep = jax.random.bernoulli(key, 0.5, (3, 2))
        return jnp.sum(jnp.where(keep, jnp.tanh(x @ w), 0.0) ** 2)

    for loss, extra in ((relu_loss, ()), (dropout_loss, (jax.random.key(0),))):
        closed = jax.make_jaxpr(loss)(w, *extra)
        assert tracing.closed_key(closed) is not None
        before = len(engine._programs.data)
        for step in range(3):
            args = (w, *(jax.random.key(step) for _ in extra))
            np.testing.assert_allclose(T.grad(loss)(*args), jax.grad(loss)(*args), rtol=1e-12)
        assert len(engine._programs.data) - before <= 2  # the program and its first sighting


@pytest.mark.parametrize("api", APIS)
def test_eager_and_jit_agree(api):
    f = lambda x: jnp.sum(jnp.exp(jnp.sin(x)) * x[::-1]) + x[0] * x[1] * x[2]
    ours = APIS[api][0](f)
    eager, jitted = ours(X), jax.jit(ours)(X)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), eager, jitted)
    _check(api, f)


def test_argnums_kwargs_and_aux_through_the_compiled_path():
    f = lambda a, b, scale=1.0: (jnp.sum(a * jnp.sin(b)) * scale, {"b": b})
    for ours, theirs in ((T.jacfwd, jax.jacfwd), (T.jacrev, jax.jacrev), (T.hessian, jax.hessian)):
        for argnums, scale in ((0, 1.0), (0, 2.0), (1, 2.0), ((0, 1), 3.0)):
            got = ours(f, argnums, has_aux=True)(X, _v(X), scale=scale)
            want = theirs(f, argnums, has_aux=True)(X, _v(X), scale=scale)
            jax.tree_util.tree_map(np.testing.assert_allclose, got, want)


def test_static_int_argument_used_in_python_stays_static():
    def f(x, n):
        for _ in range(n):
            x = jnp.sin(x)
        return jnp.sum(x)

    for n in (1, 3):
        np.testing.assert_allclose(T.hessian(f)(X, n), jax.hessian(f)(X, n))
        np.testing.assert_allclose(T.jacrev(f)(X, n), jax.jacrev(f)(X, n))


def test_concrete_arguments_with_a_closed_over_tracer():
    # Arguments are concrete but the function closes over an outer jit's tracer: not eager.
    def outer(y):
        return T.jacfwd(lambda x: jnp.sin(x * y))(np.ones(3)), T.hvp(
            lambda x: jnp.sum(jnp.sin(x * y)), (np.ones(3),), (np.ones(3),)
        )

    def outer_jax(y):
        f = lambda x: jnp.sum(jnp.sin(x * y))
        hv = jax.jvp(jax.grad(f), (np.ones(3),), (np.ones(3),))[1]
        return jax.jacfwd(lambda x: jnp.sin(x * y))(np.ones(3)), hv

    jax.tree_util.tree_map(np.testing.assert_allclose, jax.jit(outer)(2.0), outer_jax(2.0))


def test_users_rules_are_never_stale():
    # custom_jvp / custom_vjp rules are Python callables, keyed by the rule function: a rule that
    # closes over another value is another rule.
    for scale in (1.0, 3.0):

        @jax.custom_jvp
        def f(x):
            return jnp.sin(x)

        @f.defjvp
        def f_jvp(primals, tangents, scale=scale):
            (x,), (t,) = primals, tangents
            return jnp.sin(x), scale * jnp.cos(x) * t

        @jax.custom_vjp
        def g(x):
            return jnp.sin(x)

        g.defvjp(lambda x: (jnp.sin(x), x), lambda x, ct, scale=scale: (scale * ct * x,))

        for api in ("grad", "jacrev", "hessian"):
            _check(api, lambda x, f=f: jnp.sum(f(x) * x))
        np.testing.assert_allclose(T.grad(lambda x, f=f: jnp.sum(f(x)))(X), scale * jnp.cos(X))
        np.testing.assert_allclose(T.grad(lambda x, g=g: jnp.sum(g(x)))(X), scale * X)
    relu_softplus = lambda x: jnp.sum(jax.nn.relu(x) * jax.nn.softplus(x))
    for api in ("grad", "jacrev", "hessian", "hvp"):
        _check(api, relu_softplus)


def test_reverse_mode_keeps_only_the_residuals_it_needs():
    # d/dx sum(exp(sin x)) = exp(sin x) cos x: two residuals, not sin x nor the primal output.
    closed = jax.make_jaxpr(lambda x: jnp.sum(jnp.exp(jnp.sin(x))))(X)
    lin = engine.linearize_program(closed, (True,))
    assert lin.num_residuals == 2
    # A linear function needs none.
    closed = jax.make_jaxpr(lambda x: jnp.sum(3.0 * x[::-1]))(X)
    assert engine.linearize_program(closed, (True,)).num_residuals == 0
    # Unused branches of the primal leave no residual behind.
    closed = jax.make_jaxpr(lambda x: (jnp.sum(jnp.sin(x)), jnp.cos(x) ** 3)[0])(X)
    assert engine.linearize_program(closed, (True,)).num_residuals == 1


def test_bench_harness_smoke(tmp_path, monkeypatch):
    # `bench/` sits next to `tests/`, at the repository root (not an installed package).
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    from bench.__main__ import run

    text = run(quick=True, out=tmp_path, others=False, log=lambda *_: None)
    assert "| mlp grad | jit |" in text and "| mlp hvp | eager |" in text
    assert "| chain | build |" in text
    assert "Fitted exponent" in text and "residuals kept" in text
    assert "## Compiled gradients" in text and "| transformer |" in text
    assert "## First calls of new functions" in text and "| hvp, 24 inputs |" in text
    assert (tmp_path / "RESULTS.md").read_text() == text
    assert (tmp_path / "scaling.png").stat().st_size > 1000


def test_program_caches_are_bounded(monkeypatch):
    # A long-running process that keeps meeting new functions must not grow without bound:
    # every program cache is an LRU with a fixed number of entries (documented in concepts.md).
    monkeypatch.setattr(engine._programs, "maxsize", 16)
    monkeypatch.setattr(engine._compiled_cache, "maxsize", 16)
    x = jnp.array([0.3, 0.7])
    for n in range(1, 41):  # 40 structurally different functions, each called twice

        def f(x, n=n):
            for _ in range(n):
                x = jnp.sin(x)
            return jnp.sum(x)

        for _ in range(2):
            T.grad(f)(x)
        assert len(engine._programs.data) <= 16 and len(engine._compiled_cache.data) <= 16
    np.testing.assert_allclose(T.grad(f)(x), jax.grad(f)(x), rtol=1e-12)
