"""What converted code calls (the converter binds this module as `ag__`): each statement
decides, on every call, Python or `jax.lax`.

The converter (`converter.py`) turns `if`, `while` and `for` into calls of `if_stmt`,
`while_stmt` and `for_stmt` with the statement's blocks as functions, and the variables the
blocks assign as *state* (`get_state()` reads them, `set_state(values)` writes them back). When
the condition (or the iterated value) is a concrete Python value the statement runs as plain
Python, so Python values still unroll; when it is a JAX tracer (a `transforms.tf` Tensor holding
one included) the blocks are traced once each into `lax.cond`, `lax.while_loop` or `lax.scan`,
with the state as their operands and results: `branches.py` holds the conditionals, `loops.py`
the loops, `values.py` what both work on.
"""

from __future__ import annotations

import builtins

import jax
import numpy as np

from .branches import and_, if_exp, if_stmt, not_, or_
from .calls import callee
from .loops import TracedRange, for_stmt, range_, set_loop_options, while_stmt
from .values import Undefined, UndefinedReturn, is_traced, ret, unwrap

__all__ = [
    "TracedRange",
    "Undefined",
    "UndefinedReturn",
    "and_",
    "callee",
    "for_stmt",
    "if_exp",
    "if_stmt",
    "is_traced",
    "not_",
    "or_",
    "print_",
    "range_",
    "ret",
    "set_loop_options",
    "while_stmt",
]


# --------------------------------------------------------------------------------------------------
# print
# --------------------------------------------------------------------------------------------------


def print_(fn, *args, **kwargs):
    """`fn(*args)` where `fn` may be `print`: with traced arguments, print their values when the
    program runs (`jax.debug.callback`), not once while tracing."""
    if fn is not builtins.print or not builtins.any(is_traced(a) for a in args):
        return fn(*args, **kwargs)
    traced = [i for i, a in enumerate(args) if is_traced(a)]
    values = [unwrap(args[i]) for i in traced]

    def show(*arrays):
        out = list(args)
        for i, a in zip(traced, arrays, strict=True):
            out[i] = np.asarray(a)
        builtins.print(*out, **kwargs)

    jax.debug.callback(show, *values)
