"""Special functions: the incomplete gamma and beta functions, polygamma, zeta, scaled Bessel,
and the gamma sampler's implicit-reparameterisation gradient.

Where JAX defines no derivative in an argument (the order of polygamma, the parameters of the
incomplete beta, zeta's exponent) the rule raises, naming the argument.
"""

from __future__ import annotations

import numpy as np
from jax import lax
from jax.extend.core import primitives as P

from ..jvp import defjvp, jvp_rules
from ..zeros import Zero, tangent_aval


def _c(x, value):
    return np.array(value, dtype=np.result_type(x))


def _no_derivative(prim_name, argument, error=NotImplementedError):
    def fn(t, *primals, **params):
        raise error(
            f"Differentiation rule for '{prim_name}' with respect to its argument '{argument}' "
            "is not defined (JAX has none either); differentiate with respect to the other "
            "arguments only, e.g. by closing over this one or wrapping it in lax.stop_gradient."
        )

    return fn


# polygamma(m, x): d/dx = polygamma(m + 1, x)
defjvp(
    P.polygamma_p,
    _no_derivative("polygamma", "m", ValueError),
    lambda t, m, x, **_: lax.mul(t, lax.polygamma(lax.add(m, _c(m, 1)), x)),
)


def _igamma_dx(x, a):
    # d/dx P(a, x) = x^(a-1) e^(-x) / Γ(a), in log space to stay finite for large a.
    return lax.exp(lax.sub(lax.sub(lax.mul(lax.sub(a, _c(a, 1)), lax.log(x)), x), lax.lgamma(a)))


# igamma(a, x) = P(a, x), igammac(a, x) = Q(a, x) = 1 - P(a, x)
defjvp(
    P.igamma_p,
    lambda t, a, x, **_: lax.mul(t, lax.igamma_grad_a(a, x)),
    lambda t, a, x, **_: lax.mul(t, _igamma_dx(x, a)),
)
defjvp(
    P.igammac_p,
    lambda t, a, x, **_: lax.neg(lax.mul(t, lax.igamma_grad_a(a, x))),
    lambda t, a, x, **_: lax.neg(lax.mul(t, _igamma_dx(x, a))),
)


def _betainc_dx(t, a, b, x, **_):
    # d/dx I_x(a, b) = x^(a-1) (1-x)^(b-1) / B(a, b)
    log_beta = lax.sub(lax.add(lax.lgamma(a), lax.lgamma(b)), lax.lgamma(lax.add(a, b)))
    log_density = lax.add(
        lax.mul(lax.sub(a, _c(a, 1)), lax.log(x)),
        lax.mul(lax.sub(b, _c(b, 1)), lax.log1p(lax.neg(x))),
    )
    return lax.mul(t, lax.exp(lax.sub(log_density, log_beta)))


defjvp(
    P.regularized_incomplete_beta_p,
    _no_derivative("regularized_incomplete_beta", "a", ValueError),
    _no_derivative("regularized_incomplete_beta", "b", ValueError),
    _betainc_dx,
)

# zeta(s, q) = Σ_n (n + q)^(-s): d/dq = -s zeta(s + 1, q)
defjvp(
    P.zeta_p,
    _no_derivative("zeta", "x (the exponent)"),
    lambda t, s, q, **_: lax.mul(t, lax.neg(lax.mul(s, lax.zeta(lax.add(s, _c(s, 1)), q)))),
)

# Scaled Bessel functions: i0e(x) = e^-|x| I0(x), i1e(x) = e^-|x| I1(x), with I0' = I1 and
# I1'(x) = I0(x) - I1(x) / x, whose limit at 0 is 1/2.
defjvp(
    P.bessel_i0e_p,
    lambda t, x, **_: lax.mul(
        t, lax.sub(lax.bessel_i1e(x), lax.mul(lax.sign(x), lax.bessel_i0e(x)))
    ),
)


def _bessel_i1e_dx(t, x, **_):
    safe_x = lax.select(lax.eq(x, _c(x, 0)), lax.full_like(x, 1), x)
    i1e = lax.bessel_i1e(x)
    slope = lax.sub(
        lax.bessel_i0e(x), lax.mul(i1e, lax.add(lax.sign(x), lax.div(_c(x, 1), safe_x)))
    )
    return lax.mul(t, lax.select(lax.eq(x, _c(x, 0)), lax.full_like(x, 0.5), slope))


defjvp(P.bessel_i1e_p, _bessel_i1e_dx)


def _random_gamma_jvp(primals, tangents, *, log_space):
    # Implicit reparameterisation: a gamma sample x = F⁻¹(u; a) moves with its shape a as
    # dx/da = -(∂F/∂a) / (∂F/∂x), which lax.random_gamma_grad computes; log-space samples
    # divide by x. The key has no tangent.
    (key, a), (_, a_dot) = primals, tangents
    out = P.random_gamma_p.bind(key, a, log_space=log_space)
    if type(a_dot) is Zero:
        return out, Zero(tangent_aval(a_dot.aval))
    sample = lax.exp(out) if log_space else out
    slope = lax.random_gamma_grad(a, sample)
    if log_space:
        slope = lax.div(slope, sample)
    return out, lax.mul(a_dot, slope)


jvp_rules[P.random_gamma_p] = _random_gamma_jvp
