"""`tf.linalg`: TF's linear-algebra names on JAX's decompositions, batched over leading axes
like TF's. Every op is differentiable by the engine (its rules for cholesky, eigh, svd, qr,
triangular_solve and LU are written in `transforms.rules`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from .core import apply
from .ops import _axis, _pair, _t, einsum, eye, matmul, tensordot  # noqa: F401


def _adj(m):
    return jnp.conj(jnp.swapaxes(m, -1, -2))


def adjoint(matrix, name=None):
    """The conjugate transpose of the last two axes."""
    return apply(_adj, [_t(matrix)])


def matrix_transpose(a, name="matrix_transpose", conjugate=False):
    """The transpose of the last two axes (conjugated if `conjugate`)."""
    return apply(lambda m: _adj(m) if conjugate else jnp.swapaxes(m, -1, -2), [_t(a)])


def solve(matrix, rhs, adjoint=False, name=None):
    """`X` with `matrix @ X = rhs` (or `adjoint(matrix) @ X = rhs`)."""
    a, b = _pair(matrix, rhs)
    return apply(lambda m, r: jnp.linalg.solve(_adj(m) if adjoint else m, r), [a, b])


def inv(input, adjoint=False, name=None):
    """The inverse of each (square) matrix."""
    return apply(lambda m: jnp.linalg.inv(_adj(m) if adjoint else m), [_t(input)])


def det(input, name=None):
    """The determinant of each matrix."""
    return apply(jnp.linalg.det, [_t(input)])


def slogdet(input, name=None):
    """`(sign, log_abs_determinant)` of each matrix."""
    return apply(lambda m: tuple(jnp.linalg.slogdet(m)), [_t(input)])


def logdet(matrix, name=None):
    """`log(det(matrix))` of Hermitian positive-definite matrices (via Cholesky, as TF)."""

    def f(m):
        chol = jnp.linalg.cholesky(m)
        return 2.0 * jnp.sum(jnp.log(jnp.real(jnp.diagonal(chol, axis1=-2, axis2=-1))), axis=-1)

    return apply(f, [_t(matrix)])


def cholesky(input, name=None):
    """The lower-triangular Cholesky factor of each Hermitian positive-definite matrix."""
    return apply(jnp.linalg.cholesky, [_t(input)])


def cholesky_solve(chol, rhs, name=None):
    """`X` with `A @ X = rhs`, given `chol = cholesky(A)`."""
    c, b = _pair(chol, rhs)
    return apply(lambda l, r: jsl.cho_solve((l, True), r), [c, b])


def triangular_solve(matrix, rhs, lower=True, adjoint=False, name=None):
    """`X` with `matrix @ X = rhs` for a triangular `matrix` (only its `lower` or upper
    triangle is read)."""
    a, b = _pair(matrix, rhs)
    trans = "C" if adjoint else "N"
    return apply(lambda m, r: jsl.solve_triangular(m, r, lower=lower, trans=trans), [a, b])


def _from_lower(m):
    # TF's self-adjoint ops read only the lower triangle, so their gradient lives there too:
    # build the Hermitian matrix from it before decomposing.
    lower = jnp.tril(m, -1)
    diag = jnp.real(jnp.diagonal(m, axis1=-2, axis2=-1)).astype(m.dtype)
    return lower + _adj(lower) + diag[..., None] * jnp.eye(m.shape[-1], dtype=m.dtype)


def eigh(tensor, name=None):
    """`(eigenvalues, eigenvectors)` of Hermitian matrices (their lower triangle is read, as
    in TF), eigenvalues ascending. An eigenvector's sign may differ from TF's."""
    return apply(lambda m: tuple(jnp.linalg.eigh(_from_lower(m))), [_t(tensor)])


def eigvalsh(tensor, name=None):
    """The eigenvalues of Hermitian matrices (lower triangle read), ascending."""
    return apply(lambda m: jnp.linalg.eigvalsh(_from_lower(m)), [_t(tensor)])


def svd(tensor, full_matrices=False, compute_uv=True, name=None):
    """`(s, u, v)` with `tensor = u @ diag(s) @ adjoint(v)` (TF's order and `v`, not `vh`);
    only `s` when `compute_uv=False`. Singular vectors' signs may differ from TF's."""
    if not compute_uv:
        return apply(lambda m: jnp.linalg.svd(m, compute_uv=False), [_t(tensor)])

    def f(m):
        u, s, vh = jnp.linalg.svd(m, full_matrices=full_matrices)
        return s, u, _adj(vh)

    return apply(f, [_t(tensor)])


def qr(input, full_matrices=False, name=None):
    """`(q, r)` with orthonormal `q` and upper-triangular `r`."""
    mode = "complete" if full_matrices else "reduced"
    return apply(lambda m: tuple(jnp.linalg.qr(m, mode=mode)), [_t(input)])


def matvec(a, b, transpose_a=False, adjoint_a=False, a_is_sparse=False, b_is_sparse=False):
    """`a @ b` for matrices `a` and vectors `b` (batched)."""
    a, b = _pair(a, b)

    def f(m, v):
        if adjoint_a:
            m = _adj(m)
        elif transpose_a:
            m = jnp.swapaxes(m, -1, -2)
        return jnp.einsum("...ij,...j->...i", m, v)

    return apply(f, [a, b])


def diag(diagonal, name="diag", k=0, num_rows=-1, num_cols=-1, padding_value=0):
    """Matrices with `diagonal` (its last axis) on the diagonal (TF's `tf.linalg.diag`)."""
    if k != 0 or num_rows != -1 or num_cols != -1 or padding_value != 0:
        raise NotImplementedError(
            "tf.linalg.diag with k, num_rows, num_cols or padding_value is not supported; "
            "build the matrix with tf.pad or tf.linalg.band_part."
        )

    def f(d):
        n = d.shape[-1]
        return d[..., :, None] * jnp.eye(n, dtype=d.dtype)

    return apply(f, [_t(diagonal)])


def diag_part(input, name="diag_part", k=0, padding_value=0):
    """The main diagonal of each matrix (last two axes)."""
    if k != 0:
        raise NotImplementedError("tf.linalg.diag_part with k != 0 is not supported.")
    return apply(lambda m: jnp.diagonal(m, axis1=-2, axis2=-1), [_t(input)])


def trace(x, name=None):
    """The sum of each matrix's diagonal."""
    return apply(lambda m: jnp.sum(jnp.diagonal(m, axis1=-2, axis2=-1), axis=-1), [_t(x)])


def band_part(input, num_lower, num_upper, name=None):
    """Each matrix with entries outside the band zeroed: `num_lower` subdiagonals and
    `num_upper` superdiagonals are kept (a negative count keeps the whole triangle)."""
    lo, hi = int(num_lower), int(num_upper)

    def f(m):
        rows, cols = m.shape[-2], m.shape[-1]
        i = np.arange(rows)[:, None]
        j = np.arange(cols)[None, :]
        keep = np.ones((rows, cols), bool)
        if lo >= 0:
            keep &= i - j <= lo
        if hi >= 0:
            keep &= j - i <= hi
        return jnp.where(keep, m, jnp.zeros_like(m))

    return apply(f, [_t(input)])


def set_diag(input, diagonal, name="set_diag", k=0):
    """Each matrix with its main diagonal replaced by `diagonal`."""
    a, d = _pair(input, diagonal)

    def f(m, v):
        n = min(m.shape[-2], m.shape[-1])
        mask = np.eye(m.shape[-2], m.shape[-1], dtype=bool)
        full = jnp.zeros_like(m).at[..., np.arange(n), np.arange(n)].set(v)
        return jnp.where(mask, full, m)

    return apply(f, [a, d])


def _vector_norm(v, p, axis, keepdims):
    a = jnp.abs(v)
    if p == np.inf:
        return jnp.max(a, axis=axis, keepdims=keepdims)
    if p == 1:
        return jnp.sum(a, axis=axis, keepdims=keepdims)
    if p == 2:
        return jnp.sqrt(jnp.sum(jnp.square(a), axis=axis, keepdims=keepdims))
    return jnp.sum(a**p, axis=axis, keepdims=keepdims) ** (1.0 / p)


def _matrix_norm(m, p, axes, keepdims):
    r, c = axes
    if p in ("fro", "euclidean"):
        out = jnp.sqrt(jnp.sum(jnp.square(jnp.abs(m)), axis=axes, keepdims=True))
    elif p == 1:
        out = jnp.max(jnp.sum(jnp.abs(m), axis=r, keepdims=True), axis=c, keepdims=True)
    elif p == np.inf:
        out = jnp.max(jnp.sum(jnp.abs(m), axis=c, keepdims=True), axis=r, keepdims=True)
    elif p == 2:
        moved = jnp.moveaxis(m, axes, (-2, -1))
        s = jnp.linalg.svd(moved, compute_uv=False)
        out = jnp.expand_dims(jnp.max(s, axis=-1), (-2, -1))
        out = jnp.moveaxis(out, (-2, -1), axes)
    else:
        raise ValueError(
            f"'ord' must be a supported matrix norm in ['euclidean', 'fro', 1, 2, inf], got {p!r}"
        )
    return out if keepdims else jnp.squeeze(out, axis=axes)


def norm(tensor, ord="euclidean", axis=None, keepdims=None, name=None):
    """Vector or matrix norm (TF's `tf.norm` / `tf.linalg.norm`).

    `axis` None (the whole tensor as one vector) or an int gives a vector norm: `ord` is
    'euclidean', 1, 2, inf or any p > 0. A pair of axes gives a matrix norm: 'euclidean'/'fro'
    (Frobenius), 1, 2 (largest singular value) or inf.

    Example:
      >>> tf.norm(tf.constant([3.0, 4.0])).numpy()
      5.0
    """
    x = _t(tensor)
    ax = _axis(axis)
    keep = bool(keepdims)
    if isinstance(ax, tuple) and len(ax) == 2:
        axes = tuple(a % x.ndim for a in ax)
        return apply(lambda m: _matrix_norm(m, ord, axes, keep), [x])
    if isinstance(ax, tuple):
        raise ValueError(f"'axis' must be None, an integer, or a tuple of 2 integers, got {axis}")
    p = 2 if ord in ("euclidean", "fro") else ord
    if not (p == np.inf or (isinstance(p, int | float) and p > 0)):
        raise ValueError(f"'ord' must be a supported vector norm, got {ord!r}.")
    if ax is None:
        return apply(
            lambda v: _vector_norm(jnp.reshape(v, (-1,)), p, 0, False).reshape(
                (1,) * v.ndim if keep else ()
            ),
            [x],
        )
    return apply(lambda v: _vector_norm(v, p, ax, keep), [x])


def global_norm(t_list, name=None):
    """`sqrt(sum of squares)` over all tensors in `t_list` (None entries skipped)."""
    ts = [_t(t) for t in t_list if t is not None]
    return apply(lambda *vs: jnp.sqrt(sum(jnp.sum(jnp.square(v)) for v in vs)), ts)


def expm(input, name=None):
    """The matrix exponential of each square matrix."""
    return apply(lambda m: jsl.expm(m), [_t(input)])


def lstsq(matrix, rhs, l2_regularizer=0.0, fast=True, name=None):
    """Least-squares solutions `X` of `matrix @ X ≈ rhs`, with TF's `l2_regularizer`.

    `fast=True` (TF's default) solves the regularised normal equations with a Cholesky
    factorisation, as TF does; `fast=False` uses an SVD (without regularisation).
    """
    a, b = _pair(matrix, rhs)
    lam = float(l2_regularizer)

    def normal_equations(m, r):
        rows, cols = m.shape[-2], m.shape[-1]
        if rows >= cols:
            gram = _adj(m) @ m + lam * jnp.eye(cols, dtype=m.dtype)
            return jsl.cho_solve((jnp.linalg.cholesky(gram), True), _adj(m) @ r)
        gram = m @ _adj(m) + lam * jnp.eye(rows, dtype=m.dtype)
        return _adj(m) @ jsl.cho_solve((jnp.linalg.cholesky(gram), True), r)

    def by_svd(m, r):
        if m.ndim == 2:
            return jnp.linalg.lstsq(m, r)[0]
        return jax.vmap(by_svd)(m, r)

    if not fast and lam != 0.0:
        raise NotImplementedError("tf.linalg.lstsq with fast=False and l2_regularizer != 0.")
    return apply(normal_equations if fast else by_svd, [a, b])


def l2_normalize(x, axis=None, epsilon=1e-12, name=None, dim=None):
    """`x / sqrt(max(sum(x**2, axis), epsilon))` (TF's formula)."""
    ax = _axis(axis if dim is None else dim)

    def f(v):
        sq = jnp.sum(jnp.square(v), axis=ax, keepdims=True)
        return v * jax.lax.rsqrt(jnp.maximum(sq, epsilon))

    return apply(f, [_t(x)])


__all__ = [
    "adjoint",
    "band_part",
    "cholesky",
    "cholesky_solve",
    "det",
    "diag",
    "diag_part",
    "eigh",
    "eigvalsh",
    "einsum",
    "expm",
    "eye",
    "global_norm",
    "inv",
    "l2_normalize",
    "logdet",
    "lstsq",
    "matmul",
    "matrix_transpose",
    "matvec",
    "norm",
    "qr",
    "set_diag",
    "slogdet",
    "solve",
    "svd",
    "tensordot",
    "trace",
    "triangular_solve",
]
