"""Primitives JAX does not define, with rules registered in JAX's extension tables.

The primitives here are written as JAX's "How JAX primitives work" guide teaches (and as
Equinox, lineax and mpi4jax write theirs): `ad.defjvp`, `ad.deflinear2`, assignments to
`ad.primitive_jvps` / `ad.primitive_transposes`, a batching rule in `batching.primitive_batchers`.
JAX's autodiff over the same primitives, with the same rules, is the oracle.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_tree_allclose
from jax import lax
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

import transforms
from transforms.errors import MissingRuleError


def _primitive(name, impl, multiple_results=False):
    impl_list = impl if multiple_results else (lambda *a: [impl(*a)])
    prim = Primitive(name)
    prim.multiple_results = multiple_results
    prim.def_impl(impl)

    def abstract_eval(*avals):
        outs = [jax.core.ShapedArray(o.shape, o.dtype) for o in jax.eval_shape(impl_list, *avals)]
        return outs if multiple_results else outs[0]

    prim.def_abstract_eval(abstract_eval)
    mlir.register_lowering(prim, mlir.lower_fun(impl, multiple_results=multiple_results))
    return prim


def _jax_zero(x):
    return ad.Zero(jax.typeof(x).to_tangent_aval())


def _elementwise_batcher(prim):
    def rule(args, dims):
        size = next(a.shape[d] for a, d in zip(args, dims, strict=True) if d is not None)
        args = [
            jnp.moveaxis(a, d, 0) if d is not None else jnp.broadcast_to(a, (size, *a.shape))
            for a, d in zip(args, dims, strict=True)
        ]
        out = prim.bind(*args)
        return (out, [0] * len(out)) if prim.multiple_results else (out, 0)

    batching.primitive_batchers[prim] = rule


# scale(t, c) = t * c, linear in t: JVP and transpose assigned to JAX's tables by hand.
scale_p = _primitive("test_foreign_scale", lambda t, c: t * c)
_elementwise_batcher(scale_p)


def _scale_jvp(primals, tangents):
    (t, c), (t_dot, c_dot) = primals, tangents
    out_dot = _jax_zero(t)
    if type(t_dot) is not ad.Zero:
        out_dot = ad.add_tangents(out_dot, scale_p.bind(t_dot, c))
    if type(c_dot) is not ad.Zero:
        out_dot = ad.add_tangents(out_dot, scale_p.bind(c_dot, t))
    return scale_p.bind(t, c), out_dot


def _scale_transpose(ct, t, c):
    assert ad.is_undefined_primal(t) and not ad.is_undefined_primal(c)
    if type(ct) is ad.Zero:
        return [ad.Zero(t.aval), None]
    return [scale_p.bind(ct, c), None]


ad.primitive_jvps[scale_p] = _scale_jvp
ad.primitive_transposes[scale_p] = _scale_transpose

# double(t) = 2 t, linear in its only input: ad.deflinear2 registers both rules.
double_p = _primitive("test_foreign_double", lambda t: 2.0 * t)
_elementwise_batcher(double_p)
ad.deflinear2(double_p, lambda ct, t: [double_p.bind(ct)])

# fma(x, y, z) = x * y + sin(z): registered with ad.defjvp, one tangent function per input,
# whose tangent programs are `scale` again (so reverse mode needs scale's transpose).
fma_p = _primitive("test_foreign_fma", lambda x, y, z: x * y + jnp.sin(z))
_elementwise_batcher(fma_p)
ad.defjvp(
    fma_p,
    lambda t, x, y, z: scale_p.bind(t, y),
    lambda t, x, y, z: scale_p.bind(t, x),
    lambda t, x, y, z: double_p.bind(scale_p.bind(t, 0.5 * jnp.cos(z))),
)

# polar(r, theta) = (r cos theta, r sin theta, floor(r)): several results, one of them with a
# symbolic-zero tangent (returned as JAX's `Zero`).
polar_p = _primitive(
    "test_foreign_polar",
    lambda r, th: [r * jnp.cos(th), r * jnp.sin(th), jnp.floor(r)],
    multiple_results=True,
)
_elementwise_batcher(polar_p)


def _polar_jvp(primals, tangents):
    r, th = primals
    r_dot, th_dot = (ad.instantiate_zeros(t) for t in tangents)
    x, y, fl = polar_p.bind(r, th)
    x_dot = scale_p.bind(r_dot, jnp.cos(th)) - scale_p.bind(th_dot, y)
    y_dot = scale_p.bind(r_dot, jnp.sin(th)) + scale_p.bind(th_dot, x)
    return [x, y, fl], [x_dot, y_dot, _jax_zero(fl)]


ad.primitive_jvps[polar_p] = _polar_jvp

# A primitive whose author gave it no derivative rules at all, and one with a JVP whose
# tangent program uses a primitive without a transpose.
opaque_p = _primitive("test_foreign_opaque", lambda x: x * 2.0)
forward_only_p = _primitive("test_foreign_forward_only", lambda x: x * 3.0)
ad.primitive_jvps[forward_only_p] = lambda p, t: (
    forward_only_p.bind(*p),
    forward_only_p.bind(ad.instantiate_zeros(t[0])),
)


def f_fma(x):
    return jnp.sum(fma_p.bind(jnp.sin(x), x, x**2) ** 2)


def f_polar(x):
    a, b, fl = polar_p.bind(x + 1.5, x * 0.7)
    return jnp.sum(a * b + fl * a)


def f_jit(x):
    return jax.jit(f_fma)(x) + jax.jit(f_polar)(x)


X = jnp.array([0.3, -0.8, 1.2])


@pytest.mark.parametrize("f", [f_fma, f_polar, f_jit], ids=["defjvp", "multiple_results", "jit"])
@pytest.mark.parametrize("name", ["grad", "jacfwd", "hessian"])
def test_foreign_rules_match_jax(f, name):
    assert_tree_allclose(getattr(transforms, name)(f)(X), getattr(jax, name)(f)(X))


def test_foreign_jvp_vjp_and_symbolic_zero_outputs():
    fn = lambda r, th: polar_p.bind(r, th)  # noqa: E731
    args, tans = (X, X * 2), (jnp.ones(3), jnp.full(3, 0.5))
    assert_tree_allclose(transforms.jvp(fn, args, tans), jax.jvp(fn, args, tans))
    out, vjp_ours = transforms.vjp(fn, *args)
    _, vjp_jax = jax.vjp(fn, *args)
    cts = [jnp.ones(3), jnp.arange(3.0), jnp.ones(3)]
    assert_tree_allclose(vjp_ours(cts), vjp_jax(cts))


def test_foreign_rules_under_jit_and_vmap():
    xs = jnp.stack([X, X + 0.4])
    assert_tree_allclose(jax.jit(transforms.grad(f_fma))(X), jax.grad(f_fma)(X))
    assert_tree_allclose(jax.vmap(transforms.grad(f_fma))(xs), jax.vmap(jax.grad(f_fma))(xs))
    total = lambda xs: jnp.sum(jax.vmap(f_polar)(xs))  # noqa: E731
    assert_tree_allclose(transforms.grad(total)(xs), jax.grad(total)(xs))
    assert_tree_allclose(
        jax.jit(jax.vmap(transforms.hessian(f_polar)))(xs), jax.vmap(jax.hessian(f_polar))(xs)
    )


def test_foreign_primitive_without_rules_raises():
    f = lambda x: jnp.sum(opaque_p.bind(x))  # noqa: E731
    with pytest.raises(MissingRuleError, match="'test_foreign_opaque' not implemented .forward"):
        transforms.jvp(f, (X,), (X,))
    with pytest.raises(MissingRuleError, match="'test_foreign_opaque' not implemented .reverse"):
        transforms.grad(f)(X)
    g = lambda x: jnp.sum(forward_only_p.bind(x))  # noqa: E731
    assert_tree_allclose(transforms.jvp(g, (X,), (X,)), jax.jvp(g, (X,), (X,)))
    with pytest.raises(MissingRuleError, match="'test_foreign_forward_only' .*reverse"):
        transforms.grad(g)(X)


def _wrong_jvp(primals, tangents):
    raise AssertionError("JAX's rule table was read for one of JAX's own primitives")


def test_jax_primitives_never_take_jax_rules(monkeypatch):
    # Poison JAX's tables for JAX's own primitives: with rules of ours, the derivatives stay ours.
    monkeypatch.setitem(ad.primitive_jvps, lax.sin_p, _wrong_jvp)
    monkeypatch.setitem(ad.primitive_jvps, lax.mul_p, _wrong_jvp)
    monkeypatch.setitem(ad.primitive_transposes, lax.mul_p, _wrong_jvp)
    f = lambda x: jnp.sum(jnp.sin(x) * x)  # noqa: E731
    assert_tree_allclose(transforms.grad(f)(X), jnp.cos(X) * X + jnp.sin(X))
    assert_tree_allclose(transforms.hessian(f)(X), jnp.diag(2 * jnp.cos(X) - jnp.sin(X) * X))


def test_jax_primitive_without_our_rule_is_not_bridged(monkeypatch):
    # pure_callback is JAX's, and we give it no rule; a (working) rule planted in JAX's table
    # for it must not be used: the error stays ours.
    def cb(x):
        return jax.pure_callback(np.sin, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    prim = jax.make_jaxpr(cb)(X).jaxpr.eqns[0].primitive
    planted = lambda primals, tangents, **params: (prim.bind(*primals, **params), tangents[0])  # noqa: E731
    monkeypatch.setitem(ad.primitive_jvps, prim, planted)
    with pytest.raises(MissingRuleError, match="'pure_callback' not implemented"):
        transforms.jvp(cb, (X,), (X,))
    with pytest.raises(MissingRuleError, match="'pure_callback' not implemented"):
        transforms.grad(lambda x: jnp.sum(cb(x)))(X)
