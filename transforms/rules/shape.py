"""Stacking, splitting and tiling primitives (`stack`, `unstack`, `split`, `tile`), and
`optimization_barrier`. All are linear: the transpose routes each cotangent slice back."""

from __future__ import annotations

import numpy as np
from jax import lax
from jax.extend.core import primitives as P

from ..jvp import defjvp_zero, jvp_rules
from ..transpose import deflinear, is_undefined, transpose_rules
from ..zeros import Zero, instantiate


def _stack_transpose(ct, *xs, axis):
    pieces = lax.unstack_p.bind(ct, axis=axis)
    return [p if is_undefined(x) else None for p, x in zip(pieces, xs, strict=True)]


def _stack_jvp(primals, tangents, *, axis):
    out = lax.stack_p.bind(*primals, axis=axis)
    if all(type(t) is Zero for t in tangents):
        return out, Zero(_tangent_aval(out))
    return out, lax.stack_p.bind(*map(instantiate, tangents), axis=axis)


jvp_rules[lax.stack_p] = _stack_jvp
transpose_rules[lax.stack_p] = _stack_transpose


def _unstack_transpose(cts, x, *, axis):
    shape = x.aval.shape
    piece_shape = shape[:axis] + shape[axis + 1 :]
    cts = [lax.full(piece_shape, 0, x.aval.dtype) if type(c) is Zero else c for c in cts]
    return [lax.stack_p.bind(*cts, axis=axis)]


deflinear(lax.unstack_p, _unstack_transpose)


def _split_transpose(cts, x, *, sizes, axis):
    shape = x.aval.shape
    pieces = []
    for c, size in zip(cts, sizes, strict=True):
        if type(c) is Zero:
            c = lax.full((*shape[:axis], int(size), *shape[axis + 1 :]), 0, x.aval.dtype)
        pieces.append(c)
    return [lax.concatenate(pieces, axis)]


deflinear(lax.split_p, _split_transpose)


def _tile_transpose(ct, x, *, reps):
    # Output axis i has size reps[i] * d[i] laid out as reps[i] copies of d[i]: view it as
    # (reps[i], d[i]) and sum the copies.
    in_shape = x.aval.shape
    padded = (1,) * (len(reps) - len(in_shape)) + tuple(in_shape)
    interleaved = tuple(n for r, d in zip(reps, padded, strict=True) for n in (int(r), int(d)))
    summed = lax.reduce_sum(lax.reshape(ct, interleaved), tuple(range(0, 2 * len(reps), 2)))
    return [lax.reshape(summed, in_shape)]


deflinear(lax.tile_p, _tile_transpose)


def _barrier_jvp(primals, tangents):
    outs = lax.optimization_barrier_p.bind(*primals)
    nz = [t for t in tangents if type(t) is not Zero]
    nz_out = iter(lax.optimization_barrier_p.bind(*nz) if nz else [])
    return outs, [t if type(t) is Zero else next(nz_out) for t in tangents]


jvp_rules[lax.optimization_barrier_p] = _barrier_jvp
transpose_rules[lax.optimization_barrier_p] = lambda cts, *xs: [
    None if not is_undefined(x) or type(c) is Zero else c for c, x in zip(cts, xs, strict=True)
]

defjvp_zero(lax.mulhi_p)


def _tangent_aval(x):
    import jax

    return jax.typeof(x).to_tangent_aval()


_unused = np


# device_put moves values between devices; on values it is the identity, so tangents travel the
# same way and cotangents come straight back (XLA places them where they are consumed).
def _device_put_jvp(primals, tangents, **params):
    outs = P.device_put_p.bind(*primals, **params)
    nz = [i for i, t in enumerate(tangents) if type(t) is not Zero]
    moved = P.device_put_p.bind(
        *(tangents[i] for i in nz),
        **{k: tuple(v[i] for i in nz) if isinstance(v, tuple) else v for k, v in params.items()},
    )
    moved = dict(zip(nz, moved, strict=True))
    return outs, [moved.get(i, t) for i, t in enumerate(tangents)]


jvp_rules[P.device_put_p] = _device_put_jvp
transpose_rules[P.device_put_p] = lambda cts, *xs, **_: [
    None if not is_undefined(x) or type(c) is Zero else c for c, x in zip(cts, xs, strict=True)
]
