"""`conv_general_dilated`: bilinear, and each transpose is itself a convolution.

Working in the canonical layouts (lhs N,C,spatial; rhs O,I,spatial; out N,C,spatial), with
per spatial dimension: input size n, kernel size k, stride s, padding (lo, hi), lhs dilation ld,
rhs dilation rd and output size m, the forward op reads padded-dilated input position
p = y*s + j*rd for output y and kernel tap j.

- lhs cotangent: dilate the cotangent by s, correlate with the spatially flipped kernel (taps
  rd apart), reading every ld-th position: a convolution with strides ld, lhs dilation s, rhs
  dilation rd, and the kernel's I and O roles swapped. Feature groups stay feature groups; batch
  groups become feature groups whose outputs are moved back into the batch.
- rhs cotangent: correlate the input with the cotangent: a convolution in which the input's
  features are the batch, its batch is the contracted feature, the cotangent is the kernel
  (taps s apart) and the output is read every rd. Feature groups become batch groups and
  batch groups become feature groups.
"""

from __future__ import annotations

import numpy as np
from jax import lax
from jax.extend.core import primitives as P

from ..jvp import jvp_rules
from ..transpose import is_undefined, transpose_rules
from ..zeros import Zero


def _conv_jvp(primals, tangents, **params):
    (lhs, rhs), (lhs_dot, rhs_dot) = primals, tangents
    out = P.conv_general_dilated_p.bind(lhs, rhs, **params)
    terms = []
    if type(lhs_dot) is not Zero:
        terms.append(P.conv_general_dilated_p.bind(lhs_dot, rhs, **params))
    if type(rhs_dot) is not Zero:
        terms.append(P.conv_general_dilated_p.bind(lhs, rhs_dot, **params))
    return out, terms[0] if len(terms) == 1 else lax.add(*terms)


def _canonical(x, spec):
    return lax.transpose(x, tuple(spec))


def _uncanonical(x, spec):
    return lax.transpose(x, tuple(int(i) for i in np.argsort(spec)))


def _conv(lhs, rhs, *, strides, padding, lhs_dilation, rhs_dilation, fgc=1, bgc=1, precision,
          lhs_spec=None, rhs_spec=None):  # fmt: skip
    n = lhs.ndim
    dn = lax.ConvDimensionNumbers(
        lhs_spec=tuple(lhs_spec or range(n)),
        rhs_spec=tuple(rhs_spec or range(n)),
        out_spec=tuple(range(n)),
    )
    return lax.conv_general_dilated(
        lhs, rhs, tuple(strides), tuple(padding), tuple(lhs_dilation), tuple(rhs_dilation), dn,
        feature_group_count=fgc, batch_group_count=bgc, precision=precision,
    )  # fmt: skip


def _transpose_lhs(ct, rhs, lhs_shape, *, window_strides, padding, lhs_dilation, rhs_dilation,
                   feature_group_count, batch_group_count, precision):  # fmt: skip
    # ct: [N', O, m...], rhs: [O, I, k...], lhs_shape canonical [N, C, n...].
    G, B = feature_group_count, batch_group_count
    O, I, *ks = rhs.shape
    spatial = range(2, rhs.ndim)
    kernel = lax.rev(rhs, tuple(spatial))
    groups = max(G, B)
    # Swap the kernel's roles within each group: [g*Og + o, i] -> [g*I + i, o].
    kernel = lax.reshape(kernel, (groups, O // groups, I, *ks))
    kernel = lax.transpose(kernel, (0, 2, 1, *range(3, kernel.ndim)))
    kernel = lax.reshape(kernel, (groups * I, O // groups, *ks))
    pads = []
    for n, k, s, (lo, _), ld, rd, m in zip(
        lhs_shape[2:], ks, window_strides, padding, lhs_dilation, rhs_dilation, ct.shape[2:],
        strict=True,
    ):  # fmt: skip
        before = (k - 1) * rd - lo
        after = (n - 1) * ld + (k - 1) * rd + 1 - before - ((m - 1) * s + 1)
        pads.append((before, after))
    out = _conv(
        ct, kernel, strides=lhs_dilation, padding=pads, lhs_dilation=window_strides,
        rhs_dilation=rhs_dilation, fgc=groups, precision=precision,
    )  # fmt: skip
    if B > 1:  # the B feature groups of the result are the B batch groups of the input
        nb, _, *sp = out.shape
        out = lax.reshape(out, (nb, B, I, *sp))
        out = lax.transpose(out, (1, 0, *range(2, out.ndim)))
        out = lax.reshape(out, (B * nb, I, *sp))
    return out


def _transpose_rhs(ct, lhs, rhs_shape, *, window_strides, padding, lhs_dilation, rhs_dilation,
                   feature_group_count, batch_group_count, precision):  # fmt: skip
    # ct: [N', O, m...], lhs: [N, C, n...], rhs_shape canonical [O, I, k...].
    pads = []
    for n, k, s, (lo, hi), ld, rd, m in zip(
        lhs.shape[2:], rhs_shape[2:], window_strides, padding, lhs_dilation, rhs_dilation,
        ct.shape[2:], strict=True,
    ):  # fmt: skip
        length = lo + (n - 1) * ld + 1 + hi
        pads.append((lo, hi - (length - ((m - 1) * s + (k - 1) * rd + 1))))
    swap = (1, 0, *range(2, lhs.ndim))
    out = _conv(
        lhs, ct, strides=rhs_dilation, padding=pads, lhs_dilation=lhs_dilation,
        rhs_dilation=window_strides, fgc=batch_group_count, bgc=feature_group_count,
        precision=precision, lhs_spec=swap, rhs_spec=swap,
    )  # fmt: skip
    return lax.transpose(out, swap)  # [I, O, k...] -> [O, I, k...]


def _conv_transpose(ct, lhs, rhs, *, dimension_numbers, preferred_element_type, out_sharding=None,
                    **params):  # fmt: skip
    assert is_undefined(lhs) ^ is_undefined(rhs), "conv_general_dilated is bilinear"
    if type(ct) is Zero:
        return [None, None]
    lhs_spec, rhs_spec, out_spec = dimension_numbers
    ct_c = _canonical(ct, out_spec)
    # With preferred_element_type the cotangent may be wider than the operands (bfloat16 in,
    # float32 out): convolutions take one dtype, so the known operand is widened to the
    # cotangent's (exactly), and the result cast back to the operand's.
    if is_undefined(lhs):
        shape = tuple(lhs.aval.shape[i] for i in lhs_spec)
        res = _transpose_lhs(ct_c, _canonical(rhs, rhs_spec).astype(ct.dtype), shape, **params)
        return [_uncanonical(res, lhs_spec).astype(lhs.aval.dtype), None]
    shape = tuple(rhs.aval.shape[i] for i in rhs_spec)
    res = _transpose_rhs(ct_c, _canonical(lhs, lhs_spec).astype(ct.dtype), shape, **params)
    return [None, _uncanonical(res, rhs_spec).astype(rhs.aval.dtype)]


jvp_rules[P.conv_general_dilated_p] = _conv_jvp
transpose_rules[P.conv_general_dilated_p] = _conv_transpose
