"""Eager calls of whole transforms: one cached compiled program per traced structure.

A nested or vmapped transform run op by op costs far more than tracing the user's function once;
so an eager `jacfwd`, `hessian` or `hvp` traces the function, keys a compiled program on its
jaxpr and constants, and runs that.
"""

from __future__ import annotations

from functools import partial, wraps

import jax
import numpy as np
from jax import tree_util

from . import concrete, engine
from .arguments import _argnums_partial, _flatten_args, _norm_argnums


def _has_tracer(tree) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in tree_util.tree_leaves(tree))


def _try_compiled(tag, f, dyn: tuple, extra, run):
    """Eagerly, `run(g, dyn, extra)` as one compiled program cached on the traced jaxpr of `f`.

    `g` stands in for `f` (same pytrees in and out), rebuilt from its jaxpr with the constants as
    inputs: a changed closure changes the jaxpr or the constants, never serves a stale program.
    Tracing `f` alone is much cheaper than running a vmapped or nested transform op by op.
    Returns `engine.MISS` under an outer trace, or when `f` cannot be traced; the caller then
    runs the transform directly (and raises whatever error is due). Not compiled (yet, or not
    keyable), the transform runs op by op on the traced program (`engine.run_compiled`).
    """
    if _has_tracer((dyn, extra)) or engine.running_op_by_op():
        return engine.MISS
    try:
        flat, in_tree = _flatten_args(dyn)
        # The whole transform differentiates `f` twice for a Hessian (rule_first.py).
        name = tag if isinstance(tag, str) else tag[0]
        order = 2 if name in ("hessian", "hvp") else 1
        closed, out_tree = concrete.trace_flat(f, in_tree, flat, order=order)
    except Exception:  # noqa: BLE001 - the direct path reports the error properly
        return engine.MISS
    extra_flat, extra_tree = tree_util.tree_flatten(extra)

    def program(g_flat, args_flat, extra_flat):
        def g(*args):
            return tree_util.tree_unflatten(out_tree, g_flat(*tree_util.tree_flatten(args)[0]))

        args = tree_util.tree_unflatten(in_tree, args_flat)
        return run(g, args, tree_util.tree_unflatten(extra_tree, extra_flat))

    # The compiled program takes `extra` (hvp's tangents) as inputs of the types and placements
    # it was lowered for: another placement (a tangent split otherwise on a mesh) is another
    # program.
    extra_types = tuple((jax.typeof(x), getattr(x, "sharding", None)) for x in extra_flat)
    tag = (tag, in_tree, out_tree, extra_tree, extra_types)
    return engine.run_compiled(tag, closed, program, flat, extra_flat)


def _compiled_when_eager(api_name: str, config: tuple, fun, argnums, direct, make):
    """Wrap `direct` (the transform of `fun`) so eager calls run one cached compiled program.

    `make(g, argnums)` builds the same transform of another function; `config` lists every
    other option it depends on (it is part of the cache key).
    """
    argnums_t = _norm_argnums(argnums, api_name)
    int_argnums = isinstance(argnums, int | np.integer)

    @wraps(fun)
    def call(*args, **kwargs):
        if _has_tracer((args, kwargs)):
            return direct(*args, **kwargs)
        f = partial(fun, **kwargs) if kwargs else fun
        try:
            f_partial, dyn = _argnums_partial(f, args, argnums_t, api_name)
        except (TypeError, ValueError):  # the direct path raises it, with its own message
            return direct(*args, **kwargs)
        # Inside the program `g` takes the differentiated arguments only, in order.
        g_argnums = 0 if int_argnums else tuple(range(len(dyn)))
        out = _try_compiled(
            (api_name, config, g_argnums),
            f_partial,
            dyn,
            None,
            lambda g, dyn, _: make(g, g_argnums)(*dyn),
        )
        return direct(*args, **kwargs) if out is engine.MISS else out

    return call
