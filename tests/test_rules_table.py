"""Every element-wise and structural rule, from one table, against JAX and finite differences.

Each row is (name, function, input generators, orders, primitive it must exercise, flags). A row
expands over shapes and dtypes; each case is checked

  * against JAX's autodiff in float64 and float32: jvp and vjp values, dtypes and weak types;
  * against central finite differences (`transforms.testing.check_grads`), both modes, up to the
    row's order (float64 only: finite differences in float32 test the step, not the rule);
  * by a dot-product test of the linearized program's transpose (`check_transpose`).

Hypothesis then draws shapes, broadcasting and values for the binary and reduction rules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_matches_jax, assert_tree_allclose
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax

import transforms
from transforms.testing import check_grads, check_transpose

F64, F32, C128 = np.float64, np.float32, np.complex128

# --- input generators: (rng, shape, dtype) -> array ----------------------------------------------


def _real(rng, shape, dtype, lo=-2.0, hi=2.0):
    return np.asarray(rng.uniform(lo, hi, shape), dtype)


def anyr(rng, shape, dtype):
    if np.issubdtype(dtype, np.complexfloating):
        return np.asarray(rng.uniform(-2, 2, shape) + 1j * rng.uniform(-2, 2, shape), dtype)
    return _real(rng, shape, dtype)


def pos(rng, shape, dtype):
    return _real(rng, shape, dtype, 0.5, 2.5)


def unit(rng, shape, dtype):  # inside (-1, 1), away from the ends
    return _real(rng, shape, dtype, -0.8, 0.8)


def gt1(rng, shape, dtype):
    return _real(rng, shape, dtype, 1.2, 3.0)


def away0(rng, shape, dtype):  # |x| in [0.5, 2]: no kinks of abs/sign/rem
    return np.asarray(rng.uniform(0.5, 2.0, shape) * rng.choice([-1, 1], shape), dtype)


def frac(rng, shape, dtype):  # away from integers and half-integers (floor/ceil/round)
    return np.asarray(rng.integers(-3, 3, shape) + rng.uniform(0.1, 0.4, shape), dtype)


def ties(rng, shape, dtype):  # repeated values, zeros included: ties for max/min/prod
    return np.asarray(rng.choice([0.0, 1.0, -1.0, 2.0], shape), dtype)


def zeros(rng, shape, dtype):  # exactly at the kink of abs, the base 0 of pow
    return np.zeros(shape, dtype)


def ints(rng, shape, dtype):
    return np.asarray(rng.integers(-3, 4, shape), np.int32)


def bools(rng, shape, dtype):
    return np.asarray(rng.integers(0, 2, shape), np.bool_)


def distinct(rng, shape, dtype):  # distinct values: unique argmax/max
    n = int(np.prod(shape))
    return np.asarray(rng.permutation(n).reshape(shape) * 0.5 + rng.uniform(0, 0.1, shape), dtype)


# --- the table ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    fun: Callable
    gens: tuple
    prim: str  # a primitive the traced function must contain
    order: int = 2
    shapes: tuple = ((), (2, 3))
    dtypes: tuple = (F64, F32)
    fd: bool = True  # finite differences meaningful (False at kinks/ties, or no tangent)
    oracle: bool = True  # JAX has a rule to compare with
    atol: float | None = None
    rtol: float | None = None


def unary(name, fun, gen=anyr, order=2, **kw):
    return Row(name, fun, (gen,), kw.pop("prim", name), order, **kw)


ROWS = [
    # trigonometric, hyperbolic and inverses
    unary("sin", lax.sin),
    unary("cos", lax.cos),
    unary("tan", lax.tan, unit),
    unary("asin", lax.asin, unit),
    unary("acos", lax.acos, unit),
    unary("atan", lax.atan),
    unary("sinh", lax.sinh),
    unary("cosh", lax.cosh),
    unary("tanh", lax.tanh),
    unary("asinh", lax.asinh),
    unary("acosh", lax.acosh, gt1),
    unary("atanh", lax.atanh, unit),
    # exp / log families, roots
    unary("exp", lax.exp),
    unary("exp2", lax.exp2),
    unary("expm1", lax.expm1),
    unary("log", lax.log, pos),
    unary("log1p", lax.log1p, pos),
    unary("sqrt", lax.sqrt, pos),
    unary("rsqrt", lax.rsqrt, pos),
    unary("cbrt", lax.cbrt, away0),
    unary("square", lax.square),
    unary("logistic", lax.logistic),
    unary("erf", lax.erf),
    unary("erfc", lax.erfc),
    unary("erf_inv", lax.erf_inv, unit),
    unary("lgamma", lax.lgamma, pos),
    unary("digamma", lax.digamma, pos, order=1),
    unary("neg", lax.neg),
    unary("abs", lax.abs, away0),
    # at the kink the input itself is 0 and its tangent is not: JAX's abs'(0) convention
    unary("abs_at_zero", lax.abs, zeros, prim="abs", fd=False),
    # powers
    *[
        unary(f"integer_pow_{n}", lambda x, n=n: lax.integer_pow(x, n), away0, prim="integer_pow")
        for n in (0, 1, 2, 3, -2)
    ],
    Row("pow", lax.pow, (pos, anyr), "pow"),
    Row("pow_int_exponent", lax.pow, (away0, ints), "pow"),
    Row("pow_zero_base", lax.pow, (zeros, pos), "pow", fd=False),
    Row("pow_zero_base_int_exponent", lax.pow, (zeros, ints), "pow", fd=False),
    Row("pow_zero_base_zero_exponent", lax.pow, (zeros, zeros), "pow", fd=False),
    Row("atan2", lax.atan2, (away0, away0), "atan2"),
    Row("rem", lax.rem, (frac, gt1), "rem"),
    # arithmetic (binary; broadcasting covered by Hypothesis below)
    Row("add", lax.add, (anyr, anyr), "add"),
    Row("sub", lax.sub, (anyr, anyr), "sub"),
    Row("mul", lax.mul, (anyr, anyr), "mul"),
    Row("div", lax.div, (anyr, away0), "div"),
    Row("max", lax.max, (anyr, anyr), "max"),
    Row("min", lax.min, (anyr, anyr), "min"),
    Row("max_ties", lax.max, (ties, ties), "max", fd=False),
    Row("min_ties", lax.min, (ties, ties), "min", fd=False),
    # piecewise constant
    unary("sign", lax.sign, away0),
    unary("floor", lax.floor, frac),
    unary("ceil", lax.ceil, frac),
    unary("round", lax.round, frac),
    unary("is_finite", lambda x: lax.is_finite(x), prim="is_finite", fd=False),
    # JAX has no rule for nextafter; we treat it as piecewise constant (on the float grid).
    Row("nextafter", lax.nextafter, (anyr, anyr), "nextafter", fd=False, oracle=False),
    *[
        Row(op, lambda x, y, op=op: getattr(lax, op)(x, y), (ties, ties), op, fd=False)
        for op in ("eq", "ne", "lt", "le", "gt", "ge")
    ],
    Row("select_n", lambda p, x, y: lax.select_n(p, x, y), (bools, anyr, anyr), "select_n"),
    Row(
        "select_n_3way",
        lambda i, x, y, z: lax.select_n(lax.clamp(np.int32(0), i, np.int32(2)), x, y, z),
        (ints, anyr, anyr, anyr),
        "select_n",
    ),
    Row(
        "clamp",
        lax.clamp,
        (lambda r, s, d: _real(r, s, d, -2, -1), anyr, lambda r, s, d: _real(r, s, d, 1, 2)),
        "clamp",
    ),
    Row(
        "clamp_scalar_bounds",
        lambda x: lax.clamp(_scalar(x, -0.5), x, _scalar(x, 0.5)),
        (anyr,),
        "clamp",
    ),
    # dtype conversion
    unary(
        "convert_f64_f32",
        lambda x: lax.convert_element_type(x, np.float32),
        prim="convert_element_type",
        dtypes=(F64,),
    ),
    unary(
        "convert_f32_f64",
        lambda x: lax.convert_element_type(x, np.float64),
        prim="convert_element_type",
        dtypes=(F32,),
    ),
    unary(
        "convert_to_int",
        lambda x: lax.convert_element_type(x, np.int32),
        prim="convert_element_type",
        fd=False,
    ),
    Row(
        "convert_from_int",
        lambda i, x: x * lax.convert_element_type(i, x.dtype),
        (ints, anyr),
        "convert_element_type",
    ),
    unary("convert_weak", lambda x: x + 1.5, prim="add"),
    unary(
        "convert_complex_to_real",
        lambda z: jnp.real(z) * 2.0 + jnp.imag(z),
        prim="real",
        dtypes=(C128,),
    ),
    unary(
        "convert_real_to_complex",
        lambda x: jnp.abs(lax.convert_element_type(x, C128) + 1j),
        prim="convert_element_type",
        dtypes=(F64,),
    ),
    # reductions
    unary("reduce_sum", lambda x: jnp.sum(x, axis=-1), shapes=((3,), (2, 3))),
    unary("reduce_sum_all", lambda x: jnp.sum(x), prim="reduce_sum", shapes=((2, 3),)),
    unary("reduce_max", lambda x: jnp.max(x, axis=0), distinct, shapes=((3,), (2, 3))),
    unary("reduce_min", lambda x: jnp.min(x, axis=-1), distinct, shapes=((3,), (2, 3))),
    unary(
        "reduce_max_ties",
        lambda x: jnp.max(x, axis=0),
        ties,
        prim="reduce_max",
        shapes=((4,), (4, 3)),
        fd=False,
    ),
    unary(
        "reduce_min_ties",
        lambda x: jnp.min(x),
        ties,
        prim="reduce_min",
        shapes=((4,), (4, 3)),
        fd=False,
    ),
    unary("reduce_prod", lambda x: jnp.prod(x, axis=-1), anyr, shapes=((3,), (2, 3))),
    unary(
        "reduce_prod_zeros",
        lambda x: jnp.prod(x, axis=0),
        ties,
        prim="reduce_prod",
        shapes=((4,), (4, 3)),
    ),
    unary(
        "reduce_prod_one_zero",
        lambda x: jnp.prod(x * jnp.array([1, 0, 1, 1], x.dtype)),
        prim="reduce_prod",
        shapes=((4,),),
    ),
    unary("argmax", lambda x: x[jnp.argmax(x)], distinct, prim="argmax", shapes=((4,),)),
    unary(
        "argmin",
        lambda x: x * jnp.argmin(x, axis=-1)[..., None],
        distinct,
        prim="argmin",
        shapes=((4,), (2, 3)),
    ),
    # shapes and data movement
    unary(
        "broadcast_in_dim",
        lambda x: lax.broadcast_in_dim(x, (2, *x.shape), tuple(range(1, 1 + x.ndim))),
        prim="broadcast_in_dim",
    ),
    unary(
        "broadcast_stretch",
        lambda x: jnp.broadcast_to(x[:, :1], (2, 4)),
        prim="broadcast_in_dim",
        shapes=((2, 3),),
    ),
    unary("reshape", lambda x: jnp.reshape(x, (-1,)), shapes=((2, 3),)),
    unary("squeeze", lambda x: lax.squeeze(x, (1,)), shapes=((2, 1, 3),)),
    unary(
        "expand_dims",
        lambda x: lax.expand_dims(x, (0, 2)),
        prim="broadcast_in_dim",
        shapes=((2, 3),),
    ),
    unary("transpose", lambda x: lax.transpose(x, (2, 0, 1)), shapes=((2, 3, 4),)),
    unary("rev", lambda x: lax.rev(x, (0,)), shapes=((3,), (2, 3))),
    Row(
        "concatenate",
        lambda x, y: lax.concatenate([x, y, x], 0),
        (anyr, anyr),
        "concatenate",
        shapes=((2,), (2, 3)),
    ),
    Row(
        "pad",
        lambda x, v: lax.pad(x, v, [(1, 2, 0), (0, 1, 0)]),
        (anyr, lambda r, s, d: _real(r, (), d)),
        "pad",
        shapes=((2, 3),),
    ),
    Row(
        "pad_interior_negative",
        lambda x, v: lax.pad(x, v, [(-1, 2, 1), (2, -2, 2)]),
        (anyr, lambda r, s, d: _real(r, (), d)),
        "pad",
        shapes=((3, 4),),
    ),
    unary(
        "pad_constant_value",
        lambda x: lax.pad(x, _scalar(x, 0.0), [(1, -1, 1)]),
        prim="pad",
        shapes=((4,),),
    ),
    unary("slice", lambda x: lax.slice(x, (0, 1), (2, 3)), shapes=((2, 3),)),
    unary(
        "slice_strided",
        lambda x: lax.slice(x, (1, 0), (5, 4), (2, 3)),
        prim="slice",
        shapes=((5, 4),),
    ),
    Row(
        "dynamic_slice",
        lambda x, i: lax.dynamic_slice(x, (i, np.int32(1)), (2, 2)),
        (anyr, lambda r, s, d: np.int32(r.integers(0, 4))),
        "dynamic_slice",
        shapes=((4, 3),),
    ),
    Row(
        "dynamic_update_slice",
        lambda x, u: lax.dynamic_update_slice(x, u, (1, 0)),
        (anyr, lambda r, s, d: anyr(r, (2, 2), d)),
        "dynamic_update_slice",
        shapes=((4, 3),),
    ),
    Row(
        "dynamic_update_slice_idx",
        lambda x, u, i: lax.dynamic_update_slice(x, u, (i, i)),
        (anyr, lambda r, s, d: anyr(r, (2, 2), d), lambda r, s, d: np.int32(r.integers(-1, 4))),
        "dynamic_update_slice",
        shapes=((4, 3),),
    ),
    unary("iota", lambda x: x * lax.iota(x.dtype, x.shape[0]), prim="iota", shapes=((3,),)),
    Row(
        "dot_general_matmul",
        lambda x, y: x @ y,
        (anyr, lambda r, s, d: anyr(r, (3, 2), d)),
        "dot_general",
        shapes=((2, 3),),
    ),
    Row("dot_general_vec", jnp.dot, (anyr, anyr), "dot_general", shapes=((3,),)),
    Row(
        "dot_general_batch",
        lambda x, y: lax.dot_general(x, y, (((2,), (1,)), ((0,), (0,)))),
        (anyr, lambda r, s, d: anyr(r, (2, 3, 4), d)),
        "dot_general",
        shapes=((2, 5, 3),),
    ),
    Row(
        "dot_general_odd_dims",
        lambda x, y: lax.dot_general(x, y, (((0, 2), (2, 1)), ((1,), (0,)))),
        (anyr, lambda r, s, d: anyr(r, (4, 3, 2, 5), d)),
        "dot_general",
        shapes=((2, 4, 3),),
    ),
    # finite differences see through stop_gradient; the oracle checks the convention
    unary("stop_gradient", lambda x: x * lax.stop_gradient(x), prim="stop_gradient", fd=False),
    unary("copy", lambda x: lax.copy_p.bind(x) * x, prim="copy"),
    unary(
        "reduce_precision",
        lambda x: lax.reduce_precision(x, 5, 10),
        prim="reduce_precision",
        fd=False,
    ),
    # complex
    unary("complex_mul", lambda z: z * (2.0 - 1.0j) * z, prim="mul", dtypes=(C128,)),
    unary("complex_exp", lambda z: jnp.exp(z) / z, prim="exp", dtypes=(C128,)),
    unary("complex_abs", jnp.abs, prim="abs", dtypes=(C128,)),
    unary("conj", lambda z: jnp.conj(z) * z, prim="conj", dtypes=(C128,)),
    Row("complex", lax.complex, (anyr, anyr), "complex", dtypes=(F64,)),
]

# Holomorphic rules also run on complex inputs (JAX's convention: the jvp multiplies by f'(z)).
_COMPLEX = {
    "sin", "cos", "tan", "sinh", "cosh", "tanh", "exp", "expm1", "log", "log1p", "sqrt", "rsqrt",
    "square", "logistic", "neg", "integer_pow_3", "integer_pow_-2", "add", "sub", "mul", "div",
}  # fmt: skip
ROWS = [dataclasses.replace(r, dtypes=(*r.dtypes, C128)) if r.name in _COMPLEX else r for r in ROWS]

_IDS = [r.name for r in ROWS]
assert len(set(_IDS)) == len(_IDS), "row names must be unique"


def _scalar(x, value):
    """`value` as a rank-0 array of `x`'s dtype (lax ops do not promote)."""
    return np.array(value, jax.typeof(x).dtype)


def _make_args(row: Row, shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(jnp.asarray(g(rng, shape, dtype)) for g in row.gens)


def _cases():
    # float64 over every shape; other dtypes on the last, largest shape.
    for row in ROWS:
        for dtype in row.dtypes:
            for shape in row.shapes if dtype == F64 else row.shapes[-1:]:
                yield pytest.param(
                    row, shape, dtype, id=f"{row.name}-{np.dtype(dtype).name}-{shape}"
                )


def _primitives(jaxpr):
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for p in eqn.params.values():
            if hasattr(p, "jaxpr"):
                names |= _primitives(p.jaxpr)
    return names


@pytest.mark.parametrize("row, shape, dtype", list(_cases()))
def test_rule(row, shape, dtype):
    args = _make_args(row, shape, dtype)
    prims = _primitives(jax.make_jaxpr(row.fun)(*args).jaxpr)
    assert row.prim in prims, f"row {row.name} does not exercise {row.prim}: {sorted(prims)}"
    # The derivative programs run op by op here: the math is the same as compiled, and skipping
    # an XLA compile per program is most of the cost. The compiled path, and the types it
    # returns, are checked by `test_rule_compiled` and the API tests.
    with jax.disable_jit():
        # 1. the oracle: JAX's own autodiff, values and types
        if row.oracle:
            assert_matches_jax(row.fun, args)
        else:
            out_dots = transforms.jvp(row.fun, args, tuple(jnp.ones_like(a) for a in args))[1]
            assert not np.any(np.asarray(out_dots)), f"{row.name}: expected a zero tangent"
        if dtype == F32 or not row.fd:
            return
        # 2. finite differences, both modes, up to the row's order
        check_grads(row.fun, args, row.order, atol=row.atol, rtol=row.rtol)
        # 3. the transpose of the linearized program
        check_transpose(row.fun, args)


_COMPILED = [r for r in ROWS if r.oracle and r.name in {
    "sin", "pow", "max_ties", "select_n", "convert_f64_f32", "reduce_max_ties", "reduce_prod_zeros",
    "pad_interior_negative", "slice_strided", "dynamic_update_slice_idx", "dot_general_odd_dims",
    "complex_abs", "argmin", "convert_to_int",
}]  # fmt: skip


@pytest.mark.parametrize("row", _COMPILED, ids=[r.name for r in _COMPILED])
def test_rule_compiled(row):
    # Eager calls compile the derivative programs with jax.jit: same values and types.
    args = _make_args(row, row.shapes[-1], row.dtypes[0], seed=1)
    assert_matches_jax(row.fun, args)


# Python scalars give weak-typed values; the tangents and cotangents must stay weak like JAX's.
_WEAK = {
    "sin", "exp", "log", "sqrt", "tanh", "logistic", "integer_pow_3", "pow", "atan2", "mul",
    "div", "max", "add", "sub", "convert_weak", "abs", "floor", "clamp_scalar_bounds",
}  # fmt: skip
WEAK_ROWS = [r for r in ROWS if r.name in _WEAK]


@pytest.mark.parametrize("row", WEAK_ROWS, ids=[r.name for r in WEAK_ROWS])
def test_rule_weak_types(row):
    args = tuple(float(a) for a in _make_args(row, (), F64))
    assert_matches_jax(row.fun, args)
    assert_matches_jax(jax.jit(row.fun), args)


# --- linear primitives: dot-product test of the transpose rule itself ----------------------------

LINEAR = {
    "neg": (lax.neg, [(2, 3)]),
    "reduce_sum": (lambda x: jnp.sum(x, axis=(0, 2)), [(2, 3, 4)]),
    "broadcast_in_dim": (lambda x: lax.broadcast_in_dim(x, (4, 2, 3), (1, 2)), [(2, 1)]),
    "reshape": (lambda x: jnp.reshape(x, (3, 2)), [(2, 3)]),
    "squeeze": (lambda x: lax.squeeze(x, (0,)), [(1, 3)]),
    "transpose": (lambda x: lax.transpose(x, (1, 2, 0)), [(2, 3, 4)]),
    "rev": (lambda x: lax.rev(x, (0, 1)), [(2, 3)]),
    "concatenate": (lambda x, y: lax.concatenate([y, x], 1), [(2, 3), (2, 2)]),
    "pad": (lambda x, v: lax.pad(x, v, [(-1, 2, 2), (1, 0, 1)]), [(3, 2), ()]),
    "slice": (lambda x: lax.slice(x, (1, 0), (6, 5), (2, 2)), [(6, 5)]),
    "dynamic_slice": (lambda x: lax.dynamic_slice(x, (2, 1), (2, 2)), [(4, 3)]),
    "dynamic_update_slice": (lambda x, u: lax.dynamic_update_slice(x, u, (3, 1)), [(4, 3), (2, 2)]),
    "select_n": (lambda x, y: lax.select_n(jnp.arange(3) % 2 == 0, x, y), [(3,), (3,)]),
    "mul": (lambda x: 3.0 * x * jnp.arange(3.0), [(3,)]),
    "div": (lambda x: x / jnp.arange(1.0, 4.0), [(3,)]),
    "add_sub": (lambda x, y: x - y + x, [(3,), (3,)]),
    "dot_general": (
        lambda x: lax.dot_general(x, jnp.ones((2, 4, 3)), (((2,), (2,)), ((0,), (0,)))),
        [(2, 5, 3)],
    ),
    "convert_element_type": (lambda x: lax.convert_element_type(x, np.float32), [(3,)]),
    "slice_pad": (lambda x: lax.pad(x[::2], 0.0, [(2, -1, 1)]), [(5,)]),
    "real_imag_complex": (lambda z: lax.complex(jnp.imag(z), jnp.real(z)), [(3,)]),
    "conj": (lambda z: jnp.conj(z) * (1.0 + 2.0j), [(3,)]),
    "copy": (lambda x: lax.copy_p.bind(x), [(3,)]),
}


@pytest.mark.parametrize("name", sorted(LINEAR))
def test_transpose_rule_dot_product(name):
    fun, shapes = LINEAR[name]
    rng = np.random.default_rng(1)
    complex_in = name in ("real_imag_complex", "conj")
    dtype = C128 if complex_in else F64
    args = tuple(jnp.asarray(anyr(rng, s, dtype)) for s in shapes)
    check_transpose(fun, args, linear=True)
    # and the same transpose as JAX's, values and types
    ours = transforms.linear_transpose(fun, *args)
    theirs = jax.linear_transpose(fun, *args)
    ct = jax.tree_util.tree_map(lambda y: jnp.asarray(anyr(rng, y.shape, y.dtype)), fun(*args))
    assert_tree_allclose(ours(ct), theirs(ct), what=f"linear_transpose of {name}")


def test_check_transpose_catches_a_wrong_transpose():
    # A deliberately wrong "transpose" must fail the dot-product test (the test can fail).
    from transforms.rules import structural  # noqa: F401
    from transforms.transpose import transpose_rules

    rule = transpose_rules[lax.rev_p]
    transpose_rules[lax.rev_p] = lambda ct, x, *, dimensions: [ct]  # forgets to reverse
    try:
        with pytest.raises(AssertionError, match="transpose does not match"):
            check_transpose(lambda x: lax.rev(x, (0,)), (jnp.arange(4.0),), linear=True)
    finally:
        transpose_rules[lax.rev_p] = rule
    transforms.clear_caches()


def test_check_grads_catches_a_wrong_rule():
    from transforms.jvp import jvp_rules

    rule = jvp_rules[lax.sin_p]
    from transforms.jvp import defjvp

    defjvp(lax.sin_p, lambda t, x, **_: lax.mul(t, lax.sin(x)))  # wrong: sin' = cos
    transforms.clear_caches()
    try:
        with pytest.raises(AssertionError, match="forward mode"):
            check_grads(jnp.sin, (jnp.arange(3.0),), 1, modes=("fwd",))
        with pytest.raises(AssertionError, match="reverse mode"):
            check_grads(jnp.sin, (jnp.arange(3.0),), 1, modes=("rev",))
    finally:
        jvp_rules[lax.sin_p] = rule
        transforms.clear_caches()


# --- Hypothesis: shapes, broadcasting and values --------------------------------------------------

settings.register_profile("rules", max_examples=12, deadline=None, derandomize=True)

_shape = st.lists(st.integers(1, 3), min_size=0, max_size=3).map(tuple)


@st.composite
def _broadcast_pair(draw):
    shape = draw(_shape)
    # the other operand: same shape, a rank-0 scalar, or size-1 axes where `shape` has any size
    kind = draw(st.sampled_from(["same", "scalar", "ones"]))
    if kind == "same":
        other = shape
    elif kind == "scalar":
        other = ()
    else:
        other = tuple(draw(st.sampled_from([1, d])) for d in shape)
    return (shape, other) if draw(st.booleans()) else (other, shape)


BINARY = {
    "add": jnp.add, "sub": jnp.subtract, "mul": jnp.multiply, "div": jnp.divide,
    "max": jnp.maximum, "min": jnp.minimum, "pow": jnp.power, "atan2": jnp.arctan2,
}  # fmt: skip


@settings(settings.get_profile("rules"))
@given(
    op=st.sampled_from(sorted(BINARY)),
    shapes=_broadcast_pair(),
    seed=st.integers(0, 2**16),
)
def test_binary_broadcasting(op, shapes, seed):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(pos(rng, shapes[0], F64))
    y = jnp.asarray(away0(rng, shapes[1], F64))
    fun = BINARY[op]
    assert_matches_jax(fun, (x, y), seed=seed)


@settings(settings.get_profile("rules"))
@given(
    shape=st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple),
    data=st.data(),
    reducer=st.sampled_from(["sum", "max", "min", "prod"]),
    tied=st.booleans(),
)
def test_reductions_hypothesis(shape, data, reducer, tied):
    axes = data.draw(st.sets(st.integers(0, len(shape) - 1)).map(tuple))
    rng = np.random.default_rng(len(shape) * 7 + len(axes))
    x = jnp.asarray((ties if tied else anyr)(rng, shape, F64))
    fun = {"sum": jnp.sum, "max": jnp.max, "min": jnp.min, "prod": jnp.prod}[reducer]
    assert_matches_jax(lambda x: fun(x, axis=axes), (x,))


@settings(settings.get_profile("rules"))
@given(
    values=st.lists(
        st.floats(-3, 3, allow_nan=False, allow_subnormal=False), min_size=1, max_size=4
    ),
    name=st.sampled_from(["sin", "tanh", "logistic", "exp", "erf", "atan", "square", "abs"]),
)
def test_unary_values(values, name):
    x = jnp.asarray(values, F64)
    assert_matches_jax(getattr(lax, name), (x,))
