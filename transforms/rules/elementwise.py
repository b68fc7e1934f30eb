"""Element-wise primitives: arithmetic, transcendental and piecewise-constant functions.

Each rule is the derivative written out, one primitive per line or two. `t` is the input tangent,
`out` the primitive's output (for `defjvp2`). Binary arithmetic may broadcast a rank-0 operand,
so transposes sum cotangents back to the operand's shape with `unbroadcast_to`.
"""

from __future__ import annotations

import math

import numpy as np
from jax import lax
from jax.extend.core import primitives as P

from ..jvp import defjvp, defjvp2, defjvp_zero, jvp_rules
from ..transpose import deflinear, is_undefined, transpose_rules, unbroadcast_to
from ..zeros import Zero, instantiate


def _is_complex(x) -> bool:
    return np.issubdtype(_shaped(x).dtype, np.complexfloating)


def _aval(x):
    return x.aval if is_undefined(x) else _shaped(x)


def _shaped(x):
    import jax

    return jax.typeof(x)


# --- piecewise constant: zero derivative almost everywhere ---------------------------------------

for _p in (
    P.sign_p, P.floor_p, P.ceil_p, P.round_p, P.is_finite_p, P.nextafter_p,
    P.eq_p, P.ne_p, P.lt_p, P.le_p, P.gt_p, P.ge_p,
    P.and_p, P.or_p, P.not_p, P.xor_p,
    P.shift_left_p, P.shift_right_arithmetic_p, P.shift_right_logical_p,
    P.population_count_p, P.clz_p, P.argmax_p, P.argmin_p, P.stop_gradient_p,
    P.random_bits_p, P.random_seed_p, P.random_split_p, P.random_fold_in_p,
    P.threefry2x32_p, P.iota_p, P.rng_bit_generator_p, P.rng_uniform_p,
    P.reduce_and_p, P.reduce_or_p, P.reduce_xor_p, P.bitcast_convert_type_p,
):  # fmt: skip
    defjvp_zero(_p)
for _p in (P.eq_to_p, P.le_to_p, P.lt_to_p):  # comparisons with a result dtype (expm uses them)
    defjvp_zero(_p)


# --- linear element-wise --------------------------------------------------------------------------


def _add_transpose(ct, x, y, **params):
    if type(ct) is Zero:
        return [None, None]
    return [
        unbroadcast_to(ct, _aval(x)) if is_undefined(x) else None,
        unbroadcast_to(ct, _aval(y)) if is_undefined(y) else None,
    ]


def _sub_transpose(ct, x, y, **params):
    if type(ct) is Zero:
        return [None, None]
    return [
        unbroadcast_to(ct, _aval(x)) if is_undefined(x) else None,
        unbroadcast_to(lax.neg(ct), _aval(y)) if is_undefined(y) else None,
    ]


def _add_jvp(primals, tangents, **params):
    x, y = primals
    tx, ty = tangents
    out = P.add_p.bind(x, y, **params)
    if type(tx) is Zero:
        return out, _broadcast_like(ty, out)
    if type(ty) is Zero:
        return out, _broadcast_like(tx, out)
    return out, lax.add(tx, ty)


def _sub_jvp(primals, tangents, **params):
    x, y = primals
    tx, ty = tangents
    out = P.sub_p.bind(x, y, **params)
    if type(tx) is Zero:
        return out, _broadcast_like(lax.neg(ty), out)
    if type(ty) is Zero:
        return out, _broadcast_like(tx, out)
    return out, lax.sub(tx, ty)


def _broadcast_like(t, out):
    return _broadcast_to(t, np.shape(out))


def _broadcast_to(t, shape):
    # lax's binary ops broadcast rank-0 operands and size-1 axes (numpy-style, same rank).
    if np.shape(t) == shape:
        return t
    if np.ndim(t) == 0:
        return lax.broadcast_in_dim(t, shape, ())
    squeezed = [i for i, d in enumerate(np.shape(t)) if d == 1 and shape[i] != 1]
    t = lax.reshape(t, tuple(d for i, d in enumerate(np.shape(t)) if i not in squeezed))
    kept = tuple(i for i in range(len(shape)) if i not in squeezed)
    return lax.broadcast_in_dim(t, shape, kept)


jvp_rules[P.add_p] = _add_jvp
transpose_rules[P.add_p] = _add_transpose
jvp_rules[P.add_jaxvals_p] = _add_jvp
transpose_rules[P.add_jaxvals_p] = _add_transpose
jvp_rules[P.sub_p] = _sub_jvp
transpose_rules[P.sub_p] = _sub_transpose

deflinear(P.neg_p, lambda ct, x: [lax.neg(ct)])
deflinear(P.copy_p, lambda ct, x: [ct])
deflinear(P.reduce_precision_p, lambda ct, x, **p: [P.reduce_precision_p.bind(ct, **p)])
# The zero part is a strong rank-0 constant, as in JAX: the cotangent of a complex input is strong.
deflinear(P.real_p, lambda ct, x: [lax.complex(ct, np.zeros((), _aval(ct).dtype))])
deflinear(P.imag_p, lambda ct, x: [lax.complex(np.zeros((), _aval(ct).dtype), lax.neg(ct))])
deflinear(
    P.complex_p,
    lambda ct, x, y: [
        unbroadcast_to(lax.real(ct), _aval(x)) if is_undefined(x) else None,
        unbroadcast_to(lax.neg(lax.imag(ct)), _aval(y)) if is_undefined(y) else None,
    ],
)
deflinear(
    P.conj_p,
    lambda ct, x, input_dtype: [
        lax.conj(ct) if np.issubdtype(input_dtype, np.complexfloating) else lax.real(ct)
    ],
)


# --- bilinear: mul, and div in its numerator -----------------------------------------------------


def _mul_jvp(primals, tangents, **params):
    x, y = primals
    tx, ty = tangents
    out = P.mul_p.bind(x, y, **params)
    terms = []
    if type(tx) is not Zero:
        terms.append(P.mul_p.bind(tx, y, **params))
    if type(ty) is not Zero:
        terms.append(P.mul_p.bind(x, ty, **params))
    out_dot = terms[0] if len(terms) == 1 else lax.add(*terms)
    return out, _broadcast_like(out_dot, out)


def _mul_transpose(ct, x, y, **params):
    assert is_undefined(x) ^ is_undefined(y), "mul is bilinear: transpose in one operand"
    if type(ct) is Zero:
        return [None, None]
    if is_undefined(x):
        return [unbroadcast_to(P.mul_p.bind(ct, y, **params), x.aval), None]
    return [None, unbroadcast_to(P.mul_p.bind(x, ct, **params), y.aval)]


jvp_rules[P.mul_p] = _mul_jvp
transpose_rules[P.mul_p] = _mul_transpose


def _div_jvp(primals, tangents, **params):
    x, y = primals
    tx, ty = tangents
    out = lax.div(x, y)
    terms = []
    if type(tx) is not Zero:
        terms.append(lax.div(tx, y))
    if type(ty) is not Zero:
        if np.shape(y) == np.shape(out):
            terms.append(lax.mul(ty, lax.neg(lax.div(out, y))))
        else:
            # -(ty * y**-2) * x with the small factor apart: a denominator broadcast over rows
            # (a softmax's row sums) then costs reverse mode a row-sized coefficient next to
            # x, which it keeps for x's own derivative anyway, instead of a full-size
            # -out / y (under jit XLA materialises it: attention's gradient 1.36x JAX's
            # temporaries, 1.00x with this form).
            terms.append(lax.neg(lax.mul(lax.mul(ty, lax.integer_pow(y, -2)), x)))
    out_dot = terms[0] if len(terms) == 1 else lax.add(*terms)
    return out, _broadcast_like(out_dot, out)


def _div_transpose(ct, x, y, **params):
    assert is_undefined(x) and not is_undefined(y), "div is linear in its numerator only"
    if type(ct) is Zero:
        return [None, None]
    return [unbroadcast_to(lax.div(ct, y), x.aval), None]


jvp_rules[P.div_p] = _div_jvp
transpose_rules[P.div_p] = _div_transpose


# --- smooth unary functions ----------------------------------------------------------------------


def _c(x, value):
    """`value` as a rank-0 constant of `x`'s dtype (ops broadcast rank 0).

    Weak exactly when `x` is a weak scalar, as JAX types its rules' constants: a strong constant
    would turn the tangent of a Python scalar strong (and `jax.jit` retrace), while a weak array
    (a broadcast Python scalar) gets strong coefficients, so its tangent turns strong as in JAX.
    """
    aval = _shaped(x)
    c = np.array(value, dtype=aval.dtype)
    if aval.weak_type and not aval.shape:
        return P.convert_element_type_p.bind(c, new_dtype=c.dtype, weak_type=True, sharding=None)
    return c


def _one_minus_sq(x):
    # (1 - x)(1 + x), not 1 - x*x: near |x| = 1 (tanh of a large argument) 1 - x is exact and
    # the product keeps full relative precision, where 1 - x*x cancels to a few digits.
    one = _c(x, 1)
    return lax.mul(lax.sub(one, x), lax.add(one, x))


defjvp2(P.exp_p, lambda t, out, x, **_: lax.mul(t, out))
defjvp2(P.exp2_p, lambda t, out, x, **_: lax.mul(t, lax.mul(out, _c(out, math.log(2)))))
defjvp2(P.expm1_p, lambda t, out, x, **_: lax.mul(t, lax.add(out, _c(out, 1))))
defjvp(P.log_p, lambda t, x, **_: lax.div(t, x))
defjvp(P.log1p_p, lambda t, x, **_: lax.div(t, lax.add(x, _c(x, 1))))
defjvp(P.sin_p, lambda t, x, **_: lax.mul(t, lax.cos(x)))
defjvp(P.cos_p, lambda t, x, **_: lax.neg(lax.mul(t, lax.sin(x))))
defjvp2(P.tan_p, lambda t, out, x, **_: lax.mul(t, lax.add(_c(x, 1), lax.mul(out, out))))
defjvp(P.asin_p, lambda t, x, **_: lax.mul(t, lax.rsqrt(_one_minus_sq(x))))
defjvp(P.acos_p, lambda t, x, **_: lax.neg(lax.mul(t, lax.rsqrt(_one_minus_sq(x)))))
defjvp(P.atan_p, lambda t, x, **_: lax.div(t, lax.add(_c(x, 1), lax.mul(x, x))))
defjvp(P.sinh_p, lambda t, x, **_: lax.mul(t, lax.cosh(x)))
defjvp(P.cosh_p, lambda t, x, **_: lax.mul(t, lax.sinh(x)))
defjvp2(P.tanh_p, lambda t, out, x, **_: lax.mul(t, _one_minus_sq(out)))
defjvp(P.asinh_p, lambda t, x, **_: lax.mul(t, lax.rsqrt(lax.add(lax.mul(x, x), _c(x, 1)))))
defjvp(
    P.acosh_p,
    lambda t, x, **_: lax.mul(t, lax.rsqrt(lax.mul(lax.sub(x, _c(x, 1)), lax.add(x, _c(x, 1))))),
)
defjvp(P.atanh_p, lambda t, x, **_: lax.div(t, _one_minus_sq(x)))
defjvp2(P.sqrt_p, lambda t, out, x, **_: lax.div(t, lax.mul(_c(out, 2), out)))
defjvp2(P.rsqrt_p, lambda t, out, x, **_: lax.mul(t, lax.mul(_c(x, -0.5), lax.div(out, x))))
defjvp2(
    P.cbrt_p,
    lambda t, out, x, **_: lax.mul(t, lax.mul(_c(x, 1 / 3), lax.integer_pow(out, -2))),
)
defjvp2(P.logistic_p, lambda t, out, x, **_: lax.mul(t, lax.mul(out, lax.sub(_c(out, 1), out))))
defjvp(P.square_p, lambda t, x, **_: lax.mul(t, lax.mul(_c(x, 2), x)))
defjvp(
    P.erf_p,
    lambda t, x, **_: lax.mul(t, lax.mul(_c(x, 2 / math.sqrt(math.pi)), lax.exp(lax.neg(x * x)))),
)
defjvp(
    P.erfc_p,
    lambda t, x, **_: lax.mul(t, lax.mul(_c(x, -2 / math.sqrt(math.pi)), lax.exp(lax.neg(x * x)))),
)
defjvp2(
    P.erf_inv_p,
    lambda t, out, x, **_: lax.mul(
        t, lax.mul(_c(x, math.sqrt(math.pi) / 2), lax.exp(lax.mul(out, out)))
    ),
)
defjvp(P.lgamma_p, lambda t, x, **_: lax.mul(t, lax.digamma(x)))
defjvp(P.digamma_p, lambda t, x, **_: lax.mul(t, lax.polygamma(_c(x, 1), x)))


def _integer_pow_jvp(t, x, *, y):
    if y == 0:
        return lax.full_like(t, 0)
    if y == 1:
        return t
    coeff = lax.mul(_c(x, y), lax.integer_pow(x, y - 1)) if y != 2 else lax.mul(_c(x, 2), x)
    return lax.mul(t, coeff)


defjvp(P.integer_pow_p, _integer_pow_jvp)


def _abs_jvp(t, x):
    if _is_complex(x):
        # d|z| = Re(conj(z) dz) / |z|, taken as 0 at z = 0 (JAX's convention).
        mag = lax.abs(x)
        safe = lax.select(lax.eq(mag, _c(mag, 0)), lax.full_like(mag, 1), mag)
        return lax.div(lax.real(lax.mul(lax.conj(x), t)), safe)
    # JAX's convention at the kink: abs'(x) = 1 for x >= 0 (so abs'(0) = 1), -1 below.
    one = lax.full_like(x, 1)
    return lax.mul(t, lax.select(lax.ge(x, _c(x, 0)), one, lax.neg(one)))


defjvp(P.abs_p, _abs_jvp)


# --- binary smooth functions ---------------------------------------------------------------------


def _pow_dx(t, x, y):
    # d/dx x**y = y * x**(y-1). JAX's conventions at x = 0: an integer exponent 0 gives 0 (x**0
    # is constant); a float exponent follows the formula, so 0**0.0 gives 0 * inf = nan.
    y_x = y if _shaped(y).dtype == _shaped(x).dtype else lax.convert_element_type(y, x.dtype)
    jac = lax.mul(y_x, lax.pow(x, lax.sub(y_x, _c(y_x, 1))))
    if not np.issubdtype(_shaped(y).dtype, np.inexact):
        y_is_0 = _broadcast_like(lax.eq(y_x, _c(y_x, 0)), jac)
        jac = lax.select(y_is_0, lax.full_like(jac, 0), jac)
    return lax.mul(t, _strong(jac))


def _pow_dy(t, out, x, y):
    # d/dy x**y = log(x) * x**y, with log(0) replaced by 0 where x == 0.
    safe_x = lax.select(lax.eq(x, _c(x, 0)), lax.full_like(x, 1), x)
    return _strong(lax.mul(t, lax.mul(lax.log(safe_x), out)))


def _strong(t):
    # JAX's pow tangents are strongly typed even for weak (Python scalar) operands. Its x
    # cotangent is strong too (the coefficient is converted), its y cotangent weak (the tangent
    # is converted, and the transpose of a conversion restores the weak type); we match both.
    aval = _shaped(t)
    if not aval.weak_type:
        return t
    return P.convert_element_type_p.bind(t, new_dtype=aval.dtype, weak_type=False, sharding=None)


def _pow_jvp(primals, tangents, **params):
    x, y = primals
    tx, ty = tangents
    out = lax.pow(x, y)
    terms = []
    if type(tx) is not Zero:
        terms.append(_pow_dx(tx, x, y))
    if type(ty) is not Zero:
        terms.append(_pow_dy(ty, out, x, y))
    out_dot = terms[0] if len(terms) == 1 else lax.add(*terms)
    return out, _broadcast_like(out_dot, out)


jvp_rules[P.pow_p] = _pow_jvp


def _atan2_jvp(primals, tangents, **params):
    x, y = primals
    tx, ty = tangents
    out = lax.atan2(x, y)
    denom = lax.add(lax.mul(x, x), lax.mul(y, y))
    terms = []
    if type(tx) is not Zero:
        terms.append(lax.mul(tx, lax.div(y, denom)))
    if type(ty) is not Zero:
        terms.append(lax.mul(ty, lax.neg(lax.div(x, denom))))
    out_dot = terms[0] if len(terms) == 1 else lax.add(*terms)
    return out, _broadcast_like(out_dot, out)


jvp_rules[P.atan2_p] = _atan2_jvp


def _rem_jvp(primals, tangents, **params):
    x, y = primals
    tx, ty = tangents
    out = lax.rem(x, y)
    terms = []
    if type(tx) is not Zero:
        terms.append(tx)
    if type(ty) is not Zero:
        # rem(x, y) = x - y * trunc(x / y)
        q = lax.div(x, y)
        terms.append(lax.neg(lax.mul(ty, lax.mul(lax.sign(q), lax.floor(lax.abs(q))))))
    out_dot = terms[0] if len(terms) == 1 else lax.add(*terms)
    return out, _broadcast_like(out_dot, out)


jvp_rules[P.rem_p] = _rem_jvp


def _minmax_jvp(prim, pick_x):
    # Where x and y tie, each gets half the tangent (JAX's convention; TF gives all to one side).
    def rule(primals, tangents, **params):
        x, y = primals
        tx, ty = tangents
        out = prim.bind(x, y, **params)
        xb = _broadcast_like(x, out)
        yb = _broadcast_like(y, out)
        # full_like keeps a weak-typed output's weak type in the tangent.
        half = lax.full_like(out, 0.5)
        zero = lax.full_like(out, 0)
        one = lax.full_like(out, 1)
        w_x = lax.select(pick_x(xb, yb), one, lax.select(lax.eq(xb, yb), half, zero))
        terms = []
        if type(tx) is not Zero:
            terms.append(lax.mul(_broadcast_like(tx, out), w_x))
        if type(ty) is not Zero:
            terms.append(lax.mul(_broadcast_like(ty, out), lax.sub(one, w_x)))
        return out, terms[0] if len(terms) == 1 else lax.add(*terms)

    return rule


jvp_rules[P.max_p] = _minmax_jvp(P.max_p, lax.gt)
jvp_rules[P.min_p] = _minmax_jvp(P.min_p, lax.lt)


def _clamp_jvp(primals, tangents, **params):
    lo, x, hi = primals
    t_lo, t_x, t_hi = tangents
    out = lax.clamp(lo, x, hi)
    terms = []
    if type(t_x) is not Zero:
        inside = lax.bitwise_and(lax.gt(x, lo), lax.lt(x, hi))
        terms.append(lax.select(inside, t_x, lax.full_like(t_x, 0)))
    if type(t_lo) is not Zero:
        t = _broadcast_like(t_lo, out)
        terms.append(lax.select(lax.gt(_broadcast_like(lo, out), x), t, lax.full_like(t, 0)))
    if type(t_hi) is not Zero:
        t = _broadcast_like(t_hi, out)
        terms.append(lax.select(lax.lt(_broadcast_like(hi, out), x), t, lax.full_like(t, 0)))
    out_dot = terms[0]
    for term in terms[1:]:
        out_dot = lax.add(out_dot, term)
    return out, out_dot


jvp_rules[P.clamp_p] = _clamp_jvp


# --- select and dtype conversion -----------------------------------------------------------------


def _select_n_jvp(primals, tangents, **params):
    pred, *cases = primals
    _, *case_dots = tangents
    out = lax.select_n(pred, *cases)
    if all(type(t) is Zero for t in case_dots):
        return out, Zero(_shaped(out))
    filled = [lax.full_like(c, 0) if type(t) is Zero else t for c, t in zip(cases, case_dots)]
    return out, lax.select_n(pred, *filled)


def _select_n_transpose(ct, pred, *cases, **params):
    assert not is_undefined(pred), "select_n is not linear in its predicate"
    if type(ct) is Zero:
        return [None] * (1 + len(cases))
    zeros = lax.full_like(ct, 0)
    out = [None]
    for i, c in enumerate(cases):
        if is_undefined(c):
            branches = [zeros] * len(cases)
            branches[i] = ct
            out.append(lax.select_n(pred, *branches))
        else:
            out.append(None)
    return out


jvp_rules[P.select_n_p] = _select_n_jvp
transpose_rules[P.select_n_p] = _select_n_transpose


def _convert_jvp(primals, tangents, *, new_dtype, weak_type, sharding):
    (x,), (t,) = primals, tangents
    out = P.convert_element_type_p.bind(
        x, new_dtype=new_dtype, weak_type=weak_type, sharding=sharding
    )
    inexact = np.issubdtype(new_dtype, np.inexact)
    if type(t) is Zero or not inexact or not np.issubdtype(x.dtype, np.inexact):
        return out, Zero(_shaped(out).to_tangent_aval())
    if np.issubdtype(x.dtype, np.complexfloating) and not np.issubdtype(
        new_dtype, np.complexfloating
    ):
        t = lax.real(t)
    return out, P.convert_element_type_p.bind(
        t, new_dtype=new_dtype, weak_type=weak_type, sharding=sharding
    )


def _convert_transpose(ct, x, *, new_dtype, weak_type, sharding):
    if type(ct) is Zero:
        return [None]
    old = x.aval
    if np.issubdtype(ct.dtype, np.complexfloating) and not np.issubdtype(
        old.dtype, np.complexfloating
    ):
        ct = lax.real(ct)
    return [
        P.convert_element_type_p.bind(
            ct, new_dtype=old.dtype, weak_type=old.weak_type, sharding=sharding
        )
    ]


jvp_rules[P.convert_element_type_p] = _convert_jvp
transpose_rules[P.convert_element_type_p] = _convert_transpose

_unused = instantiate
