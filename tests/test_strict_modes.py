"""Rules under `jax_numpy_dtype_promotion="strict"` and `jax_numpy_rank_promotion="raise"`.

JAX's own tests, and careful users, run in these modes: no implicit promotion between dtypes
(complex with real, int32 with int64) and no broadcasting between ranks. Our rules build
their coefficients with `jnp`, so each must cast and broadcast explicitly. Each case is checked
against JAX's autodiff (values, dtypes, weak types) in both modes, with the strict settings on;
a representative part of the element-wise rule table runs the same way.
"""

import contextlib

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import pytest
import test_rules_table as table
from helpers import assert_matches_jax
from jax import lax


@contextlib.contextmanager
def strict():
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        yield


_RNG = np.random.default_rng(0)


def _r(*shape, complex_=False):
    x = _RNG.normal(size=shape)
    if complex_:
        x = x + 1j * _RNG.normal(size=shape)
    return jnp.asarray(x)


_A = _r(3, 4, 4)  # a batch of matrices: identities and masks must broadcast explicitly
_C = _r(3, 4, 4, complex_=True)
_SPD = _A @ jnp.swapaxes(_A, -1, -2) + 4 * jnp.eye(4)
_HERM = _C + jnp.conj(jnp.swapaxes(_C, -1, -2))

LINALG = {
    "svd": (lambda a: jnp.linalg.svd(a, full_matrices=False), _A[:, :, :3]),
    "svd_values": (lambda a: jnp.linalg.svd(a, compute_uv=False), _A),
    "svd_complex": (lambda a: jnp.linalg.svd(a, full_matrices=False), _C),
    "eigh": (jnp.linalg.eigh, _SPD),
    "eigh_complex": (jnp.linalg.eigh, _HERM),
    "eigvals": (jnp.linalg.eigvals, _A[0]),
    "det": (jnp.linalg.det, _A),
    "det_complex": (jnp.linalg.det, _C),
    "slogdet": (jnp.linalg.slogdet, _A),
    "lu_factor": (lambda a: jsl.lu_factor(a)[0], _A),
    "qr": (jnp.linalg.qr, _A),
    "qr_complex": (jnp.linalg.qr, _C),
    "qr_complete": (lambda a: jnp.linalg.qr(a[:, :, :3], mode="complete"), _A),
    "inv_complex": (jnp.linalg.inv, _C),
    "cholesky": (jnp.linalg.cholesky, _SPD),
    "norm_2": (lambda a: jnp.linalg.norm(a, 2, axis=(-2, -1)), _A),
    "pinv": (jnp.linalg.pinv, _A),
}


@pytest.mark.parametrize("name", sorted(LINALG))
def test_linalg_rules_in_strict_modes(name):
    f, a = LINALG[name]
    with strict():
        assert_matches_jax(f, (a,))


_XB = _r(1, 2, 5).astype(jnp.bfloat16)
_KB = _r(3, 2, 3).astype(jnp.bfloat16)


@pytest.mark.parametrize("preferred", [None, jnp.float32])
def test_bfloat16_convolution_in_strict_modes(preferred):
    def conv(x, k):
        return lax.conv_general_dilated(x, k, (1,), "SAME", preferred_element_type=preferred)

    with strict():
        assert_matches_jax(conv, (_XB, _KB))


_Z = _r(3, complex_=True)
COMPLEX = {
    "abs": jnp.abs,
    "angle": jnp.angle,
    "real_times_imag": lambda z: jnp.real(z) * jnp.imag(z),
    "times_conj": lambda z: z * jnp.conj(z),
    "pow": lambda z: z ** (2.0 + 1j),
    "sign": jnp.sign,
    "fft": jnp.fft.fft,
    "irfft": jnp.fft.irfft,
    "prod": jnp.prod,
    "arccos": lambda z: jnp.arccos(0.3 * z),
    "rsqrt": lax.rsqrt,
}


@pytest.mark.parametrize("name", sorted(COMPLEX))
def test_complex_rules_in_strict_modes(name):
    with strict():
        assert_matches_jax(COMPLEX[name], (_Z,))


# A representative part of the element-wise/structural rule table, on its largest shape.
_ROW_NAMES = {
    "sin", "tanh", "exp", "log", "sqrt", "pow", "atan2", "div", "max_ties", "select_n",
    "integer_pow_3", "logistic", "erf_inv", "lgamma", "digamma", "reduce_max_ties",
    "reduce_prod_zeros", "pad_interior_negative", "slice_strided", "broadcast_stretch",
    "dynamic_update_slice_idx", "dot_general_odd_dims", "complex_abs", "complex_exp",
    "conj", "complex", "clamp", "rem", "convert_f64_f32", "convert_real_to_complex",
    "convert_complex_to_real", "pow_zero_base", "dot_general_batch",
}  # fmt: skip
# (Cases whose function itself fails under the strict modes in JAX are left out.)
_ROWS = [r for r in table.ROWS if r.name in _ROW_NAMES and r.oracle]


def _row_cases():
    for row in _ROWS:
        for dtype in row.dtypes:
            yield pytest.param(row, dtype, id=f"{row.name}-{np.dtype(dtype).name}")


@pytest.mark.parametrize("row, dtype", list(_row_cases()))
def test_rule_table_in_strict_modes(row, dtype):
    args = table._make_args(row, row.shapes[-1], dtype)
    with strict(), jax.disable_jit():
        assert_matches_jax(row.fun, args)


def test_the_table_sample_is_representative():
    assert len(_ROWS) >= 25, sorted(r.name for r in _ROWS)
