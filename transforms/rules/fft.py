"""`fft` of every type. All four are linear; JAX pairs complex cotangents as Re(Σ ct·t).

With that pairing the transposes are: FFT and IFFT are symmetric matrices, so each is its own
transpose. RFFT keeps the first n//2+1 rows of a full FFT of a real input: its transpose embeds
the cotangent in a length-n spectrum (zeros above), applies the full FFT and keeps the real part.
IRFFT reads each interior frequency twice (itself and its mirror image): its transpose is the
inverse FFT of the cotangent, cut to n//2+1 bins, with the interior bins doubled.
"""

from __future__ import annotations

import numpy as np
from jax import lax
from jax.extend.core import primitives as P

from ..transpose import deflinear
from ..zeros import Zero

_FFT, _IFFT, _RFFT, _IRFFT = (
    lax.FftType.FFT,
    lax.FftType.IFFT,
    lax.FftType.RFFT,
    lax.FftType.IRFFT,
)


def _complex_dtype(dtype):
    return np.result_type(dtype, np.complex64)


def _fft_transpose(ct, x, *, fft_type, fft_lengths):
    if type(ct) is Zero:
        return [None]
    fft_type = lax.FftType(fft_type)
    if fft_type in (_FFT, _IFFT):
        return [lax.fft(ct, fft_type, fft_lengths)]
    n = fft_lengths[-1]
    if fft_type == _RFFT:
        config = [(0, 0, 0)] * (ct.ndim - 1) + [(0, n - ct.shape[-1], 0)]
        full = lax.pad(ct, np.array(0, ct.dtype), config)
        return [lax.real(lax.fft(full, _FFT, fft_lengths)).astype(x.aval.dtype)]
    # IRFFT
    spectrum = lax.fft(ct.astype(_complex_dtype(ct.dtype)), _IFFT, fft_lengths)
    kept = n // 2 + 1
    spectrum = lax.slice_in_dim(spectrum, 0, kept, axis=ct.ndim - 1)
    weights = np.full(kept, 2.0)
    weights[0] = 1.0
    if n % 2 == 0:
        weights[-1] = 1.0
    weights = np.broadcast_to(weights.astype(spectrum.dtype), spectrum.shape)
    return [lax.mul(spectrum, weights).astype(x.aval.dtype)]


deflinear(P.fft_p, _fft_transpose)
