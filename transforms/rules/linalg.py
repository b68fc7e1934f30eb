"""Linear algebra: cholesky, triangular_solve, lu, qr, eigh, svd, eig, custom_linear_solve,
tridiagonal_solve, householder_product.

Each JVP is the matrix-calculus identity written with the factorisation's own outputs, and is
linear in the input tangent (coefficients are computed from primals only), so reverse mode comes
from transposing the ops it emits: matmuls, triangle masks, and `triangular_solve` /
`custom_linear_solve`, which are linear in their right-hand side and have transpose rules here.

Notation: `dA` the input tangent, `X^H` the conjugate transpose, `tril(X, -1)` the strictly lower
triangle. All rules work on batched matrices (leading axes are batch axes).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax
from jax.extend.core import primitives as P

from ..jvp import jvp_eval, jvp_rules
from ..transpose import is_undefined, transpose_rules
from ..zeros import Zero, instantiate, tangent_aval


def _T(x):
    return jnp.swapaxes(x, -1, -2)


def _H(x):
    return jnp.conj(_T(x)) if jnp.iscomplexobj(x) else _T(x)


def _mm(a, b):
    return jnp.matmul(a, b, precision=lax.Precision.HIGHEST)


def _eye_like(x):
    # Of x's full (batch) shape: under jax_numpy_rank_promotion="raise" a (n, n) identity does
    # not broadcast against (b, n, n).
    return jnp.broadcast_to(jnp.eye(x.shape[-1], dtype=x.dtype), x.shape)


def _diag(x):
    # The diagonal as a masked sum (jnp.diagonal is a gather): linear, and cheap to transpose.
    return jnp.sum(x * _eye_like(x), axis=-1)


def _is_complex(x) -> bool:
    return jnp.iscomplexobj(x)


def _unsupported(prim: str, why: str) -> NotImplementedError:
    return NotImplementedError(f"Differentiation rule for '{prim}' not implemented for {why}.")


# --- cholesky: A = L L^H --------------------------------------------------------------------------


def _phi(x):
    # The lower triangle with the diagonal halved: the part of a Hermitian matrix that a
    # perturbation of L (lower triangular) can account for.
    return jnp.tril(x) - 0.5 * x * _eye_like(x)


def _cholesky_jvp(primals, tangents, **params):
    (a,), (da,) = primals, tangents
    L = P.cholesky_p.bind(a, **params)
    # dA is used as given (JAX's convention): jnp.linalg.cholesky symmetrises its input, and with
    # it the tangent, before the primitive sees it.
    inner = lax.linalg.triangular_solve(L, da, left_side=True, lower=True)
    inner = lax.linalg.triangular_solve(
        L, inner, left_side=False, lower=True, transpose_a=True, conjugate_a=True
    )
    # The primitive leaves the strict upper triangle of its output unspecified: mask it.
    return L, _mm(jnp.tril(L), _phi(inner))


jvp_rules[P.cholesky_p] = _cholesky_jvp


# --- triangular_solve: op(a) x = b (left_side) or x op(a) = b -------------------------------------


def _op(a, *, transpose_a, conjugate_a):
    a = _T(a) if transpose_a else a
    return jnp.conj(a) if conjugate_a and _is_complex(a) else a


def _triangle(da, *, lower, unit_diagonal):
    # Only the triangle the solve reads is an input; the diagonal too unless it is implicit.
    k = -1 if unit_diagonal else 0
    return jnp.tril(da, k) if lower else jnp.triu(da, -k)


def _triangular_solve_jvp(primals, tangents, **params):
    a, b = primals
    da, db = tangents
    x = P.triangular_solve_p.bind(a, b, **params)
    if type(da) is Zero:
        return x, P.triangular_solve_p.bind(a, db, **params)
    # op(a) x = b  =>  op(a) dx = db - op(da) x ;  x op(a) = b  =>  dx op(a) = db - x op(da)
    op_da = _op(
        _triangle(da, lower=params["lower"], unit_diagonal=params["unit_diagonal"]),
        transpose_a=params["transpose_a"],
        conjugate_a=params["conjugate_a"],
    )
    rhs = -(_mm(op_da, x) if params["left_side"] else _mm(x, op_da))
    if type(db) is not Zero:
        rhs = db + rhs
    return x, P.triangular_solve_p.bind(a, rhs.astype(x.dtype), **params)


def _triangular_solve_transpose(ct, a, b, **params):
    assert not is_undefined(a), "triangular_solve is linear in b only"
    if type(ct) is Zero:
        return [None, None]
    # x = op(a)^-1 b  =>  ct_b = op(a)^-T ct: the same solve with transpose_a flipped.
    flipped = dict(params, transpose_a=not params["transpose_a"])
    return [None, P.triangular_solve_p.bind(a, ct, **flipped)]


jvp_rules[P.triangular_solve_p] = _triangular_solve_jvp
transpose_rules[P.triangular_solve_p] = _triangular_solve_transpose


# --- lu: a[perm] = L U, L unit lower triangular (m x k), U upper triangular (k x n) --------------
# k = min(m, n). Write P A = L U with P the row permutation, and split off the leading k x k block:
#   square part  P A1 = L1 U1:  x = L1^-1 P dA1 U1^-1 = L1^-1 dL1 + dU1 U1^-1, whose strict lower
#                part is L1^-1 dL1 (L1 unit lower) and whose upper part is dU1 U1^-1;
#   wide (m < n) P A = L1 [U1 | U2], U2 = L1^-1 P A2:  dU2 = L1^-1 (P dA2 - dL1 U2);
#   tall (m > n) P A = [L1; L2] U, L2 = (P A)_2 U^-1:   dL2 = ((P dA)_2 - L2 dU1) U1^-1.
# lu packs the strict lower triangle of L and the upper triangle of U, and so does the tangent.


def _permutation_matrix(perm, dtype):
    n = perm.shape[-1]
    cols = lax.broadcasted_iota(perm.dtype, (*perm.shape, n), perm.ndim)
    return (perm[..., :, None] == cols).astype(dtype)


def _lu_jvp(primals, tangents, **params):
    (a,), (da,) = primals, tangents
    lu, pivots, perm = P.lu_p.bind(a, **params)
    m, n = a.shape[-2:]
    k = min(m, n)
    pda = _mm(_permutation_matrix(perm, a.dtype), da)
    l1 = jnp.tril(lu[..., :k, :k], -1) + _eye_like(lu[..., :k, :k])
    u1 = jnp.triu(lu[..., :k, :k])
    x = lax.linalg.triangular_solve(
        l1, pda[..., :k, :k], left_side=True, lower=True, unit_diagonal=True
    )
    x = lax.linalg.triangular_solve(u1, x, left_side=False, lower=False)
    dl1 = _mm(l1, jnp.tril(x, -1))
    du1 = _mm(jnp.triu(x), u1)
    dlu = dl1 + du1
    if n > k:  # wide: the columns right of the square block belong to U alone
        u2 = lu[..., :, k:]
        du2 = lax.linalg.triangular_solve(
            l1, pda[..., :, k:] - _mm(dl1, u2), left_side=True, lower=True, unit_diagonal=True
        )
        dlu = jnp.concatenate([dlu, du2], axis=-1)
    if m > k:  # tall: the rows below the square block belong to L alone
        l2 = lu[..., k:, :]
        dl2 = lax.linalg.triangular_solve(
            u1, pda[..., k:, :] - _mm(l2, du1), left_side=False, lower=False
        )
        dlu = jnp.concatenate([dlu, dl2], axis=-2)
    int_zero = [Zero(tangent_aval(_aval(pivots))), Zero(tangent_aval(_aval(perm)))]
    return [lu, pivots, perm], [dlu, *int_zero]


def _aval(x):
    import jax

    return jax.typeof(x)


jvp_rules[P.lu_p] = _lu_jvp


# --- qr: a = Q R ----------------------------------------------------------------------------------
#
# Shapes (k = min(m, n)): reduced Q is m×k, R is k×n; complete (full_matrices) Q is m×m, R is m×n.
# Three cases, each reduced to the tall/square reduced one:
#   m >= n, reduced   the core rule below.
#   m < n             A = [X | Y], R = [U | V] with X, U the leading m×m blocks: X = Q U is a square
#                     QR (core rule gives dQ, dU from dX), and Y = Q V gives dV = Q^H (dY - dQ V).
#                     Reduced and complete coincide here.
#   m > n, complete   Q = [Q1 | Q2], R = [R1; 0] with A = Q1 R1 the reduced QR (core rule gives dQ1,
#                     dR1; dR keeps its zero rows). Q^H dQ skew-Hermitian fixes Q1^H dQ2 =
#                     -(Q2^H dQ1)^H = -(Q2^H dA R1^-1)^H, but Q2 is only unique up to Q2 -> Q2 W
#                     for unitary W, so Q2^H dQ2 is a free skew-Hermitian block: we take it to be 0,
#                     i.e. dQ2 = -Q1 (Q2^H dA R1^-1)^H. (JAX follows its Householder vectors there
#                     instead; everything gauge-invariant - Q1, R, Q2 Q2^H, Q R - agrees.)


def _qr_core_tangents(q, r, da):
    # m >= n, reduced: Q m×n, R n×n. With C = Q^H dA R^-1: Q^H dQ = Ω is skew-Hermitian and
    # dR R^-1 = C - Ω is upper triangular with a real diagonal (R's diagonal is real).
    da_rinv = lax.linalg.triangular_solve(r, da, left_side=False, lower=False)
    c = _mm(_H(q), da_rinv)
    low = jnp.tril(c, -1)
    omega = low - _H(low)
    if _is_complex(c):
        imag_c = lax.complex(jnp.zeros_like(jnp.real(c)), jnp.imag(c))
        omega = omega + _eye_like(c) * imag_c  # the imaginary diagonal of C
    dq = _mm(q, omega - c) + da_rinv  # = (I - Q Q^H) dA R^-1 + Q Ω
    dr = _mm(c - omega, r)
    return dq, dr, da_rinv


def _qr_jvp(primals, tangents, *, pivoting, full_matrices, **params):
    (a,), (da,) = primals, tangents
    outs = P.qr_p.bind(a, pivoting=pivoting, full_matrices=full_matrices, **params)
    q, r = outs[:2]
    if pivoting:
        # a[..., p] = Q R, with the column permutation p piecewise constant in a: the tangents
        # are those of the unpivoted QR of a[..., p] along da[..., p]; p's own is zero.
        p = outs[2]
        idx = jnp.broadcast_to(p[..., None, :], da.shape[:-1] + p.shape[-1:])
        da = jnp.take_along_axis(da, idx, axis=-1)
        dq, dr = _qr_tangents(q, r, da, full_matrices)
        return [q, r, p], [dq, dr, Zero(tangent_aval(_aval(p)))]
    return [q, r], _qr_tangents(q, r, da, full_matrices)


def _qr_tangents(q, r, da, full_matrices):
    m, n = da.shape[-2:]
    if m < n:
        dq, du, _ = _qr_core_tangents(q, r[..., :, :m], da[..., :, :m])
        dv = _mm(_H(q), da[..., :, m:] - _mm(dq, r[..., :, m:]))
        return [dq, jnp.concatenate([du, dv], axis=-1)]
    if full_matrices and m > n:
        q1, q2, r1 = q[..., :, :n], q[..., :, n:], r[..., :n, :]
        dq1, dr1, da_rinv = _qr_core_tangents(q1, r1, da)
        dq2 = -_mm(q1, _H(_mm(_H(q2), da_rinv)))
        dr = jnp.concatenate([dr1, jnp.zeros(r.shape[:-2] + (m - n, n), dr1.dtype)], axis=-2)
        return [jnp.concatenate([dq1, dq2], axis=-1), dr]
    dq, dr, _ = _qr_core_tangents(q, r, da)
    return [dq, dr]


jvp_rules[P.qr_p] = _qr_jvp


# --- eigh: a = V diag(w) V^H ----------------------------------------------------------------------


def _eigh_jvp(primals, tangents, *, subset_by_index, **params):
    (a,), (da,) = primals, tangents
    if subset_by_index is not None and tuple(subset_by_index) != (0, a.shape[-1]):
        raise _unsupported("eigh", f"subset_by_index={subset_by_index}")
    v, w = P.eigh_p.bind(a, subset_by_index=subset_by_index, **params)
    vh_da_v = _mm(_H(v), _mm(da, v))
    eye = _eye_like(vh_da_v)
    # F_ij = 1 / (w_j - w_i) off the diagonal, 0 on it.
    f = 1 / (w[..., None, :] - w[..., :, None] + eye.real) - eye.real
    dw = jnp.real(_diag(vh_da_v))
    dv = _mm(v, f.astype(v.dtype) * vh_da_v)
    return [v, w], [dv, dw.astype(w.dtype)]


jvp_rules[P.eigh_p] = _eigh_jvp


# --- svd: a = U diag(s) V^H -----------------------------------------------------------------------
# With dP = U^H dA V (k x k) and the skew-Hermitian Om_U = U^H dU, Om_V = V^H dV:
#   dP = Om_U S + dS - S Om_V.
# Diagonal: ds = Re(dP_ii), and Im(dP_ii) = s_i (Im Om_U_ii - Im Om_V_ii): only the difference of
# the two phases is determined (the SVD's phase gauge U -> U e^{i theta}, V -> V e^{i theta}).
# We put it all on U (Om_V_ii = 0), which is the convention JAX follows too.
# Off the diagonal, adding dP S and its conjugate transpose (resp. S dP) gives
#   Om_U = F o (dP S + S dP^H),  Om_V = F o (S dP + dP^H S),  F_ij = 1 / (s_j^2 - s_i^2), F_ii = 0.
# Reduced non-square factors also move outside their span:
#   m > n: dU += (I - U U^H) dA V S^-1 ;  n > m: dV += (I - V V^H) dA^H U S^-1.
# For real matrices dP's diagonal is real and the phase term vanishes.


def _svd_jvp(primals, tangents, *, full_matrices, compute_uv, subset_by_index, **params):
    (a,), (da,) = primals, tangents
    m, n = a.shape[-2:]
    if subset_by_index is not None and tuple(subset_by_index) != (0, min(m, n)):
        raise _unsupported("svd", f"subset_by_index={subset_by_index}")
    if compute_uv and full_matrices and m != n:
        raise _unsupported("svd", f"full_matrices=True with non-square shape {a.shape}")
    s, u, vt = P.svd_p.bind(
        a, full_matrices=False, compute_uv=True, subset_by_index=subset_by_index, **params
    )
    v = _H(vt)
    dp = _mm(_H(u), _mm(da, v))
    ds = _diag(dp)
    if _is_complex(ds):
        ds = jnp.real(ds)
    if not compute_uv:
        return [s], [ds]
    s_row = s[..., None, :].astype(dp.dtype)  # complex for complex a: no implicit promotion
    eye = _eye_like(dp)
    # F_ij = 1 / (s_j^2 - s_i^2) off the diagonal, 0 on it.
    f = 1 / (s_row**2 - _T(s_row) ** 2 + eye) - eye
    dp_s = dp * s_row  # dP diag(s)
    s_dp = _T(s_row) * dp  # diag(s) dP
    du = _mm(u, f * (dp_s + _H(dp_s)))
    dv = _mm(v, f * (s_dp + _H(s_dp)))
    if _is_complex(a):  # the phase: Om_U_ii = i Im(dP_ii) / s_i, Om_V_ii = 0
        du = du + u * ((0.5 * (dp - _H(dp)) * eye) / s_row).sum(axis=-2, keepdims=True)
    if m > n:  # the part of dA outside span(U)
        du = du + (_mm(da, v) - _mm(u, dp)) / s_row
    if n > m:  # the part of dA^H outside span(V)
        dv = dv + (_mm(_H(da), u) - _mm(v, _H(dp))) / s_row
    return [s, u, vt], [ds, du, _H(dv)]


jvp_rules[P.svd_p] = _svd_jvp


# --- eig (forward mode): a V = V diag(w) ----------------------------------------------------------


def _eig_jvp(primals, tangents, *, compute_left_eigenvectors, compute_right_eigenvectors, **params):
    (a,), (da,) = primals, tangents
    if (compute_left_eigenvectors or compute_right_eigenvectors) and not params.get(
        "enable_eigvec_derivs"
    ):
        raise NotImplementedError(
            "Derivatives of non-symmetric eigenvectors are defined only up to assumptions JAX "
            "cannot check; call jax.lax.linalg.eig(..., enable_eigvec_derivs=True) to opt in, "
            "or differentiate only the eigenvalues (jnp.linalg.eigvals)."
        )
    if compute_left_eigenvectors:
        raise _unsupported("eig", "left eigenvectors; pass compute_left_eigenvectors=False")
    outs = P.eig_p.bind(
        a,
        compute_left_eigenvectors=False,
        compute_right_eigenvectors=compute_right_eigenvectors,
        **params,
    )
    # The eigenvectors are needed for the tangents even when not returned.
    w, v = (
        P.eig_p.bind(a, compute_left_eigenvectors=False, compute_right_eigenvectors=True, **params)
        if not compute_right_eigenvectors
        else outs
    )
    # dw = diag(V^-1 dA V); dV = V (F ∘ V^-1 dA V), F_ij = 1 / (w_j - w_i), minus the change of
    # the unit-norm normalisation.
    vinv_da_v = jnp.linalg.solve(v, _mm(da.astype(v.dtype), v))
    dw = _diag(vinv_da_v)
    if not compute_right_eigenvectors:
        return outs, [dw]
    eye = _eye_like(vinv_da_v)
    f = 1 / (w[..., None, :] - w[..., :, None] + eye) - eye
    dv = _mm(v, f * vinv_da_v)
    dv = dv - v * jnp.real(jnp.sum(jnp.conj(v) * dv, axis=-2, keepdims=True)).astype(v.dtype)
    # LAPACK also fixes each vector's phase (its largest component is real): keep that
    # component's tangent real too.
    largest_row = jnp.argmax(jnp.abs(v), axis=-2)[..., None, :]
    rows = lax.broadcasted_iota(largest_row.dtype, v.shape, v.ndim - 2)
    largest = (rows == largest_row).astype(v.dtype)
    theta = jnp.imag(
        jnp.sum(dv * largest, axis=-2, keepdims=True) / jnp.sum(v * largest, axis=-2, keepdims=True)
    )
    dv = dv - 1j * theta * v
    return outs, [dw, dv]


jvp_rules[P.eig_p] = _eig_jvp


# --- custom_linear_solve: x = A^-1 b, with A given by its matvec ----------------------------------


def _split_solve_args(args, const_lengths):
    out, start = [], 0
    for n in const_lengths:
        out.append(list(args[start : start + n]))
        start += n
    return out, list(args[start:])


def _linear_solve_jvp(primals, tangents, *, const_lengths, jaxprs):
    (mv_c, _, _, _), b = _split_solve_args(primals, const_lengths)
    (t_mv_c, _, _, _), t_b = _split_solve_args(tangents, const_lengths)
    params = dict(const_lengths=const_lengths, jaxprs=jaxprs)
    x = P.linear_solve_p.bind(*primals, **params)
    # A x = b  =>  A dx = db - dA x, with dA x the matvec's tangent in its consts at fixed x.
    # The solve functions are A^-1 by contract: their consts are not differentiated.
    rhs = list(t_b)
    if any(type(t) is not Zero for t in t_mv_c):
        mv = jaxprs.matvec
        _, dax = jvp_eval(
            mv.jaxpr,
            mv.consts,
            [*mv_c, *x],
            [*t_mv_c, *(Zero(tangent_aval(_aval(xi))) for xi in x)],
        )
        rhs = [
            lax.neg(instantiate(d)) if type(t) is Zero else lax.sub(t, instantiate(d))
            for t, d in zip(rhs, dax, strict=True)
        ]
    if all(type(t) is Zero for t in rhs):
        return x, [Zero(tangent_aval(_aval(xi))) for xi in x]
    consts = primals[: sum(const_lengths)]
    rhs = [instantiate(t) for t in rhs]
    return x, P.linear_solve_p.bind(*consts, *rhs, **params)


def _linear_solve_transpose(cts, *invals, const_lengths, jaxprs):
    n_consts = sum(const_lengths)
    consts = invals[:n_consts]
    assert not any(is_undefined(c) for c in consts), "custom_linear_solve is linear in b only"
    if jaxprs.transpose_solve is None:
        raise NotImplementedError(
            "Transpose rule for 'custom_linear_solve' needs transpose_solve: pass "
            "transpose_solve= (or symmetric=True) to jax.lax.custom_linear_solve for reverse mode."
        )
    if all(type(ct) is Zero for ct in cts):
        return [None] * len(invals)
    (mv, vm, sv, tsv), _ = _split_solve_args(consts, const_lengths)
    # A^-T: swap matvec with vecmat and solve with transpose_solve.
    t_lengths = type(const_lengths)(
        matvec=const_lengths.vecmat,
        vecmat=const_lengths.matvec,
        solve=const_lengths.transpose_solve,
        transpose_solve=const_lengths.solve,
    )
    t_jaxprs = type(jaxprs)(
        matvec=jaxprs.vecmat,
        vecmat=jaxprs.matvec,
        solve=jaxprs.transpose_solve,
        transpose_solve=jaxprs.solve,
    )
    cts = [instantiate(ct) for ct in cts]
    ct_b = P.linear_solve_p.bind(
        *vm, *mv, *tsv, *sv, *cts, const_lengths=t_lengths, jaxprs=t_jaxprs
    )
    return [None] * n_consts + list(ct_b)


jvp_rules[P.linear_solve_p] = _linear_solve_jvp
transpose_rules[P.linear_solve_p] = _linear_solve_transpose


# --- tridiagonal_solve: A x = b, A tridiagonal with sub-, main and super-diagonals dl, d, du ---
# By LAPACK's convention dl[..., 0] and du[..., -1] lie outside the matrix and are never read.


def _shift(x, by: int, axis: int):
    """x moved `by` places along `axis` (+1: y[i] = x[i-1]; -1: y[i] = x[i+1]), zero-filled."""
    x = jnp.moveaxis(x, axis, -1)
    pad = jnp.zeros_like(x[..., :1])
    y = jnp.concatenate([pad, x[..., :-1]] if by > 0 else [x[..., 1:], pad], axis=-1)
    return jnp.moveaxis(y, -1, axis)


def _tridiagonal_matmul(dl, d, du, x):
    # (A x)_i = dl_i x_{i-1} + d_i x_i + du_i x_{i+1}; a Zero diagonal contributes nothing.
    terms = [
        diag[..., None] * shifted(x)
        for diag, shifted in (
            (dl, lambda v: _shift(v, 1, -2)),
            (d, lambda v: v),
            (du, lambda v: _shift(v, -1, -2)),
        )
        if type(diag) is not Zero
    ]
    return sum(terms[1:], terms[0])


def _tridiagonal_solve_jvp(primals, tangents, **params):
    dl, d, du, b = primals
    ddl, dd, ddu, db = tangents
    x = P.tridiagonal_solve_p.bind(dl, d, du, b, **params)
    # A x = b  =>  A dx = db - dA x, with dA the tridiagonal of the diagonals' tangents.
    if all(type(t) is Zero for t in (ddl, dd, ddu)):
        rhs = db
    else:
        rhs = -_tridiagonal_matmul(ddl, dd, ddu, x)
        if type(db) is not Zero:
            rhs = db + rhs
    return x, P.tridiagonal_solve_p.bind(dl, d, du, rhs.astype(x.dtype), **params)


def _tridiagonal_solve_transpose(ct, dl, d, du, b, **params):
    assert not any(is_undefined(v) for v in (dl, d, du)), "tridiagonal_solve is linear in b only"
    if type(ct) is Zero:
        return [None] * 4
    # x = A^-1 b  =>  ct_b = A^-T ct. A^T is tridiagonal too: its sub-diagonal is A's
    # super-diagonal moved down one row, its super-diagonal A's sub-diagonal moved up one.
    dl_t, du_t = _shift(du, 1, -1), _shift(dl, -1, -1)
    return [None, None, None, P.tridiagonal_solve_p.bind(dl_t, d, du_t, ct, **params)]


jvp_rules[P.tridiagonal_solve_p] = _tridiagonal_solve_jvp
transpose_rules[P.tridiagonal_solve_p] = _tridiagonal_solve_transpose


# --- householder_product: Q = H_0 H_1 ... H_{k-1}, first n columns -------------------------------
# H_i = I - tau_i v_i v_i^H with v_i = (0, ..., 0, 1, a[i+1:, i]) (LAPACK's orgqr/ungqr). JAX has
# no rule. Applied right to left to the first n columns of I, Q is a sequence of rank-one
# updates Q <- Q - tau_i v_i (v_i^H Q); differentiating each update gives the tangent, built from
# products and slices only, so reverse mode comes from transposing them.


def _householder_vector(a, i, lead):
    """(0, ..., 0, lead, a[i+1:, i]): v_i with lead 1, its tangent from da with lead 0."""
    head = jnp.zeros(a.shape[:-2] + (i,), a.dtype)
    lead = jnp.full(a.shape[:-2] + (1,), lead, a.dtype)
    return jnp.concatenate([head, lead, a[..., i + 1 :, i]], axis=-1)


def _householder_product_jvp(primals, tangents, **params):
    a, taus = primals
    da, dtaus = (instantiate(t) for t in tangents)
    q = P.householder_product_p.bind(a, taus, **params)
    m, n = a.shape[-2:]
    qi = jnp.broadcast_to(jnp.eye(m, n, dtype=a.dtype), a.shape)  # Q after updates i+1..k-1
    dq = jnp.zeros_like(qi)
    for i in reversed(range(taus.shape[-1])):
        v, dv = _householder_vector(a, i, 1), _householder_vector(da, i, 0)
        tau, dtau = taus[..., i, None, None], dtaus[..., i, None, None]
        w = jnp.einsum("...m,...mn->...n", jnp.conj(v), qi)  # v^H Q
        dw = jnp.einsum("...m,...mn->...n", jnp.conj(dv), qi) + jnp.einsum(
            "...m,...mn->...n", jnp.conj(v), dq
        )
        outer = v[..., :, None] * w[..., None, :]
        # d(Q - tau v w) = dQ - dtau v w - tau (dv w + v dw)
        dq = (
            dq
            - dtau * outer
            - tau * (dv[..., :, None] * w[..., None, :] + v[..., :, None] * dw[..., None, :])
        )
        qi = qi - tau * outer
    return q, dq


jvp_rules[P.householder_product_p] = _householder_product_jvp
