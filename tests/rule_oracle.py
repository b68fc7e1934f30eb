"""Shared checks for rule tests: our JVP/VJP against JAX's autodiff and central differences.

`check_rule(f, args)` differentiates `f` with respect to all of `args` (float or complex arrays):
- forward mode: `transforms.jvp` against `jax.jvp` and against a central finite difference;
- reverse mode: `transforms.vjp` against `jax.vjp`, and the dot-product identity
  <ct, J t> = <Jᵀ ct, t> between our own two modes (this checks every transpose rule used);
- optionally second order: forward-over-reverse (a Hessian-vector product) against JAX.
The pairing of complex values is Re(Σ a·b), JAX's convention for cotangents.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import transforms


def _rand_like(rng, x):
    x = np.asarray(x)
    r = rng.standard_normal(x.shape)
    if np.iscomplexobj(x):
        r = r + 1j * rng.standard_normal(x.shape)
    return r.astype(x.dtype)


def _pair(a, b) -> float:
    total = 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        total += float(np.real(np.sum(np.asarray(x) * np.asarray(y))))
    return total


def _close(ours, ref, rtol, atol, what):
    for o, r in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(np.asarray(o), np.asarray(r), rtol=rtol, atol=atol, err_msg=what)
        assert np.asarray(o).dtype == np.asarray(r).dtype, (what, o.dtype, r.dtype)


def check_rule(
    f, args, *, rtol=1e-6, atol=1e-8, fd_tol=1e-5, eps=1e-6, order=1, seed=0, jax_oracle=True,
    fd=True,
):  # fmt: skip
    """Check `f`'s derivatives in both modes (and second order if `order >= 2`).

    `jax_oracle=False` where JAX has no rule (then finite differences are the reference),
    `"jvp"` where JAX has a forward rule only;
    `fd=False` at kinks, where only JAX's convention is defined.
    """
    rng = np.random.default_rng(seed)
    args = tuple(jnp.asarray(a) for a in args)
    tangents = tuple(jnp.asarray(_rand_like(rng, a)) for a in args)

    out, out_dot = transforms.jvp(f, args, tangents)
    _close(out, f(*args), rtol, atol, "primal output")
    if jax_oracle:
        _close(out_dot, jax.jvp(f, args, tangents)[1], rtol, atol, "jvp against jax.jvp")

    # Central difference along the tangent, in float64.
    plus = f(*(a + eps * t for a, t in zip(args, tangents, strict=True)))
    minus = f(*(a - eps * t for a, t in zip(args, tangents, strict=True)))
    # Where the primal is not finite (a NaN fill), the difference says nothing: compare elsewhere.
    if fd:
        for p, m, o, t in zip(*map(jax.tree.leaves, (plus, minus, out, out_dot)), strict=True):
            ok = np.isfinite(np.asarray(o))
            approx = (np.asarray(p) - np.asarray(m)) / (2 * eps)
            np.testing.assert_allclose(
                np.asarray(t)[ok], approx[ok], rtol=fd_tol, atol=fd_tol,
                err_msg="jvp against finite differences",
            )  # fmt: skip

    ct = jax.tree.map(lambda o: jnp.asarray(_rand_like(rng, o)), out)
    _, vjp_fn = transforms.vjp(f, *args)
    ct_args = vjp_fn(ct)
    if jax_oracle is True:
        _close(ct_args, jax.vjp(f, *args)[1](ct), rtol, atol, "vjp against jax.vjp")
    lhs, rhs = _pair(ct, out_dot), _pair(ct_args, tangents)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-9, atol=1e-9, err_msg="<ct, J t> != <J^T ct, t>")

    if order >= 2:
        check_second_order(f, args, rtol=rtol * 10, atol=atol * 10, seed=seed + 1)
    return out_dot, ct_args


def check_second_order(f, args, *, rtol=1e-5, atol=1e-7, seed=1):
    """Forward-over-reverse: the Hessian of a random real projection of `f`, along a tangent."""
    rng = np.random.default_rng(seed)
    args = tuple(jnp.asarray(a) for a in args)
    weights = jax.tree.map(lambda o: jnp.asarray(_rand_like(rng, o)), f(*args))
    tangents = tuple(jnp.asarray(_rand_like(rng, a)) for a in args)
    argnums = tuple(range(len(args)))

    def scalar(*xs):
        outs = jax.tree.leaves(f(*xs))
        return sum(jnp.real(jnp.sum(o * w)) for o, w in zip(outs, jax.tree.leaves(weights)))

    ours = transforms.jvp(transforms.grad(scalar, argnums), args, tangents)[1]
    ref = jax.jvp(jax.grad(scalar, argnums), args, tangents)[1]
    _close(ours, ref, rtol, atol, "second order (jvp of grad) against JAX")


def check_transpose(f, args, *, seed=0):
    """Dot-product test of `transforms.linear_transpose` for a function linear in `args`."""
    rng = np.random.default_rng(seed)
    args = tuple(jnp.asarray(a) for a in args)
    ts = tuple(jnp.asarray(_rand_like(rng, a)) for a in args)
    out = f(*ts)
    ct = jax.tree.map(lambda o: jnp.asarray(_rand_like(rng, o)), out)
    ct_args = transforms.linear_transpose(f, *args)(ct)
    np.testing.assert_allclose(_pair(ct, out), _pair(ct_args, ts), rtol=1e-9, atol=1e-9)
