"""FFTs of every type and the complex-number primitives, against JAX's autodiff and differences."""

import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from rule_oracle import check_rule, check_transpose

RNG = np.random.default_rng(4)
R = RNG.standard_normal((3, 6))
R5 = RNG.standard_normal((2, 5))
Z = RNG.standard_normal((3, 6)) + 1j * RNG.standard_normal((3, 6))
H = RNG.standard_normal((3, 4)) + 1j * RNG.standard_normal((3, 4))  # a half spectrum (n=6 or 7)

CASES = {
    "fft": (lambda z: jnp.fft.fft(z), (Z,)),
    "ifft_axis0": (lambda z: jnp.fft.ifft(z, axis=0), (Z,)),
    "fftn": (lambda z: jnp.fft.fftn(z), (Z,)),
    "ifftn": (lambda z: jnp.fft.ifftn(z), (Z,)),
    "fft_of_real": (lambda x: jnp.fft.fft(x), (R,)),
    "rfft": (lambda x: jnp.fft.rfft(x), (R,)),
    "rfft_odd": (lambda x: jnp.fft.rfft(x), (R5,)),
    "rfftn": (lambda x: jnp.fft.rfftn(x), (R,)),
    "irfft_even": (lambda z: jnp.fft.irfft(z, n=6), (H,)),
    "irfft_odd": (lambda z: jnp.fft.irfft(z, n=7), (H,)),
    "irfftn": (lambda z: jnp.fft.irfftn(z, s=(3, 6)), (H,)),
    "rfft_roundtrip": (lambda x: jnp.fft.irfft(jnp.fft.rfft(x) * (1 + 2j), n=6) ** 2, (R,)),
    "power_spectrum": (lambda x: jnp.abs(jnp.fft.rfftn(x)) ** 2, (R,)),
    "real": (lambda z: jnp.real(z) * jnp.imag(z), (Z,)),
    "imag": (lambda z: jnp.imag(z) ** 2, (Z,)),
    "complex": (lambda x, y: lax.complex(x, y) ** 2, (R, R[::-1])),
    "conj": (lambda z: jnp.conj(z) * z[0], (Z,)),
    "abs_complex": (lambda z: jnp.abs(z), (Z,)),
    "conj_of_real": (lambda x: jnp.conj(x) * 2.0, (R,)),
}
SECOND_ORDER = {"rfft_roundtrip", "complex"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fft_and_complex_rules(name):
    f, args = CASES[name]
    check_rule(f, args, order=2 if name in SECOND_ORDER else 1)


@pytest.mark.parametrize("name", ["fftn", "rfftn", "irfft_odd", "irfftn"])
def test_fft_transposes_dot_product(name):
    f, args = CASES[name]
    check_transpose(f, args)
