"""`while_loop` and `fori_loop` with a say in how reverse mode stores the loop.

`jax.lax.while_loop` works as it is in every mode of `transforms` (reverse mode recomputes the
primal from at most `DEFAULT_SNAPSHOTS` snapshots: `rules/while_reverse.py`). These two
functions take the same arguments as JAX's plus two keywords:

- `snapshots=S`: the number of primal carries the backward pass keeps. Memory `S x carry`;
  recomputation about `(n / 2) log2 n` primal steps while `2 ** (S - 1) >= n`, growing towards
  `n ** 2 / 2` as `S` goes down to 1.
- `max_steps=N` (a Python int): the loop runs at most `N` iterations (like `tf.while_loop`'s
  `maximum_iterations`), and reverse mode stores each step's residuals once, in buffers of `N`
  steps (memory `N x residuals`), with no recomputation: as fast as the equivalent scan, and
  both passes run only the steps taken (`rules/while_stored.py`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
from jax import lax
from jax.ad_checkpoint import checkpoint_name

from .rules.while_reverse import DEFAULT_SNAPSHOTS, SNAPSHOTS_MARK
from .rules.while_stored import bounded_while_loop

__all__ = ["DEFAULT_SNAPSHOTS", "fori_loop", "while_loop"]


def _check(snapshots, max_steps):
    if snapshots is not None and (not isinstance(snapshots, int) or snapshots < 1):
        raise ValueError(f"snapshots must be a positive Python int, got {snapshots!r}")
    if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 0):
        raise ValueError(f"max_steps must be a non-negative Python int, got {max_steps!r}")


def while_loop(
    cond_fun: Callable,
    body_fun: Callable,
    init_val,
    *,
    snapshots: int | None = None,
    max_steps: int | None = None,
):
    """`jax.lax.while_loop(cond_fun, body_fun, init_val)`, with reverse mode's storage chosen.

    `snapshots`: how many primal carries reverse mode keeps (default `DEFAULT_SNAPSHOTS`);
    `max_steps`: stop after at most this many iterations and store residuals per step instead
    (then `snapshots` is unused). Forward mode is the same either way.

      >>> import jax.numpy as jnp, transforms
      >>> f = lambda x: transforms.while_loop(lambda c: c < 10.0, lambda c: c * x, 1.0,
      ...                                     snapshots=4)
      >>> float(transforms.grad(f)(1.5))  # 1.5 ** 6 > 10: d/dx x**6 = 6 x**5
      45.5625
    """
    _check(snapshots, max_steps)
    if max_steps is not None:
        return bounded_while_loop(cond_fun, body_fun, init_val, max_steps)
    if snapshots is None:
        return lax.while_loop(cond_fun, body_fun, init_val)

    def marked_cond(carry):
        return checkpoint_name(cond_fun(carry), f"{SNAPSHOTS_MARK}{snapshots}")

    return lax.while_loop(marked_cond, body_fun, init_val)


def fori_loop(
    lower,
    upper,
    body_fun: Callable,
    init_val,
    *,
    snapshots: int | None = None,
    max_steps: int | None = None,
):
    """`jax.lax.fori_loop(lower, upper, body_fun, init_val)` for bounds known only at run time.

    With `max_steps` (a Python int at least `upper - lower`), a scan of `max_steps` steps, the
    ones past `upper` skipped: residuals stored once per step. Otherwise a `while_loop` with
    `snapshots` (see `while_loop`). Python-int bounds give `lax.fori_loop` itself.
    """
    _check(snapshots, max_steps)
    if isinstance(lower, int) and isinstance(upper, int) and max_steps is None:
        return lax.fori_loop(lower, upper, body_fun, init_val)

    index_dtype = jnp.result_type(lower, upper)
    lower = jnp.asarray(lower, index_dtype)
    upper = jnp.asarray(upper, index_dtype)

    def cond(state):
        return state[0] < upper

    def body(state):
        i, x = state
        return i + 1, body_fun(i, x)

    _, out = while_loop(cond, body, (lower, init_val), snapshots=snapshots, max_steps=max_steps)
    return out
