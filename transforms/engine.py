"""Flat derivative programs: JVP, linearize, transpose and gradient over closed jaxprs.

Everything here works on flat lists of arrays; `api.py` handles pytrees and argnums. Derivative
programs are data: each is built once per *structure* of the traced program (see
`tracing.closed_key`) and, for eager calls, compiled once with `jax.jit`. Under an outer trace
(jit, vmap, or another of our transforms) the programs are evaluated inline instead, so the outer
transform sees every operation.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import jax
from jax.extend.core import ClosedJaxpr

from . import debug as _debug
from . import reuse
from . import tiered as _tiered
from .interpreter import eval_jaxpr
from .jvp import differentiation_mode, jvp_eval
from .partial_eval import Split, partial_eval
from .tracing import (
    any_tracer,
    aval_struct,
    closed_key,
    first_sight_of_path,
    shape_dtype,
    trace_to_closed,
)
from .transpose import backward_pass
from .zeros import Zero, instantiate, tangent_aval, zeros_like_aval


class _LRU:
    """A small thread-safe LRU cache for derivative programs."""

    def __init__(self, maxsize: int = 512):
        self.maxsize = maxsize
        self.data: OrderedDict = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key):
        if key is None:
            return None
        with self.lock:
            value = self.data.get(key)
            if value is not None:
                self.data.move_to_end(key)
            return value

    def put(self, key, value):
        if key is None:
            return value
        with self.lock:
            self.data[key] = value
            while len(self.data) > self.maxsize:
                self.data.popitem(last=False)
        return value

    def clear(self):
        with self.lock:
            self.data.clear()


_programs = _LRU()

# XLA's compile time grows faster than linearly in program length (a 30,000-op chain does not
# finish compiling in minutes), so derivative programs longer than this run op by op instead,
# as JAX's own eager autodiff does: slower per op, but linear in the length. Split programs
# (linearize, the pullback) return every residual, which XLA on CPU compiles slowest (a
# 1,000-equation forward part with its residuals takes minutes); whole programs, whose
# intermediates stay inside XLA, compile in seconds up to MAX_FUSED_EQNS.
MAX_COMPILED_EQNS = 2000
MAX_FUSED_EQNS = 6000


def _compile_now(n_eqns: int, key) -> bool:
    """Whether a derivative program of `n_eqns` equations, cached under `key`, may be compiled.

    Past MAX_FUSED_EQNS never: compiling costs more than any number of op-by-op runs is likely
    to save. Below it the program is compiled in tiers (`tiered`): op by op at first, compiled
    in the background once it has been called again.
    """
    if key is None or n_eqns > MAX_FUSED_EQNS:
        return False
    # One path of Python control flow met for the first time: op by op, as jax.grad.
    return not first_sight_of_path(key)


def _compile_whole(prog) -> bool:
    """Whether to run `prog`'s whole (fused) form compiled on this call."""
    return _compile_now(prog.n_eqns, prog.key)


def clear_caches() -> None:
    """Drop every cached derivative program (compiled or not) and every reusable trace."""
    _programs.clear()
    reuse.clear()


def _is_eager(closed: ClosedJaxpr, *value_lists) -> bool:
    return not any_tracer(closed.consts) and not any(any_tracer(vs) for vs in value_lists)


# --- forward mode ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class JVPProgram:
    jaxpr: ClosedJaxpr  # consts + primals + nonzero tangents -> outs + nonzero tangent outs
    out_nonzeros: tuple[bool, ...]
    key: tuple | None  # None when the program could not be keyed: never compiled
    n_eqns: int


def jvp_program(closed: ClosedJaxpr, nonzeros: tuple[bool, ...]) -> JVPProgram:
    """The JVP of `closed` as a jaxpr over (consts, primals, nonzero tangents)."""
    key = closed_key(closed)
    key = key and ("jvp", key, nonzeros, _debug.ENABLED)
    prog = _programs.get(key)
    if prog is not None:
        return prog
    jaxpr = closed.jaxpr
    n_consts, n_primals = len(jaxpr.constvars), len(jaxpr.invars)
    tangent_avals = [tangent_aval(v.aval) for v in jaxpr.invars]
    out_nz_box = []

    def jvp_fun(*args):
        consts, primals, nz_tangents = (
            args[:n_consts],
            args[n_consts : n_consts + n_primals],
            iter(args[n_consts + n_primals :]),
        )
        tangents = [next(nz_tangents) if nz else Zero(a) for nz, a in zip(nonzeros, tangent_avals)]
        outs, outs_dot = jvp_eval(jaxpr, consts, primals, tangents)
        out_nz_box.append(tuple(type(t) is not Zero for t in outs_dot))
        return [*outs, *(t for t in outs_dot if type(t) is not Zero)]

    avals = [
        *(shape_dtype(c) for c in closed.consts),
        *(_sds(v.aval) for v in jaxpr.invars),
        *(_sds(a) for a, nz in zip(tangent_avals, nonzeros) if nz),
    ]
    traced = trace_to_closed(jvp_fun, avals)
    return _programs.put(key, JVPProgram(traced, out_nz_box[-1], key, len(traced.jaxpr.eqns)))


def _as_arrays(values):
    # Python scalars and NumPy arrays as JAX arrays (weak types kept), as a jitted call sees them.
    return [
        v if type(v) is Zero or isinstance(v, jax.Array) else jax.numpy.asarray(v) for v in values
    ]


def _first_sighting(closed: ClosedJaxpr, nonzeros) -> bool:
    """True the first time a keyable program is met under the tiered policy (then remembered)."""
    if _tiered.get_policy() != "tiered":
        return False
    key = closed_key(closed)
    if key is None:
        return False
    seen = ("seen", key, nonzeros)
    if _programs.get(seen) is not None or _programs.get(("jvp", key, nonzeros, False)):
        return False
    _programs.put(seen, True)
    return True


def _sds(aval):
    return aval_struct(aval)


def jvp_flat(closed: ClosedJaxpr, primals: Sequence, tangents: Sequence):
    """Primal outputs and output tangents (`Zero` where symbolically zero)."""
    nonzeros = tuple(type(t) is not Zero for t in tangents)
    with differentiation_mode("forward"):
        if not _is_eager(closed, primals, tangents):
            return jvp_eval(closed.jaxpr, closed.consts, primals, tangents)
        if not _debug.ENABLED and _first_sighting(closed, nonzeros):
            # Building the JVP program costs as much as evaluating the JVP once: a function
            # met for the first time is evaluated directly, as JAX does.
            return jvp_eval(closed.jaxpr, closed.consts, _as_arrays(primals), _as_arrays(tangents))
        prog = jvp_program(closed, nonzeros)
        if not (_compile_whole(prog) or _debug.ENABLED):
            return jvp_eval(closed.jaxpr, closed.consts, primals, tangents)
    compiled = _compiled("jvp", prog, None, lambda: _eval_closed(prog.jaxpr))
    nz_tangents = [t for t in tangents if type(t) is not Zero]
    flat = compiled(*closed.consts, *primals, *nz_tangents)
    n_out = len(closed.jaxpr.outvars)
    outs, nz_out = flat[:n_out], iter(flat[n_out:])
    out_tangents = [
        next(nz_out) if nz else Zero(tangent_aval(v.aval))
        for nz, v in zip(prog.out_nonzeros, closed.jaxpr.outvars, strict=True)
    ]
    return outs, out_tangents


def _eval_closed(closed: ClosedJaxpr):
    return lambda *args: eval_jaxpr(closed.jaxpr, closed.consts, *args)


_compiled_cache = _LRU()
_STAGES = {
    "jvp": "forward-mode (JVP)",
    "fwd": "linearize (primal and residuals)",
    "lin": "linearized (tangent)",
    "bwd": "reverse-mode (transposed)",
    "grad": "gradient (forward and transposed)",
}


def _compiled(tag: str, program, extra, make):
    """The tiered executor of `make()` (a function of arrays) for `program`, built once.

    Keyed on the program object's identity; the object itself is cached structurally, so equal
    traced programs share one executor (op by op at first, compiled once it has proved to be
    called again: `tiered`).
    """
    if _debug.ENABLED:  # not compiled: traced with attribution and run op by op, checked
        return _debug.checked(jax.jit(make()), _STAGES.get(tag, tag))
    key = (tag, id(program), extra)
    entry = _compiled_cache.get(key)
    if entry is None or entry[0] is not program:
        entry = _compiled_cache.put(key, (program, _tiered.Tiered(make())))
    return entry[1]


# --- reverse mode ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Linearized:
    """A program split into its primal part and its linear (tangent) part.

    `split.known`: (consts, primals) -> (outs, residuals).
    `split.linear`: (residuals, nonzero tangents) -> the tangent outputs listed in `tangent_outs`.
    """

    split: Split
    nonzeros: tuple[bool, ...]
    n_outs: int
    tangent_outs: tuple[int, ...]  # which outputs have a (possibly) nonzero tangent
    key: tuple | None  # None when the program could not be keyed: never compiled
    n_eqns: int

    @property
    def cached(self) -> bool:
        """Whether its split parts (forward with residuals, linear, transposed) are compiled."""
        return (
            self.key is not None
            and self.n_eqns <= MAX_COMPILED_EQNS
            and not first_sight_of_path(self.key)
        )

    @property
    def num_residuals(self) -> int:
        return self.split.num_residuals


def linearize_program(closed: ClosedJaxpr, nonzeros: tuple[bool, ...]) -> Linearized:
    key = closed_key(closed)
    key = key and ("linearize", key, nonzeros, _debug.ENABLED)
    lin = _programs.get(key)
    if lin is not None:
        return lin
    with differentiation_mode("reverse"):
        prog = jvp_program(closed, nonzeros)
    n_consts, n_primals = len(closed.jaxpr.constvars), len(closed.jaxpr.invars)
    n_outs = len(closed.jaxpr.outvars)
    n_nz_out = sum(prog.out_nonzeros)
    unknowns = [False] * (n_consts + n_primals) + [True] * sum(nonzeros)
    # Only the primal outputs are wanted from the known side: a tangent output that turns out
    # known does not depend on the input tangents, so for a linear map it is zero.
    keep = [True] * n_outs + [False] * n_nz_out
    split = partial_eval(prog.jaxpr, unknowns, keep)
    assert not any(split.out_unknowns[:n_outs]), "a primal output depends on a tangent"
    nz_out_idx = [i for i, nz in enumerate(prog.out_nonzeros) if nz]
    tangent_outs = tuple(
        i for i, unknown in zip(nz_out_idx, split.out_unknowns[n_outs:], strict=True) if unknown
    )
    n_eqns = len(split.known.jaxpr.eqns) + len(split.linear.eqns)
    return _programs.put(key, Linearized(split, nonzeros, n_outs, tangent_outs, key, n_eqns))


def linearize_flat(closed: ClosedJaxpr, primals: Sequence, nonzeros: tuple[bool, ...]):
    """Evaluate the primal part: returns `(outs, residuals, lin)`."""
    lin = linearize_program(closed, nonzeros)
    known = lin.split.known
    if (lin.cached or _debug.ENABLED) and _is_eager(closed, primals):
        compiled = _compiled("fwd", lin, None, lambda: _eval_closed(known))
        flat = compiled(*closed.consts, *primals)
    else:
        flat = eval_jaxpr(known.jaxpr, known.consts, *closed.consts, *primals)
    return list(flat[: lin.n_outs]), list(flat[lin.n_outs :]), lin


def apply_linear(lin: Linearized, residuals: Sequence, nz_tangents: Sequence) -> list:
    """The linear map of a linearized program: tangent outputs (`Zero` where none)."""
    linear = lin.split.linear
    if not (lin.cached or _debug.ENABLED) or any_tracer(residuals) or any_tracer(nz_tangents):
        outs = eval_jaxpr(linear, [], *residuals, *nz_tangents)
    else:
        compiled = _compiled("lin", lin, None, lambda: lambda *a: eval_jaxpr(linear, [], *a))
        outs = compiled(*residuals, *nz_tangents)
    result: list = [None] * lin.n_outs
    for i, t in zip(lin.tangent_outs, outs, strict=True):
        result[i] = t
    return result  # None marks a symbolically zero tangent


def transpose_linear(lin: Linearized, residuals: Sequence, cts: Sequence) -> list:
    """Cotangents of the nonzero tangent inputs from cotangents of all outputs (None = zero)."""
    linear = lin.split.linear
    nres = lin.num_residuals
    mask = [False] * nres + [True] * (len(linear.invars) - nres)
    cts_lin = [cts[i] for i in lin.tangent_outs]
    if all(ct is None for ct in cts_lin):
        return [Zero(v.aval) for v in linear.invars[nres:]]

    def run(residuals, cts_lin):
        cts_lin = [
            Zero(tangent_aval(v.aval)) if ct is None else ct
            for ct, v in zip(cts_lin, linear.outvars, strict=True)
        ]
        return backward_pass(linear, [], residuals, mask, cts_lin)

    if (
        not (lin.cached or _debug.ENABLED)
        or any_tracer(residuals)
        or any_tracer([c for c in cts_lin if c is not None])
    ):
        return run(residuals, cts_lin)
    present = tuple(ct is not None for ct in cts_lin)

    def compiled_run(residuals, cts_present):
        it = iter(cts_present)
        outs = run(residuals, [next(it) if p else None for p in present])
        return [instantiate(o) for o in outs]

    compiled = _compiled("bwd", lin, present, lambda: compiled_run)
    return compiled(list(residuals), [c for c in cts_lin if c is not None])


def value_and_grad_flat(
    closed: ClosedJaxpr, primals: Sequence, nonzeros: tuple[bool, ...], seed: Sequence
):
    """Outputs, and cotangents of the nonzero inputs for output cotangents `seed` (None = 0).

    Eagerly this is one compiled program (forward and backward fused).
    """
    lin = linearize_program(closed, nonzeros)
    if not _is_eager(closed, primals, [s for s in seed if s is not None]) or not (
        _debug.ENABLED or _compile_whole(lin)
    ):
        outs, residuals, _ = linearize_flat(closed, primals, nonzeros)
        return outs, transpose_linear(lin, residuals, seed)
    present = tuple(s is not None for s in seed)
    known = lin.split.known
    linear = lin.split.linear
    nres = lin.num_residuals
    mask = [False] * nres + [True] * (len(linear.invars) - nres)

    def program(consts, primals, seeds):
        flat = eval_jaxpr(known.jaxpr, known.consts, *consts, *primals)
        outs, residuals = flat[: lin.n_outs], flat[lin.n_outs :]
        it = iter(seeds)
        cts = [next(it) if p else None for p in present]
        cts_lin = [
            Zero(tangent_aval(v.aval)) if cts[i] is None else cts[i]
            for i, v in zip(lin.tangent_outs, linear.outvars, strict=True)
        ]
        grads = backward_pass(linear, [], residuals, mask, cts_lin)
        return outs, [instantiate(g) for g in grads]

    compiled = _compiled("grad", lin, present, lambda: program)
    return compiled(list(closed.consts), list(primals), [s for s in seed if s is not None])


# --- whole transforms, compiled for eager calls ------------------------------------------------

MISS = object()  # run_compiled's answer when the program cannot be cached: run it directly


def run_compiled(tag, closed: ClosedJaxpr, program, args_flat: Sequence, extra_flat: Sequence):
    """Eagerly run `program(g, args_flat, extra_flat)` as one jitted program, built once.

    `g` evaluates `closed`'s jaxpr (flat arguments to flat outputs) with the constants passed in
    as inputs, so the compiled program serves every function that traces to the same structure
    (`tag` must name everything else `program` depends on) and never a stale constant. Returns
    `MISS` when `closed` closes over a tracer of an enclosing transform. Until the program is
    compiled, and when `closed` cannot be keyed, it runs op by op (on `closed`, not tracing the
    function again).
    """
    if any_tracer(closed.consts):
        return MISS
    jaxpr = closed.jaxpr

    def compiled(consts, args_flat, extra_flat):
        return program(lambda *a: eval_jaxpr(jaxpr, consts, *a), args_flat, extra_flat)

    args = (list(closed.consts), list(args_flat), list(extra_flat))
    key = closed_key(closed)
    if key is None:  # not cacheable (a custom_vjp's bwd is a Python callable): run it now
        return _op_by_op(compiled, args)
    key = ("compiled", tag, key)
    fn = None if _debug.ENABLED else _programs.get(key)
    if fn is None and not _debug.ENABLED and not _compile_whole_transform(tag, closed, key):
        # Op by op, on the program traced already: the user's function is not traced again
        # (its prints, and its custom rules' side effects, happen once, as under JAX).
        return _op_by_op(compiled, args)
    if fn is None:
        if _debug.ENABLED:  # not cached, not compiled: traced with attribution, run checked
            name = tag[0][0] if isinstance(tag[0], tuple) else tag[0]
            fn = _debug.checked(jax.jit(compiled), f"{name} (whole transform)")
        else:
            fn = _programs.put(key, _tiered.Tiered(compiled))
    if isinstance(fn, _tiered.Tiered):
        # Until it is compiled, the transform runs op by op on the traced program.
        return fn.call_or(lambda: _op_by_op(compiled, args), args)
    return fn(*args)


class _OpByOp(threading.local):
    active = False


_op_by_op_state = _OpByOp()


def running_op_by_op() -> bool:
    """Whether a whole transform is running op by op on its traced program (`run_compiled`).

    Its inner eager transforms run directly then: their functions are that program, traced
    already, and compiling them would start the same whole transform again.
    """
    return _op_by_op_state.active


def _op_by_op(compiled, args):
    previous, _op_by_op_state.active = _op_by_op_state.active, True
    try:
        return compiled(*args)
    finally:
        _op_by_op_state.active = previous


def _compile_whole_transform(tag, closed: ClosedJaxpr, key) -> bool:
    """Whether to compile a whole transform of `closed` now (else run it directly, op by op).

    XLA takes far longer to compile a whole transform of a long function than to run it once:
    a 1,500-op chain's Hessian compiles in 104 s and runs directly in 4. The derivative program
    is a few times the function's length (a Hessian twice a Jacobian's).
    """
    name = tag[0][0] if isinstance(tag[0], tuple) else tag[0]
    return _compile_now(len(closed.jaxpr.eqns) * (6 if name == "hessian" else 3), key)


def zeros_for(avals) -> list:
    return [zeros_like_aval(a) for a in avals]
