"""Reverse mode through a bounded `while_loop` (`transforms.while_loop(..., max_steps=m)`).

Residuals are stored once per step in `[m, ...]` buffers and read back in reverse: gradients
equal JAX's of the loop unrolled for the trip count it takes (float64), both passes run only
the steps taken, and nothing is recomputed (no snapshot stack, no primal step in the backward
loop).
"""

import jax
import jax.numpy as jnp
from jax import lax
from test_while_reverse import X3, _close, _step, _unrolled

import transforms as T

MAX = 12


def _loop(x, n, max_steps=MAX):
    """`n` steps of `_step` (test_while_reverse's loop) with a bound."""

    def body(s):
        i, h = s
        return i + 1, _step(h, x)

    return T.while_loop(lambda s: s[0] < n, body, (0, x), max_steps=max_steps)[1]


def _loops_in(jaxpr):
    """Every while equation of `jaxpr`, nested calls included, with its nesting depth."""
    stack = [(jaxpr, 0)]
    while stack:
        j, depth = stack.pop()
        for eqn in j.eqns:
            inner_depth = depth + (eqn.primitive.name == "while")
            if eqn.primitive.name == "while":
                yield eqn, depth
            for p in eqn.params.values():
                for sub in p if isinstance(p, tuple | list) else [p]:
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        stack.append((inner, inner_depth))


def test_gradient_equals_the_unrolled_loop_for_every_trip_count():
    grad = jax.jit(T.grad(lambda x, n: jnp.sum(_loop(x, n))))
    for n in [0, 1, 2, 5, 11, MAX]:
        _close(grad(X3, n), jax.grad(lambda x, n=n: jnp.sum(_unrolled(x, n)))(X3))
    # the bound stops the loop: past it, the loop is the bound's steps
    _close(grad(X3, MAX + 5), jax.grad(lambda x: jnp.sum(_unrolled(x, MAX)))(X3))


def test_residuals_are_stored_per_step_and_nothing_is_recomputed():
    closed = jax.make_jaxpr(T.grad(lambda x, n: jnp.sum(_loop(x, n))))(X3, 4)
    loops = list(_loops_in(closed.jaxpr))
    # one forward loop, one backward loop, neither inside another: no snapshot bisection, no
    # primal replay inside the backward loop
    assert len(loops) == 2 and all(depth == 0 for _, depth in loops)
    forward, backward = sorted(loops, key=lambda e: len(e[0].outvars), reverse=True)
    stored = [v.aval.shape for v in forward[0].outvars if v.aval.shape[:1] == (MAX,)]
    assert stored == [(MAX, 3), (MAX, 3)]  # sin h and cos h of each step
    # the backward loop reads residuals and computes no sine or cosine itself
    names = {e.primitive.name for e in backward[0].params["body_jaxpr"].jaxpr.eqns}
    assert not names & {"sin", "cos"}


def test_loop_invariant_residuals_are_computed_once():
    def f(x, n):
        w = jnp.exp(x)  # loop-invariant: used by every step's derivative

        def body(s):
            i, h = s
            return i + 1, jnp.sin(h * w)

        return jnp.sum(T.while_loop(lambda s: s[0] < n, body, (0, x), max_steps=MAX)[1])

    def ref(x, n):
        w, h = jnp.exp(x), x
        for _ in range(n):
            h = jnp.sin(h * w)
        return jnp.sum(h)

    _close(jax.jit(T.grad(f))(X3, 5), jax.grad(ref)(X3, 5))
    closed = jax.make_jaxpr(T.grad(f))(X3, 5)
    forward = max(_loops_in(closed.jaxpr), key=lambda e: len(e[0].outvars))[0]
    stored = [v.aval.shape for v in forward.outvars if v.aval.shape[:1] == (MAX,)]
    assert len(stored) <= 2  # per step: h and cos(h w), not exp(x)


def test_vjp_jacrev_hessian_and_reverse_over_reverse():
    n = 5
    f = lambda x: _loop(x, n)  # noqa: E731
    ref = lambda x: _unrolled(x, n)  # noqa: E731
    ct = jnp.array([1.0, -2.0, 0.5])
    out, f_vjp = T.vjp(f, X3)
    _close(out, ref(X3))
    _close(f_vjp(ct), jax.vjp(ref, X3)[1](ct))
    _close(T.jacrev(f)(X3), jax.jacrev(ref)(X3))
    loss = lambda x: jnp.sum(f(x) ** 2)  # noqa: E731
    ref_loss = lambda x: jnp.sum(ref(x) ** 2)  # noqa: E731
    _close(T.hessian(loss)(X3), jax.hessian(ref_loss)(X3))
    _close(T.jacrev(T.grad(loss))(X3), jax.hessian(ref_loss)(X3))
    v = jnp.array([0.2, -1.0, 0.4])
    _close(T.hvp(loss, (X3,), (v,)), jax.hessian(ref_loss)(X3) @ v)


def test_forward_mode_and_linearize():
    f = lambda x: _loop(x, 4)  # noqa: E731
    ref = lambda x: _unrolled(x, 4)  # noqa: E731
    t = jnp.array([1.0, 0.5, -0.25])
    _close(T.jvp(f, (X3,), (t,)), jax.jvp(ref, (X3,), (t,)))
    _close(T.linearize(f, X3)[1](t), jax.jvp(ref, (X3,), (t,))[1])
    _close(jax.jit(T.jacfwd(f))(X3), jax.jacfwd(ref)(X3))


def test_vmap_with_a_trip_count_per_example():
    xs = jnp.array([0.5, 1.2, 2.0, 3.5])

    def f(x):  # about doubles until past 10: 4, 3, 2 and 2 steps
        return T.while_loop(lambda c: c < 10.0, lambda c: c * 2.0 + jnp.sin(x), x, max_steps=8)

    def unrolled(x, n):
        c = x
        for _ in range(n):
            c = c * 2.0 + jnp.sin(x)
        return c

    ref = jnp.array([jax.grad(unrolled)(x, n) for x, n in zip(xs, [4, 3, 2, 2], strict=True)])
    _close(jax.vmap(T.grad(f))(xs), ref)
    _close(jax.jit(jax.vmap(T.grad(f)))(xs), ref)
    _close(T.grad(lambda xs: jnp.sum(jax.vmap(f)(xs)))(xs), ref)


def test_bounded_loop_in_scan_and_scan_in_bounded_loop():
    def in_scan(x):
        def step(c, xi):
            inner = lambda s: (s[0] + 1, jnp.sin(s[1]) * xi + c)  # noqa: E731
            h = T.while_loop(lambda s: s[0] < 3, inner, (0, c), max_steps=5)[1]
            return h, h * xi

        c, ys = lax.scan(step, 0.3, x)
        return c + jnp.sum(ys)

    def in_scan_unrolled(x):
        c, total = 0.3, 0.0
        for xi in x:
            h = c
            for _ in range(3):
                h = jnp.sin(h) * xi + c
            c, total = h, total + h * xi
        return c + total

    def scan_in(x):
        def body(s):
            i, h = s
            h, _ = lax.scan(lambda c, xi: (jnp.sin(c) * xi + 0.2 * c, None), h, x)
            return i + 1, h

        return T.while_loop(lambda s: s[0] < 4, body, (0, jnp.sum(x)), max_steps=6)[1]

    def scan_in_unrolled(x):
        h = jnp.sum(x)
        for _ in range(4):
            for xi in x:
                h = jnp.sin(h) * xi + 0.2 * h
        return h

    for f, ref in [(in_scan, in_scan_unrolled), (scan_in, scan_in_unrolled)]:
        _close(jax.jit(T.grad(f))(X3), jax.grad(ref)(X3))


def test_fori_loop_with_a_traced_stop_and_a_gradient_through_a_loop_constant():
    def f(x, w, upper):
        return jnp.sum(T.fori_loop(0, upper, lambda i, c: jnp.sin(c) * w + i, x, max_steps=10))

    def ref(x, w, upper):
        c = x
        for i in range(upper):
            c = jnp.sin(c) * w + i
        return jnp.sum(c)

    w = jnp.array([1.5, -0.5, 0.25])
    for upper in [0, 3, 10]:
        _close(jax.jit(T.grad(f, (0, 1)))(X3, w, upper), jax.grad(ref, (0, 1))(X3, w, upper))
