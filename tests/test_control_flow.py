"""Control flow in both modes: scan (fori_loop, lax.map), cond / switch, while_loop.

Every derivative is checked against JAX's autodiff in float64 (forward: jvp; reverse: vjp with a
random cotangent), some against central finite differences, a subset at second order.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax

import transforms as T
from transforms import engine
from transforms.tracing import trace_flat

RNG = np.random.default_rng(0)


def _rand_like(tree, seed=1):
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(
        lambda x: jnp.asarray(rng.normal(size=np.shape(x)).astype(x.dtype)), tree
    )


def check_both_modes(f, *args, atol=1e-10, rtol=1e-10):
    """Outputs, forward mode, reverse mode and linearize of `f` agree with JAX's.

    Ours and JAX's run inside one jax.jit, so each check is one compilation.
    """
    tangents = _rand_like(args, seed=2)
    ct = _rand_like(jax.eval_shape(f, *args), seed=3)

    @jax.jit
    def both(args, tangents, ct):
        out, vjp_fn = T.vjp(f, *args)
        ref, ref_vjp = jax.vjp(f, *args)
        _, f_lin = T.linearize(f, *args)
        ref_dot = jax.jvp(f, args, tangents)[1]
        return (
            (T.jvp(f, args, tangents), (ref, ref_dot)),
            ((out, vjp_fn(ct)), (ref, ref_vjp(ct))),
            (f_lin(*tangents), ref_dot),
        )

    for ours, ref in both(args, tangents, ct):
        _close(ours, ref, atol, rtol)


def check_eager(f, *args):
    """The eager (compiled-program) path: gradient of the sum of `f`'s outputs matches JAX's."""
    loss = lambda *a: sum(jnp.sum(o) for o in jax.tree_util.tree_leaves(f(*a)))  # noqa: E731
    argnums = tuple(range(len(args)))
    _close(T.grad(loss, argnums)(*args), jax.grad(loss, argnums)(*args), 1e-10, 1e-10)


def check_finite_differences(f, x, eps=1e-6, tol=1e-6):
    """The gradient of a scalar `f` matches central differences along a random direction."""
    v = _rand_like(x, seed=4)
    g = T.grad(f)(x)
    fd = (f(x + eps * v) - f(x - eps * v)) / (2 * eps)
    np.testing.assert_allclose(jnp.vdot(g, v), fd, rtol=tol, atol=tol)


def _close(a, b, atol, rtol):
    jax.tree_util.tree_map(
        lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=rtol),
        a,
        b,
    )


def _linearized(f, *args):
    flat, tree = jax.tree_util.tree_flatten(args)
    avals = [jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)) for a in flat]
    closed = trace_flat(f, tree, avals)[0]
    return engine.linearize_program(closed, (True,) * len(flat))


def _eqns_named(jaxpr, name):
    return [e for e in jaxpr.eqns if e.primitive.name == name]


X3 = jnp.array([0.3, -0.5, 0.7])


# --- scan -----------------------------------------------------------------------------------------


def _scan_fn(reverse):
    def f(x, w):
        def body(c, xi):
            c = jnp.tanh(c * w + xi)
            return c, jnp.sin(c) * xi

        c, ys = lax.scan(
            body,
            jnp.zeros(2),
            jnp.concatenate([x[:, None], x[:, None] ** 2], axis=1),
            reverse=reverse,
        )
        return c, ys

    return f


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_both_modes(reverse):
    check_both_modes(_scan_fn(reverse), X3, jnp.array([0.5, -1.2]))
    check_eager(_scan_fn(reverse), X3, jnp.array([0.5, -1.2]))


def test_scan_finite_differences():
    f = _scan_fn(False)
    check_finite_differences(lambda x: jnp.sum(f(x, jnp.array([0.5, -1.2]))[1]), X3)


def test_scan_pytree_carry_consts_and_int_counter():
    params = {"a": jnp.array([1.1, 0.4]), "b": jnp.array(0.3)}

    def f(params, xs):
        def body(carry, x):
            i, (h, acc) = carry
            h = jnp.sin(h * params["a"] + x * params["b"]) + i
            return (i + 1, (h, acc + jnp.sum(h**2))), {"h": h, "x2": x * x}

        (n, (h, acc)), ys = lax.scan(body, (0, (jnp.ones(2), 0.0)), xs)
        return {"h": h, "acc": acc}, ys

    check_both_modes(f, params, jnp.array([[0.1, 0.2], [0.3, -0.4], [0.5, 0.6]]))


def test_scan_without_xs_and_ys_only():
    def f(x):
        c, _ = lax.scan(lambda c, _: (jnp.cos(c) * x, None), x, None, length=4)
        _, ys = lax.scan(lambda c, xi: (c, jnp.exp(xi * c)), x[0], x)
        return c, ys

    check_both_modes(f, X3)


def test_nested_scan():
    def f(x):
        def outer(c, xi):
            inner_c, inner_ys = lax.scan(lambda a, b: (a * jnp.sin(b) + c, a * b), xi, x)
            return c + inner_c, jnp.sum(inner_ys)

        return lax.scan(outer, 0.1, x)

    check_both_modes(f, X3)


def test_fori_loop_static_bounds_and_map():
    def f(x):
        y = lax.fori_loop(0, 4, lambda i, c: jnp.sin(c) * (i + 1.0) + x, x)
        z = lax.map(lambda r: jnp.dot(r, r) * jnp.exp(r[0]), jnp.concatenate([x[None], y[None]]))
        return z

    check_both_modes(f, X3)
    check_finite_differences(lambda x: jnp.sum(f(x)), X3)


def test_transposed_scan_is_a_reverse_scan_not_unrolled():
    def f(x, n):
        return lax.scan(
            lambda c, xi: (jnp.sin(c) * xi, c),
            x[0],
            jnp.reshape(jnp.broadcast_to(x, (n, 3)), (-1,)),
        )[0]

    def backward_jaxpr(n):
        x = jnp.ones(3)
        _, vjp_fn = T.vjp(lambda x: f(x, n), x)
        return jax.make_jaxpr(vjp_fn)(1.0).jaxpr

    short, long = backward_jaxpr(2), backward_jaxpr(50)
    # One scan, of the same size however long the loop: the backward pass is a scan.
    assert len(long.eqns) == len(short.eqns)
    scans = _eqns_named(long, "scan")
    assert len(scans) == 1 and scans[0].params["reverse"] is True
    assert scans[0].params["length"] == 150


def test_partial_eval_finds_linear_carries():
    # Carries: a counter (int), a primal state and its tangent. Only the tangent is linear.
    def f(x):
        def body(c, xi):
            i, h = c
            return (i + 1, jnp.sin(h) * xi), h

        return lax.scan(body, (0, x[0]), x)[0][1]

    lin = _linearized(f, X3)
    (scan,) = _eqns_named(lin.split.linear, "scan")
    assert scan.params["num_carry"] == 1
    body = scan.params["jaxpr"].jaxpr
    assert "sin" not in [e.primitive.name for e in body.eqns]  # primal work stays known
    (known_scan,) = _eqns_named(lin.split.known.jaxpr, "scan")
    assert known_scan.params["num_carry"] == 2


def test_loop_invariant_residuals_are_not_stacked():
    w = jnp.array([[0.3, -0.2], [0.1, 0.4]])

    def f(w, xs):
        # exp(w) depends only on the loop-invariant w: computed once, not stacked per step
        return lax.scan(lambda c, x: (jnp.exp(w) @ c + x, None), jnp.ones(2), xs)[0]

    xs = jnp.ones((6, 2)) * 0.1
    check_both_modes(f, w, xs)
    lin = _linearized(f, w, xs)
    (scan,) = _eqns_named(lin.split.linear, "scan")
    stacked = [v.aval.shape for v in scan.invars[scan.params["num_consts"] :]]
    assert (6, 2, 2) not in stacked
    n_consts = scan.params["num_consts"]
    assert (2, 2) in [v.aval.shape for v in scan.invars[:n_consts]]


def test_scan_tangent_carry_that_starts_zero():
    # The carry's initial value does not depend on x, but each step mixes x in: the fixed point
    # must make the carry's tangent nonzero (and linear) from the first step on.
    def f(x):
        return lax.scan(lambda c, xi: (c * 0.9 + jnp.sin(xi), c), 1.0, x)

    check_both_modes(f, X3)


# --- cond / switch --------------------------------------------------------------------------------


def _cond_fn(x):
    # Branches with different residuals (sin/cos vs exp), an unused operand, a constant output.
    def yes(a, b):
        return jnp.sin(a) * b, 1.0, a

    def no(a, b):
        return jnp.exp(a), 2.0, a * a

    return lax.cond(jnp.sum(x) > 0, yes, no, x, 3.0 * x)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_cond_both_modes(sign):
    check_both_modes(_cond_fn, sign * X3)
    check_eager(_cond_fn, sign * X3)
    check_finite_differences(lambda x: jnp.sum(_cond_fn(x)[0]) + jnp.sum(_cond_fn(x)[2]), sign * X3)


@pytest.mark.parametrize("index", [0, 1, 2, 7])
def test_switch_index_not_differentiated(index):
    def f(x, i):
        return lax.switch(i, [jnp.sin, lambda a: a**3, lambda a: jnp.cos(a) * a], x)

    check_both_modes(lambda x: f(x, index), X3)
    # The index is an integer input: its cotangent is float0, never computed.
    g = T.grad(lambda x, i: jnp.sum(f(x, i)), argnums=(0, 1), allow_int=True)(X3, index)
    assert g[1].dtype == jax.dtypes.float0
    np.testing.assert_allclose(g[0], jax.grad(lambda x: jnp.sum(f(x, index)))(X3))


def test_cond_residuals_unified_in_linear_program():
    lin = _linearized(lambda x: _cond_fn(x)[0], X3)
    (cond,) = _eqns_named(lin.split.linear, "cond")
    sigs = [tuple(v.aval for v in b.jaxpr.invars) for b in cond.params["branches"]]
    assert sigs[0] == sigs[1]
    assert not _eqns_named(lin.split.linear, "sin") and not _eqns_named(lin.split.linear, "exp")


# --- while ----------------------------------------------------------------------------------------


def _while_fn(x):
    def body(s):
        i, h = s
        return i + 1, jnp.sin(h) * x + h

    return lax.while_loop(lambda s: s[0] < 5, body, (0, x))[1]


def test_while_forward_mode_and_linearize():
    t = _rand_like(X3)
    out, out_dot = T.jvp(_while_fn, (X3,), (t,))
    ref, ref_dot = jax.jvp(_while_fn, (X3,), (t,))
    _close(out, ref, 1e-12, 1e-12)
    _close(out_dot, ref_dot, 1e-12, 1e-12)
    out, f_lin = T.linearize(_while_fn, X3)
    _close(f_lin(t), ref_dot, 1e-12, 1e-12)
    np.testing.assert_allclose(T.jacfwd(_while_fn)(X3), jax.jacfwd(_while_fn)(X3), rtol=1e-12)


def test_while_reverse_mode():
    # JAX refuses; the oracle is the same loop unrolled (tests/test_while_reverse.py has more).
    def unrolled(x):
        h = x
        for _ in range(5):
            h = jnp.sin(h) * x + h
        return h

    ct = _rand_like(X3, seed=3)
    _close(T.vjp(_while_fn, X3)[1](ct), jax.vjp(unrolled, X3)[1](ct), 1e-12, 1e-12)
    _close(jax.jit(T.jacrev(_while_fn))(X3), jax.jacrev(unrolled)(X3), 1e-12, 1e-12)


# --- second order and nesting ---------------------------------------------------------------------


def test_hessian_through_scan_and_cond():
    def f(x):
        c, ys = lax.scan(lambda c, xi: (jnp.sin(c * xi) + c, c * xi**2), 0.5, x)
        return lax.cond(c > 0, lambda: c * jnp.sum(ys), lambda: jnp.sum(jnp.exp(ys)))

    @jax.jit
    def hessians(x):
        # reverse-over-reverse, forward-over-reverse and reverse-over-forward, and the oracle
        return (T.hessian(f)(x), T.jacfwd(T.grad(f))(x), T.jacrev(T.jacfwd(f))(x)), jax.hessian(f)(
            x
        )

    for x in (X3, -X3):  # both branches of the cond
        ours, ref = hessians(x)
        for h in ours:
            np.testing.assert_allclose(h, ref, rtol=1e-10, atol=1e-12)


def test_grad_of_scan_inside_jit_inside_cond_inside_scan():
    @jax.jit
    def inner(a):
        return lax.scan(lambda c, b: (c * jnp.cos(b) + b, c), a[0], a)[0]

    def f(x):
        def body(c, xi):
            y = lax.cond(xi > 0, lambda: inner(x * c), lambda: jnp.sum(jnp.sin(x)) * c)
            return y, y * xi

        c, ys = lax.scan(body, 1.0, x)
        return c + jnp.sum(ys)

    check_both_modes(f, X3)
    check_eager(f, X3)


def test_vmap_of_grad_through_scan():
    def f(x):
        return lax.scan(lambda c, xi: (c * jnp.sin(xi) + xi, None), 1.0, x)[0]

    xs = jnp.asarray(np.stack([X3, 2 * X3]))
    np.testing.assert_allclose(jax.vmap(T.grad(f))(xs), jax.vmap(jax.grad(f))(xs), rtol=1e-12)


def test_vmap_both_orders_through_cond_checkpoint_and_fori_loop():
    def f(x):
        y = lax.cond(x[0] > 0, lambda a: jnp.sin(a) * 2, lambda a: a**3, x)
        z = jax.checkpoint(lambda a: jnp.tanh(a) * a)(y)
        return jnp.sum(lax.fori_loop(0, 3, lambda i, c: c * jnp.cos(c), z))

    def g(xs):  # under vmap the cond's predicate is batched: it becomes a select
        return jnp.sum(jax.vmap(f)(xs))

    xs = jnp.asarray(np.random.default_rng(5).normal(size=(4, 3)))
    ours, ref = jax.jit(
        lambda xs: (
            (jax.vmap(T.grad(f))(xs), T.grad(g)(xs)),
            (jax.vmap(jax.grad(f))(xs), jax.grad(g)(xs)),
        )
    )(xs)
    _close(ours, ref, 1e-12, 1e-12)


@settings(max_examples=8, deadline=None)
@given(
    length=st.integers(1, 5),
    width=st.integers(1, 3),
    reverse=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_scan_random_shapes(length, width, reverse, seed):
    rng = np.random.default_rng(seed)
    w = jnp.asarray(rng.normal(size=(width, width)))
    xs = jnp.asarray(rng.normal(size=(length, width)))

    def f(w, xs):
        def body(c, x):
            c = jnp.tanh(w @ c + x)
            return c, jnp.sum(c * x)

        return lax.scan(body, jnp.ones(width), xs, reverse=reverse)

    check_both_modes(f, w, xs)


def test_linear_transpose_of_a_loop_with_a_counter():
    # A user's linear function whose loop also carries a (non-linear) counter.
    w = jnp.array([[0.5, 0.1, 0.0], [0.2, -0.3, 0.4], [0.0, 0.7, 0.1]])

    def f(x):
        return lax.fori_loop(0, 3, lambda i, c: w @ c * (i + 1.0), x)

    ct = jnp.array([1.0, -2.0, 0.5])
    (ours,) = T.linear_transpose(f, X3)(ct)
    (ref,) = jax.linear_transpose(f, X3)(ct)
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


# --- calls that survive into the JVP program ------------------------------------------------------


def test_custom_jvp_rule_under_jit_mixes_primal_and_tangent():
    # The user's rule is one jit call returning the primal outputs and their tangents together:
    # partial evaluation must split the call, or the primal outputs would land in the linear
    # program.
    @jax.custom_jvp
    def g(x):
        return jnp.sin(x), x

    @g.defjvp
    @jax.jit
    def g_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        # outputs: a computed value and a passed-through input, then their tangents
        return (jnp.sin(x), x), (jnp.cos(x) * t, t)

    def loss(x):
        a, b = g(x)
        return jnp.sum(a**2 * b)

    check_both_modes(loss, X3)
    check_eager(loss, X3)
