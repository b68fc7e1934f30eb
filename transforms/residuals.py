"""Which known values the linear part stores: recompute cheap residuals from other residuals.

Partial evaluation saves every known value the linear part reads. Many of those are cheap
functions of values that are saved anyway: the quotient rule's coefficient `-(x / y) / y`
next to `x / y` itself, a broadcast of a saved row, a negation. Storing them costs a full array
each for the whole backward pass; recomputing them costs one fused element-wise pass when
the linear part reads them (XLA fuses the recomputation into its consumer, so the value is
never materialised at all).

`recompute_cheap` moves such equations to the linear side. It only ever removes residuals:
a residual is recomputed when it can be rebuilt, through at most `MAX_DEPTH` arithmetic or
layout equations, from values that stay saved (or literals). Transcendental functions are not
recomputed (they cost real time on every backward pass), nor is anything with an inner
program or an effect. The same operations on the same saved inputs give the same bits, so
the derivative does not change, not even in its last float32 digit.

`ENABLED = False` (or `TRANSFORMS_RECOMPUTE_RESIDUALS=0` in the environment) turns the pass
off, for debugging; call `engine.clear_caches()` after changing it.
"""

from __future__ import annotations

import os

from jax.extend.core import Literal

ENABLED = os.environ.get("TRANSFORMS_RECOMPUTE_RESIDUALS", "1") != "0"

MAX_DEPTH = 4  # equations per recomputed residual: bounds the work added to the backward pass

# Arithmetic and layout: each is one cheap element-wise (or index-only) loop that fuses into
# whatever reads it.
_CHEAP = frozenset(
    {
        "neg",
        "add",
        "add_any",
        "sub",
        "mul",
        "div",
        "max",
        "min",
        "abs",
        "sign",
        "square",
        "integer_pow",
        "select_n",
        "convert_element_type",
        "broadcast_in_dim",
        "reshape",
        "squeeze",
        "expand_dims",
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "and",
        "or",
        "not",
        "copy",
        "copy_p",
    }
)


def _cheap(eqn) -> bool:
    return eqn.primitive.name in _CHEAP and not eqn.effects


def recompute_cheap(known_eqns: list, linear_eqns: list, residuals: list):
    """Returns `(linear_eqns, residuals)` with cheap residuals recomputed on the linear side.

    `known_eqns` define the residuals (and are left unchanged: the caller's dead-code
    elimination drops what no known output needs any more).
    """
    if not ENABLED or not residuals:
        return linear_eqns, residuals
    producer = {}
    for i, eqn in enumerate(known_eqns):
        for v in eqn.outvars:
            producer[v] = i
    saved = set(residuals)
    recomputed: set[int] = set()  # indices into known_eqns moved to the linear side
    # Latest first: a late residual may be rebuilt from earlier ones that stay saved, and an
    # earlier one removed after it is itself rebuilt from saved values, so the order of the
    # moved equations (the known order) stays valid.
    for v in sorted(residuals, key=lambda v: producer.get(v, -1), reverse=True):
        chain = _rebuild(v, producer, known_eqns, saved - {v})
        if chain is not None:
            saved.discard(v)
            recomputed.update(chain)
    if not recomputed:
        return linear_eqns, residuals
    moved = [known_eqns[i] for i in sorted(recomputed)]
    return [*moved, *linear_eqns], [v for v in residuals if v in saved]


def _rebuild(v, producer, known_eqns, saved) -> list[int] | None:
    """The known equations that rebuild `v` from `saved` values, or None past MAX_DEPTH."""
    chain: list[int] = []
    seen = set()
    todo = [v]
    while todo:
        u = todo.pop()
        if type(u) is Literal or u in saved or u in seen:
            continue
        seen.add(u)
        i = producer.get(u)
        if i is None or not _cheap(known_eqns[i]) or len(chain) == MAX_DEPTH:
            return None
        chain.append(i)
        todo.extend(known_eqns[i].invars)
    return chain
