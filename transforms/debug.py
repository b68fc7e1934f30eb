"""NaN hunting in derivative programs: `debug_nans`.

Off (the default) this module costs one boolean test per equation. On:

- every equation our rules emit carries the *user's* source location and a name saying which
  rule emitted it (`jvp(sqrt)`, `jvp(sqrt)/transpose(div)`), because the interpreters run each
  rule under `source_info_util.user_context` with the equation being differentiated;
- eager derivative programs are not compiled: they are traced to a jaxpr and evaluated one
  equation at a time, and the first equation that turns finite inputs into a NaN (or an Inf)
  raises `DerivativeNaNError` naming that primitive, the rule and the user's line.

Programs under an outer `jax.jit` are staged, not run, so they cannot be checked; call the
transform eagerly while hunting.
"""

from __future__ import annotations

import contextlib
import os

import jax
import numpy as np
from jax.extend.core import ClosedJaxpr
from jax.extend.core import primitives as P

from ._jax import source_info_util

ENABLED = False  # read on every equation by the interpreters; set through `debug_nans`

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_NULL = contextlib.nullcontext()
_USER_RULES = {"transforms_custom_lin"}  # equations whose transpose calls a user's custom_vjp bwd


class DerivativeNaNError(FloatingPointError):
    """A NaN or Inf appeared in a derivative program while `debug_nans` was on.

    Attributes: `primitive` (the operation that produced it), `rule` (which derivative rule
    emitted it, e.g. "jvp(sqrt)/transpose(div)", or "" for the function's own computation),
    `source` (the user's file:line) and `stage` (the program being run).
    """

    def __init__(self, primitive: str, rule: str, source: str, stage: str, kind: str):
        self.primitive, self.rule, self.source, self.stage = primitive, rule, source, stage
        where = f"by the derivative rule {rule}" if rule else "by the function's own computation"
        super().__init__(
            f"debug_nans: '{primitive}' produced {kind} from finite inputs, emitted {where}, "
            f"while running the {stage} program.\nThe user's code that introduced it: {source}\n"
            "Look for a point where the derivative is undefined or infinite (sqrt or log at 0, "
            "x**y at x=0, division by zero, overflow); guard it with jnp.where on the input "
            "(the 'double where' trick) or a custom_jvp rule."
        )


class debug_nans:  # noqa: N801 - used like a function and as a context manager
    """Raise `DerivativeNaNError` when a derivative program produces a NaN or an Inf.

    `transforms.debug_nans(True)` turns the mode on (and `False` off) for the whole process;
    `with transforms.debug_nans():` turns it on for a block and restores the previous setting.
    While on, eager `jvp`, `vjp`, `grad`, `linearize`, Jacobians and Hessians run their
    derivative programs op by op (slow: for debugging only) and report the first operation
    that turns finite inputs into NaN or Inf, the derivative rule that emitted it and the user's
    source line it came from. `infs=False` reports NaNs only.

    Example:
      >>> with transforms.debug_nans():
      ...     transforms.grad(lambda x: jnp.sqrt(x))(0.0)
      DerivativeNaNError: debug_nans: 'div' produced inf from finite inputs, emitted by the
      derivative rule jvp(sqrt), ... The user's code that introduced it: <stdin>:2 (<lambda>)
    """

    def __init__(self, enable: bool = True, *, infs: bool = True):
        global ENABLED, _CHECK_INFS
        self._prev = (ENABLED, _CHECK_INFS)
        ENABLED, _CHECK_INFS = bool(enable), bool(infs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global ENABLED, _CHECK_INFS
        ENABLED, _CHECK_INFS = self._prev
        return False


_CHECK_INFS = True


def debug_nans_enabled() -> bool:
    """Whether `debug_nans` is on."""
    return ENABLED


# --- attribution: emitted equations carry the user's source --------------------------------------


def attribute(eqn, transform: str | None = None):
    """A context under which new equations carry `eqn`'s source info (only when enabled).

    With `transform` ("jvp", "transpose"), the name stack records which rule emitted them.
    """
    if not ENABLED:
        return _NULL
    info = eqn.source_info
    name_stack = info.name_stack
    if transform is not None:
        name_stack = name_stack.extend(f"{transform}({eqn.primitive.name})")
    # A user's own backward rule runs as Python: its real stack names the user's line.
    traceback = None if eqn.primitive.name in _USER_RULES else info.traceback
    return source_info_util.user_context(traceback, name_stack=name_stack)


def _user_source(source_info) -> str:
    # JAX's own frames are already filtered; skip ours too, so the line is the user's.
    for frame in source_info_util.user_frames(source_info.traceback):
        if not frame.file_name.startswith(_PACKAGE_DIR):
            return f"{frame.file_name}:{frame.start_line} ({frame.function_name})"
    return "unknown (no user frame recorded)"


# --- checked evaluation ---------------------------------------------------------------------------

_INLINED = {P.jit_p: "jaxpr", P.closed_call_p: "call_jaxpr"}


def _bad(x, kind):
    if jax.dtypes.issubdtype(getattr(x, "dtype", np.float64), jax.dtypes.extended):
        return False  # a PRNG key: no NaNs to find, and NumPy cannot hold it
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.inexact):
        return False
    return bool(np.isnan(x).any()) if kind == "nan" else bool(np.isinf(x).any())


def _check(eqn, invals, outs, stage):
    kinds = ("nan", "inf") if _CHECK_INFS else ("nan",)
    for kind in kinds:
        if any(_bad(o, kind) for o in outs) and not any(_bad(x, kind) for x in invals):
            rule = str(eqn.source_info.name_stack)
            rule = "/".join(p for p in rule.split("/") if "(" in p)
            raise DerivativeNaNError(
                eqn.primitive.name, rule, _user_source(eqn.source_info), stage, kind
            )


def checked_eval(jaxpr, consts, args, stage: str) -> list:
    """Evaluate `jaxpr` eagerly one equation at a time, checking every output for NaN/Inf."""

    from .interpreter import bind, interpret

    def step(eqn, invals):
        inner = _INLINED.get(eqn.primitive)
        if inner is not None:  # look inside nested jits instead of running them whole
            closed = eqn.params[inner]
            if isinstance(closed, ClosedJaxpr):
                return checked_eval(closed.jaxpr, closed.consts, invals, stage)
            return checked_eval(closed, (), invals, stage)
        outs = bind(eqn, invals)
        _check(eqn, invals, outs, stage)
        return outs

    return interpret(jaxpr, consts, args, step)


def checked(fn, stage: str):
    """`fn` (a function of pytrees of arrays), traced with attribution and run checked."""

    def run(*args):
        closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        flat_args = jax.tree_util.tree_leaves(args)
        outs = checked_eval(closed.jaxpr, closed.consts, flat_args, stage)
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), outs)

    return run
