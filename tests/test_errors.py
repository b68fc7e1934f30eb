"""The error catalogue: every misuse of the functional API raises a specific exception whose
message names the problem and the way out. Exception types are JAX's where JAX has one."""

import contextlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.core import Primitive
from jax.interpreters import mlir

import transforms as T
from transforms.errors import MissingRuleError, TracedControlFlowError

# A primitive with an implementation and an abstract evaluation rule, but no derivative rules.
foo_p = Primitive("reliability_test_foo")
foo_p.def_impl(lambda x: 2.0 * x)
foo_p.def_abstract_eval(lambda x: x)
mlir.register_lowering(foo_p, mlir.lower_fun(lambda x: 2.0 * x, multiple_results=False))


def uses_foo(x):
    return jnp.sum(foo_p.bind(x))


@contextlib.contextmanager
def raises(exc_type, *patterns):
    """pytest.raises that also checks every regex in `patterns` occurs in the message."""
    with pytest.raises(exc_type) as info:
        yield info
    msg = str(info.value)
    for p in patterns:
        assert re.search(p, msg), f"{p!r} not in message:\n{msg}"


x2 = jnp.ones(2)


# --- grad: outputs and inputs ---------------------------------------------------------------------


def test_grad_non_scalar_output():
    with raises(TypeError, r"scalar-output", r"shape: \(2,\)", "jnp.sum", "jacrev"):
        T.grad(lambda x: 2.0 * x)(x2)


def test_grad_tuple_output():
    with raises(TypeError, r"scalar-output", "has_aux=True"):
        T.grad(lambda x: (jnp.sum(x), jnp.sum(x)))(x2)


def test_grad_integer_output():
    with raises(TypeError, "real-valued outputs", "int32", "vjp"):
        T.grad(lambda x: jnp.sum(x).astype(jnp.int32))(x2)


def test_grad_complex_output_without_holomorphic():
    with raises(TypeError, "real-valued outputs", "holomorphic=True"):
        T.grad(lambda x: x * 1j)(1.0)


@pytest.mark.parametrize("api", [T.grad, T.value_and_grad, T.jacrev])
def test_integer_input(api):
    with raises(TypeError, "int64", "allow_int"):
        api(lambda x: x * 2.0)(1)


def test_integer_input_allowed_gives_float0():
    g = T.grad(lambda x, y: x * y, argnums=(0, 1), allow_int=True)(3, 2.0)
    assert g[0].dtype == jax.dtypes.float0
    assert float(g[1]) == 3.0


def test_jacfwd_integer_input():
    with raises(TypeError, "real-valued inputs", "int64", "jvp"):
        T.jacfwd(lambda x: x * 2.0)(1)


def test_holomorphic_needs_complex_input():
    with raises(TypeError, "holomorphic=True", "complex", "float64"):
        T.grad(lambda x: x, holomorphic=True)(1.0)


def test_not_a_jax_type():
    with raises(TypeError, "not a valid JAX type"):
        T.grad(lambda x: x)("a")


# --- argnums --------------------------------------------------------------------------------------


@pytest.mark.parametrize("api", [T.grad, T.value_and_grad, T.jacrev, T.jacfwd])
def test_argnums_out_of_range(api):
    with raises(TypeError, r"argnums=\(0, 3\)", "at least 4", "only 1", "positionally"):
        api(lambda x: x, argnums=(0, 3))(1.0)


def test_argnums_negative_out_of_range():
    with raises(ValueError, r"argnums=\(-2,\)", "out of range", "-1 to 0"):
        T.grad(lambda x: x, argnums=-2)(1.0)


def test_argnums_negative_in_range():
    assert float(T.grad(lambda x, y: x * y, argnums=-1)(3.0, 2.0)) == 3.0


def test_argnums_wrong_type():
    with raises(TypeError, "argnums must be an int or a tuple of ints", "'a'"):
        T.grad(lambda x: x, argnums="a")


def test_argnums_empty():
    with raises(ValueError, "argnums must be non-empty"):
        T.grad(lambda x: x, argnums=())


# --- has_aux --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "api",
    [
        lambda f: T.grad(f, has_aux=True)(1.0),
        lambda f: T.value_and_grad(f, has_aux=True)(1.0),
        lambda f: T.vjp(f, 1.0, has_aux=True),
        lambda f: T.jvp(f, (1.0,), (1.0,), has_aux=True),
        lambda f: T.linearize(f, 1.0, has_aux=True),
    ],
)
def test_has_aux_without_pair(api):
    with raises(TypeError, "has_aux=True", "pair", r"shape \(\)", r"\(output, aux\)"):
        api(lambda x: x * 2.0)


def test_has_aux_triple():
    with raises(TypeError, "has_aux=True", "tuple of length 3"):
        T.grad(lambda x: (x, 1.0, 2.0), has_aux=True)(1.0)


# --- jvp tangents ---------------------------------------------------------------------------------


def test_jvp_tangent_shape():
    with raises(ValueError, "primal and tangent shapes", r"\(\)", r"\(2,\)"):
        T.jvp(jnp.sin, (1.0,), (x2,))


def test_jvp_tangent_dtype():
    with raises(TypeError, "float64", "float32", "astype"):
        T.jvp(jnp.sin, (1.0,), (jnp.float32(1.0),))


def test_jvp_integer_primal_needs_float0_tangent():
    with raises(TypeError, "int64", "float0", "float64"):
        T.jvp(lambda x: x * 2, (1,), (1.0,))


def test_jvp_float0_tangent_for_float_primal():
    with raises(TypeError, "expected tangent dtype float64", "got tangent dtype float0"):
        T.jvp(jnp.sin, (1.0,), (np.zeros((), jax.dtypes.float0),))


def test_jvp_tree_mismatch():
    with raises(TypeError, "same tree structure"):
        T.jvp(jnp.sin, [1.0], [1.0, 2.0])


def test_jvp_not_tuples():
    with raises(TypeError, "tuples or lists", "float"):
        T.jvp(jnp.sin, 1.0, 1.0)


def test_linearized_tangent_shape():
    _, f_jvp = T.linearize(jnp.sin, x2)
    with raises(ValueError, "tangent shapes", r"\(3,\)"):
        f_jvp(jnp.ones(3))


# --- vjp cotangents -------------------------------------------------------------------------------


def test_vjp_cotangent_shape():
    _, pullback = T.vjp(jnp.sin, x2)
    with raises(ValueError, "cotangent", r"\(3,\)", r"\(2,\)", "ones_like"):
        pullback(jnp.ones(3))


def test_vjp_cotangent_dtype():
    _, pullback = T.vjp(jnp.sin, x2)
    with raises(ValueError, "cotangent", "float32", "float64", "Cast"):
        pullback(jnp.ones(2, jnp.float32))


def test_vjp_cotangent_tree():
    _, pullback = T.vjp(jnp.sin, 1.0)
    with raises(ValueError, "Tree structure of cotangent", "does not match"):
        pullback((1.0,))


def test_linear_transpose_cotangent_shape():
    f_t = T.linear_transpose(lambda x: 2.0 * x, x2)
    with raises(TypeError, "cotangent type does not match function output", r"\(3,\)"):
        f_t(jnp.ones(3))


# --- primitives without rules ---------------------------------------------------------------------


def test_unknown_primitive_forward():
    with raises(MissingRuleError, "'reliability_test_foo'", "forward mode", "custom_jvp"):
        T.jvp(uses_foo, (x2,), (x2,))


@pytest.mark.parametrize("api", [lambda f: T.grad(f)(x2), lambda f: T.vjp(f, x2)])
def test_unknown_primitive_reverse(api):
    with raises(NotImplementedError, "'reliability_test_foo'", "reverse mode", "custom_vjp"):
        api(uses_foo)


def test_unknown_primitive_is_fine_when_not_differentiated():
    # No tangent flows into it: the primitive is evaluated, not differentiated.
    g = T.grad(lambda x, y: jnp.sum(x * uses_foo(y)), argnums=0)(x2, x2)
    np.testing.assert_allclose(g, 4.0 * np.ones(2))


def test_jvp_rule_that_is_not_linear_in_tangents():
    bar_p = Primitive("reliability_test_bar")
    bar_p.def_impl(lambda x: x)
    bar_p.def_abstract_eval(lambda x: x)
    mlir.register_lowering(bar_p, mlir.lower_fun(lambda x: x, multiple_results=False))
    from transforms.jvp import jvp_rules

    # A (wrong) JVP rule that applies the primitive itself to the tangent: fine in forward mode,
    # but it puts `bar` in the linear program, which has no transpose rule for it.
    jvp_rules[bar_p] = lambda p, t: (bar_p.bind(*p), bar_p.bind(*t))
    try:
        assert float(T.jvp(bar_p.bind, (1.0,), (2.0,))[1]) == 2.0
        with raises(NotImplementedError, "'reliability_test_bar'", "no transpose rule"):
            T.grad(bar_p.bind)(1.0)
    finally:
        del jvp_rules[bar_p]


# --- Python control flow on traced values ---------------------------------------------------------


@pytest.mark.parametrize(
    "fun",
    [
        lambda x: jnp.sin(x) if x > 0 else x,
        lambda x: x * float(x),
        lambda x: jnp.arange(3.0)[int(x)],
        lambda x: x if bool(x) else 2 * x,
    ],
)
@pytest.mark.parametrize("api", ["grad", "jvp", "vjp"])
def test_python_control_flow_under_jit(fun, api):
    # Outside jit these take the branch of the value (tests/test_python_control_flow.py); under
    # jit the value is abstract and the error is JAX's, with what to use instead.
    call = {
        "grad": lambda: jax.jit(T.grad(fun))(1.0),
        "jvp": lambda: jax.jit(lambda x: T.jvp(fun, (x,), (1.0,)))(1.0),
        "vjp": lambda: jax.jit(lambda x: T.vjp(fun, x)[0])(1.0),
    }[api]
    with raises(
        jax.errors.ConcretizationTypeError,
        "Python control flow",
        "lax.cond",
        "jnp.where",
        "jax.jit",
    ) as info:
        call()
    assert isinstance(info.value, TracedControlFlowError)


# --- reverse mode through while_loop: no error (tests/test_while_reverse.py) ------------------


def test_while_loop_reverse_mode_works():
    def f(x):
        return jax.lax.while_loop(lambda c: c < 10.0, lambda c: c * 2.0, x)

    # 1 -> 2 -> ... -> 16, so d/dx = 16 in both modes.
    assert float(T.grad(f)(1.0)) == 16.0
    assert float(T.vjp(f, 1.0)[1](1.0)[0]) == 16.0
    assert float(T.jvp(f, (1.0,), (1.0,))[1]) == 16.0


# --- the tape ----------------------------------------------------------------------------------


def test_tape_second_gradient_non_persistent():
    import transforms.tf as tf

    x = tf.Variable(3.0)
    with tf.GradientTape() as tape:
        y = x * x
    assert float(tape.gradient(y, x)) == 6.0
    with raises(RuntimeError, "non-persistent", "persistent=True"):
        tape.gradient(y, x)


@pytest.mark.parametrize("thing", ["abc", 1.0, [1.0, "a"]])
def test_tape_watch_non_tensor(thing):
    import transforms.tf as tf

    with tf.GradientTape() as tape, raises(ValueError, "not tf.Tensor or tf.Variable", "constant"):
        tape.watch(thing)


def test_tape_gradient_of_none():
    import transforms.tf as tf

    x = tf.Variable(3.0)
    with tf.GradientTape() as tape:
        x * x
    with raises(TypeError, "target", "None"):
        tape.gradient(None, x)


def test_tape_bad_unconnected_gradients():
    import transforms.tf as tf

    x = tf.Variable(3.0)
    with tf.GradientTape() as tape:
        y = x * x
    with raises(ValueError, "unconnected_gradients", "'bogus'", "UnconnectedGradients.ZERO"):
        tape.gradient(y, x, unconnected_gradients="bogus")


def test_variable_assign_wrong_shape_or_dtype():
    import transforms.tf as tf

    v = tf.Variable(3.0)
    with raises(ValueError, "shape", r"\(2,\)", r"\(\)"):
        v.assign(jnp.ones(2))
    with raises(ValueError, "shape", r"\(2,\)"):
        v.assign_add(jnp.ones(2))
    with raises(ValueError, "shape", r"\(2,\)"):
        v.assign_sub(jnp.ones(2))
    with raises(TypeError, "int32", "float32", "cast"):
        v.assign(tf.constant(1, dtype=tf.int32))
    assert float(v.numpy()) == 3.0  # every failed assign left it as it was


def test_failed_calls_leave_variables_and_tape_as_they_were():
    import transforms.tf as tf

    w = tf.Variable(jnp.ones(2, jnp.float32))
    with tf.GradientTape() as tape:
        a = w * 2.0
        n_nodes = len(tape._nodes)
        with pytest.raises(TypeError):
            tf.matmul(w, jnp.ones((3, 3), jnp.float32))  # a failing op records nothing
        with pytest.raises(ValueError):
            w.assign(jnp.ones(3))
        assert len(tape._nodes) == n_nodes
        s = tf.reduce_sum(a)
    np.testing.assert_array_equal(w.numpy(), np.ones(2))
    with raises(ValueError, "output_gradients", r"\(3,\)"):
        tape.gradient(s, w, output_gradients=jnp.ones(3))
    # The failed gradient call did not use up the non-persistent tape.
    np.testing.assert_allclose(tape.gradient(s, w), 2.0 * np.ones(2))
