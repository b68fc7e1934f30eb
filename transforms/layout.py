"""Cancel transposes around elementwise regions of emitted programs (`sink_transposes`).

Why: JAX's batching rules move the batch axis with `transpose`s, so a vmapped push-forward
(`jacfwd`) often reads `transpose(x)` into elementwise work whose result is transposed back
(jacfwd's final moveaxis). XLA folds a single-use transpose into the `dot_general` producing
`x`, and the fused elementwise loop then reads its input strided: `jacfwd` of
`tanh(A @ x) * x` ran ~1.3x as long as JAX's. Computing the region in the untransposed layout
drops both transposes; a `broadcast_in_dim`, an `iota` or a scalar is re-laid-out for free.

The pass groups elementwise equations into connected regions (union-find over their shared
variables), and for each region counts the transposes a rewrite in a candidate layout removes
(transposes of region inputs that only the region reads; transposes of region outputs that
undo the layout) against those it adds (inputs that cannot be re-laid-out for free; outputs
used other than through a transpose). It rewrites only when the count drops. Values built from
iotas, broadcasts and scalars alone (an identity basis) are not region members: they are
re-emitted in the needed layout, so a region never forces a transpose onto their other users.
Linear time, iterative throughout; only the top-level equations are rewritten. Results, dtypes,
weak types and shapes of the program's outputs never change.
"""

from __future__ import annotations

from collections import defaultdict

import jax
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal, Var
from jax.extend.core import primitives as P
from jax.tree_util import tree_flatten, tree_unflatten

from ._jax import core as _core
from ._jax import partial_eval as _pe
from .interpreter import dce_eqns, eval_jaxpr
from .tracing import shape_dtype, trace_to_closed

__all__ = ["sink_transposes", "call_simplified"]

_ELEMENTWISE_NAMES = (
    "abs acos acosh add add_jaxvals and asin asinh atan atan2 atanh bessel_i0e bessel_i1e cbrt "
    "ceil clamp clz complex conj convert_element_type copy cos cosh digamma div eq erf erf_inv "
    "erfc exp exp2 expm1 floor ge gt igamma igamma_grad_a igammac imag integer_pow is_finite le "
    "lgamma log log1p logistic lt max min mul ne neg nextafter not or polygamma "
    "population_count pow real reduce_precision regularized_incomplete_beta rem round rsqrt "
    "select_n shift_left shift_right_arithmetic shift_right_logical sign sin sinh sqrt square "
    "sub tan tanh xor zeta"
).split()
_ELEMENTWISE = frozenset(getattr(P, n + "_p") for n in _ELEMENTWISE_NAMES if hasattr(P, n + "_p"))
_TRANSPOSE = P.transpose_p
_BROADCAST = P.broadcast_in_dim_p
_IOTA = P.iota_p

# A region's layout is tried in at most this many candidate permutations.
_MAX_CANDIDATES = 4


def call_simplified(fn, args_flat):
    """`fn(*args_flat)`; while staging (jit), traced to a jaxpr, simplified, and re-emitted.

    Outside a jit trace (eager op by op, vmap, our concrete traces) `fn` just runs: layout only
    matters for compiled programs, and an eager first call should not pay for an extra trace.
    Leaves of the result that are not arrays (a Python float in `has_aux`'s aux) come back as
    they were.
    """
    if type(_core.trace_ctx.trace) is not _pe.DynamicJaxprTrace:
        return fn(*args_flat)
    box = []

    def flat_fn(*args):
        leaves, tree = tree_flatten(fn(*args))
        arrays = [isinstance(x, jax.Array) for x in leaves]
        box.append((tree, leaves, arrays))
        return [x for x, a in zip(leaves, arrays, strict=True) if a]

    closed = trace_to_closed(flat_fn, [shape_dtype(x) for x in args_flat])
    tree, leaves, arrays = box[-1]
    closed = sink_transposes(closed)
    outs = iter(eval_jaxpr(closed.jaxpr, closed.consts, *args_flat))
    leaves = [next(outs) if a else x for x, a in zip(leaves, arrays, strict=True)]
    return tree_unflatten(tree, leaves)


def sink_transposes(closed: ClosedJaxpr) -> ClosedJaxpr:
    """`closed` with transposes around elementwise regions cancelled (see the module)."""
    jaxpr = closed.jaxpr
    if not any(e.primitive is _TRANSPOSE for e in jaxpr.eqns):
        return closed
    new = _Pass(jaxpr).run()
    return closed if new is None else ClosedJaxpr(new, closed.consts)


# --- permutations -----------------------------------------------------------------------------


def _inv(p):
    out = [0] * len(p)
    for i, pi in enumerate(p):
        out[pi] = i
    return tuple(out)


def _is_identity(p) -> bool:
    return all(i == pi for i, pi in enumerate(p))


def _shape(v):
    return v.aval.shape


def _rank(v) -> int:
    return len(v.aval.shape)


def _plain(v, memo: dict = {}) -> bool:  # noqa: B006 - keyed by aval, values immutable
    """A plain array type, without a layout of its own (no sharded dimensions)."""
    aval = v.aval
    if type(aval) is not _core.ShapedArray:
        return False
    sharding = getattr(aval, "sharding", None)
    plain = memo.get(sharding)
    if plain is None:
        plain = memo[sharding] = all(s is None for s in getattr(sharding, "spec", ()))
        if len(memo) > 1024:
            memo.clear()
    return plain


class _Pass:
    def __init__(self, jaxpr: Jaxpr):
        self.jaxpr = jaxpr
        self.eqns = eqns = jaxpr.eqns
        self.producer: dict = {}
        self.uses: dict = defaultdict(list)  # var -> consumer equation indices
        for i, e in enumerate(eqns):
            for v in e.invars:
                if type(v) is not Literal:
                    self.uses[v].append(i)
            for v in e.outvars:
                self.producer[v] = i
        self.outvars = {v for v in jaxpr.outvars if type(v) is not Literal}
        self.elementwise = [self._is_elementwise(e) for e in eqns]
        self.constlike = self._constant_like()
        self.relayable_memo: dict = {}
        self.relayout_memo: dict = {}
        # the rewrite, as edits of the original equation list
        self.before: dict = defaultdict(list)  # index -> equations emitted before it
        self.after: dict = defaultdict(list)  # index -> equations emitted after it
        self.replaced: dict = {}  # index -> the equations that replace it
        self.rename: dict = {}  # var -> var
        # transposes a rewritten region relies on: read through (its input is read instead) or
        # rewritten (renamed away, or re-permuted). A transpose rewritten by one region is no
        # longer a transpose to read through for another, and one read through by a region
        # must keep its input, so no other region may rename it away.
        self.read_through: dict = defaultdict(set)  # equation index -> region ids
        self.rewritten: dict = {}  # equation index -> region id

    # --- classification -----------------------------------------------------------------

    def _is_elementwise(self, e) -> bool:
        if e.primitive not in _ELEMENTWISE or e.effects or len(e.outvars) != 1:
            return False
        if e.params.get("sharding") is not None:
            return False
        out = e.outvars[0]
        if not _plain(out):
            return False
        shape = _shape(out)
        for v in e.invars:  # scalars, or the result's rank with sizes equal or 1 (batching's)
            if not _plain(v):
                return False
            if _rank(v) != 0 and (
                _rank(v) != len(shape) or any(a not in (b, 1) for a, b in zip(_shape(v), shape))
            ):
                return False
        return True

    def _constant_like(self) -> set:
        """Variables computed from iotas, broadcasts and scalars only (one forward pass)."""
        const = set()

        def ok(v):
            return _rank(v) == 0 or (type(v) is not Literal and v in const)

        for i, e in enumerate(self.eqns):
            prim = e.primitive
            if len(e.outvars) != 1 or e.effects or not _plain(e.outvars[0]):
                continue
            if prim is _IOTA and e.params.get("sharding") is None:
                const.add(e.outvars[0])
            elif prim is _BROADCAST and len(e.invars) == 1 and e.params.get("sharding") is None:
                const.add(e.outvars[0])
            elif prim is _TRANSPOSE and ok(e.invars[0]):
                const.add(e.outvars[0])
            elif self.elementwise[i] and all(ok(v) for v in e.invars):
                const.add(e.outvars[0])
        return const

    # --- re-laying out constant-like values -------------------------------------------------
    #
    # `relayout(v, p)` is the value `v2` with `v == transpose(v2, p)`: `v` computed in the
    # layout before a transpose by `p`.

    def _deps(self, v, p):
        """(ok, dependencies) for re-laying out `v` in the layout `p`."""
        if type(v) is Literal or _rank(v) == 0:
            return True, ()
        if v not in self.constlike:
            return False, ()
        e = self.eqns[self.producer[v]]
        prim = e.primitive
        if prim is _IOTA:
            return True, ()
        pinv = _inv(p)
        if prim is _TRANSPOSE:
            c = tuple(e.params["permutation"][pinv[i]] for i in range(len(p)))
            return True, () if _is_identity(c) else ((e.invars[0], _inv(c)),)
        if prim is _BROADCAST:
            dims = [p[d] for d in e.params["broadcast_dimensions"]]
            if all(a < b for a, b in zip(dims, dims[1:])):
                return True, ()
            order = sorted(range(len(dims)), key=dims.__getitem__)
            return True, ((e.invars[0], _inv(order)),)
        return True, tuple((u, p) for u in e.invars if type(u) is not Literal and _rank(u) > 0)

    def relayable(self, v, p) -> bool:
        memo = self.relayable_memo
        stack = [(v, p)]
        while stack:
            key = stack[-1]
            if key in memo:
                stack.pop()
                continue
            ok, deps = self._deps(*key)
            pending = [d for d in deps if d not in memo] if ok else []
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            memo[key] = ok and (all(memo[d] for d in deps) or self._small_broadcast(key[0]))
        return memo[(v, p)]

    def _small_broadcast(self, v) -> bool:
        """A broadcast of a smaller operand: transposing that operand is cheaper than `v`."""
        e = self.eqns[self.producer[v]]
        if e.primitive is not _BROADCAST:
            return False
        return e.invars[0].aval.size < v.aval.size

    def relayout(self, v, p):
        """Emit `v` in layout `p` (after the equations producing it); `relayable` was checked."""
        memo = self.relayout_memo
        stack = [(v, p)]
        while stack:
            key = stack[-1]
            if key in memo:
                stack.pop()
                continue
            _, deps = self._deps(*key)
            pending = [d for d in deps if d not in memo and self.relayable(*d)]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            memo[key] = self._emit_relayout(*key)
        return memo[(v, p)]

    def _emit_relayout(self, v, p):
        if type(v) is Literal or _rank(v) == 0:
            return v
        i = self.producer[v]
        e = self.eqns[i]
        prim = e.primitive
        pinv = _inv(p)
        shape = tuple(_shape(v)[pinv[k]] for k in range(len(p)))
        if prim is _TRANSPOSE:
            c = tuple(e.params["permutation"][pinv[k]] for k in range(len(p)))
            if _is_identity(c):
                return e.invars[0]
            return self.relayout_memo[(e.invars[0], _inv(c))]
        out = Var(v.aval.update(shape=shape))
        if prim is _IOTA:
            params = dict(e.params, shape=shape, dimension=p[e.params["dimension"]])
            new = e.replace(outvars=[out], params=params)
        elif prim is _BROADCAST:
            dims = [p[d] for d in e.params["broadcast_dimensions"]]
            operand = e.invars[0]
            if not all(a < b for a, b in zip(dims, dims[1:])):
                order = tuple(sorted(range(len(dims)), key=dims.__getitem__))
                relaid = self.relayout_memo.get((operand, _inv(order)))
                if relaid is None:  # a small operand (`_small_broadcast`): transpose it
                    shape_t = tuple(_shape(operand)[k] for k in order)
                    relaid = Var(operand.aval.update(shape=shape_t))
                    self.after[i].append(
                        e.replace(
                            primitive=_TRANSPOSE,
                            invars=[operand],
                            outvars=[relaid],
                            params={"permutation": order},
                        )
                    )
                operand = relaid
                dims = sorted(dims)
            params = dict(e.params, shape=shape, broadcast_dimensions=tuple(dims))
            new = e.replace(invars=[operand], outvars=[out], params=params)
        else:
            invars = [
                u if type(u) is Literal or _rank(u) == 0 else self.relayout_memo[(u, p)]
                for u in e.invars
            ]
            new = e.replace(invars=invars, outvars=[out])
        self.after[i].append(new)
        return out

    # --- regions --------------------------------------------------------------------------

    def _regions(self) -> list[list[int]]:
        """Connected sets of elementwise equations (rank >= 2, not constant-like), in order."""
        eqns = self.eqns
        member = [
            self.elementwise[i] and _rank(e.outvars[0]) >= 2 and e.outvars[0] not in self.constlike
            for i, e in enumerate(eqns)
        ]
        parent = list(range(len(eqns)))

        def find(i):
            root = i
            while parent[root] != root:
                root = parent[root]
            while parent[i] != root:
                parent[i], i = root, parent[i]
            return root

        for i, e in enumerate(eqns):
            if not member[i]:
                continue
            for v in e.invars:
                j = self.producer.get(v) if type(v) is not Literal else None
                if j is not None and member[j]:
                    a, b = find(i), find(j)
                    if a != b:
                        parent[max(a, b)] = min(a, b)
        groups: dict = defaultdict(list)
        for i in range(len(eqns)):
            if member[i]:
                groups[find(i)].append(i)
        return [groups[k] for k in sorted(groups)]

    def _source(self, v, members):
        """The index of the transpose producing region input `v`, when the region may read
        that transpose's input instead: not rewritten by another region, and not transposing
        a value of this region (a path out of the region and back in)."""
        if type(v) is Literal:
            return None
        j = self.producer.get(v)
        if j is None or self.eqns[j].primitive is not _TRANSPOSE or j in self.rewritten:
            return None
        if self.producer.get(self.eqns[j].invars[0]) in members:
            return None
        return j

    def _undoes(self, j, region_id) -> bool:
        """Whether consumer `j` of a region value is a transpose this region may rewrite."""
        if self.eqns[j].primitive is not _TRANSPOSE:
            return False
        if self.rewritten.get(j, region_id) != region_id:
            return False
        return not (self.read_through.get(j, set()) - {region_id})

    def _boundary(self, region):
        """The region's member set, its distinct non-scalar inputs, and its values used outside
        it (each with the consuming equations outside)."""
        members = set(region)
        inputs, outputs = [], []
        seen = set()
        for i in region:
            for v in self.eqns[i].invars:
                if _rank(v) == 0:
                    continue
                if type(v) is Literal:
                    inputs.append(v)
                elif v not in seen:
                    seen.add(v)
                    if self.producer.get(v) not in members:
                        inputs.append(v)
        for i in region:
            u = self.eqns[i].outvars[0]
            outside = sorted({j for j in self.uses.get(u, ()) if j not in members})
            if outside or u in self.outvars:
                outputs.append((u, outside))
        return members, inputs, outputs

    def _candidates(self, members, inputs, outputs, region_id, rank):
        counts: dict = defaultdict(int)
        for v in inputs:
            j = self._source(v, members)
            if j is not None:
                counts[tuple(self.eqns[j].params["permutation"])] += 1
        for _, outside in outputs:
            for j in outside:
                if self._undoes(j, region_id):
                    counts[_inv(self.eqns[j].params["permutation"])] += 1
        ranked = sorted(counts, key=lambda p: -counts[p])
        return [p for p in ranked if len(p) == rank and not _is_identity(p)][:_MAX_CANDIDATES]

    def _gain(self, p, members, inputs, outputs, region_id) -> int:
        pinv = _inv(p)
        gain = 0
        for v in inputs:
            j = self._source(v, members)
            if j is not None:
                r = self.eqns[j].params["permutation"]
                only_here = v not in self.outvars and all(k in members for k in self.uses[v])
                identity = all(r[pinv[k]] == k for k in range(len(p)))
                gain += int(only_here) - int(not identity)
            elif type(v) is Literal or not self.relayable(v, p):
                gain -= 1
        for u, outside in outputs:
            materialize = u in self.outvars
            for j in outside:
                if self._undoes(j, region_id):
                    q = self.eqns[j].params["permutation"]
                    gain += int(all(p[q[k]] == k for k in range(len(p))))
                else:
                    materialize = True
            gain -= int(materialize)
        return gain

    def _rewrite(self, p, members, region, region_id) -> None:
        pinv = _inv(p)
        eqns = self.eqns
        new_of: dict = {}

        def relaid(v):  # v re-laid-out in layout p, as the region's equations need it
            return Var(v.aval.update(shape=tuple(_shape(v)[pinv[k]] for k in range(len(p)))))

        for i in region:
            e = eqns[i]
            invars = []
            for v in e.invars:
                if _rank(v) == 0:
                    invars.append(v)
                    continue
                if type(v) is not Literal and v in new_of:
                    invars.append(new_of[v])
                    continue
                j = self._source(v, members)
                if j is not None:
                    self.read_through[j].add(region_id)
                    x = eqns[j].invars[0]
                    r = eqns[j].params["permutation"]
                    c = tuple(r[pinv[k]] for k in range(len(p)))
                    if _is_identity(c):
                        w = x
                    else:
                        w = relaid(v)
                        t = eqns[j].replace(invars=[x], outvars=[w], params={"permutation": c})
                        self.before[i].append(t)
                elif type(v) is not Literal and self.relayable(v, p):
                    w = self.relayout(v, p)
                else:
                    w = relaid(v)
                    t = e.replace(
                        primitive=_TRANSPOSE, invars=[v], outvars=[w], params={"permutation": pinv}
                    )
                    self.before[i].append(t)
                if type(v) is not Literal:
                    new_of[v] = w
                invars.append(w)
            u = e.outvars[0]
            u2 = relaid(u)
            new_of[u] = u2
            emitted = [e.replace(invars=invars, outvars=[u2])]
            materialize = u in self.outvars
            for j in self.uses.get(u, ()):
                if j in members:
                    continue
                t = eqns[j]
                if self._undoes(j, region_id):
                    self.rewritten[j] = region_id
                    q = t.params["permutation"]
                    c = tuple(p[q[k]] for k in range(len(p)))
                    if _is_identity(c):
                        self.rename[t.outvars[0]] = u2
                        self.replaced[j] = []
                    else:
                        self.replaced[j] = [t.replace(invars=[u2], params={"permutation": c})]
                else:
                    materialize = True
            if materialize:
                emitted.append(
                    e.replace(
                        primitive=_TRANSPOSE, invars=[u2], outvars=[u], params={"permutation": p}
                    )
                )
            self.replaced[i] = emitted

    # --- the pass -------------------------------------------------------------------------

    def run(self) -> Jaxpr | None:
        changed = False
        for region_id, region in enumerate(self._regions()):
            members, inputs, outputs = self._boundary(region)
            rank = _rank(self.eqns[region[0]].outvars[0])
            best, best_gain = None, 0
            for p in self._candidates(members, inputs, outputs, region_id, rank):
                gain = self._gain(p, members, inputs, outputs, region_id)
                if gain > best_gain:
                    best, best_gain = p, gain
            if best is not None:
                self._rewrite(best, members, region, region_id)
                changed = True
        if not changed:
            return None
        rename = self.rename
        out_eqns = []
        for i, e in enumerate(self.eqns):
            out_eqns.extend(self.before.get(i, ()))
            out_eqns.extend(self.replaced.get(i, (e,)))
            out_eqns.extend(self.after.get(i, ()))
        if rename:
            for k, e in enumerate(out_eqns):
                if any(type(v) is not Literal and v in rename for v in e.invars):
                    invars = [v if type(v) is Literal else rename.get(v, v) for v in e.invars]
                    out_eqns[k] = e.replace(invars=invars)
        outvars = [v if type(v) is Literal else rename.get(v, v) for v in self.jaxpr.outvars]
        out_eqns, _ = dce_eqns(out_eqns, outvars)
        return self.jaxpr.replace(eqns=out_eqns, outvars=outvars)
