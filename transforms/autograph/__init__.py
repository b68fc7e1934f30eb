"""AutoGraph for JAX: Python control flow on traced values becomes `lax.cond` / `lax.while_loop` /
`lax.scan`, decided per call (Python values keep Python semantics and unroll).

`converter` rewrites the function's source; `runtime` holds what the rewritten code calls
(`branches`: conditionals; `loops`: loops; `values`: what both work on).
"""

from __future__ import annotations

import functools
import sys
import types
import warnings

from .converter import ConversionError, convert
from .runtime import set_loop_options

__all__ = ["ConversionError", "autograph", "set_loop_options"]


def autograph(fun=None, *, convert_print=True):
    """Convert `fun`'s Python control flow so that it also works on traced values.

    `if`/`elif`/`else`, `while`, `for`, `break`, `continue`, `return`, `and`/`or`/`not` and
    `x if c else y` on a JAX tracer become `lax.cond`, `lax.while_loop` and `lax.scan` (a `for`
    over an array loops over its leading axis; `range` with a traced bound is a while loop). On
    Python values they run as Python, so Python loops still unroll. `print` of traced values
    prints when the program runs. The result works under `jax.jit`, `jax.vmap` and
    `transforms.grad` and friends. Usable as a decorator.

    Args:
      fun: a Python function or method defined with `def` (its source must be available).
      convert_print: turn `print(...)` of traced values into a run-time print.

    Returns:
      The converted function (same signature).

    Raises:
      ConversionError: `fun` cannot be converted (no source, a lambda, a generator).

    Example:
      >>> @transforms.autograph
      ... def f(x):
      ...     return x if x > 0 else -x
      >>> jax.jit(f)(-2.0)
      Array(2., dtype=float32, weak_type=True)
    """
    if fun is None:
        return functools.partial(autograph, convert_print=convert_print)
    return convert(fun, convert_print=convert_print)


def convert_for_tf_function(fun):
    """`fun` converted for `transforms.tf.function` (TF's AutoGraph: `print` stays Python's, run
    while tracing). A function that cannot be converted runs as it is, with TF's warning."""
    try:
        return convert(fun, convert_print=False)
    except ConversionError as e:
        warnings.warn(
            f"AutoGraph could not transform {fun!r} and will run it as-is. Cause: {e}",
            stacklevel=3,
        )
        return fun


class _CallableModule(types.ModuleType):
    """`transforms.autograph` is this package and, called, the `autograph` function."""

    def __call__(self, fun=None, *, convert_print=True):
        return autograph(fun, convert_print=convert_print)


sys.modules[__name__].__class__ = _CallableModule
