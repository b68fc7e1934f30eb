"""`layout.sink_transposes`: transposes around elementwise regions cancel, results never change.

Hand-built jaxprs (explicit `lax.transpose`s) check which regions are rewritten and that every
output keeps its value, dtype, weak type and shape; a seeded random program generator checks
the same over mixed regions; and `jacfwd`'s staged program loses the transposes JAX's batching
rules leave in it (issue #17: XLA read the folded transpose strided, 1.3x JAX's time).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import transforms as T
from transforms.interpreter import eval_jaxpr
from transforms.layout import sink_transposes

RNG = np.random.default_rng(0)


def _transposes(closed) -> int:
    return sum(e.primitive.name == "transpose" for e in closed.jaxpr.eqns)


def _check(fun, *args, expect_transposes=None, rewritten=True):
    """Simplify `make_jaxpr(fun)`; its outputs must equal the original's, types included."""
    closed = jax.make_jaxpr(fun)(*args)
    simple = sink_transposes(closed)
    if rewritten:
        assert simple is not closed
    else:
        assert simple is closed
    if expect_transposes is not None:
        assert _transposes(simple) == expect_transposes, simple
    flat = [a for a in jax.tree_util.tree_leaves(args) if not isinstance(a, jax.ShapeDtypeStruct)]
    want = eval_jaxpr(closed.jaxpr, closed.consts, *flat)
    got = eval_jaxpr(simple.jaxpr, simple.consts, *flat)
    assert [v.aval for v in simple.jaxpr.outvars] == [v.aval for v in closed.jaxpr.outvars]
    for g, w in zip(got, want, strict=True):
        assert (g.dtype, g.shape, jax.typeof(g).weak_type) == (
            w.dtype,
            w.shape,
            jax.typeof(w).weak_type,
        )
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))
    return simple


def _x(*shape):
    return jnp.asarray(RNG.standard_normal(shape))


def test_pair_around_broadcasts_scalars_and_select_cancels():
    x, b, c = _x(3, 4), _x(3), _x(4)

    def f(x, b, c):
        t = lax.transpose(x, (1, 0))  # (4, 3)
        bb = lax.broadcast_in_dim(b, (4, 3), (1,))
        cc = lax.broadcast_in_dim(c, (4, 1), (0,))  # size-1 dimension, as batching emits
        y = jnp.tanh(t * bb) + 2.0  # a weak-typed Python scalar
        y = lax.select_n(y > 2.5, y, -y * cc)
        y = lax.convert_element_type(y, jnp.float32)
        return lax.transpose(y, (1, 0))

    simple = _check(f, x, b, c, expect_transposes=0)
    assert "select_n" in str(simple)


def test_weak_typed_region_keeps_weak_type():
    x = jnp.asarray(RNG.standard_normal((3, 5)), dtype=jnp.float64)

    def f(x):
        t = lax.transpose(x, (1, 0))
        return lax.transpose(t * 3.0 - 1.0, (1, 0))

    weak = jax.ShapeDtypeStruct((3, 5), jnp.float64, weak_type=True)
    closed = jax.make_jaxpr(f)(weak)
    simple = sink_transposes(closed)
    assert _transposes(simple) == 0
    assert simple.jaxpr.outvars[0].aval.weak_type
    assert [v.aval for v in simple.jaxpr.outvars] == [v.aval for v in closed.jaxpr.outvars]
    (got,) = eval_jaxpr(simple.jaxpr, simple.consts, x)
    (want,) = eval_jaxpr(closed.jaxpr, closed.consts, x)
    np.testing.assert_array_equal(got, want)


def test_identity_basis_is_re_emitted_not_transposed():
    # The jacfwd pattern: the basis (iota == iota) also feeds a dot, so it is rebuilt in the
    # other layout rather than transposed.
    x, a = _x(5), _x(5, 5)

    def f(a, x):
        g = (lax.broadcasted_iota(jnp.int32, (5, 5), 0) == lax.iota(jnp.int32, 5)).astype(x.dtype)
        i = lax.dot_general(a, g, (([1], [1]), ([], [])))
        n = lax.transpose(i, (1, 0))
        m = lax.broadcast_in_dim(jnp.tanh(a @ x), (1, 5), (1,))
        u = n * m + lax.broadcast_in_dim(x, (1, 5), (1,)) * g
        return lax.transpose(u, (1, 0))

    _check(f, a, x, expect_transposes=0)


def test_three_dimensional_and_mismatched_permutations():
    x, b, m = _x(2, 3, 4), _x(3), _x(4, 2)

    def f(x, b, m):
        t = lax.transpose(x, (2, 0, 1))  # (4, 2, 3)
        bb = lax.broadcast_in_dim(b, (4, 2, 3), (2,))
        mm = lax.broadcast_in_dim(m, (4, 2, 3), (0, 1))  # (2, 0) in x's layout
        io = lax.broadcasted_iota(jnp.float64, (4, 2, 3), 1)
        y = jnp.exp(t) * bb + mm - io
        return lax.transpose(y, (1, 2, 0)), lax.transpose(y * 2.0, (0, 2, 1))

    # the first output's transpose undoes the input's; the second becomes one transpose of x's
    # layout (the broadcast of `m` needs a transpose of the small `m`)
    simple = _check(f, x, b, m)
    perms = [e.params["permutation"] for e in simple.jaxpr.eqns if e.primitive.name == "transpose"]
    assert sorted(perms) == [(1, 0), (2, 1, 0)]  # m's, and the second output's


def test_source_also_read_by_a_reduction_stays():
    x, b = _x(3, 4), _x(3)

    def f(x, b):
        t = lax.transpose(x, (1, 0))
        y = jnp.sin(t) * lax.broadcast_in_dim(b, (4, 3), (1,))
        return lax.transpose(y, (1, 0)), jnp.sum(t, axis=0)

    # the output's transpose goes; the input's stays, for the reduction
    _check(f, x, b, expect_transposes=1)


def test_not_rewritten_when_nothing_is_saved():
    x, w, b = _x(3, 4), _x(3, 2), _x(3)

    def dot_user(x, w, b):  # the transposed value also feeds a dot; the output is not undone
        t = lax.transpose(x, (1, 0))
        y = jnp.sin(t) * lax.broadcast_in_dim(b, (4, 3), (1,))
        return y, t @ w

    def output_not_undone(x, b):  # would only move the transpose to the output
        t = lax.transpose(x, (1, 0))
        return jnp.cos(t) + lax.broadcast_in_dim(b, (4, 3), (1,))

    def reduced_output(x, b):  # the region's value is reduced, not transposed back
        t = lax.transpose(x, (1, 0))
        return jnp.sum(jnp.cos(t) * lax.broadcast_in_dim(b, (4, 3), (1,)), axis=0)

    _check(dot_user, x, w, b, rewritten=False)
    _check(output_not_undone, x, b, rewritten=False)
    _check(reduced_output, x, b, rewritten=False)


def test_chained_regions_and_shared_transposes():
    x, y = _x(3, 4), _x(4, 3)

    def f(x, y):
        t1 = lax.transpose(x, (1, 0))
        a = jnp.sin(t1) + y  # y: a plain input in the transposed layout
        t2 = lax.transpose(a, (1, 0))
        b = jnp.cos(t2) * x
        t3 = lax.transpose(b, (1, 0))
        c = jnp.exp(t3) - t1
        return lax.transpose(c, (1, 0)), t2, lax.transpose(a * 2.0, (1, 0))

    closed = jax.make_jaxpr(f)(x, y)
    simple = _check(f, x, y)
    assert _transposes(simple) < _transposes(closed)


# --- random programs ---------------------------------------------------------------------------

_UNARY = (jnp.sin, jnp.tanh, lambda v: -v, lambda v: v * 0.5, jnp.exp)
_BINARY = (lax.add, lax.mul, lax.sub)


def _random_program(rng, shape):
    """A random program over one input of `shape`: transposes, elementwise ops, broadcasts,
    iotas, reductions and dots, with several outputs."""
    rank = len(shape)

    def fun(x, v):
        values = [x]
        outs = []
        perms = []
        for _ in range(int(rng.integers(4, 12))):
            kind = rng.integers(0, 7)
            # mostly the latest values: chains, as batching emits them
            a = values[max(0, len(values) - 1 - int(rng.integers(3)))]
            if kind == 0 or (kind == 1 and not perms):
                perms.append(tuple(int(i) for i in rng.permutation(rank)))
                values.append(lax.transpose(a, perms[-1]))
            elif kind == 1:  # undo an earlier transpose
                perm = perms[int(rng.integers(len(perms)))]
                values.append(lax.transpose(a, tuple(int(i) for i in np.argsort(perm))))
            elif kind == 2:
                values.append(_UNARY[int(rng.integers(len(_UNARY)))](a))
            elif kind == 3:
                same = [w for w in values if w.shape == a.shape]
                b = same[int(rng.integers(len(same)))]
                values.append(_BINARY[int(rng.integers(len(_BINARY)))](a, b))
            elif kind == 4:  # a broadcast of v along a random dimension of a's shape
                d = int(rng.integers(rank))
                size = a.shape[d]
                bv = lax.broadcast_in_dim(v[:size], a.shape, (d,))
                values.append(a * bv)
            elif kind == 5:
                d = int(rng.integers(rank))
                values.append(a + lax.broadcasted_iota(a.dtype, a.shape, d))
            else:
                outs.append(jnp.sum(a, axis=int(rng.integers(rank))))
        picks = rng.choice(len(values) - 1, size=min(2, len(values) - 1), replace=False)
        return [*outs, values[-1], *(values[int(i)] for i in picks)]

    return fun


def test_random_programs_keep_their_values():
    rewritten = 0
    for seed in range(300):
        rng = np.random.default_rng(seed)
        shape = ((3, 4), (2, 3, 4), (2, 3, 2, 3))[seed % 3]
        x = jnp.asarray(rng.standard_normal(shape))
        v = jnp.asarray(rng.standard_normal(4))
        closed = jax.make_jaxpr(_random_program(rng, shape))(x, v)
        simple = sink_transposes(closed)
        if simple is closed:
            continue
        rewritten += 1
        assert _transposes(simple) < _transposes(closed), seed
        assert [a.aval for a in simple.jaxpr.outvars] == [a.aval for a in closed.jaxpr.outvars]
        want = eval_jaxpr(closed.jaxpr, closed.consts, x, v)
        got = eval_jaxpr(simple.jaxpr, simple.consts, x, v)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-13, err_msg=f"seed {seed}")
    assert rewritten >= 20  # the generator does make rewritable regions


def test_long_program_is_linear_and_iterative():
    # 20,000 chained elementwise equations between one transpose pair: no recursion limit,
    # and a single region
    x = _x(3, 4)

    def f(x):
        t = lax.transpose(x, (1, 0))
        for _ in range(20_000):
            t = t * 1.0000001
        return lax.transpose(t, (1, 0))

    closed = jax.make_jaxpr(f)(x)
    simple = sink_transposes(closed)
    assert _transposes(simple) == 0
    assert len(simple.jaxpr.eqns) == 20_000


# --- jacfwd's staged program -------------------------------------------------------------------

A = jnp.asarray(np.random.default_rng(1).standard_normal((200, 200)))
X0 = jnp.asarray(np.random.default_rng(2).standard_normal(200))


def _f(x):
    return jnp.tanh(A @ x) * x


def test_jacfwd_staged_program_has_no_transposes():
    closed = jax.make_jaxpr(lambda: T.jacfwd(_f)(X0))()
    assert _transposes(closed) == 0, closed
    (got,) = eval_jaxpr(closed.jaxpr, closed.consts)
    np.testing.assert_allclose(got, jax.jacfwd(_f)(X0), rtol=0, atol=1e-12)
    jitted = jax.jit(lambda x: T.jacfwd(_f)(x))(X0)
    np.testing.assert_allclose(jitted, jax.jacfwd(_f)(X0), rtol=0, atol=1e-12)
    closed = jax.make_jaxpr(lambda x: T.jacfwd(_f)(x))(X0)
    assert _transposes(closed) == 0, closed


def test_jacfwd_staged_keeps_aux_and_types():
    def f(x):
        return jnp.sin(x) * 2.0, {"py": 2.5, "arr": jnp.cos(x)}

    def g(x):
        jac, aux = T.jacfwd(f, has_aux=True)(x)
        assert type(aux["py"]) is float  # a Python float stays one under jit, as in JAX
        return jac, aux

    x = jnp.asarray([0.1, 0.2, 0.3])
    got = jax.jit(g)(x)
    want = jax.jacfwd(f, has_aux=True)(x)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        assert jax.typeof(a) == jax.typeof(jnp.asarray(b))
        np.testing.assert_allclose(a, b, rtol=1e-13)

    def ours(s):
        return T.jacfwd(lambda t: t * jnp.ones(2))(s)

    def theirs(s):
        return jax.jacfwd(lambda t: t * jnp.ones(2))(s)

    assert jax.typeof(jax.jit(ours)(1.0)) == jax.typeof(jax.jit(theirs)(1.0))
