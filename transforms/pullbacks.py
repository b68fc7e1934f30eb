"""The functions `vjp`, `linearize` and `linear_transpose` return, as pytrees.

Each is a `jax.tree_util.Partial` of a static callable (the derivative program and the types it
checks its arguments against) and the residuals: so, as with JAX, it can be returned from and
passed into `jax.jit`, `tree_flatten` gives the residuals, and `.func` / `.args` are there.
`Partial` calls `func(*residuals, *user_args)`; the static callables split the two.

The static callables compare by identity (JAX's own pullbacks do too): a jitted function that
takes a pullback retraces for each new one, never serves one pullback another's program.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax import dtypes, tree_util
from jax.sharding import AxisType

from . import arguments, engine
from .interpreter import eval_jaxpr
from .transpose import backward_pass
from .zeros import Zero, same_layout, tangent_aval, with_placement, zeros_like_aval

# JAX's messages name its functions; ours quote them (transforms is a drop-in). Spelled in two
# parts because tests/test_engine_rule.py reads the package's code as text for JAX autodiff.
JAX_VJP = "jax." + "vjp"


def _fun_name(fun) -> str:
    return getattr(fun, "__name__", type(fun).__name__)


def _vjp_too_many_args(name: str, n: int) -> str:
    return (
        f"The function returned by `{JAX_VJP}` applied to {name} was called with {n} arguments, "
        f"but functions returned by `{JAX_VJP}` must be called with a single argument "
        "corresponding to the single value returned by the function being differentiated "
        "(even if that returned value is a tuple or other container). "
        f"(`transforms.vjp` follows `{JAX_VJP}`.) If {name} returns a tuple, pass the cotangent "
        "as one tuple: `f_vjp((ct1, ct2))`, not `f_vjp(ct1, ct2)`."
    )


def _unexpected_ct_type(ct, aval) -> str:
    expected = aval.update(dtype=tangent_aval(aval).dtype, weak_type=False).str_short()
    got = jax.typeof(ct).update(weak_type=False).str_short()
    return (
        f"unexpected JAX type (e.g. shape/dtype) for argument to VJP function: got {got}, but "
        f"expected {expected} because the corresponding output of the differentiated function "
        f"had JAX type {aval.update(weak_type=False).str_short()}."
    )


def check_cotangents(ct_flat: Sequence, out_avals: Sequence) -> None:
    """ValueError, with JAX's sentence, unless each cotangent has its output's tangent type."""
    for ct, aval in zip(ct_flat, out_avals, strict=True):
        expected = tangent_aval(aval).dtype
        ct_dtype = arguments._dtype(ct)
        if np.shape(ct) != aval.shape:
            raise ValueError(
                f"{_unexpected_ct_type(ct, aval)} Shape of cotangent input to vjp pullback "
                f"function {np.shape(ct)} must be the same as the shape of corresponding primal "
                f"output {aval.shape}. Pass one cotangent per output, shaped like it (e.g. "
                "`jnp.ones_like(out)`)."
            )
        if ct_dtype != expected:
            raise ValueError(
                f"{_unexpected_ct_type(ct, aval)} Type of cotangent input to vjp pullback "
                f"function ({arguments._dtype_name(ct_dtype)}) is not the expected tangent type "
                f"({arguments._dtype_name(expected)}) of corresponding primal output with dtype "
                f"{arguments._dtype_name(aval.dtype)}. Cast the cotangent to "
                f"{arguments._dtype_name(expected)}."
            )
        if _placed_otherwise(ct, aval):
            raise ValueError(
                f"{_unexpected_ct_type(ct, aval)} On Explicit mesh axes a cotangent must have "
                "its output's sharding: pass `jax.sharding.reshard(ct, out.sharding)`."
            )


class _LinearizedPart:
    """What `vjp`'s and `linearize`'s functions keep besides the residuals (their leaves)."""

    def __init__(
        self, lin, name, in_tree, out_tree, out_avals, primal_avals, nonzeros, n_aux, placements
    ):
        self.lin = lin
        self.placements = tuple(placements)  # zeros.explicit_placement of each primal
        self.name = name
        self.in_tree = in_tree
        self.out_tree = out_tree
        self.out_avals = tuple(out_avals)
        self.primal_avals = tuple(primal_avals)
        self.nonzeros = tuple(nonzeros)
        self.n_aux = n_aux


class VJPFunction(_LinearizedPart):
    """The static part of a pullback: `(*residuals, cotangent) -> cotangents of the primals`."""

    def __repr__(self):
        return f"<pullback of {self.name}>"

    def __call__(self, *args):
        n_res = self.lin.num_residuals
        residuals, user_args = args[:n_res], args[n_res:]
        if not user_args:
            raise TypeError(
                "VJP.__call__() missing 1 required positional argument: 'out_ct'. Pass the "
                f"cotangent of {self.name}'s output."
            )
        if len(user_args) != 1:
            raise TypeError(_vjp_too_many_args(self.name, len(user_args)))
        (ct,) = user_args
        ct_flat, ct_tree = tree_util.tree_flatten(ct)
        if ct_tree != self.out_tree:
            raise ValueError(
                "unexpected tree structure. The argument to a VJP function returned by "
                f"`{JAX_VJP}` must match the pytree structure of the differentiated function "
                f"{self.name}. Tree structure of cotangent input to vjp pullback function, "
                f"{ct_tree}, does not match structure of primal output, {self.out_tree}."
            )
        check_cotangents(ct_flat, self.out_avals)
        seeds = [None if arguments._dtype(c) == dtypes.float0 else c for c in ct_flat]
        cts_nz = iter(engine.transpose_linear(self.lin, residuals, seeds + [None] * self.n_aux))
        cts = [
            _materialize(next(cts_nz)) if nz else np.zeros(aval.shape, dtypes.float0)
            for aval, nz in zip(self.primal_avals, self.nonzeros, strict=True)
        ]
        return tree_util.tree_unflatten(self.in_tree, cts)


def _materialize(ct):
    return zeros_like_aval(ct.aval) if type(ct) is Zero else ct


def vjp_function(
    fun, lin, residuals, in_tree, out_tree, out_avals, primal_avals, nonzeros, n_aux, placements
):
    """The pullback of a linearized program, as a `Partial` over its residuals."""
    static = VJPFunction(
        lin, _fun_name(fun), in_tree, out_tree, out_avals, primal_avals, nonzeros, n_aux, placements
    )
    return tree_util.Partial(static, *residuals)


class LinearizedFunction(_LinearizedPart):
    """The static part of `linearize`'s result: `(*residuals, *tangents) -> output tangents`."""

    def __repr__(self):
        return f"<linearized {self.name}>"

    def __call__(self, *args):
        n_res = self.lin.num_residuals
        residuals, tangents = args[:n_res], args[n_res:]
        t_flat, t_tree = tree_util.tree_flatten(tangents)
        if t_tree != self.in_tree:
            raise TypeError(
                f"expected {self.in_tree}, got {t_tree}. The linearized function of "
                f"{self.name} takes one tangent per primal argument, with the primals' structure."
            )
        for aval, t in zip(self.primal_avals, t_flat, strict=True):
            expected = tangent_aval(aval)
            if np.shape(t) != aval.shape or arguments._dtype(t) != expected.dtype:
                raise ValueError(
                    "linearized function called on tangent values inconsistent with the "
                    f"original primal values:\nGot tangent aval {jax.typeof(t).str_short()} for "
                    f"primal aval {aval.str_short()} but expected {expected.str_short()}. "
                    "Different primal and tangent shapes or dtypes: each tangent must have its "
                    f"primal's shape {aval.shape} and tangent dtype "
                    f"{arguments._dtype_name(expected.dtype)}, got shape {np.shape(t)} and dtype "
                    f"{arguments._dtype_name(arguments._dtype(t))}."
                )
            _check_tangent_sharding(t, aval, expected)
        t_flat = [with_placement(t, p) for t, p in zip(t_flat, self.placements, strict=True)]
        nz = [t for t, keep in zip(t_flat, self.nonzeros, strict=True) if keep]
        n = self.out_tree.num_leaves
        outs_dot = engine.apply_linear(self.lin, residuals, nz)[:n]
        outs_dot = [
            zeros_like_aval(tangent_aval(a)) if t is None else t
            for t, a in zip(outs_dot, self.out_avals, strict=True)
        ]
        return tree_util.tree_unflatten(self.out_tree, outs_dot)


def _placed_otherwise(x, aval) -> bool:
    """Whether `x` is on a mesh with Explicit axes but not laid out as values of `aval` are.

    As JAX's type check (`core.typecompat`): a value with no mesh (a NumPy array, a
    single-device array) matches any layout; on Explicit axes the layout is part of the type.
    """
    have, want = jax.typeof(x).sharding, getattr(aval, "sharding", None)
    if want is None or have.mesh.empty or want.mesh.empty:
        return False
    explicit = AxisType.Explicit in (*have.mesh.axis_types, *want.mesh.axis_types)
    return explicit and not same_layout(have, want, len(aval.shape))


def _check_tangent_sharding(t, aval, expected):
    """JAX's error for a tangent placed otherwise than its primal on Explicit mesh axes."""
    if _placed_otherwise(t, aval):
        raise ValueError(
            "linearized function called on tangent values inconsistent with the original "
            f"primal values:\nGot tangent aval {jax.typeof(t).str_short()} for primal aval "
            f"{aval.str_short()} but expected {expected.str_short()}. On Explicit mesh axes a "
            "tangent must have its primal's sharding: pass "
            "`jax.sharding.reshard(t, primal.sharding)`."
        )


def linearized_function(
    fun, lin, residuals, in_tree, out_tree, out_avals, primal_avals, nonzeros, n_aux, placements
):
    """The linear map of a linearized program, as a `Partial` over its residuals."""
    static = LinearizedFunction(
        lin, _fun_name(fun), in_tree, out_tree, out_avals, primal_avals, nonzeros, n_aux, placements
    )
    return tree_util.Partial(static, *residuals)


class TransposedFunction:
    """The static part of `linear_transpose`'s result: `(*residuals, ct) -> input cotangents`."""

    def __init__(self, split, in_tree, out_tree, out_avals, in_avals):
        self.split = split
        self.in_tree = in_tree
        self.out_tree = out_tree
        self.out_avals = tuple(out_avals)
        self.in_avals = tuple(in_avals)

    def __call__(self, *args):
        n_res = self.split.num_residuals
        residuals, user_args = args[:n_res], args[n_res:]
        if not user_args:
            raise TypeError(
                "transposed_fun() missing 1 required positional argument: 'out_cotangent'. "
                "Pass the cotangent of the function's output."
            )
        if len(user_args) != 1:
            raise TypeError(
                f"transposed_fun() takes 1 positional argument (the output cotangent) but "
                f"{len(user_args)} were given. Pass the cotangent of the function's output as "
                "one pytree."
            )
        (out_ct,) = user_args
        ct_flat, ct_tree = tree_util.tree_flatten(out_ct)
        if ct_tree != self.out_tree:
            raise TypeError(
                "cotangent tree does not match function output, expected "
                f"{self.out_tree} but got {ct_tree}"
            )
        for ct, aval in zip(ct_flat, self.out_avals, strict=True):
            if np.shape(ct) != aval.shape or arguments._dtype(ct) != aval.dtype:
                raise TypeError(
                    f"cotangent type does not match function output, expected {self.out_avals} "
                    f"but got {ct_flat}. The cotangent of output shape {aval.shape} must be "
                    f"{arguments._dtype_name(aval.dtype)} of that shape, not {np.shape(ct)} "
                    f"{arguments._dtype_name(arguments._dtype(ct))}."
                )
        cts = [c for c, u in zip(ct_flat, self.split.out_unknowns, strict=True) if u]
        mask = [False] * n_res + [True] * len(self.in_avals)
        cts_in = backward_pass(self.split.linear, [], residuals, mask, cts)
        # An integer input's cotangent is an integer array (int -> int transposes), not float0.
        cts_in = [
            zeros_like_aval(aval) if type(c) is Zero and c.aval.dtype != aval.dtype else c
            for c, aval in zip(cts_in, self.in_avals, strict=True)
        ]
        return tree_util.tree_unflatten(self.in_tree, [_materialize(c) for c in cts_in])


def transposed_function(split, in_tree, out_tree, out_avals, in_avals):
    """The transpose of a linear program, as a `Partial` over its constants."""
    known = split.known
    n_known_out = sum(not u for u in split.out_unknowns)
    residuals = eval_jaxpr(known.jaxpr, known.consts)[n_known_out:]
    static = TransposedFunction(split, in_tree, out_tree, out_avals, in_avals)
    return tree_util.Partial(static, *residuals)
