"""Exceptions that say what went wrong and what to do instead."""

from __future__ import annotations

import jax


class TracedControlFlowError(jax.errors.ConcretizationTypeError):
    """Python control flow (`if`, `while`, `bool()`, `int()`) ran on a traced value.

    `transforms` traces a function before differentiating it, so a value that depends on the
    arguments is abstract while Python runs. Subclasses JAX's `ConcretizationTypeError`, so code
    that catches JAX's error catches this one.
    """

    def __init__(self, cause: Exception):
        msg = (
            "Python control flow on a traced value: `transforms` traces the function into a "
            "jaxpr before differentiating it, so `if x > 0`, `while`, `bool(x)` or `int(x)` on "
            "a value that depends on the arguments cannot be decided. Use jax.lax.cond / "
            "jax.lax.switch or jnp.where for branches, jax.lax.while_loop / fori_loop / scan for "
            "loops, or mark the argument static; or run the code eagerly under "
            "transforms.tf.GradientTape, which records ops as they execute.\n\n"
            f"The error JAX raised while tracing:\n{cause}"
        )
        Exception.__init__(self, msg)


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
