"""Reverse mode through `lax.while_loop` (and `fori_loop` with traced bounds), which JAX refuses.

Gradients are compared with JAX's gradient of the same loop unrolled in Python for the trip
count the loop really takes (float64), and with central finite differences. The trip count is
a run-time value in every program here, so one compiled program serves every trip count.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import transforms as T
from transforms.rules.while_reverse import DEFAULT_SNAPSHOTS, recompute_steps
from transforms.testing import check_grads

X3 = jnp.array([0.3, 0.5, 0.7])


def _close(a, b, tol=1e-11):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol)


def _step(h, x):
    return jnp.sin(h) * x + 0.5 * h


def _loop(x, n, snapshots=None):
    """`n` steps of `_step` as a while loop whose trip count `n` is a run-time integer."""

    def body(s):
        i, h = s
        return i + 1, _step(h, x)

    return T.while_loop(lambda s: s[0] < n, body, (0, x), snapshots=snapshots)[1]


def _unrolled(x, n):
    h = x
    for _ in range(n):
        h = _step(h, x)
    return h


@pytest.mark.parametrize("snapshots", [1, 2, 3, DEFAULT_SNAPSHOTS])
def test_gradient_equals_unrolled_loop_for_every_trip_count(snapshots):
    grad = jax.jit(T.grad(lambda x, n: jnp.sum(_loop(x, n, snapshots))))
    for n in [0, 1, 2, 3, 5, 8, 13]:
        _close(grad(X3, n), jax.grad(lambda x, n=n: jnp.sum(_unrolled(x, n)))(X3))


def test_vjp_jacrev_and_finite_differences():
    f = lambda x: _loop(x, 6, snapshots=2)  # noqa: E731
    ref = lambda x: _unrolled(x, 6)  # noqa: E731
    ct = jnp.array([1.0, -2.0, 0.5])
    out, f_vjp = T.vjp(f, X3)
    _close(out, ref(X3))
    _close(f_vjp(ct), jax.vjp(ref, X3)[1](ct))
    _close(T.jacrev(f)(X3), jax.jacrev(ref)(X3))
    check_grads(f, (X3,), order=1, modes=("rev",))


def test_plain_lax_while_loop_and_fori_loop_with_traced_bounds():
    def f(x):
        return lax.while_loop(lambda c: c < 10.0, lambda c: c * x, 1.0 + 0.0 * x)

    # 1.5 ** 6 > 10 first: f(x) = x ** 6 near 1.5.
    assert float(T.grad(f)(1.5)) == pytest.approx(6 * 1.5**5, rel=1e-14)

    def g(x, upper):
        return jnp.sum(lax.fori_loop(0, upper, lambda i, c: jnp.sin(c) * x + 0.1 * i, x))

    def g_unrolled(x, upper):
        c = x
        for i in range(upper):
            c = jnp.sin(c) * x + 0.1 * i
        return jnp.sum(c)

    _close(T.grad(g)(X3, 4), jax.grad(g_unrolled)(X3, 4))
    _close(jax.jit(T.grad(g))(X3, jnp.int32(7)), jax.grad(g_unrolled)(X3, 7))


def _newton_sqrt(a, tol=1e-12):
    def body(x):
        return 0.5 * (x + a / x)

    return lax.while_loop(lambda x: jnp.abs(x * x - a) > tol, body, a)


def test_newton_iteration_to_tolerance():
    a = 2.0
    steps = 0
    x = a
    while abs(x * x - a) > 1e-12:
        x, steps = 0.5 * (x + a / x), steps + 1

    def unrolled(a):
        x = a
        for _ in range(steps):
            x = 0.5 * (x + a / x)
        return x

    _close(T.grad(_newton_sqrt)(a), jax.grad(unrolled)(a))
    # Converged: the derivative of sqrt.
    assert float(T.grad(_newton_sqrt)(a)) == pytest.approx(0.5 / np.sqrt(a), rel=1e-10)
    _close(T.hessian(_newton_sqrt)(a), jax.hessian(unrolled)(a))


def _integrate(k, y0, t_end, dt=0.01):
    """Explicit Euler for y' = -k y sin(y) until t > t_end (the trip count is not known)."""

    def body(s):
        t, y = s
        return t + dt, y + dt * (-k * y * jnp.sin(y))

    return lax.while_loop(lambda s: s[0] <= t_end, body, (0.0, y0))[1]


def test_fixed_step_integrator_until_t_exceeds_end():
    k, y0, t_end = 0.7, jnp.array([0.4, 1.1]), 0.5
    t, n = 0.0, 0
    while t <= t_end:  # the same float64 arithmetic as the loop's time carry
        t, n = t + 0.01, n + 1

    def unrolled(k, y0):
        y = y0
        for _ in range(n):
            y = y + 0.01 * (-k * y * jnp.sin(y))
        return y

    loss = lambda k, y0: jnp.sum(_integrate(k, y0, t_end) ** 2)  # noqa: E731
    ref = lambda k, y0: jnp.sum(unrolled(k, y0) ** 2)  # noqa: E731
    _close(jax.jit(T.grad(loss, (0, 1)))(k, y0), jax.grad(ref, (0, 1))(k, y0))
    check_grads(lambda k, y0: _integrate(k, y0, t_end), (k, y0), order=1, modes=("rev",))


def test_vmap_with_a_trip_count_per_example():
    xs = jnp.array([0.5, 1.2, 2.0, 3.5])

    def f(x):  # about doubles until past 10: 4, 3, 2 and 2 steps
        return lax.while_loop(lambda c: c < 10.0, lambda c: c * 2.0 + jnp.sin(x), x)

    def unrolled(x, n):
        c = x
        for _ in range(n):
            c = c * 2.0 + jnp.sin(x)
        return c

    def trips(x):
        c, n = float(x), 0
        while c < 10.0:
            c, n = c * 2.0 + np.sin(float(x)), n + 1
        return n

    trips = [trips(x) for x in xs]
    assert trips == [4, 3, 2, 2]
    ref = jnp.array([jax.grad(unrolled)(x, n) for x, n in zip(xs, trips, strict=True)])
    _close(jax.vmap(T.grad(f))(xs), ref)
    _close(jax.jit(jax.vmap(T.grad(f)))(xs), ref)


def test_a_loop_batched_by_vmap_inside_the_function_stops_each_example_at_its_own_step():
    # jax.vmap of a loop whose trip count differs per example leaves a `while` whose condition
    # is `bool[batch]`: the finished examples keep their carry. Differentiated from outside the
    # vmap, in both modes, each example's derivative is that of its own trip count.
    xs = jnp.array([0.5, 1.2, 2.0, 3.5])
    t = jnp.array([1.0, -0.5, 2.0, 0.25])

    def f(x):  # 4, 3, 2 and 2 steps
        return lax.while_loop(lambda c: c < 10.0, lambda c: c * 2.0 + jnp.sin(x), x)

    def g(x):  # a traced bound, and a carry that the condition does not read
        def body(i, s):
            return s[0] * x + 0.1, s[1] + s[0]

        return sum(lax.fori_loop(0, jnp.int32(2 + 3 * x), body, (x, 0.0 * x)))

    for fun in (f, g):
        batched = jax.vmap(fun)
        _close(T.jvp(batched, (xs,), (t,)), jax.jvp(batched, (xs,), (t,)))
        _close(T.linearize(batched, xs)[1](t), jax.jvp(batched, (xs,), (t,))[1])
        per_example = jnp.array([jax.jvp(fun, (x,), (1.0,))[1] for x in xs])
        _close(T.grad(lambda xs, b=batched: jnp.sum(b(xs)))(xs), per_example)
        _close(jax.jit(T.jacrev(batched))(xs), jnp.diag(per_example))
        _close(T.vjp(batched, xs)[1](t)[0], per_example * t)


def test_while_in_scan_and_scan_in_while():
    def while_in_scan(x):
        def step(c, xi):
            inner = lambda s: (s[0] + 1, jnp.sin(s[1]) * xi + c)  # noqa: E731
            h = lax.while_loop(lambda s: s[0] < 3, inner, (0, c))[1]
            return h, h * xi

        c, ys = lax.scan(step, 0.3, x)
        return c + jnp.sum(ys)

    def while_in_scan_unrolled(x):
        c, total = 0.3, 0.0
        for xi in x:
            h = c
            for _ in range(3):
                h = jnp.sin(h) * xi + c
            c, total = h, total + h * xi
        return c + total

    def scan_in_while(x):
        def body(s):
            i, h = s
            h, _ = lax.scan(lambda c, xi: (jnp.sin(c) * xi + 0.2 * c, None), h, x)
            return i + 1, h

        return lax.while_loop(lambda s: s[0] < 4, body, (0, jnp.sum(x)))[1]

    def scan_in_while_unrolled(x):
        h = jnp.sum(x)
        for _ in range(4):
            for xi in x:
                h = jnp.sin(h) * xi + 0.2 * h
        return h

    cases = [(while_in_scan, while_in_scan_unrolled), (scan_in_while, scan_in_while_unrolled)]
    for f, ref in cases:
        _close(jax.jit(T.grad(f))(X3), jax.grad(ref)(X3))


def test_second_order_forward_over_reverse_and_hessian():
    f = lambda x: jnp.sum(_loop(x, 5, snapshots=3) ** 2)  # noqa: E731
    ref = lambda x: jnp.sum(_unrolled(x, 5) ** 2)  # noqa: E731
    _close(T.hessian(f)(X3), jax.hessian(ref)(X3))
    _close(T.jacfwd(T.jacrev(f))(X3), jax.hessian(ref)(X3))
    v = jnp.array([0.2, -1.0, 0.4])
    _close(T.jvp(T.grad(f), (X3,), (v,))[1], jax.hessian(ref)(X3) @ v)
    _close(T.hvp(f, (X3,), (v,)), jax.hessian(ref)(X3) @ v)


def test_reverse_over_reverse():
    f = lambda x: jnp.sum(_loop(x, 4, snapshots=2) ** 2)  # noqa: E731
    ref = lambda x: jnp.sum(_unrolled(x, 4) ** 2)  # noqa: E731
    _close(T.jacrev(T.grad(f))(X3), jax.hessian(ref)(X3))


def test_forward_mode_and_linearize_still_work():
    f = lambda x: _loop(x, 5, snapshots=2)  # noqa: E731
    ref = lambda x: _unrolled(x, 5)  # noqa: E731
    t = jnp.array([1.0, 0.5, -0.25])
    _close(T.jvp(f, (X3,), (t,)), jax.jvp(ref, (X3,), (t,)))
    _close(T.linearize(f, X3)[1](t), jax.jvp(ref, (X3,), (t,))[1])
    _close(T.jacfwd(f)(X3), jax.jacfwd(ref)(X3))


def _arrays_in(jaxpr):
    for eqn in jaxpr.eqns:
        for v in eqn.outvars:
            yield v.aval
        for p in eqn.params.values():
            for sub in p if isinstance(p, (tuple, list)) else [p]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _arrays_in(inner)


def test_memory_is_snapshots_times_carry_whatever_the_trip_count():
    # The trip count is an input of the traced gradient program, so nothing in it can grow
    # with n; its largest array is the [S, *carry] snapshot buffer.
    x = jnp.zeros(50)
    for snapshots in [3, 8]:
        loss = lambda x, n, s=snapshots: jnp.sum(_loop(x, n, s))  # noqa: E731
        closed = jax.make_jaxpr(T.grad(loss))(x, 10)
        sizes = [int(np.prod(a.shape)) for a in _arrays_in(closed.jaxpr) if hasattr(a, "shape")]
        assert max(sizes) == snapshots * 50


def test_recomputation_schedule():
    # S = 1 recomputes from the start for every step; with room for log2(n) snapshots the
    # bisection costs about (n / 2) log2 n primal steps.
    assert recompute_steps(10, 1) == 45
    assert recompute_steps(1024, 11) == 512 * 10
    assert recompute_steps(100_000, DEFAULT_SNAPSHOTS) < 9 * 100_000
    assert recompute_steps(0, 4) == 0


def test_max_steps_stores_residuals_per_step_like_scan():
    def f(x, upper):
        return jnp.sum(T.fori_loop(0, upper, lambda i, c: jnp.sin(c) * x, x, max_steps=10))

    def unrolled(x, upper):
        c = x
        for _ in range(upper):
            c = jnp.sin(c) * x
        return jnp.sum(c)

    for upper in [0, 3, 10]:
        _close(jax.jit(T.grad(f))(X3, upper), jax.grad(unrolled)(X3, upper))
    # (tests/test_while_stored.py checks the program it makes)
    with pytest.raises(ValueError, match="max_steps"):
        T.while_loop(lambda c: c < 1.0, lambda c: c + 1.0, 0.0, max_steps=2.5)
    with pytest.raises(ValueError, match="snapshots"):
        T.while_loop(lambda c: c < 1.0, lambda c: c + 1.0, 0.0, snapshots=0)
