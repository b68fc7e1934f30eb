"""Engine behaviours that real JAX libraries (Flax NNX, Equinox, diffrax, lineax) met, without them.

Each test is the smallest program of plain JAX that showed the failure; tests/test_libraries.py
runs the libraries themselves.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from helpers import assert_tree_allclose
from jax import lax
from jax.extend.core import Primitive
from jax.interpreters import ad, mlir

import transforms


def _literal_outputs(x):
    # `jnp.array(-1.0)` and `jnp.array(3)` are literals of the traced program: returned as
    # they are, they came back as host scalars (`TypedFloat`) where JAX gives an `Array`.
    return jnp.sum(x**2), (jnp.array(-1.0), jnp.array(3), 2.0 * jnp.ones(()))


def test_literal_outputs_are_arrays_eagerly():
    x = jnp.array([1.0, 2.0])
    (value, aux), grads = transforms.value_and_grad(_literal_outputs, has_aux=True)(x)
    primals_out = {
        "value_and_grad": (value, aux),
        "jvp": transforms.jvp(_literal_outputs, (x,), (x,))[0],
        "vjp": transforms.vjp(_literal_outputs, x)[0],
        "linearize": transforms.linearize(_literal_outputs, x)[0],
    }
    for name, outs in primals_out.items():
        assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(outs)), name
        assert_tree_allclose(outs, _literal_outputs(x))
    assert_tree_allclose(grads, jax.grad(lambda x: _literal_outputs(x)[0])(x))
    assert aux[0][()] == -1.0  # subscriptable, as an Array is


# A primitive of a library's own, linear in `t`, whose rules read their operand `flag` as an
# array: JAX hands a rule a tracer of the enclosing `jit`'s input. We inline calls, so `flag`
# arrived as the literal's host value, a Python `bool` (lineax's `linear_solve` transpose, as
# diffrax's `ImplicitAdjoint` reaches it, failed "Closure-converted function called with
# different dynamic arguments").
def _masked_double(t, flag):
    return jnp.where(flag, 2 * t, t)


masked_double_p = Primitive("test_library_masked_double")
masked_double_p.def_impl(_masked_double)
masked_double_p.def_abstract_eval(lambda t, flag: jax.core.ShapedArray(t.shape, t.dtype))
mlir.register_lowering(masked_double_p, mlir.lower_fun(_masked_double, multiple_results=False))


def _masked_double_jvp(primals, tangents):
    t, flag = primals
    return masked_double_p.bind(t, flag.astype(bool)), masked_double_p.bind(tangents[0], flag)


def _masked_double_transpose(ct, t, flag):
    assert ad.is_undefined_primal(t)
    return masked_double_p.bind(ct, flag.astype(bool)), None


ad.primitive_jvps[masked_double_p] = _masked_double_jvp
ad.primitive_transposes[masked_double_p] = _masked_double_transpose


@jax.custom_jvp
def _doubled(x):
    return 2 * x


@_doubled.defjvp
def _doubled_jvp(primals, tangents):
    # The rule's program is partially evaluated as is: its jit becomes a call in the linear part.
    return _doubled(primals[0]), jax.jit(masked_double_p.bind)(tangents[0], True)


def test_library_primitive_rules_get_literal_operands_as_arrays():
    x = jnp.array([0.5, 1.5])
    in_jit = lambda x: jnp.sum(jax.jit(masked_double_p.bind)(x, True) * x)  # noqa: E731
    via_custom_jvp = lambda x: jnp.sum(_doubled(x) * x)  # noqa: E731
    for f in (in_jit, via_custom_jvp):
        assert_tree_allclose(transforms.grad(f)(x), jax.grad(f)(x))
        assert_tree_allclose(transforms.jvp(f, (x,), (x,)), jax.jvp(f, (x,), (x,)))


def _scan_of_cond_with_print(x):
    # Equinox's while-loop tests: a scan whose body is a cond on a constant predicate (its
    # index is computed from literals alone, so loop-invariant, and hoisted out of the linear
    # scan) around a branch with an effect. The hoisted computation took the effectful cond
    # along, reading the carry it has no access to: KeyError: Var(...) in eval_step.
    def body(carry, _):
        def step(c):
            i, y = c
            jax.debug.print("step {}", i)
            return i + 1, jnp.sin(y) * x

        return lax.cond(True, step, lambda c: c, carry), None

    return lax.scan(body, (0, x), None, length=3)[0][1]


def test_scan_residuals_hoisted_without_effects(capfd):
    x = jnp.float64(0.7)
    expected = jax.value_and_grad(_scan_of_cond_with_print)(x)
    jax.effects_barrier()
    printed = capfd.readouterr().out
    assert printed.split() == ["step", "0", "step", "1", "step", "2"]
    assert_tree_allclose(transforms.value_and_grad(_scan_of_cond_with_print)(x), expected)
    assert_tree_allclose(jax.jit(transforms.grad(_scan_of_cond_with_print))(x), expected[1])
    jax.effects_barrier()
    assert capfd.readouterr().out == printed * 2


def _printing(x):
    # jax.debug.print / jax.debug.callback of values that carry a tangent, also inside a loop
    # (Equinox's while-loop tests print from the body): MissingRuleError for 'debug_print'.
    jax.debug.print("x={x}", x=x)
    jax.debug.callback(lambda v: print("callback", float(v)), x * 2)

    def body(y, _):
        jax.debug.print("y={}", y)
        return jnp.sin(y) * x, None

    return lax.scan(body, x, None, length=2)[0]


def test_debug_print_and_callback_of_differentiated_values(capfd):
    x, runs = jnp.float64(0.5), {}
    for name, ours, theirs in [
        ("grad", transforms.grad(_printing), jax.grad(_printing)),
        ("jit grad", jax.jit(transforms.grad(_printing)), jax.jit(jax.grad(_printing))),
        (
            "jvp",
            lambda x: transforms.jvp(_printing, (x,), (x,)),
            lambda x: jax.jvp(_printing, (x,), (x,)),
        ),
    ]:
        for who, f in (("jax", theirs), ("ours", ours)):
            out = f(x)
            jax.effects_barrier()
            runs[name, who] = (out, capfd.readouterr().out)
        assert_tree_allclose(runs[name, "ours"][0], runs[name, "jax"][0])
        assert runs[name, "ours"][1] == runs[name, "jax"][1], name
    assert runs["grad", "jax"][1].count("y=") == 2


@jax.custom_vjp
def _scaled(x, rate):
    return x * rate


def _scaled_fwd(x, rate):
    return _scaled(x, rate), (x, rate)


def _scaled_bwd(residuals, g):
    x, rate = residuals
    # As diffrax's BacksolveAdjoint does (`eqx.filter(args, eqx.is_inexact_array)`): only arrays
    # are parameters. JAX hands bwd its residuals as arrays; ours handed it the user's Python
    # float itself, so the rate's gradient was zero.
    d_rate = jnp.sum(g * x) if isinstance(rate, jax.Array) else jnp.zeros(())
    return g * rate, d_rate


_scaled.defvjp(_scaled_fwd, _scaled_bwd)


def test_custom_vjp_bwd_gets_python_number_residuals_as_arrays():
    # Inside a jit, as diffrax's solve is: JAX's bwd then sees the rate as a tracer.
    loss = lambda x, rate: jnp.sum(jax.jit(_scaled)(x, rate) ** 2)  # noqa: E731
    x = jnp.array([1.0, -0.5])
    expected = jax.grad(loss, argnums=(0, 1))(x, 0.5)
    assert expected[1] != 0
    assert_tree_allclose(transforms.grad(loss, argnums=(0, 1))(x, 0.5), expected)
    assert_tree_allclose(transforms.vjp(loss, x, 0.5)[1](1.0), jax.vjp(loss, x, 0.5)[1](1.0))
