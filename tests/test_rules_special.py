"""Special functions, against JAX's autodiff and finite differences; errors where JAX has none."""

import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np
import pytest
from jax import lax
from rule_oracle import check_rule

import transforms

RNG = np.random.default_rng(5)
X = RNG.uniform(-2.0, 2.0, (7,))
POS = RNG.uniform(0.5, 3.0, (7,))
UNIT = RNG.uniform(0.05, 0.95, (7,))

CASES = {
    "erf": (lax.erf, (X,)),
    "erfc": (lax.erfc, (X,)),
    "erf_inv": (lax.erf_inv, (0.9 * UNIT,)),
    "lgamma": (lax.lgamma, (POS,)),
    "digamma": (lax.digamma, (POS,)),
    "polygamma": (lambda x: jsp.polygamma(2, x), (POS,)),
    "igamma": (lambda a, x: lax.igamma(a, x), (POS, POS[::-1])),
    "igammac": (lambda a, x: lax.igammac(a, x), (POS, POS[::-1])),
    "betainc_x": (lambda x: lax.betainc(2.0, 3.5, x), (UNIT,)),
    "bessel_i0e": (lax.bessel_i0e, (X,)),
    "bessel_i1e": (lax.bessel_i1e, (X,)),
    "zeta_q": (lambda q: lax.zeta(POS + 1.5, q), (POS,)),
}
SECOND_ORDER = {"erf", "lgamma", "polygamma", "betainc_x", "bessel_i1e"}
NO_JAX_RULE = {"zeta_q"}  # jax.scipy.special.zeta carries its own rule; the primitive has none


@pytest.mark.parametrize("name", sorted(CASES))
def test_special_rules(name):
    f, args = CASES[name]
    check_rule(
        f, args, order=2 if name in SECOND_ORDER else 1, jax_oracle=name not in NO_JAX_RULE,
        fd_tol=1e-4 if name.startswith("igamma") else 1e-5,
    )  # fmt: skip


@pytest.mark.parametrize("dtype", [jnp.float64])
def test_random_gamma_reparameterisation(dtype):
    import jax

    key = jax.random.key(0)
    for f in (
        lambda a: jax.random.gamma(key, a, dtype=dtype),
        lambda a: jax.random.loggamma(key, a, dtype=dtype),
    ):
        check_rule(f, (POS,), fd=False)


def test_bessel_i1e_at_zero():
    assert float(transforms.grad(lax.bessel_i1e)(0.0)) == 0.5
    assert float(transforms.grad(lax.bessel_i0e)(0.0)) == 0.0


def test_zeta_through_scipy_custom_rule_forward():
    # jax.scipy.special.zeta brings its own custom_jvp rule; forward mode calls it.
    t = RNG.standard_normal(POS.shape)
    ours = transforms.jvp(lambda q: jsp.zeta(3.0, q), (POS,), (t,))[1]
    np.testing.assert_allclose(ours, -3.0 * lax.zeta(4.0, POS) * t, rtol=1e-10)


@pytest.mark.parametrize(
    "f, x, match",
    [
        (lambda m: lax.polygamma(m, 1.5), 2.0, "'polygamma'.*'m'"),
        (lambda a: lax.betainc(a, 2.0, 0.5), 1.5, "'regularized_incomplete_beta'.*'a'"),
        (lambda b: lax.betainc(2.0, b, 0.5), 1.5, "'regularized_incomplete_beta'.*'b'"),
    ],
)
def test_no_derivative_in_these_arguments(f, x, match):
    with pytest.raises(ValueError, match=match):
        transforms.grad(f)(jnp.float64(x))


def test_zeta_exponent_has_no_derivative():
    with pytest.raises(NotImplementedError, match="'zeta'.*exponent"):
        transforms.jvp(lambda s: lax.zeta(s, 2.0), (jnp.float64(3.0),), (jnp.float64(1.0),))
