"""Deep programs, memory over long loops, and threads."""

import gc
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import transforms as T
from transforms import engine


def sin_chain(n):
    def f(x):
        for _ in range(n):
            x = jnp.sin(x)
        return x

    return f


def sin_chain_derivative(n, x):
    """d/dx sin∘…∘sin (n times) at x, by the chain rule in NumPy."""
    d = 1.0
    for _ in range(n):
        d *= np.cos(x)
        x = np.sin(x)
    return x, d


# --- deep programs ------------------------------------------------------------------------------


# The 100,000-equation chain itself is measured by `python -m bench.deep` (each size in a fresh
# process; bench/results/deep.md). 2026-11-30, 2-core box: eager grad 0.42, 0.37 and 0.32 ms
# per equation at 10k, 30k and 100k equations (fitted exponent 0.88), eager jvp 0.48, 0.42 and
# 0.38 ms (0.90); derivatives match the chain rule. Here: a smaller chain, and the scaling of
# the build (the engine's own passes) in the next test.
def test_deep_chain_both_modes():
    # 3,000 user equations: derivative programs of ~9,000 equations, far past any recursion
    # limit and past MAX_COMPILED_EQNS, so this also runs the op-by-op path.
    n = 3000
    f = sin_chain(n)
    y_ref, d_ref = sin_chain_derivative(n, 0.7)
    y, g = T.value_and_grad(f)(0.7)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12)
    np.testing.assert_allclose(g, d_ref, rtol=1e-10)
    y, y_dot = T.jvp(f, (0.7,), (1.0,))
    np.testing.assert_allclose(y_dot, d_ref, rtol=1e-10)
    _, pullback = T.vjp(f, 0.7)
    np.testing.assert_allclose(pullback(1.0)[0], d_ref, rtol=1e-10)


def test_long_programs_run_op_by_op_match_jax():
    # Past engine.MAX_FUSED_EQNS the derivative program runs op by op, each primitive's
    # implementation called directly: literals (typed host arrays), several dtypes of op, and
    # integer-valued ops along the way; twice, since the second call is the cached program.
    ops = (jnp.sin, lambda x: x * 1.01, jnp.tanh, lambda x: x + 0.5, lambda x: x - jnp.floor(x))

    def f(x):
        for i in range(2500):
            x = ops[i % len(ops)](x)
        return jnp.sum(x**2)

    x = jnp.linspace(0.1, 0.9, 4)
    expected = jax.grad(f)(x)
    for _ in range(2):
        np.testing.assert_allclose(T.grad(f)(x), expected, rtol=1e-12)
    _, tangent = T.jvp(f, (x,), (jnp.ones(4),))
    np.testing.assert_allclose(tangent, jnp.sum(expected), rtol=1e-12)


def test_whole_transforms_compile_in_tiers():
    # Compiling a Jacobian program costs XLA more than running it once, so the first eager call
    # runs it directly, the second starts its compilation in the background, and later calls
    # run the executable; all agree.
    from transforms import tiered

    def f(x):
        for i in range(700):
            x = jnp.sin(x) if i % 2 else x * 1.01
        return x

    x = jnp.linspace(0.1, 0.9, 3)
    expected = jax.jacrev(f)(x)
    jac = T.jacrev(f)
    before = {k for k in engine._programs.data if k[0] == "compiled"}
    for call in range(3):
        np.testing.assert_allclose(jac(x), expected, rtol=1e-12)
        tiered.wait(timeout=300)
        executors = [
            v for k, v in engine._programs.data.items() if k[0] == "compiled" and k not in before
        ]
        assert len(executors) == 1, executors
        assert (executors[0].compiled is not None) == (call >= 1), call


def test_deep_chain_is_linear_time():
    def transform_time(n):
        # Trace-only (no XLA): the time is the engine's own (JVP, partial eval, transpose).
        f = sin_chain(n)
        best = float("inf")
        for _ in range(2):
            engine.clear_caches()
            start = time.perf_counter()
            jax.make_jaxpr(T.grad(f))(0.7)
            best = min(best, time.perf_counter() - start)
        return best

    small, large = transform_time(400), transform_time(1600)
    # 4x the equations: linear gives ~4x; quadratic would give ~16x. Generous for a busy box.
    assert large / small < 9.0, (small, large)


# --- memory ---------------------------------------------------------------------------------------


# 10,000 in the tracker's wording; CI runs fewer (each eager call costs ~1-7 ms on a busy box).
GRAD_LOOP_CALLS = int(os.environ.get("TRANSFORMS_GRAD_LOOP_CALLS", "2000"))


def test_grad_loop_holds_live_arrays_flat():
    w = jnp.linspace(-1.0, 1.0, 8)

    def loss(w, x):
        return jnp.sum(jnp.tanh(w * x) ** 2)

    g = T.grad(loss)
    x = jnp.ones(8)
    for _ in range(50):  # warm-up: compile, cache
        w = w - 0.01 * g(w, x)
    gc.collect()
    n_arrays, n_programs = len(jax.live_arrays()), len(engine._programs.data)
    for _ in range(GRAD_LOOP_CALLS):
        w = w - 0.01 * g(w, x)
    gc.collect()
    assert len(jax.live_arrays()) <= n_arrays
    assert len(engine._programs.data) == n_programs
    np.testing.assert_allclose(w, jnp.clip(w, -1.0, 1.0))  # still finite and sensible


def test_tape_loop_holds_live_arrays_flat():
    import transforms.tf as tf

    w = tf.Variable(jnp.linspace(-1.0, 1.0, 4))
    x = tf.constant(jnp.ones(4))

    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.tanh(w * x) ** 2)
        w.assign_sub(0.01 * tape.gradient(loss, w))

    for _ in range(20):
        step()
    gc.collect()
    n_arrays = len(jax.live_arrays())
    for _ in range(GRAD_LOOP_CALLS // 10):  # a tape step costs ~10x an eager grad call
        step()
    gc.collect()
    assert len(jax.live_arrays()) <= n_arrays


def test_fresh_closures_do_not_grow_caches():
    # A new Python function object per call with the same structure reuses one program.
    gc.collect()
    before = len(jax.live_arrays())
    for i in range(300):
        c = jnp.float64(i)
        T.grad(lambda x, c=c: jnp.sin(x) * c)(1.0)
    gc.collect()
    assert len(jax.live_arrays()) <= before + 2


# --- threads ------------------------------------------------------------------------------------


def _problem(i):
    """A distinct function and input per task: shapes and structure vary with i."""
    n = 2 + i % 4  # four structures, so threads share (and race on) cached programs
    c = jnp.float64(0.1 * (i % 3))  # a constant, not a literal: one program per shape

    def f(x):
        y = jnp.sin(x) * jnp.cos(x[::-1]) + c * x**2
        return jnp.sum(jnp.tanh(y)) + jnp.sum(jnp.exp(0.1 * x))

    x = jnp.linspace(-1.0, 1.0 + 0.01 * i, n)
    return f, x


def test_grad_from_many_threads():
    problems = [_problem(i) for i in range(8)]
    expected = [jax.grad(f)(x) for f, x in problems]
    expected_hvp = [jax.jvp(jax.grad(f), (x,), (jnp.ones_like(x),))[1] for f, x in problems]
    engine.clear_caches()
    barrier = threading.Barrier(8)

    def work(k):
        if k < 8:
            barrier.wait()  # start the first tasks together, so they race on empty caches
        f, x = problems[k]
        g = T.grad(f)(x)
        _, y_dot = T.jvp(f, (x,), (jnp.ones_like(x),))
        h = T.hvp(f, (x,), (jnp.ones_like(x),))
        return g, y_dot, h

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(len(problems))))
    for (_f, x), (g, y_dot, h), g_ref, h_ref in zip(
        problems, results, expected, expected_hvp, strict=True
    ):
        np.testing.assert_allclose(g, g_ref, rtol=1e-12)
        np.testing.assert_allclose(y_dot, jnp.dot(g_ref, jnp.ones_like(x)), rtol=1e-12)
        np.testing.assert_allclose(h, h_ref, rtol=1e-12)


def test_same_function_many_threads_with_cache_clearing():
    f, x = _problem(3)
    g_ref = jax.grad(f)(x)
    stop = threading.Event()

    def clearer():
        while not stop.is_set():
            engine.clear_caches()
            time.sleep(0.001)

    t = threading.Thread(target=clearer)
    t.start()
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            results = list(pool.map(lambda _: T.grad(f)(x), range(30)))
    finally:
        stop.set()
        t.join()
    for g in results:
        np.testing.assert_allclose(g, g_ref, rtol=1e-12)


@pytest.mark.parametrize("n_threads", [4])
def test_threads_do_not_share_trace_state(n_threads):
    # One thread differentiates under jax.jit while others run eagerly.
    f, x = _problem(1)
    g_ref = jax.grad(f)(x)
    jg = jax.jit(T.grad(f))

    def work(k):
        return jg(x) if k % 2 else T.grad(f)(x)

    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        for g in pool.map(work, range(16)):
            np.testing.assert_allclose(g, g_ref, rtol=1e-12)
