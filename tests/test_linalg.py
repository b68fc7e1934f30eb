"""Linear algebra in both modes: dot_general, the factorisations, and the jnp.linalg functions
built on them, against JAX's autodiff in float64 and against finite differences.

Many cases are bundled into one function returning a tuple, so each bundle is traced and
compiled once (the suite runs on a shared 2-core machine).
"""

import itertools

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import pytest
from jax import lax

import transforms as T

RNG = np.random.default_rng(0)


def _rand(*shape, dtype=np.float64, seed=None):
    rng = RNG if seed is None else np.random.default_rng(seed)
    x = rng.normal(size=shape)
    if np.issubdtype(dtype, np.complexfloating):
        x = x + 1j * rng.normal(size=shape)
    return jnp.asarray(x.astype(dtype))


def _like(tree, seed):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef.unflatten(
        [_rand(*np.shape(x), dtype=x.dtype, seed=seed + i) for i, x in enumerate(leaves)]
    )


def _close(a, b, tol):
    jax.tree_util.tree_map(
        lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol),
        a,
        b,
    )


def check_both_modes(f, *args, tol=1e-9, modes=("fwd", "rev")):
    """`f`'s outputs, JVP and VJP (random tangents / cotangents) agree with JAX's.

    Ours and JAX's run inside one jax.jit, so each check is one compilation.
    """
    tangents = _like(args, seed=10)
    ct = _like(jax.eval_shape(f, *args), seed=20)

    @jax.jit
    def both(args, tangents, ct):
        res = {}
        if "fwd" in modes:
            res["fwd"] = (T.jvp(f, args, tangents), jax.jvp(f, args, tangents))
        if "rev" in modes:
            out, vjp_fn = T.vjp(f, *args)
            ref, ref_vjp = jax.vjp(f, *args)
            res["rev"] = ((out, vjp_fn(ct)), (ref, ref_vjp(ct)))
        return res

    for ours, ref in both(args, tangents, ct).values():
        _close(ours, ref, tol)


def check_finite_differences(f, x, eps=1e-6, tol=1e-6):
    """<grad f(x), v> equals the central difference of scalar `f` along a random `v`."""
    v = _rand(*x.shape, seed=30)
    fd = (f(x + eps * v) - f(x - eps * v)) / (2 * eps)
    np.testing.assert_allclose(jnp.vdot(T.grad(f)(x), v), fd, rtol=tol, atol=tol)


def _spd(n, seed, dtype=np.float64):
    a = _rand(n, n, dtype=dtype, seed=seed)
    return a @ jnp.conj(a.T) + n * jnp.eye(n, dtype=dtype)


def _well_conditioned(n, seed, batch=()):
    return _rand(*batch, n, n, seed=seed) + 3 * jnp.eye(n)


# --- dot_general ----------------------------------------------------------------------------------

DOT_CASES = [
    # (lhs shape, rhs shape, ((lhs_contract, rhs_contract), (lhs_batch, rhs_batch)))
    ((3,), (3,), (((0,), (0,)), ((), ()))),
    ((2, 3), (3, 4), (((1,), (0,)), ((), ()))),
    ((3, 2), (3, 4), (((0,), (0,)), ((), ()))),  # contract leading axes
    ((2, 3), (4, 3), (((1,), (1,)), ((), ()))),
    ((2, 3), (4,), (((), ()), ((), ()))),  # outer product
    ((5, 2, 3), (5, 3, 4), (((2,), (1,)), ((0,), (0,)))),  # batched matmul
    ((2, 5, 3), (3, 4, 5), (((2,), (0,)), ((1,), (2,)))),  # batch axes in odd places
    ((2, 3, 4, 5), (4, 2, 3, 6), (((1, 2), (2, 0)), ((0,), (1,)))),  # two contracted, permuted
    ((2, 3, 4), (3, 2, 4), (((1,), (0,)), ((0, 2), (1, 2)))),  # two batch axes
    ((2, 5, 3), (3, 4), (((2,), (0,)), ((), ()))),  # a dense layer on (batch, seq, features)
    ((3, 4), (2, 5, 3), (((0,), (2,)), ((), ()))),  # the same with the weight on the left
    ((4, 2, 3), (4, 3, 2), (((1, 2), (2, 1)), ((0,), (0,)))),  # batch, two contracted, swapped
]


def test_dot_general_all_dimension_numbers_both_modes():
    args = [_rand(*ls, seed=i) for i, (ls, _, _) in enumerate(DOT_CASES)]
    args += [_rand(*rs, seed=50 + i) for i, (_, rs, _) in enumerate(DOT_CASES)]
    n = len(DOT_CASES)

    def f(*xs):
        return tuple(
            lax.dot_general(xs[i], xs[n + i], dn) for i, (_, _, dn) in enumerate(DOT_CASES)
        )

    check_both_modes(f, *args)


def test_dot_transpose_lands_in_the_primal_layout():
    # The weight gradient of a dense layer on (batch, seq, features) contracts over two axes; the
    # contraction is emitted with its result already in the weight's layout, with no transpose
    # after it (which XLA:CPU runs several times slower than the in-place contraction).
    x, w = _rand(2, 5, 3), _rand(3, 4, seed=1)

    def loss(x, w):
        return jnp.sum(jnp.tanh(x @ w))

    jaxpr = jax.make_jaxpr(T.grad(loss, argnums=(0, 1)))(x, w)
    prims = [e.primitive.name for e in jaxpr.jaxpr.eqns]
    assert "dot_general" in prims and "transpose" not in prims, prims
    _close(T.grad(loss, argnums=(0, 1))(x, w), jax.grad(loss, argnums=(0, 1))(x, w), 1e-12)


def test_weight_gradient_over_many_rows_is_a_plain_matrix_product():
    # Contracting (batch, seq) rows of both operands: on XLA:CPU the rule flattens them and
    # transposes the primal operand explicitly (flat(x)^T @ flat(ct)), 15-25% faster than
    # letting XLA copy the larger cotangent. Values as JAX's, also under jit, vmap and grad.
    x, w = _rand(8, 64, 16), _rand(16, 32, seed=1)

    def loss(x, w):
        return jnp.sum(jnp.tanh(x @ w) ** 2)

    g = T.grad(loss, argnums=1)
    eqns = jax.make_jaxpr(g)(x, w).jaxpr.eqns
    if jax.default_backend() == "cpu":
        transposes = [e for e in eqns if e.primitive.name == "transpose"]
        assert [e.invars[0].aval.shape for e in transposes] == [(512, 16)], transposes
    _close(g(x, w), jax.grad(loss, argnums=1)(x, w), 1e-12)
    _close(jax.jit(g)(x, w), jax.grad(loss, argnums=1)(x, w), 1e-12)
    xs = jnp.stack([x, 2 * x])
    _close(jax.vmap(g, (0, None))(xs, w), jax.vmap(jax.grad(loss, 1), (0, None))(xs, w), 1e-12)
    hv = T.grad(lambda w: jnp.sum(g(x, w) ** 2))(w)
    _close(hv, jax.grad(lambda w: jnp.sum(jax.grad(loss, 1)(x, w) ** 2))(w), 1e-10)
    x32, w32 = x.astype(jnp.float32), w.astype(jnp.float32)

    def mixed(x, w):
        y = lax.dot_general(x, w, (((2,), (0,)), ((), ())), preferred_element_type=jnp.float64)
        return jnp.sum(jnp.tanh(y))

    gw = T.grad(mixed, argnums=1)(x32, w32)
    assert gw.dtype == jnp.float32
    _close(gw, jax.grad(mixed, argnums=1)(x32, w32), 1e-4)


def test_dot_general_preferred_element_type():
    x32, y32 = _rand(2, 3).astype(jnp.float32), _rand(3, 4).astype(jnp.float32)
    dn = (((1,), (0,)), ((), ()))

    def f(x, y):
        return lax.dot_general(x, y, dn, preferred_element_type=jnp.float64)

    out, out_dot = T.jvp(f, (x32, y32), (x32, y32))
    ref, ref_dot = jax.jvp(f, (x32, y32), (x32, y32))
    assert out.dtype == ref.dtype == jnp.float64 and out_dot.dtype == ref_dot.dtype
    _close(out_dot, ref_dot, 1e-5)
    gx, gy = T.grad(lambda x, y: jnp.sum(f(x, y) ** 2), argnums=(0, 1))(x32, y32)
    rx, ry = jax.grad(lambda x, y: jnp.sum(f(x, y) ** 2), argnums=(0, 1))(x32, y32)
    assert gx.dtype == rx.dtype == jnp.float32 and gy.dtype == ry.dtype == jnp.float32
    _close((gx, gy), (rx, ry), 1e-4)


def test_dot_general_finite_differences_batched():
    y = _rand(4, 3, 2, seed=3)
    check_finite_differences(
        lambda x: jnp.sum(jnp.sin(lax.dot_general(x, y, (((2,), (1,)), ((0,), (0,)))))),
        _rand(4, 5, 3, seed=4),
    )


# --- factorisations -------------------------------------------------------------------------------


def test_cholesky_real_and_complex():
    check_both_modes(lambda a: lax.linalg.cholesky(a, symmetrize_input=False), _spd(4, 1))
    check_both_modes(jnp.linalg.cholesky, _spd(3, 2))
    check_both_modes(jnp.linalg.cholesky, _spd(3, 3, np.complex128))
    check_finite_differences(lambda a: jnp.sum(jnp.linalg.cholesky(a) ** 3), _spd(3, 4))


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_triangular_solve_every_flag(dtype):
    flags = list(itertools.product([True, False], repeat=5))
    a = _rand(2, 3, 3, dtype=dtype, seed=5) + 4 * jnp.eye(3, dtype=dtype)
    b_left, b_right = _rand(2, 3, 2, dtype=dtype, seed=6), _rand(2, 2, 3, dtype=dtype, seed=7)

    def f(a, b_left, b_right):
        return tuple(
            lax.linalg.triangular_solve(
                a,
                b_left if left else b_right,
                left_side=left,
                lower=lower,
                transpose_a=trans,
                conjugate_a=conj,
                unit_diagonal=unit,
            )
            for left, lower, trans, conj, unit in flags
        )

    check_both_modes(f, a, b_left, b_right)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_tridiagonal_solve_in_every_argument(dtype):
    # Batched, several right-hand sides; dl[..., 0] and du[..., -1] lie outside the matrix.
    dl, du = _rand(2, 5, dtype=dtype, seed=40), _rand(2, 5, dtype=dtype, seed=41)
    d = _rand(2, 5, dtype=dtype, seed=42) + 4
    b = _rand(2, 5, 3, dtype=dtype, seed=43)
    check_both_modes(lax.linalg.tridiagonal_solve, dl, d, du, b)
    # Only the right-hand side varying (the transpose alone), and only the matrix.
    check_both_modes(lambda b: lax.linalg.tridiagonal_solve(dl, d, du, b), b)
    check_both_modes(lambda d: lax.linalg.tridiagonal_solve(dl, d, du, b), d)


def test_tridiagonal_solve_second_order_and_finite_differences():
    dl, du, b = _rand(4, seed=44), _rand(4, seed=45), _rand(4, 2, seed=46)

    def f(d):
        return jnp.sum(jnp.sin(lax.linalg.tridiagonal_solve(dl, d, du, b)))

    d = _rand(4, seed=47) + 4
    _close(T.hessian(f)(d), jax.hessian(f)(d), 1e-9)
    check_finite_differences(f, d)


def _householder_product_by_updates(a, taus):
    # The same Q = H_0 ... H_{k-1} (first n columns) written as jnp rank-one updates, for
    # JAX's autodiff to differentiate: the oracle, since JAX has no rule for the primitive.
    m, n = a.shape[-2:]
    q = jnp.broadcast_to(jnp.eye(m, n, dtype=a.dtype), a.shape)
    for i in reversed(range(taus.shape[-1])):
        head = jnp.zeros(a.shape[:-2] + (i,), a.dtype)
        one = jnp.ones(a.shape[:-2] + (1,), a.dtype)
        v = jnp.concatenate([head, one, a[..., i + 1 :, i]], axis=-1)
        w = jnp.einsum("...m,...mn->...n", jnp.conj(v), q)
        q = q - taus[..., i, None, None] * v[..., :, None] * w[..., None, :]
    return q


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_householder_product(dtype):
    cases = [((5, 3), 3), ((5, 3), 2), ((2, 4, 4), 3)]  # tall, fewer reflectors, batched square
    args = [
        (_rand(*shape, dtype=dtype, seed=70 + i), _rand(*shape[:-2], k, dtype=dtype, seed=80 + i))
        for i, (shape, k) in enumerate(cases)
    ]
    for a, taus in args:
        _close(
            lax.linalg.householder_product(a, taus), _householder_product_by_updates(a, taus), 1e-12
        )
    tangents, ct = _like(args, seed=90), _like([a for a, _ in args], seed=95)

    def ours(args, tangents, ct):
        f = lambda *flat: [lax.linalg.householder_product(*p) for p in zip(flat[::2], flat[1::2])]
        flat, flat_t = [x for p in args for x in p], [x for p in tangents for x in p]
        return T.jvp(f, flat, flat_t)[1], T.vjp(f, *flat)[1](ct)

    def ref(args, tangents, ct):
        f = lambda *flat: [_householder_product_by_updates(*p) for p in zip(flat[::2], flat[1::2])]
        flat, flat_t = [x for p in args for x in p], [x for p in tangents for x in p]
        return jax.jvp(f, flat, flat_t)[1], jax.vjp(f, *flat)[1](ct)

    _close(ours(args, tangents, ct), ref(args, tangents, ct), 1e-10)


def test_householder_product_finite_differences_and_second_order():
    taus = _rand(3, seed=99)

    def f(a):
        return jnp.sum(jnp.sin(lax.linalg.householder_product(a, taus)))

    a = _rand(5, 3, seed=98)
    check_finite_differences(f, a)
    _close(
        T.hessian(f)(a),
        jax.hessian(lambda a: jnp.sum(jnp.sin(_householder_product_by_updates(a, taus))))(a),
        1e-9,
    )


def test_lu_factor_and_zero_tangents_of_pivots():
    a = _well_conditioned(4, 8)
    check_both_modes(lambda a: lax.linalg.lu(a)[0], a)
    check_both_modes(lambda a: jsl.lu(a), a)  # P, L, U
    out, (dlu, dpiv, dperm) = T.jvp(lax.linalg.lu, (a,), (a,))
    assert dpiv.dtype == jax.dtypes.float0 and dperm.dtype == jax.dtypes.float0


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_lu_wide_and_tall(dtype):
    wide, tall = _rand(3, 5, dtype=dtype, seed=60), _rand(5, 3, dtype=dtype, seed=61)
    bwide, btall = _rand(2, 2, 4, dtype=dtype, seed=62), _rand(2, 4, 2, dtype=dtype, seed=63)

    def f(wide, tall, bwide, btall):
        # lax.linalg.lu: the packed factor (batched too); jsl.lu: P, L (m x k), U (k x n)
        lus = tuple(lax.linalg.lu(x)[0] for x in (wide, tall, bwide, btall))
        return lus + jsl.lu(wide) + jsl.lu(tall)

    check_both_modes(f, wide, tall, bwide, btall)


def test_lu_wide_and_tall_finite_differences_and_second_order():
    def f(a):
        p, l, u = jsl.lu(a)
        return jnp.sum(jnp.sin(l)) + jnp.sum(u**3)

    wide, tall = _rand(3, 4, seed=64), _rand(4, 3, seed=65)
    check_finite_differences(f, wide)
    check_finite_differences(f, tall)
    ours, ref = jax.jit(lambda a: (T.hessian(f)(a), jax.hessian(f)(a)))(wide)
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-10)


def _qr(mode):
    return lambda a: jnp.linalg.qr(a, mode=mode)


def _qr_gauge_invariant(a):
    # A complete QR of a tall matrix fixes Q's trailing m - n columns only up to Q2 -> Q2 W (W
    # unitary): JAX's tangent for them follows its Householder vectors, ours takes Q2^H dQ2 = 0.
    # Compare what does not depend on that choice: Q1, R, the projector Q2 Q2^H and Q R.
    q, r = jnp.linalg.qr(a, mode="complete")
    n = a.shape[-1]
    q2 = q[..., :, n:]
    return q[..., :, :n], r, q2 @ jnp.conj(jnp.swapaxes(q2, -1, -2)), q @ r


def test_qr():
    check_both_modes(jnp.linalg.qr, _rand(4, 4, seed=9))
    check_both_modes(jnp.linalg.qr, _rand(5, 3, seed=10))  # tall, reduced
    check_both_modes(jnp.linalg.qr, _rand(2, 4, 3, seed=11))  # batched
    check_both_modes(jnp.linalg.qr, _rand(4, 3, dtype=np.complex128, seed=12))
    check_both_modes(_qr("complete"), _rand(4, 4, seed=13))  # square: complete is reduced


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_qr_wide(dtype):
    for mode in ("reduced", "complete"):  # the same factorisation when m < n
        check_both_modes(_qr(mode), _rand(3, 5, dtype=dtype, seed=40))
        check_both_modes(_qr(mode), _rand(2, 2, 4, dtype=dtype, seed=41))  # batched
    check_both_modes(_qr("r"), _rand(2, 6, dtype=dtype, seed=42))


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_qr_tall_complete(dtype):
    check_both_modes(_qr_gauge_invariant, _rand(5, 2, dtype=dtype, seed=43))
    check_both_modes(_qr_gauge_invariant, _rand(3, 4, 2, dtype=dtype, seed=44))  # batched
    check_both_modes(_qr("r"), _rand(5, 3, dtype=dtype, seed=45))
    # Our gauge for the trailing columns: Q^H dQ is skew-Hermitian with a zero trailing block.
    a, da = _rand(2, 5, 3, dtype=dtype, seed=46), _rand(2, 5, 3, dtype=dtype, seed=47)
    (q, r), (dq, dr) = T.jvp(_qr("complete"), (a,), (da,))
    omega = jnp.conj(jnp.swapaxes(q, -1, -2)) @ dq
    _close(omega + jnp.conj(jnp.swapaxes(omega, -1, -2)), jnp.zeros_like(omega), 1e-12)
    _close(omega[..., 3:, 3:], jnp.zeros((2, 2, 2)), 1e-12)
    _close(dq @ r + q @ dr, da, 1e-12)
    _close(dr, jnp.triu(dr), 0)


def test_qr_finite_differences():
    w = _rand(3, 5, seed=48)
    check_finite_differences(lambda a: jnp.sum(jnp.linalg.qr(a)[1] * w), _rand(3, 5, seed=49))
    check_finite_differences(
        lambda a: jnp.sum(jnp.sin(sum(jnp.sum(x * x) for x in _qr_gauge_invariant(a)[:3]))),
        _rand(5, 3, seed=50),
    )


def _qr_pivoted(a):
    q, r, p = lax.linalg.qr(a, pivoting=True, full_matrices=False)
    return q, r


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_qr_pivoted(dtype):
    # a[..., p] = Q R, with the permutation p piecewise constant: square and tall against JAX
    # in both modes; p's tangent is float0 zeros.
    square, tall = _rand(4, 4, dtype=dtype, seed=54), _rand(5, 3, dtype=dtype, seed=55)
    check_both_modes(lambda *xs: tuple(map(_qr_pivoted, xs)), square, tall)
    _, (_, _, dp) = T.jvp(lambda a: lax.linalg.qr(a, pivoting=True), (square,), (square,))
    assert dp.dtype == jax.dtypes.float0
    # Batched (each matrix its own permutation): JAX 0.10.2's rule fails on batches, so compare
    # with its answer matrix by matrix.
    batched, t = _rand(2, 4, 3, dtype=dtype, seed=56), _rand(2, 4, 3, dtype=dtype, seed=57)
    _, ours = T.jvp(_qr_pivoted, (batched,), (t,))
    for i in range(2):
        _, ref = jax.jvp(_qr_pivoted, (batched[i],), (t[i],))
        _close(tuple(x[i] for x in ours), tuple(ref), 1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_qr_pivoted_wide_follows_the_math(dtype):
    # JAX 0.10.2's tangent of R's trailing columns for a wide pivoted QR disagrees with finite
    # differences (it reads dA's columns unpermuted there); ours matches them.
    a, t = _rand(3, 5, dtype=dtype, seed=57), _rand(3, 5, dtype=dtype, seed=58)
    eps = 1e-6
    (qp, rp), (qm, rm) = _qr_pivoted(a + eps * t), _qr_pivoted(a - eps * t)
    assert np.array_equal(
        lax.linalg.qr(a + eps * t, pivoting=True)[2], lax.linalg.qr(a, pivoting=True)[2]
    )
    _, (dq, dr) = T.jvp(_qr_pivoted, (a,), (t,))
    np.testing.assert_allclose(dq, (qp - qm) / (2 * eps), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dr, (rp - rm) / (2 * eps), rtol=1e-6, atol=1e-7)
    # Reverse mode is the transpose of that forward map: <ct, J t> == <J^T ct, t>, with JAX's
    # pairing Re(sum(ct * t)) for complex values.
    ct = _like((dq, dr), seed=59)
    (ct_a,) = T.vjp(_qr_pivoted, a)[1](ct)
    lhs = sum(jnp.sum(c * d).real for c, d in zip(ct, (dq, dr), strict=True))
    np.testing.assert_allclose(lhs, jnp.sum(ct_a * t).real, rtol=1e-10)


def test_qr_second_order():
    w = _rand(3, 5, seed=51)

    def wide(a):  # a scalar function of Q and R
        q, r = jnp.linalg.qr(a)
        return jnp.sum(jnp.sin(q)) + jnp.sum(r * w) * jnp.sum(q[0] ** 2)

    def tall_complete(a):
        q1, r, p, _ = _qr_gauge_invariant(a)
        return jnp.sum(jnp.sin(q1)) * jnp.sum(r[:2] ** 2) + jnp.sum(jnp.cos(p))

    for f, a in ((wide, _rand(3, 5, seed=52)), (tall_complete, _rand(4, 2, seed=53))):
        ours, ref = jax.jit(lambda a, f=f: (T.hessian(f)(a), jax.hessian(f)(a)))(a)
        np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-10)


def test_eigh():
    a = _spd(4, 13)
    # Eigenvectors are defined up to sign: compare a sign-invariant function of them.
    check_both_modes(lambda a: (jnp.linalg.eigh(a)[0], jnp.abs(jnp.linalg.eigh(a)[1])), a)
    check_both_modes(jnp.linalg.eigvalsh, _spd(3, 14, np.complex128))
    check_finite_differences(lambda a: jnp.sum(jnp.linalg.eigvalsh(a) ** 2), a)


def test_svd():
    # Singular vectors are defined up to sign: compare their absolute values.
    def f(a):
        u, s, vt = jnp.linalg.svd(a, full_matrices=False)
        return s, jnp.abs(u), jnp.abs(vt)

    check_both_modes(f, _rand(3, 3, seed=15))
    check_both_modes(f, _rand(5, 3, seed=16))  # tall
    check_both_modes(f, _rand(3, 5, seed=17))  # wide
    check_both_modes(jnp.linalg.svdvals, _rand(2, 4, 3, seed=18))  # batched, no vectors
    check_finite_differences(
        lambda a: jnp.sum(jnp.linalg.svd(a, compute_uv=False)), _rand(4, 3, seed=19)
    )


def test_svd_complex():
    # Our phase gauge for complex U, V (dU carries all of Im diag(U^H dA V), dV none of it) is
    # JAX's, so U and V are compared directly, then through gauge-invariant quantities too.
    sq, tall = _rand(3, 3, dtype=np.complex128, seed=70), _rand(5, 3, dtype=np.complex128, seed=71)
    wide, batched = (
        _rand(3, 5, dtype=np.complex128, seed=72),
        _rand(2, 4, 3, dtype=np.complex128, seed=73),
    )

    def f(sq, tall, wide, batched):
        outs = ()
        for a in (sq, tall, wide, batched):
            u, s, vt = jnp.linalg.svd(a, full_matrices=False)
            uh, vh = jnp.conj(jnp.swapaxes(u, -1, -2)), jnp.conj(jnp.swapaxes(vt, -1, -2))
            # values only, factors, reconstruction U diag(s) V^H, projectors U U^H and V V^H
            outs += (jnp.linalg.svdvals(a), s, u, vt, (u * s[..., None, :]) @ vt, u @ uh, vh @ vt)
        u, s, vt = jnp.linalg.svd(sq, full_matrices=True)  # square: full and reduced coincide
        return outs + (u, s, vt)

    check_both_modes(f, sq, tall, wide, batched)
    # check_finite_differences takes real inputs: vary the real and the imaginary part in turn.
    c = _rand(4, 3, dtype=np.complex128, seed=74)

    def g(a):
        return jnp.sum(jnp.linalg.svd(a, compute_uv=False) ** 3)

    check_finite_differences(lambda x: g(x + 1j * c.imag), c.real)
    check_finite_differences(lambda y: g(c.real + 1j * y), c.imag)


def test_svd_second_order():
    def f(a):
        u, s, vt = jnp.linalg.svd(a, full_matrices=False)
        return jnp.sum(s**3) + jnp.sum(jnp.abs(u @ vt) ** 2 * a)

    a = _rand(4, 3, seed=75)
    ours, ref = jax.jit(lambda a: (T.hessian(f)(a), jax.hessian(f)(a)))(a)
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-10)


def test_eig():
    a = _rand(4, 4, seed=21)
    check_both_modes(jnp.linalg.eigvals, a)  # eigenvalues: reverse mode too
    check_both_modes(
        lambda a: lax.linalg.eig(a, compute_left_eigenvectors=False, enable_eigvec_derivs=True),
        a,
        modes=("fwd",),
        tol=1e-8,
    )
    with pytest.raises(NotImplementedError, match="eigenvectors"):
        T.jvp(lambda a: jnp.linalg.eig(a)[1], (a,), (a,))


# --- jnp.linalg / jax.scipy.linalg functions ------------------------------------------------------


def test_solve_inv_det_slogdet_matrix_power():
    a, b = _well_conditioned(3, 22), _rand(3, 2, seed=23)

    def f(a, b):
        sign, logdet = jnp.linalg.slogdet(a)
        return (
            jnp.linalg.solve(a, b),
            jnp.linalg.inv(a),
            jnp.linalg.det(a),
            sign,
            logdet,
            jnp.linalg.matrix_power(a, 3),
            jnp.linalg.matrix_power(a, -2),
        )

    check_both_modes(f, a, b)
    check_finite_differences(lambda a: jnp.linalg.slogdet(a)[1] + jnp.sum(jnp.linalg.inv(a)), a)


def test_batched_solve_and_det():
    a, b = _well_conditioned(3, 24, batch=(2,)), _rand(2, 3, 1, seed=25)
    check_both_modes(lambda a, b: (jnp.linalg.solve(a, b), jnp.linalg.det(a)), a, b)


def test_pinv_lstsq_cho_solve_expm():
    a, b, spd = _rand(4, 3, seed=26), _rand(4, seed=27), _spd(3, 28)

    def f(a, b, spd):
        return (
            jnp.linalg.pinv(a),
            jnp.linalg.lstsq(a, b)[0],
            jsl.cho_solve(jsl.cho_factor(spd), b[:3]),
            jsl.expm(spd / 10),
        )

    check_both_modes(f, a, b, spd)
    check_finite_differences(lambda s: jnp.sum(jsl.expm(s / 10) ** 2), spd)


def test_custom_linear_solve_with_its_own_transpose():
    a = _well_conditioned(3, 29)

    def f(a, b):
        matvec = lambda x: a @ x  # noqa: E731
        solve = lambda _, x: jnp.linalg.solve(a, x)  # noqa: E731
        transpose_solve = lambda _, x: jnp.linalg.solve(a.T, x)  # noqa: E731
        return lax.custom_linear_solve(matvec, b, solve, transpose_solve)

    check_both_modes(f, a, _rand(3, seed=30))


def test_second_order_through_solve_and_slogdet():
    a = _well_conditioned(3, 31)

    def f(a):
        return jnp.linalg.slogdet(a)[1] + jnp.sum(jnp.linalg.solve(a, jnp.ones(3)) ** 2)

    ours, ref = jax.jit(lambda a: (T.hessian(f)(a), jax.hessian(f)(a)))(a)
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-10)
