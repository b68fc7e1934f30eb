"""A tape's recorded ops replayed as one pure function of the sources' values (`_Plan`), and the
cache that keys replays by the ops' functions and avals so a repeated gradient reuses
its program."""

from __future__ import annotations

import threading
import types
from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..zeros import explicit_sharding
from .tensor import is_float


class _Unkeyable(Exception):
    """An op function closes over something we cannot key on (an array, a Python object)."""


_library_fns: dict = {}


def _library_fn(v) -> bool:
    """Is `v` a function of jnp / lax / jax.nn / ... (stable, so keyed by identity)?"""
    if not _library_fns:  # built on first use: it walks a few large modules
        for m in (jnp, lax, jax.nn, jax.scipy.special, np):
            for n in dir(m):
                f = getattr(m, n, None)
                if callable(f):
                    _library_fns[id(f)] = f
    return _library_fns.get(id(v)) is v


def _static_key(v):
    if isinstance(v, float):  # repr tells -0.0 from 0.0 (equal as keys otherwise)
        return ("float", repr(v))
    if v is None or v is Ellipsis or isinstance(v, bool | int | complex | str):
        return (type(v).__name__, v)
    if isinstance(v, np.dtype):
        return ("dtype", v.str)
    if isinstance(v, type):
        return ("type", v)
    if isinstance(v, slice):
        return ("slice", _static_key(v.start), _static_key(v.stop), _static_key(v.step))
    if isinstance(v, tuple):
        return ("tuple", *(_static_key(x) for x in v))
    if isinstance(v, types.FunctionType):
        return _fn_key(v)
    if _library_fn(v):
        return ("lib", id(v))
    raise _Unkeyable


def _fn_key(fn):
    """Equal for op functions that compute the same thing: same code, same static closure."""
    if isinstance(fn, types.FunctionType):
        cells = tuple(_static_key(c.cell_contents) for c in fn.__closure__ or ())
        defaults = tuple(_static_key(d) for d in fn.__defaults__ or ())
        kw = tuple((k, _static_key(d)) for k, d in sorted((fn.__kwdefaults__ or {}).items()))
        return ("fn", fn.__code__, cells, defaults, kw)
    return _static_key(fn)


class _ReplayCache:
    """Traced replay programs by (recorded program structure, input types): a training loop
    records the same ops every step, so its gradient program is traced once, not per step."""

    def __init__(self, maxsize=256):
        self.data: OrderedDict = OrderedDict()
        self.maxsize = maxsize
        self.lock = threading.Lock()

    def get(self, key):
        with self.lock:
            value = self.data.get(key)
            if value is not None:
                self.data.move_to_end(key)
            return value

    def put(self, key, value):
        with self.lock:
            self.data[key] = value
            if len(self.data) > self.maxsize:
                self.data.popitem(last=False)


_replays = _ReplayCache()


def _aval_key(x):
    a = jax.typeof(x)
    return (a.shape, a.dtype.str, a.weak_type, explicit_sharding(a))


class _Node:
    __slots__ = ("fn", "inputs", "outputs")

    def __init__(self, fn, inputs, outputs):
        self.fn, self.inputs, self.outputs = fn, inputs, outputs


class _Plan:
    """The recorded ops between some leaves (source tensors) and some targets, as a program.

    The program holds op functions and tensor ids only (no arrays), so a gradient op recorded on
    an outer tape does not keep the inner tape's buffers alive.
    """

    def __init__(self, nodes, leaves, targets):
        leaf_ids = {}
        for t in leaves:
            leaf_ids.setdefault(id(t), len(leaf_ids))
        self.leaf_tensors = list({id(t): t for t in leaves}.values())
        mask = {tid: 1 << i for tid, i in leaf_ids.items()}
        active = []
        for node in nodes:
            m = 0
            for t in node.inputs:
                m |= mask.get(id(t), 0)
            if m:
                active.append(node)
                for o in node.outputs:
                    if id(o) not in leaf_ids and is_float(o.dtype):
                        mask[id(o)] = m
        self.target_masks = [mask.get(id(t), 0) if is_float(t.dtype) else 0 for t in targets]
        connected = 0
        for m in self.target_masks:
            connected |= m
        self.targets = [t for t, m in zip(targets, self.target_masks, strict=True) if m]
        need = {id(t) for t in self.targets}
        needed = []
        for node in reversed(active):
            if any(id(o) in need for o in node.outputs):
                needed.append(node)
                need.update(id(t) for t in node.inputs if id(t) in mask)
        needed.reverse()
        # Leaves the targets reach, in leaf order; their bits, for mapping back to sources.
        self.leaves = [t for t in self.leaf_tensors if mask[id(t)] & connected]
        self.leaf_bits = [mask[id(t)] for t in self.leaves]
        produced = set(leaf_ids)
        boundary = {}
        for node in needed:
            for t in node.inputs:
                if id(t) not in produced and id(t) not in boundary:
                    boundary[id(t)] = t
            produced.update(id(o) for o in node.outputs)
        self.boundary = list(boundary.values())
        leaf_set = set(leaf_ids)
        self.program = [
            (
                n.fn,
                tuple(id(t) for t in n.inputs),
                tuple(None if id(o) in leaf_set else id(o) for o in n.outputs),
            )
            for n in needed
        ]
        self.in_ids = [id(t) for t in self.leaves] + [id(t) for t in self.boundary]
        self.out_ids = [id(t) for t in self.targets]
        self._key = None

    def key(self):
        """The program's structure (ops and wiring, not values); None when it has no key."""
        if self._key is None:
            number = {tid: i for i, tid in enumerate(self.in_ids)}
            try:
                ops = []
                for fn, ins, outs in self.program:
                    fn_k = _fn_key(fn)
                    in_k = tuple(number[i] for i in ins)
                    for o in outs:
                        if o is not None:
                            number[o] = len(number)
                    out_k = tuple(None if o is None else number[o] for o in outs)
                    ops.append((fn_k, in_k, out_k))
                self._key = (tuple(ops), tuple(number[i] for i in self.out_ids))
            except _Unkeyable:
                self._key = False
        return self._key or None

    def closed(self, values):
        """The replay as a closed jaxpr over (leaves, boundary), traced once per structure."""
        key = self.key()
        key = key and (key, tuple(_aval_key(v) for v in values))
        closed = _replays.get(key) if key else None
        if closed is None:
            replay_flat = self.replay(())  # every input a traced argument, none held fixed
            closed = jax.make_jaxpr(replay_flat)(*[_sds(v) for v in values])
            if key:
                _replays.put(key, closed)
        return closed

    def replay(self, boundary_values):
        """A pure function: leaf values -> target values (boundary tensors held fixed)."""
        program, in_ids, out_ids = self.program, self.in_ids, self.out_ids

        def f(*leaf_values):
            env = dict(zip(in_ids, (*leaf_values, *boundary_values), strict=True))
            for fn, ins, outs in program:
                res = fn(*[env[i] for i in ins])
                res = res if isinstance(res, tuple | list) else (res,)
                for oid, v in zip(outs, res, strict=True):
                    if oid is not None:
                        env[oid] = v
            return [env[i] for i in out_ids]

        return f


def _sds(v):
    # On Explicit mesh axes the layout is part of the type: a replay traced without it would
    # differentiate a sharded Variable as if it were whole (and a contraction over its split
    # dimension would have no defined output layout).
    a = jax.typeof(v)
    return jax.ShapeDtypeStruct(
        a.shape, a.dtype, weak_type=a.weak_type, sharding=explicit_sharding(a)
    )
