"""Where JAX raises, we raise its exception type with its sentence (ours may add the way out).

Each case runs the same misuse through JAX and through `transforms`: our exception must be an
instance of JAX's exception type (or of a base class JAX's derives from, for JAX's own
subclasses of TypeError), and our message must contain JAX's first sentence (whitespace aside;
where JAX prints the offending value, up to it).
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import transforms as T

x2 = jnp.ones(2)
_OBJ = object()


def _jax_sentence(msg: str) -> str:
    msg = msg.strip().split("\n")[0]
    # where JAX goes on to print the offending value or its tracer type
    msg = re.split(r" with value | Got primal dtype|\.Got | Output was \(|got type <", msg)[0]
    return msg[:120]


def _squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


def _pullback_of(M, f, *args):
    return M.vjp(f, *args)[1]


def _linearized(M, f, *args):
    return M.linearize(f, *args)[1]


CASES = {
    "grad_non_scalar": lambda M: M.grad(lambda x: 2.0 * x)(x2),
    "grad_tuple_output": lambda M: M.grad(lambda x: (jnp.sum(x), jnp.sum(x)))(x2),
    "grad_integer_output": lambda M: M.grad(lambda x: jnp.sum(x).astype(jnp.int32))(x2),
    "grad_complex_output": lambda M: M.grad(lambda x: x * 1j)(1.0),
    "grad_integer_input": lambda M: M.grad(lambda x: x * 2.0)(1),
    "value_and_grad_integer_input": lambda M: M.value_and_grad(lambda x: x * 2.0)(1),
    "jacrev_integer_input": lambda M: M.jacrev(lambda x: x * 2.0)(1),
    "jacfwd_integer_input": lambda M: M.jacfwd(lambda x: x * 2.0)(1),
    "hessian_integer_input": lambda M: M.hessian(lambda x: x * 2.0)(1),
    "grad_bool_input": lambda M: M.grad(lambda x: x)(True),
    "grad_string_input": lambda M: M.grad(lambda x: x)("a"),
    "grad_object_input": lambda M: M.grad(lambda x: 1.0)(_OBJ),
    "vjp_string_input": lambda M: M.vjp(lambda x: x, "a"),
    "jvp_string_input": lambda M: M.jvp(lambda x: x, ("a",), ("a",)),
    "holomorphic_real_input": lambda M: M.grad(lambda x: x, holomorphic=True)(1.0),
    "holomorphic_real_output": lambda M: M.grad(jnp.real, holomorphic=True)(1.0 + 1j),
    "jacfwd_complex_input": lambda M: M.jacfwd(lambda x: x)(1j),
    "jacrev_complex_output": lambda M: M.jacrev(lambda x: x * 1j)(1.0),
    "argnums_too_large": lambda M: M.grad(lambda x: x, argnums=(0, 3))(1.0),
    "argnums_too_negative": lambda M: M.grad(lambda x: x, argnums=-2)(1.0),
    "argnums_not_int": lambda M: M.grad(lambda x: x, argnums="a"),
    "has_aux_not_a_pair": lambda M: M.grad(lambda x: x * 2.0, has_aux=True)(1.0),
    "has_aux_triple": lambda M: M.grad(lambda x: (x, 1.0, 2.0), has_aux=True)(1.0),
    "jvp_tangent_shape": lambda M: M.jvp(jnp.sin, (1.0,), (x2,)),
    "jvp_tangent_dtype": lambda M: M.jvp(jnp.sin, (1.0,), (jnp.float32(1.0),)),
    "jvp_integer_primal": lambda M: M.jvp(lambda x: x * 2, (1,), (1.0,)),
    "jvp_float0_tangent": lambda M: M.jvp(jnp.sin, (1.0,), (np.zeros((), jax.dtypes.float0),)),
    "jvp_tree_mismatch": lambda M: M.jvp(jnp.sin, (1.0,), (1.0, 2.0)),
    "jvp_not_tuples": lambda M: M.jvp(jnp.sin, 1.0, 1.0),
    "pullback_two_arguments": lambda M: _pullback_of(M, lambda x: (x, x), 1.0)(1.0, 1.0),
    "pullback_cotangent_tree": lambda M: _pullback_of(M, jnp.sin, 1.0)((1.0,)),
    "pullback_cotangent_shape": lambda M: _pullback_of(M, jnp.sin, np.float32(1))(x2),
    "pullback_cotangent_dtype": lambda M: _pullback_of(M, jnp.sin, np.float32(1))(jnp.int32(1)),
    "linearized_tree": lambda M: _linearized(M, jnp.multiply, 1.0, 2.0)(1.0),
    "linearized_shape": lambda M: _linearized(M, jnp.multiply, 1.0, 2.0)(x2, 1.0),
    "transpose_cotangent_tree": lambda M: M.linear_transpose(lambda x: 2 * x, 1.0)((1.0,)),
    "transpose_cotangent_shape": lambda M: M.linear_transpose(lambda x: 2 * x, 1.0)(x2),
    "transpose_of_nonlinear": lambda M: M.linear_transpose(jnp.sin, 1.0)(1.0),
}


def _raised(call):
    try:
        call()
    except Exception as e:  # noqa: BLE001 - the exception is the result
        return e
    raise AssertionError("no exception raised")


def _jax_type(e):
    # JAX's own subclasses of TypeError (InvalidInputException) are not public: their base is.
    t = type(e)
    while t.__module__.startswith("jax"):
        t = t.__base__
    return t


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_exception_type_and_sentence_as_jax(name):
    theirs = _raised(lambda: CASES[name](jax))
    ours = _raised(lambda: CASES[name](T))
    assert isinstance(ours, _jax_type(theirs)), (type(ours), type(theirs), str(ours))
    sentence = _jax_sentence(str(theirs))
    assert _squash(sentence) in _squash(str(ours)), f"JAX: {sentence!r}\nours: {ours}"
