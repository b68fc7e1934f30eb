"""Which primitives the engine can differentiate, forward and reverse: the coverage table.

The table is built from the rule registries (`jvp.jvp_rules`, `transpose.transpose_rules`) and
from *probes*: a corpus of small `jax.numpy` / `jax.nn` / `jax.scipy` / `jax.lax` programs is
traced, and for each primitive found, one of its equations is run through our `jvp` and `vjp`
abstractly (under `jax.eval_shape`, so probing compiles nothing). A rule that is registered but
cannot actually run shows up as a failed probe, not as a tick.

Primitives we do not differentiate carry a stated reason in `REASONS` (data, not code): the test
suite fails when a primitive JAX can differentiate is neither supported here nor explained there.

    >>> from transforms import coverage
    >>> rows = coverage.coverage_table()
    >>> print(coverage.markdown_table(rows)[:40])

`python -m transforms.coverage` prints the table as Markdown.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal, Primitive
from jax.extend.core import primitives as P

from . import rules as _rules  # noqa: F401  (registers every rule)
from .interpreter import bind
from .jvp import jvp_rules
from .transpose import transpose_rules

__all__ = [
    "REASONS",
    "CoverageRow",
    "coverage_table",
    "corpus_equations",
    "markdown_table",
    "probe",
    "reachable_primitives",
]

# --- stated reasons -------------------------------------------------------------------------------
# One line per primitive we do not (or not fully) differentiate, keyed by primitive name. Keep the
# wording honest: "integer-only", "not differentiable", "internal to JAX", or
# "not implemented yet: <why>". A reason for a primitive that has since gained rules is harmless:
# the table shows the probe's result, and the reason only where something is missing.

_NYI_LINALG = "not implemented yet: linear-algebra rules are in progress"
_COLLECTIVE = (
    "not implemented yet: collective, appears only inside shard_map/pmap; differentiate the "
    "per-device function instead"
)
_INTERNAL = "internal to JAX (emitted by JAX's own rules or state machinery), not by user code"

REASONS: dict[str, str] = {
    # integer, boolean or key-valued: no tangent space
    "and": "integer-only (bitwise)",
    "or": "integer-only (bitwise)",
    "not": "integer-only (bitwise)",
    "xor": "integer-only (bitwise)",
    "shift_left": "integer-only",
    "shift_right_arithmetic": "integer-only",
    "shift_right_logical": "integer-only",
    "population_count": "integer-only",
    "clz": "integer-only",
    "reduce_and": "integer-only (boolean reduction)",
    "reduce_or": "integer-only (boolean reduction)",
    "reduce_xor": "integer-only (boolean reduction)",
    "iota": "integer-only (no inputs to differentiate)",
    "random_bits": "integer-only (PRNG keys)",
    "random_seed": "integer-only (PRNG keys)",
    "random_split": "integer-only (PRNG keys)",
    "random_fold_in": "integer-only (PRNG keys)",
    "random_wrap": "integer-only (PRNG keys)",
    "random_unwrap": "integer-only (PRNG keys)",
    "threefry2x32": "integer-only (PRNG)",
    "rng_bit_generator": "integer-only (PRNG)",
    "rng_uniform": "not differentiable (random sampling)",
    "argmax": "not differentiable (integer output)",
    "argmin": "not differentiable (integer output)",
    "eq": "not differentiable (boolean output)",
    "ne": "not differentiable (boolean output)",
    "lt": "not differentiable (boolean output)",
    "le": "not differentiable (boolean output)",
    "gt": "not differentiable (boolean output)",
    "ge": "not differentiable (boolean output)",
    "is_finite": "not differentiable (boolean output)",
    "create_token": "not differentiable (token)",
    "after_all": "not differentiable (token)",
    "axis_index": "integer-only (device index)",
    # beyond JAX, which refuses these
    "while": (
        "reverse (JAX refuses): recomputed from at most 16 snapshots of the carry, about "
        "(n/2) log2 n primal steps; transforms.while_loop(snapshots=, max_steps=) chooses"
    ),
    "custom_vjp_call": (
        "forward (JAX refuses): the user's bwd transposed at fwd's residuals; the primal's own "
        "derivative where bwd is not linear in the cotangent"
    ),
    # not implemented yet
    "eig": (
        "eigenvalues in both modes (jnp.linalg.eigvals); eigenvector tangents only with "
        "lax.linalg.eig(..., compute_left_eigenvectors=False, enable_eigvec_derivs=True), as in JAX"
    ),
    "lu_pivots_to_permutation": "integer-only (permutation)",
    "schur": _NYI_LINALG + " (JAX has no rule either)",
    "hessenberg": _NYI_LINALG + " (JAX has no rule either)",
    "tridiagonal": _NYI_LINALG + " (JAX has no rule either)",
    "reduce": (
        "forward mode only (as in JAX): a custom reducer's reduction order is XLA's choice, so "
        "there is nothing to transpose; use built-in reductions for reverse mode"
    ),
    "zeta": (
        "derivative in q only (-s·zeta(s+1, q)); none in the exponent s (JAX's primitive has no "
        "rule in either argument; jax.scipy.special.zeta carries its own rule for q)"
    ),
    "regularized_incomplete_beta": (
        "derivative in x only; in a and b an error, as in JAX (which raises ValueError too)"
    ),
    "pure_callback": "not differentiable (opaque Python callback; wrap it in jax.custom_jvp)",
    "pmax": "inside shard_map: the derivative goes to the devices holding the maximum",
    "pmin": "inside shard_map: the derivative goes to the devices holding the minimum",
    "ragged_all_to_all": _COLLECTIVE,
    "call": _INTERNAL,
    "custom_lin": _INTERNAL,
    "select_and_scatter": _INTERNAL,
    "select_and_scatter_add": _INTERNAL,
    "select_and_gather_add": _INTERNAL,
    "igamma_grad_a": _INTERNAL,
    "eq_to": _INTERNAL,
    "le_to": _INTERNAL,
    "lt_to": _INTERNAL,
    "get": _INTERNAL,
    "swap": _INTERNAL,
    "empty2": _INTERNAL,
    "name": _INTERNAL,
}


# --- the corpus: small programs that reach the primitives ----------------------------------------


def _f(*shape):
    """Deterministic float inputs in (0.2, 0.8): inside the domain of every function probed."""
    n = int(np.prod(shape)) if shape else 1
    return (0.2 + 0.6 * (np.arange(1, n + 1) % 7) / 7.0).reshape(shape).astype(np.float32)


def _spd(n):
    a = _f(n, n)
    return (a @ a.T + n * np.eye(n)).astype(np.float32)


@jax.custom_jvp
def _custom_jvp_square(x):
    return x * x


_custom_jvp_square.defjvp(lambda p, t: (p[0] * p[0], 2 * p[0] * t[0]))


@jax.custom_vjp
def _custom_vjp_square(x):
    return x * x


_custom_vjp_square.defvjp(lambda x: (x * x, x), lambda x, ct: (2 * x * ct,))


def _corpus() -> list[tuple[str, Callable, tuple]]:
    v, m, s = _f(4), _f(3, 3), _f()
    i = np.array([2, 0, 1], np.int32)
    u = np.array([3, 1, 2], np.uint32)
    img = _f(1, 1, 5, 5)
    key = jax.random.key(0)
    _z = np.float32(0)
    sp = jax.scipy.special
    la = jax.scipy.linalg
    c = [
        # users' own rules first, so they (not a library's) are what gets probed
        ("jax.custom_jvp", _custom_jvp_square, (v,)),
        ("jax.custom_vjp", _custom_vjp_square, (v,)),
        # element-wise arithmetic and transcendental functions
        ("jnp.add/sub/mul/div", lambda x, y: (x + y, x - y, x * y, x / y), (v, v)),
        ("jnp.negative", jnp.negative, (v,)),
        ("jnp.power", jnp.power, (v, v)),
        ("x ** 3", lambda x: x**3, (v,)),
        ("jnp.square", jnp.square, (v,)),
        ("jnp.sqrt", jnp.sqrt, (v,)),
        ("lax.rsqrt", lax.rsqrt, (v,)),
        ("jnp.cbrt", jnp.cbrt, (v,)),
        ("jnp.exp", jnp.exp, (v,)),
        ("jnp.exp2", jnp.exp2, (v,)),
        ("jnp.expm1", jnp.expm1, (v,)),
        ("jnp.log", jnp.log, (v,)),
        ("jnp.log1p", jnp.log1p, (v,)),
        ("jnp.sin/cos/tan", lambda x: (jnp.sin(x), jnp.cos(x), jnp.tan(x)), (v,)),
        ("jnp.arcsin/arccos/arctan", lambda x: (jnp.arcsin(x), jnp.arccos(x), jnp.arctan(x)), (v,)),
        ("jnp.sinh/cosh/tanh", lambda x: (jnp.sinh(x), jnp.cosh(x), jnp.tanh(x)), (v,)),
        ("jnp.arcsinh/arctanh", lambda x: (jnp.arcsinh(x), jnp.arctanh(x)), (v,)),
        ("jnp.arccosh", jnp.arccosh, (v + 1,)),
        ("jnp.arctan2", jnp.arctan2, (v, v[::-1])),
        ("jnp.abs/sign", lambda x: (jnp.abs(x), jnp.sign(x)), (v,)),
        ("jnp.floor/ceil/round", lambda x: (jnp.floor(x), jnp.ceil(x), jnp.round(x)), (v,)),
        ("jnp.maximum/minimum", lambda x, y: (jnp.maximum(x, y), jnp.minimum(x, y)), (v, v[::-1])),
        ("lax.clamp", lambda x: lax.clamp(np.float32(0.3), x, np.float32(0.6)), (v,)),
        ("lax.rem", lax.rem, (v, v[::-1])),
        ("jnp.nextafter", jnp.nextafter, (v, v[::-1])),
        ("jnp.where / comparisons", lambda x, y: jnp.where(x < y, x, y), (v, v[::-1])),
        ("comparisons", lambda x, y: (x == y, x != y, x <= y, x > y, x >= y), (v, v)),
        ("jnp.isfinite", jnp.isfinite, (v,)),
        ("nn.sigmoid", jax.nn.sigmoid, (v,)),
        ("lax.reduce_precision", lambda x: lax.reduce_precision(x, 5, 10), (v,)),
        ("lax.stop_gradient", lax.stop_gradient, (v,)),
        ("jnp.copy", lambda x: jnp.copy(x) * 1, (v,)),
        ("jnp.astype", lambda x: x.astype(jnp.float16), (v,)),
        ("lax.bitcast_convert_type", lambda x: lax.bitcast_convert_type(x, jnp.int32), (v,)),
        ("jnp.real/imag/conj", lambda z: (jnp.real(z), jnp.imag(z), jnp.conj(z)), (v + 1j * v,)),
        ("lax.complex", lax.complex, (v, v)),
        # special functions
        ("scipy.special.erf/erfc", lambda x: (sp.erf(x), sp.erfc(x)), (v,)),
        ("scipy.special.erfinv", sp.erfinv, (v,)),
        ("scipy.special.gammaln/digamma", lambda x: (sp.gammaln(x), sp.digamma(x)), (v,)),
        ("scipy.special.polygamma", lambda x: sp.polygamma(1, x), (v,)),
        ("scipy.special.zeta", lambda x: sp.zeta(x + 2, x), (v,)),
        ("scipy.special.gammainc", lambda a, x: (sp.gammainc(a, x), sp.gammaincc(a, x)), (v, v)),
        ("scipy.special.betainc", lambda x: sp.betainc(x + 1, x + 1, x), (v,)),
        ("scipy.special.i0e/i1e", lambda x: (sp.i0e(x), sp.i1e(x)), (v,)),
        # integer-only
        ("bitwise ops", lambda a, b: (a & b, a | b, a ^ b, ~a, a << b, a >> b), (i, i)),
        ("lax.shift_right_logical", lax.shift_right_logical, (u, u)),
        ("lax.population_count/clz", lambda a: (lax.population_count(a), lax.clz(a)), (i,)),
        ("jnp.all/any", lambda x: (jnp.all(x > 0.5), jnp.any(x > 0.5)), (v,)),
        ("jnp.bitwise_xor.reduce", lambda a: lax.reduce_xor_p.bind(a, axes=(0,)), (i,)),
        ("jnp.arange", lambda x: x * jnp.arange(4), (v,)),
        # reductions
        ("jnp.sum/prod/max/min", lambda x: (x.sum(), x.prod(), x.max(), x.min()), (m,)),
        ("jnp.argmax/argmin", lambda x: (jnp.argmax(x), jnp.argmin(x)), (v,)),
        ("jnp.cumsum/cumprod", lambda x: (jnp.cumsum(x), jnp.cumprod(x)), (v,)),
        ("lax.cummax/cummin", lambda x: (lax.cummax(x), lax.cummin(x)), (v,)),
        ("lax.cumlogsumexp", lax.cumlogsumexp, (v,)),
        ("lax.reduce (variadic)", lambda x: lax.reduce((x, x), (_z, _z), _pair_add, (0,)), (v,)),
        ("nn.logsumexp", jax.nn.logsumexp, (v,)),
        ("nn.softmax", jax.nn.softmax, (v,)),
        # shapes and indexing
        ("jnp.reshape/transpose", lambda x: x.reshape(9).reshape(3, 3).T, (m,)),
        ("jnp.squeeze/expand_dims", lambda x: jnp.squeeze(x[None]), (v,)),
        ("jnp.broadcast_to", lambda x: jnp.broadcast_to(x, (2, 4)), (v,)),
        ("jnp.flip", jnp.flip, (v,)),
        ("jnp.concatenate", lambda x, y: jnp.concatenate([x, y]), (v, v)),
        ("jnp.stack", lambda x, y: jnp.stack([x, y], axis=1), (v, v)),
        ("jnp.split", lambda x: jnp.split(x, 2), (v,)),
        ("jnp.pad", lambda x: jnp.pad(x, (1, 2)), (v,)),
        ("lax.pad (interior)", lambda x: lax.pad(x, np.float32(0), [(1, -1, 1)]), (v,)),
        ("x[1:3] (slice)", lambda x: x[1:3], (v,)),
        ("lax.dynamic_slice", lambda x, k: lax.dynamic_slice(x, (k,), (2,)), (v, np.int32(1))),
        (
            "lax.dynamic_update_slice",
            lambda x, y: lax.dynamic_update_slice(x, y, (1,)),
            (v, v[:2]),
        ),
        ("x[idx] (gather)", lambda x, k: x[k], (v, i)),
        ("x.at[idx].set (scatter)", lambda x, y, k: x.at[k].set(y), (v, v[:3], i)),
        ("x.at[idx].add (scatter-add)", lambda x, y, k: x.at[k].add(y), (v, v[:3], i)),
        ("x.at[idx].mul (scatter-mul)", lambda x, y, k: x.at[k].mul(y), (v, v[:3], i)),
        ("x.at[idx].min/max", lambda x, y, k: (x.at[k].min(y), x.at[k].max(y)), (v, v[:3], i)),
        ("jnp.sort/argsort", lambda x: (jnp.sort(x), jnp.argsort(x)), (v,)),
        ("lax.top_k", lambda x: lax.top_k(x, 2), (v,)),
        ("lax.approx_max_k", lambda x: lax.approx_max_k(x, 2), (v,)),
        # linear algebra
        ("jnp.dot/matmul/einsum", lambda a, b: (a @ b, jnp.einsum("ij,jk->ik", a, b)), (m, m)),
        ("jnp.linalg.cholesky", jnp.linalg.cholesky, (_spd(3),)),
        ("jnp.linalg.eigh", jnp.linalg.eigh, (_spd(3),)),
        ("jnp.linalg.eig", jnp.linalg.eig, (m,)),
        ("jnp.linalg.svd", jnp.linalg.svd, (m,)),
        ("jnp.linalg.qr", jnp.linalg.qr, (m,)),
        ("jnp.linalg.solve (lu)", jnp.linalg.solve, (_spd(3), v[:3])),
        ("scipy.linalg.solve_triangular", la.solve_triangular, (_spd(3), v[:3])),
        ("scipy.linalg.schur", la.schur, (m,)),
        ("scipy.linalg.hessenberg", la.hessenberg, (m,)),
        ("lax.linalg.tridiagonal", lambda a: lax.linalg.tridiagonal(a), (_spd(3),)),
        (
            "lax.linalg.tridiagonal_solve",
            lambda dl, d, du, b: lax.linalg.tridiagonal_solve(dl, d, du, b),
            (v[:3] * 0, v[:3] + 2, v[:3] * 0, m),
        ),
        (
            "lax.linalg.householder_product",
            lambda a, t: lax.linalg.householder_product(a, t),
            (m, v[:3]),
        ),
        ("jnp.fft.fft", jnp.fft.fft, (v,)),
        (
            "lax.conv (jnp.convolve)",
            lambda x, w: lax.conv(x, w, (1, 1), "SAME"),
            (img, _f(1, 1, 3, 3)),
        ),
        (
            "avg pool (reduce_window sum)",
            lambda x: lax.reduce_window(x, _z, lax.add, (2,), (1,), "VALID"),
            (v,),
        ),
        (
            "max pool (reduce_window max)",
            lambda x: lax.reduce_window(x, np.float32(-np.inf), lax.max, (2,), (1,), "VALID"),
            (v,),
        ),
        (
            "min pool (reduce_window min)",
            lambda x: lax.reduce_window(x, np.float32(np.inf), lax.min, (2,), (1,), "VALID"),
            (v,),
        ),
        (
            "lax.reduce_window (generic)",
            lambda x: lax.reduce_window((x, x), (_z, _z), _pair_add, (2,), (1,), "VALID"),
            (v,),
        ),
        # control flow and calls
        ("lax.cond", lambda p, x: lax.cond(p > 0.5, jnp.sin, jnp.cos, x), (s, v)),
        (
            "lax.scan (cumulative product)",
            lambda x: lax.scan(lambda c, a: (c * a, c), np.float32(1), x),
            (v,),
        ),
        (
            "lax.while_loop",
            lambda x: lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, c[1] * 2), (0, x)),
            (v,),
        ),
        (
            "lax.custom_linear_solve",
            lambda b: lax.custom_linear_solve(lambda x: 2.0 * x, b, lambda f, b: b / 2.0),
            (v,),
        ),
        ("jax.jit (nested)", lambda x: jax.jit(jnp.sin)(x), (v,)),
        ("jax.checkpoint", lambda x: jax.checkpoint(jnp.sin)(x), (v,)),
        ("nn.relu (custom_jvp)", jax.nn.relu, (v,)),
        ("jax.device_put", lambda x: jax.device_put(x) * 1, (v,)),
        # randomness
        ("random.normal", lambda x: x * jax.random.normal(key, (4,)), (v,)),
        ("random.split/fold_in", lambda: (jax.random.split(key), jax.random.fold_in(key, 1)), ()),
        ("random.gamma", lambda a: jax.random.gamma(key, a), (v,)),
        (
            "random.wrap_key_data",
            lambda k: jax.random.key_data(jax.random.wrap_key_data(k)),
            (u[:2],),
        ),
        ("random.key", lambda k: jax.random.key_data(jax.random.key(k)), (u[0],)),
        ("lax.optimization_barrier", lax.optimization_barrier, (v,)),
        ("jax.pure_callback", lambda x: jax.pure_callback(np.sin, x, x), (v,)),
        (
            "lax.linalg.lu_pivots_to_permutation",
            lambda p: lax.linalg.lu_pivots_to_permutation(p, 3),
            (i,),
        ),
    ]
    return c


def _pair_add(a, b):
    return (a[0] + b[0], a[1] + b[1])


def _sub_jaxprs(params) -> Iterator[Jaxpr]:
    for p in params.values():
        for q in p if isinstance(p, tuple | list) else (p,):
            if isinstance(q, ClosedJaxpr):
                yield q.jaxpr
            elif isinstance(q, Jaxpr):
                yield q


def _walk(jaxpr: Jaxpr) -> Iterator:
    for eqn in jaxpr.eqns:
        yield eqn
        for sub in _sub_jaxprs(eqn.params):
            yield from _walk(sub)


@dataclass(frozen=True)
class CorpusHit:
    """The first equation of a primitive found in the corpus, and the program it came from."""

    label: str
    eqn: object
    fun: Callable
    args: tuple


@functools.cache
def corpus_equations() -> dict[str, CorpusHit]:
    """Primitive name -> the first corpus program (and equation) that reaches it."""
    found: dict[str, CorpusHit] = {}
    for label, fun, args in _corpus():
        closed = jax.make_jaxpr(fun)(*args)
        for eqn in _walk(closed.jaxpr):
            found.setdefault(eqn.primitive.name, CorpusHit(label, eqn, fun, args))
    return found


def _module_primitives() -> dict[str, Primitive]:
    return {p.name: p for p in vars(P).values() if isinstance(p, Primitive)}


def reachable_primitives() -> dict[str, Primitive]:
    """Every primitive of `jax.extend.core.primitives`, plus any the corpus reaches: name -> it."""
    prims = _module_primitives()
    for name, hit in corpus_equations().items():
        prims.setdefault(name, hit.eqn.primitive)
    return prims


# --- probing one equation ------------------------------------------------------------------------


def _inexact(aval) -> bool:
    return jnp.issubdtype(aval.dtype, jnp.inexact)


def probe_function(eqn):
    """`(fun, float_avals)`: `eqn` as a function of its inexact inputs, the others held fixed.

    Held inputs are zeros (valid indices, keys of the right shape); probing runs abstractly, so
    values never matter otherwise.
    """
    fixed, diff_pos, diff_avals = [], [], []
    for k, v in enumerate(eqn.invars):
        if type(v) is Literal:
            fixed.append(v.val)
        elif _inexact(v.aval):
            fixed.append(None)
            diff_pos.append(k)
            diff_avals.append(jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype))
        else:
            fixed.append(_zeros(v.aval))

    def fun(*xs):
        invals = list(fixed)
        for k, x in zip(diff_pos, xs, strict=True):
            invals[k] = x
        return [o for o in bind(eqn, invals)]

    return fun, diff_avals


def _zeros(aval):
    if jax.dtypes.issubdtype(aval.dtype, jax.dtypes.extended):
        return _key_zeros(aval)
    return np.zeros(aval.shape, aval.dtype)


def _key_zeros(aval):
    keys = jax.random.split(jax.random.key(0), int(np.prod(aval.shape)) or 1)
    return keys[: int(np.prod(aval.shape))].reshape(aval.shape)


def _cotangent(aval):
    if _inexact(aval):
        return jnp.ones(aval.shape, aval.dtype)
    return np.zeros(aval.shape, jax.dtypes.float0)


def run_forward(fun, avals, jvp: Callable) -> None:
    """Trace `jvp(fun, primals, ones)` abstractly (raises what the rules raise)."""
    jax.make_jaxpr(lambda *xs: jvp(fun, xs, tuple(jnp.ones_like(x) for x in xs)))(*avals)


def run_reverse(fun, avals, vjp: Callable) -> None:
    """Trace `vjp(fun, *primals)` and its pullback abstractly (raises what the rules raise)."""

    def pulled(*xs):
        out, f_vjp = vjp(fun, *xs)
        return f_vjp([_cotangent(jax.typeof(o)) for o in out])

    jax.eval_shape(pulled, *avals)


@dataclass(frozen=True)
class Probe:
    """The result of running one mode on one equation: 'ok', 'missing' (no rule) or 'error'."""

    status: str
    message: str = ""


def _attempt(run) -> Probe:
    try:
        run()
    except NotImplementedError as e:
        return Probe("missing", str(e).splitlines()[0])
    except Exception as e:  # a registered rule that cannot run is reported, never hidden
        return Probe("error", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    return Probe("ok")


# Their equations hold the user's Python rules, which only survive the original trace: probe the
# corpus program itself rather than the equation re-bound on its own.
_PROBE_WHOLE_PROGRAM = ("custom_jvp_call", "custom_vjp_call")


def probe_target(hit: CorpusHit):
    """`(fun, float_avals)` to probe for a corpus hit (see `probe_function`)."""
    if hit.eqn.primitive.name not in _PROBE_WHOLE_PROGRAM:
        return probe_function(hit.eqn)
    avals = [jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype) for a in hit.args]

    def fun(*xs):
        return jax.tree_util.tree_leaves(hit.fun(*xs))

    return fun, avals


def probe(hit: CorpusHit) -> tuple[Probe, Probe]:
    """Run our forward and reverse mode on a corpus hit; returns `(forward, reverse)`."""
    from .api import jvp, vjp

    fun, avals = probe_target(hit)
    forward = _attempt(lambda: run_forward(fun, avals, jvp))
    reverse = _attempt(lambda: run_reverse(fun, avals, vjp))
    return forward, reverse


# --- the table -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CoverageRow:
    """One primitive: how each mode fares, and why where it does not.

    `forward` / `reverse` are 'yes' (probed and ran, or a registered rule where no probe exists),
    'no', 'n/a' (no differentiable inputs or outputs: the derivative is a symbolic zero),
    'error' (a registered rule failed its probe) or '?' (reverse mode of an unprobed nonlinear
    primitive with a forward rule: it works if what the rule emits can be transposed).
    """

    name: str
    forward: str
    reverse: str
    source: str  # the corpus program that reached it, or "" when it was not probed
    reason: str  # REASONS[name] where a mode is missing, else ""
    detail: str = ""  # the probe's error message, if any


def _mode(result: Probe | None, registered: bool) -> str:
    if result is None:
        return "yes" if registered else "no"
    return {"ok": "yes", "missing": "no", "error": "error"}[result.status]


def _differentiable(eqn) -> bool:
    return any(type(v) is not Literal and _inexact(v.aval) for v in eqn.invars) and any(
        _inexact(v.aval) for v in eqn.outvars
    )


_NOTHING_TO_DIFFERENTIATE = ("integer-only", "not differentiable")


@functools.cache
def _coverage_table() -> tuple[CoverageRow, ...]:
    rows = []
    corpus = corpus_equations()
    for name, prim in sorted(reachable_primitives().items()):
        hit = corpus.get(name)
        label, eqn = (hit.label, hit.eqn) if hit else ("", None)
        reverse_registered = prim in transpose_rules or prim in jvp_rules
        if eqn is not None and not _differentiable(eqn):
            forward = reverse = "n/a"
            detail = ""
        elif eqn is not None:
            fwd, rev = probe(hit)
            forward, reverse = _mode(fwd, prim in jvp_rules), _mode(rev, reverse_registered)
            detail = "; ".join(r.message for r in (fwd, rev) if r.status == "error")
        elif REASONS.get(name, "").startswith(_NOTHING_TO_DIFFERENTIATE):
            forward = reverse = "n/a"
            detail = ""
        else:
            forward = _mode(None, prim in jvp_rules)
            # Unprobed and nonlinear: reverse mode depends on what its JVP rule emits.
            reverse = "yes" if prim in transpose_rules else "?" if prim in jvp_rules else "no"
            detail = ""
        missing = forward != "yes" or reverse != "yes"
        reason = REASONS.get(name, "") if missing else ""
        if reason:  # an explained failure is a plain "no"; only unexplained ones stay "error"
            forward, reverse = ("no" if m == "error" else m for m in (forward, reverse))
        rows.append(CoverageRow(name, forward, reverse, label, reason, detail))
    return tuple(rows)


def coverage_table(refresh: bool = False) -> list[CoverageRow]:
    """One row per reachable primitive, sorted by name (probed once per process).

    Example:
      >>> rows = {r.name: r for r in coverage_table()}
      >>> rows["sin"].forward, rows["sin"].reverse
      ('yes', 'yes')
    """
    if refresh:
        _coverage_table.cache_clear()
    return list(_coverage_table())


_MARK = {"yes": "✓", "no": "✗", "n/a": "—", "error": "⚠", "?": "?"}


def markdown_table(rows: list[CoverageRow] | None = None) -> str:
    """The coverage table as Markdown, with a one-line summary above it."""
    rows = coverage_table() if rows is None else rows
    both = sum(r.forward == "yes" and r.reverse == "yes" for r in rows)
    na = sum(r.forward == "n/a" for r in rows)
    lines = [
        f"{len(rows)} primitives: {both} differentiable in both modes, {na} with nothing to "
        "differentiate (integer or boolean in or out), the rest listed with a reason.",
        "",
        "✓ supported (probed, or a registered rule where no corpus program reaches it) · "
        "✗ not supported · — nothing to differentiate · ⚠ a registered rule failed its probe · "
        "? a forward rule exists but no corpus program reaches the primitive to probe reverse mode",
        "",
        "| primitive | forward | reverse | reached from | note |",
        "|---|:-:|:-:|---|---|",
    ]
    for r in rows:
        note = r.reason or r.detail
        if r.detail and r.reason:
            note = f"{r.reason} ({r.detail})"
        note = note.replace("|", "\\|")
        src = f"`{r.source}`" if r.source else "not probed"
        lines.append(f"| `{r.name}` | {_MARK[r.forward]} | {_MARK[r.reverse]} | {src} | {note} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table())
