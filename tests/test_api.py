"""The public API against JAX's: signatures, return structures, pytrees, dtypes and errors.

Every result is compared with the same call on JAX (`jax.grad`, `jax.vjp`, ...): values, pytree
structure, shapes, dtypes and weak types. Errors are raised with JAX's exception types.
"""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_tree_allclose
from jax import dtypes
from jax.extend.core import Primitive
from jax.interpreters import mlir

import transforms as T

Point = collections.namedtuple("Point", ["x", "y"])


def same(ours, theirs, **kw):
    assert_tree_allclose(ours, theirs, **kw)


def raises_like_jax(ours, theirs, match=None):
    """`ours()` raises an exception of the type JAX's `theirs()` raises (or a subclass)."""
    with pytest.raises(Exception) as jax_exc:
        theirs()
    with pytest.raises(jax_exc.type, match=match) as our_exc:
        ours()
    return our_exc


def f_scalar(x, y):
    return jnp.sum(jnp.sin(x) * y**2)


X = jnp.array([0.5, -1.0, 2.0])
Y = jnp.array([1.5, 0.3, -0.7])


# --- grad / value_and_grad --------------------------------------------------------------------


@pytest.mark.parametrize("argnums", [0, 1, -1, -2, (0,), (0, 1), (1, 0), (-1, 0), [1]])
def test_grad_argnums(argnums):
    argnums_jax = tuple(argnums) if isinstance(argnums, list) else argnums
    same(T.grad(f_scalar, argnums)(X, Y), jax.grad(f_scalar, argnums_jax)(X, Y))
    same(
        T.value_and_grad(f_scalar, argnums)(X, Y),
        jax.value_and_grad(f_scalar, argnums_jax)(X, Y),
    )


def test_grad_has_aux():
    def f(x):
        return jnp.sum(x**3), {"aux": x * 2, "n": 3}

    same(T.grad(f, has_aux=True)(X), jax.grad(f, has_aux=True)(X))
    same(T.value_and_grad(f, has_aux=True)(X), jax.value_and_grad(f, has_aux=True)(X))


def test_grad_kwargs_are_not_differentiated():
    def f(x, *, scale):
        return jnp.sum(x * scale)

    same(T.grad(f)(X, scale=3.0), jax.grad(f)(X, scale=3.0))


def test_grad_keeps_function_metadata():
    def my_loss(x):
        """Docstring."""
        return x**2

    assert T.grad(my_loss).__name__ == "my_loss"
    assert T.value_and_grad(my_loss).__doc__ == "Docstring."


PYTREES = {
    "tuple": (X, Y),
    "list": [X, Y],
    "dict": {"b": X, "a": Y},
    "namedtuple": Point(X, Y),
    "none_leaf": {"w": X, "unused": None, "nested": (Y, [None, X])},
}


@pytest.mark.parametrize("name", sorted(PYTREES))
def test_grad_pytrees(name):
    def f(tree):
        return sum(
            jnp.sum(jnp.tanh(leaf) * (i + 1)) for i, leaf in enumerate(jax.tree.leaves(tree))
        )

    tree = PYTREES[name]
    same(T.grad(f)(tree), jax.grad(f)(tree))
    same(T.jacrev(f)(tree), jax.jacrev(f)(tree))
    same(T.jacfwd(f)(tree), jax.jacfwd(f)(tree))


INPUTS = {
    "python_float": 1.5,
    "python_int_allow_int": None,  # handled below
    "numpy_f32": np.float32(1.5),
    "numpy_f64_array": np.array([1.5, 2.0]),
    "numpy_f32_array": np.array([1.5, 2.0], np.float32),
    "jax_f32": jnp.array([1.5, 2.0], jnp.float32),
    "jax_f64": jnp.array(1.5, jnp.float64),
    "jax_weak": jnp.asarray(1.5) * 1.0,
}


@pytest.mark.parametrize("name", [k for k in INPUTS if INPUTS[k] is not None])
def test_input_kinds_keep_types(name):
    x = INPUTS[name]

    def f(x):
        return jnp.sum(jnp.sin(x) * x)

    same(T.grad(f)(x), jax.grad(f)(x), rtol=1e-6)
    same(T.value_and_grad(f)(x), jax.value_and_grad(f)(x), rtol=1e-6)
    same(T.jvp(jnp.sin, (x,), (x,)), jax.jvp(jnp.sin, (x,), (x,)), rtol=1e-6)
    out, f_vjp = T.vjp(jnp.sin, x)
    out_j, f_vjp_j = jax.vjp(jnp.sin, x)
    same(out, out_j, rtol=1e-6)
    same(f_vjp(out_j), f_vjp_j(out_j), rtol=1e-6)


def test_allow_int_gives_float0():
    def f(x, n):
        return jnp.sum(x * n)

    n = jnp.array([1, 2, 3])
    same(
        T.grad(f, argnums=(0, 1), allow_int=True)(X, n),
        jax.grad(f, argnums=(0, 1), allow_int=True)(X, n),
    )
    same(T.grad(f, argnums=1, allow_int=True)(X, 2), jax.grad(f, argnums=1, allow_int=True)(X, 2))
    g = T.grad(f, argnums=1, allow_int=True)(X, n)
    assert g.dtype == dtypes.float0 and g.shape == (3,)


def test_grad_of_integer_input_without_allow_int():
    raises_like_jax(
        lambda: T.grad(lambda n: n * 2.0)(3), lambda: jax.grad(lambda n: n * 2.0)(3), "allow_int"
    )
    raises_like_jax(
        lambda: T.grad(lambda n: jnp.sum(n * 2.0))(jnp.arange(3)),
        lambda: jax.grad(lambda n: jnp.sum(n * 2.0))(jnp.arange(3)),
        "int",
    )


def test_grad_non_scalar_output():
    exc = raises_like_jax(lambda: T.grad(jnp.sin)(X), lambda: jax.grad(jnp.sin)(X))
    assert "Gradient only defined for scalar-output functions. Output had shape: (3,)" in str(
        exc.value
    )
    raises_like_jax(
        lambda: T.grad(lambda x: (x, x))(1.0), lambda: jax.grad(lambda x: (x, x))(1.0), "scalar"
    )


def test_grad_integer_and_complex_outputs():
    raises_like_jax(
        lambda: T.grad(lambda x: jnp.round(x).astype(int))(1.0),
        lambda: jax.grad(lambda x: jnp.round(x).astype(int))(1.0),
        "real-valued outputs",
    )
    raises_like_jax(
        lambda: T.grad(lambda x: x * 1j)(1.0),
        lambda: jax.grad(lambda x: x * 1j)(1.0),
        "holomorphic",
    )


def test_grad_has_aux_not_a_pair():
    raises_like_jax(
        lambda: T.grad(lambda x: x, has_aux=True)(1.0),
        lambda: jax.grad(lambda x: x, has_aux=True)(1.0),
    )


def test_argnums_errors():
    raises_like_jax(lambda: T.grad(f_scalar, 2)(X, Y), lambda: jax.grad(f_scalar, 2)(X, Y))
    raises_like_jax(lambda: T.grad(f_scalar, -3)(X, Y), lambda: jax.grad(f_scalar, -3)(X, Y))
    raises_like_jax(lambda: T.grad(f_scalar, 1.0)(X, Y), lambda: jax.grad(f_scalar, 1.0)(X, Y))


def test_non_jax_argument_type():
    raises_like_jax(lambda: T.grad(lambda s: 1.0)("a"), lambda: jax.grad(lambda s: 1.0)("a"))


# --- complex: holomorphic and real-valued functions of complex inputs ---------------------------

Z = jnp.array([0.5 + 1.0j, -1.0 + 0.3j])


def test_real_valued_function_of_complex_input():
    def f(z):
        return jnp.sum(jnp.abs(z) ** 2 + jnp.real(z * jnp.sin(z)))

    same(T.grad(f)(Z), jax.grad(f)(Z))
    same(T.value_and_grad(f)(Z), jax.value_and_grad(f)(Z))
    same(T.jacrev(lambda z: jnp.abs(z))(Z), jax.jacrev(lambda z: jnp.abs(z))(Z))


def test_holomorphic():
    def f(z):
        return jnp.sum(jnp.sin(z) * z**2)

    same(T.grad(f, holomorphic=True)(Z), jax.grad(f, holomorphic=True)(Z))
    same(T.jacfwd(jnp.exp, holomorphic=True)(Z), jax.jacfwd(jnp.exp, holomorphic=True)(Z))
    same(T.jacrev(jnp.exp, holomorphic=True)(Z), jax.jacrev(jnp.exp, holomorphic=True)(Z))
    same(T.hessian(f, holomorphic=True)(Z), jax.hessian(f, holomorphic=True)(Z))
    raises_like_jax(
        lambda: T.grad(f, holomorphic=True)(X), lambda: jax.grad(f, holomorphic=True)(X)
    )
    raises_like_jax(lambda: T.jacfwd(jnp.exp)(Z), lambda: jax.jacfwd(jnp.exp)(Z))
    raises_like_jax(lambda: T.jacrev(jnp.exp)(Z), lambda: jax.jacrev(jnp.exp)(Z))


# --- jvp / linearize -------------------------------------------------------------------------


def test_jvp_structures():
    def f(p, s):
        return {"a": p.x * s, "b": (jnp.sin(p.y), None)}

    primals = (Point(X, Y), 2.0)
    tangents = (Point(Y, X), 0.5)
    same(T.jvp(f, primals, tangents), jax.jvp(f, primals, tangents))
    same(T.jvp(f, list(primals), list(tangents)), jax.jvp(f, list(primals), list(tangents)))

    def g(x):
        return jnp.cos(x), {"aux": x}

    same(T.jvp(g, (X,), (Y,), has_aux=True), jax.jvp(g, (X,), (Y,), has_aux=True))


def test_jvp_integer_primal_with_float0_tangent():
    def f(x, n):
        return x * n, n + 1

    n = jnp.arange(3)
    t0 = np.zeros(3, dtypes.float0)
    same(T.jvp(f, (X, n), (Y, t0)), jax.jvp(f, (X, n), (Y, t0)))


def test_jvp_errors():
    raises_like_jax(lambda: T.jvp(jnp.sin, X, Y), lambda: jax.jvp(jnp.sin, X, Y))
    raises_like_jax(
        lambda: T.jvp(jnp.sin, (X,), (Y[:2],)), lambda: jax.jvp(jnp.sin, (X,), (Y[:2],)), "shape"
    )
    raises_like_jax(
        lambda: T.jvp(jnp.sin, (X,), (Y.astype(np.float32),)),
        lambda: jax.jvp(jnp.sin, (X,), (Y.astype(np.float32),)),
        "dtype",
    )
    raises_like_jax(
        lambda: T.jvp(lambda a, b: a, (X, X), (Y,)),
        lambda: jax.jvp(lambda a, b: a, (X, X), (Y,)),
    )
    raises_like_jax(
        lambda: T.jvp(lambda n: n * 2.0, (jnp.arange(3),), (X,)),
        lambda: jax.jvp(lambda n: n * 2.0, (jnp.arange(3),), (X,)),
        "float0",
    )


def test_linearize():
    def f(x, y):
        return jnp.sin(x) * y, jnp.sum(x)

    out, f_jvp = T.linearize(f, X, Y)
    out_j, f_jvp_j = jax.linearize(f, X, Y)
    same(out, out_j)
    same(f_jvp(Y, X), f_jvp_j(Y, X))
    same(f_jvp(X, X), f_jvp_j(X, X))

    def g(x):
        return jnp.exp(x), x.shape[0]

    res = T.linearize(g, X, has_aux=True)
    res_j = jax.linearize(g, X, has_aux=True)
    assert len(res) == 3
    same((res[0], res[1](Y), res[2]), (res_j[0], res_j[1](Y), res_j[2]))
    with pytest.raises(ValueError, match="shape"):
        f_jvp(Y[:2], X)


# --- vjp / linear_transpose ------------------------------------------------------------------


def test_vjp_structures():
    def f(d):
        return Point(d["a"] * d["b"], [jnp.sum(d["a"]), None])

    primals = {"a": X, "b": Y}
    out, f_vjp = T.vjp(f, primals)
    out_j, f_vjp_j = jax.vjp(f, primals)
    same(out, out_j)
    ct = Point(X, [2.0 * jnp.ones(()), None])
    same(f_vjp(ct), f_vjp_j(ct))
    assert isinstance(f_vjp(ct), tuple) and len(f_vjp(ct)) == 1

    def g(x, y):
        return x * y, "aux-string-is-fine" if False else {"y": y}

    res, res_j = T.vjp(g, X, Y, has_aux=True), jax.vjp(g, X, Y, has_aux=True)
    assert len(res) == 3
    same((res[0], res[1](X), res[2]), (res_j[0], res_j[1](X), res_j[2]))


def test_vjp_integer_input_and_output():
    def f(x, n):
        return x * n, n * 2

    n = jnp.arange(3)
    out, f_vjp = T.vjp(f, X, n)
    out_j, f_vjp_j = jax.vjp(f, X, n)
    same(out, out_j)
    ct = (Y, np.zeros(3, dtypes.float0))
    same(f_vjp(ct), f_vjp_j(ct))


def test_vjp_cotangent_errors():
    _, f_vjp = T.vjp(jnp.sin, X)
    _, f_vjp_j = jax.vjp(jnp.sin, X)
    raises_like_jax(lambda: f_vjp(Y[:2]), lambda: f_vjp_j(Y[:2]), "[Ss]hape")
    raises_like_jax(lambda: f_vjp((Y, Y)), lambda: f_vjp_j((Y, Y)))
    raises_like_jax(
        lambda: f_vjp(Y.astype(np.float32)), lambda: f_vjp_j(Y.astype(np.float32)), "float32"
    )
    raises_like_jax(lambda: f_vjp(jnp.arange(3)), lambda: f_vjp_j(jnp.arange(3)))


def test_linear_transpose():
    def f(x, y):
        return {"s": 2.0 * x - y, "t": jnp.sum(y)}

    ours = T.linear_transpose(f, X, Y)
    theirs = jax.linear_transpose(f, X, Y)
    ct = {"s": Y, "t": 3.0 * jnp.ones(())}
    same(ours(ct), theirs(ct))
    # A constant (affine) output part is not linear; JAX ignores it the same way.
    with pytest.raises(NotImplementedError, match="sin"):
        T.linear_transpose(jnp.sin, X)(Y)


# --- Jacobians, Hessians, hvp ----------------------------------------------------------------


def f_vec(x, y):
    return {"u": jnp.sin(x) * y[0], "v": (jnp.outer(x, y), jnp.sum(x**2))}


@pytest.mark.parametrize("argnums", [0, 1, (0, 1), (1,)])
def test_jacobians(argnums):
    Y2 = Y[:2]
    same(T.jacfwd(f_vec, argnums)(X, Y2), jax.jacfwd(f_vec, argnums)(X, Y2))
    same(T.jacrev(f_vec, argnums)(X, Y2), jax.jacrev(f_vec, argnums)(X, Y2))
    for mode in ("forward", "reverse", "auto"):
        same(T.jacobian(f_vec, argnums, mode=mode)(X, Y2), jax.jacrev(f_vec, argnums)(X, Y2))


def test_jacobian_is_jacrev_by_default_and_auto_picks_the_cheaper_mode(monkeypatch):
    assert T.jacobian is not None
    calls = []
    real_jvp, real_vjp = T.api.jvp, T.api.vjp
    monkeypatch.setattr(T.api, "jvp", lambda *a, **k: calls.append("fwd") or real_jvp(*a, **k))
    monkeypatch.setattr(T.api, "vjp", lambda *a, **k: calls.append("rev") or real_vjp(*a, **k))
    wide = jnp.ones(5)
    T.jacobian(lambda x: jnp.sum(x), mode="auto")(wide)  # 5 inputs, 1 output: reverse
    assert calls == ["rev"]
    calls.clear()
    T.jacobian(lambda x: jnp.outer(x, x), mode="auto")(wide)  # 5 inputs, 25 outputs: forward
    assert calls == ["fwd"]
    calls.clear()
    T.jacobian(jnp.sin)(wide)
    assert calls == ["rev"]
    with pytest.raises(ValueError, match="mode"):
        T.jacobian(jnp.sin, mode="sideways")


def test_jacobian_has_aux():
    def f(x):
        return jnp.sin(x), {"sq": x**2}

    same(T.jacfwd(f, has_aux=True)(X), jax.jacfwd(f, has_aux=True)(X))
    same(T.jacrev(f, has_aux=True)(X), jax.jacrev(f, has_aux=True)(X))
    same(
        T.hessian(lambda x: (jnp.sum(x**3), x), has_aux=True)(X),
        jax.hessian(lambda x: (jnp.sum(x**3), x), has_aux=True)(X),
    )


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 100])
def test_jacobian_chunk_size(chunk_size, monkeypatch):
    # One batched pass per chunk: count the (vmapped) engine calls, check the result.
    x = jnp.linspace(-1.0, 1.0, 7)

    def f(x):
        return jnp.tanh(x) * jnp.sum(x) + x[::-1]

    expected = jax.jacrev(f)(x)
    calls = {"jvp": 0, "bwd": 0}
    real_jvp, real_bwd = T.engine.jvp_flat, T.engine.transpose_linear

    def count(name, fn):
        def wrapped(*a, **k):
            calls[name] += 1
            return fn(*a, **k)

        return wrapped

    monkeypatch.setattr(T.engine, "jvp_flat", count("jvp", real_jvp))
    monkeypatch.setattr(T.engine, "transpose_linear", count("bwd", real_bwd))
    n_chunks = -(-7 // min(chunk_size, 7))
    same(T.jacfwd(f, chunk_size=chunk_size)(x), expected)
    assert calls["jvp"] == n_chunks
    same(T.jacrev(f, chunk_size=chunk_size)(x), expected)
    assert calls["bwd"] == n_chunks
    same(T.jacobian(f, mode="auto", chunk_size=chunk_size)(x), expected)
    with pytest.raises(ValueError, match="chunk_size"):
        T.jacfwd(f, chunk_size=0)(jnp.ones(3) if chunk_size == 1 else x)


def test_jacobian_chunks_bound_the_batch(monkeypatch):
    # The batched tangent inputs never hold more than chunk_size basis vectors.
    sizes = []
    real_vmap = jax.vmap

    def spy_vmap(fn, *a, **k):
        vf = real_vmap(fn, *a, **k)

        def run(basis, *rest):
            sizes.append(jax.tree.leaves(basis)[0].shape[0])
            return vf(basis, *rest)

        return run

    monkeypatch.setattr(T.api.jax, "vmap", spy_vmap)
    T.jacfwd(jnp.sin, chunk_size=4)(jnp.ones(10))
    assert sizes == [4, 4, 2]


def test_hessian():
    def f(x, y):
        return jnp.sum(jnp.sin(x) * y**2) + jnp.prod(x)

    for argnums in (1, (0, 1)):
        same(T.hessian(f, argnums)(X, Y), jax.hessian(f, argnums)(X, Y))
    tree = {"a": X, "b": Y[:2]}
    g = lambda t: jnp.sum(t["a"] ** 2) * jnp.sum(jnp.exp(t["b"]))  # noqa: E731
    same(T.hessian(g)(tree), jax.hessian(g)(tree))


def test_hvp():
    def f(x, y):
        return jnp.sum(jnp.sin(x) * y**3)

    expected = jax.jvp(jax.grad(f, (0, 1)), (X, Y), (Y, X))[1]
    same(T.hvp(f, (X, Y), (Y, X)), expected)
    same(
        T.hvp(lambda x: jnp.sum(x**4), (X,), (Y,)),
        jax.jvp(jax.grad(lambda x: jnp.sum(x**4)), (X,), (Y,))[1],
    )
    with pytest.raises(TypeError, match="tuples"):
        T.hvp(f, X, Y)


# --- errors of the engine ---------------------------------------------------------------------


def test_python_if_on_traced_value():
    def f(x):
        if x > 0:
            return x
        return -x

    # outside jit the branch of the value given is taken, as in JAX
    assert float(T.grad(f)(1.0)) == 1.0 and float(T.grad(f)(-1.0)) == -1.0
    # under jit it cannot be decided: JAX's exception, with what to use instead
    for call in (
        lambda: jax.jit(T.grad(f))(1.0),
        lambda: jax.jit(lambda x: T.jvp(f, (x,), (1.0,)))(1.0),
        lambda: jax.jit(lambda x: T.vjp(f, x)[0])(1.0),
    ):
        with pytest.raises(jax.errors.TracerBoolConversionError) as exc:
            call()
        assert isinstance(exc.value, T.TracedControlFlowError)
        msg = str(exc.value)
        assert "lax.cond" in msg and "jnp.where" in msg
    with pytest.raises(jax.errors.ConcretizationTypeError):
        jax.jit(T.jacrev(lambda x: jnp.sum(x) if jnp.sum(x) > 0 else x))(X)


def _primitive(name):
    """A new primitive (doubling its input) that no rule table knows."""
    p = Primitive(name)
    p.def_impl(lambda x: x * 2.0)
    p.def_abstract_eval(lambda x: x)
    mlir.register_lowering(p, mlir.lower_fun(lambda x: x * 2.0, multiple_results=False))
    return p


def _no_rule_primitive():
    return _primitive("mystery_op")


def test_primitive_without_rule_names_it_and_the_mode():
    p = _no_rule_primitive()
    f = lambda x: jnp.sum(p.bind(x))  # noqa: E731
    with pytest.raises(NotImplementedError, match=r"'mystery_op'.*forward mode"):
        T.jvp(f, (X,), (Y,))
    with pytest.raises(NotImplementedError, match=r"'mystery_op'.*reverse mode"):
        T.grad(f)(X)
    with pytest.raises(NotImplementedError, match=r"'mystery_op'.*reverse mode"):
        T.vjp(f, X)
    # no tangent flows into it: no rule needed
    assert float(T.grad(lambda x, c: x * jnp.sum(p.bind(c)))(2.0, X)) == pytest.approx(3.0)


def test_primitive_with_jvp_but_no_transpose_rule():
    p = _no_rule_primitive()
    from transforms.jvp import jvp_rules

    q = _primitive("mystery_linear")
    jvp_rules[p] = lambda primals, tangents: (p.bind(*primals), q.bind(*tangents))
    try:
        same(T.jvp(lambda x: p.bind(x), (X,), (Y,))[1], 2.0 * Y)
        with pytest.raises(NotImplementedError, match=r"'mystery_linear'.*reverse mode"):
            T.grad(lambda x: jnp.sum(p.bind(x)))(X)
    finally:
        del jvp_rules[p]


# --- edge cases, each against JAX --------------------------------------------------------------

_F0 = dtypes.float0
_Z2 = jnp.array([1 + 2j, -0.5 + 0.1j])


def _edge_cases():
    x = X[:2]
    mul_c = lambda a: a * (1 + 2j)  # noqa: E731
    re_im = lambda z: jnp.real(z) ** 2 + jnp.imag(z)  # noqa: E731
    two_outs = lambda a: (jnp.sum(a), a > 0)  # noqa: E731
    return {
        "vjp_real_to_complex": lambda api: api.vjp(mul_c, x)[1](jnp.array([1 + 1j, 2 - 1j])),
        "jacfwd_real_to_complex": lambda api: api.jacfwd(mul_c)(x),
        "vjp_complex_to_real": lambda api: api.vjp(re_im, _Z2)[1](jnp.ones(2)),
        "jvp_complex_to_real": lambda api: api.jvp(re_im, (_Z2,), (_Z2,)),
        "grad_abs_complex_at_zero": lambda api: api.grad(lambda z: jnp.abs(z).sum())(0 * _Z2),
        "jacrev_float32": lambda api: api.jacrev(jnp.sin)(x.astype(jnp.float32)),
        "grad_mixed_precision": lambda api: api.grad(lambda a, b: jnp.sum(a * b))(
            x.astype(jnp.float32), x
        ),
        "grad_constant_function": lambda api: api.grad(lambda a: 3.0)(x),
        "grad_unused_argument": lambda api: api.grad(lambda a, b: jnp.sum(b), (0, 1))(x, x),
        "jvp_constant_output": lambda api: api.jvp(lambda a: jnp.ones(3), (x,), (x,)),
        "jvp_boolean_output": lambda api: api.jvp(lambda a: a > 0, (x,), (x,)),
        "vjp_boolean_output": lambda api: api.vjp(two_outs, x)[1]((1.0, np.zeros(2, _F0))),
        "linearize_integer_input": lambda api: api.linearize(lambda a, n: a * n, x, 3)[1](
            x, np.zeros((), _F0)
        ),
        "jacfwd_weak_scalar": lambda api: api.jacfwd(jnp.sin)(0.5),
        "jacrev_weak_scalar": lambda api: api.jacrev(jnp.sin)(0.5),
        "hessian_weak_scalar": lambda api: api.hessian(jnp.sin)(0.5),
        "jacrev_allow_int": lambda api: api.jacrev(lambda a, n: a * n, (0, 1), allow_int=True)(
            x, 2
        ),
        "linear_transpose_convert": lambda api: api.linear_transpose(
            lambda a: a.astype(jnp.float32) * 2, x
        )(jnp.ones(2, jnp.float32)),
        "vjp_identity": lambda api: api.vjp(lambda a: a, x)[1](x),
        "vjp_input_returned_twice": lambda api: api.vjp(lambda a: (a, a), x)[1]((x, x)),
        "jvp_input_and_constant_returned": lambda api: api.jvp(
            lambda a, b: (a, 2.0), (x, x), (x, x)
        ),
    }


@pytest.mark.parametrize("name", sorted(_edge_cases()))
def test_edge_case_matches_jax(name):
    case = _edge_cases()[name]
    same(case(T), case(jax))
