"""Exceptions that say what went wrong and what to do instead."""

from __future__ import annotations

import jax


class TracedControlFlowError(jax.errors.ConcretizationTypeError):
    """Python control flow (`if`, `while`, `bool()`, `int()`) ran on a value with no concrete value.

    Outside `jit`, on concrete arguments, our transforms take such branches as JAX does (see
    `transforms.concrete`). Under `jax.jit` or `jax.vmap` the value is abstract, and this error
    is raised. It is an instance of the exception JAX raised too (`TracerBoolConversionError`
    for `bool()`, `ConcretizationTypeError` otherwise), and its message starts with JAX's.
    """

    def __init__(self, cause: Exception):
        msg = (
            f"{cause}\n\n"
            "(transforms) Python control flow on a traced value: under jax.jit or jax.vmap "
            "(or on arguments without concrete values) `if x > 0`, `while`, `bool(x)` or "
            "`int(x)` on a value that depends on the arguments cannot be decided, as in JAX. "
            "Use jax.lax.cond / jax.lax.switch or jnp.where for branches, jax.lax.while_loop / "
            "fori_loop / scan for loops, or mark the argument static. Outside jit, on concrete "
            "arguments, transforms.grad and the other transforms take the branch of the values "
            "given."
        )
        Exception.__init__(self, msg)


_combined: dict[type, type] = {}


def traced_control_flow_error(cause: Exception) -> TracedControlFlowError:
    """A `TracedControlFlowError` that is also an instance of `cause`'s (JAX's) type."""
    if isinstance(cause, TracedControlFlowError):  # raised by a nested transform already
        return cause
    kind = type(cause)
    if kind is jax.errors.ConcretizationTypeError or not issubclass(
        kind, jax.errors.ConcretizationTypeError
    ):
        return TracedControlFlowError(cause)
    combined = _combined.get(kind)
    if combined is None:
        namespace = {"__init__": TracedControlFlowError.__init__, "__str__": Exception.__str__}
        combined = _combined[kind] = type(kind.__name__, (kind, TracedControlFlowError), namespace)
        combined.__module__ = __name__
    return combined(cause)


class MissingRuleError(NotImplementedError):
    """A primitive has no differentiation rule for the mode that needs one.

    `primitive` is the primitive's name; `mode` is "forward" or "reverse".
    """

    def __init__(self, primitive: str, mode: str, detail: str = "", *, transpose: bool = False):
        self.primitive, self.mode = primitive, mode
        # JAX's sentence first: it names the missing transpose rule this way.
        jax_sentence = (
            f"Transpose rule (for reverse-mode differentiation) for '{primitive}' not implemented. "
            if transpose
            else ""
        )
        super().__init__(
            f"{jax_sentence}Differentiation rule for '{primitive}' not implemented "
            f"({mode} mode).{detail} "
            "Give the computation a rule with jax.custom_jvp (both modes) or jax.custom_vjp "
            "(reverse mode only), or register one in transforms.jvp.jvp_rules / "
            "transforms.transpose.transpose_rules."
        )
