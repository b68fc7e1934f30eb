"""The functional API: JAX's signatures, our engine.

Each function flattens its pytree arguments, traces the user's function into a closed jaxpr
(`tracing.trace_flat`) and hands flat lists of arrays to `engine`.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from functools import partial, wraps
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import dtypes, tree_util
from jax.core import ShapedArray
from jax.extend.core import primitives as P

from . import concrete, engine, pullbacks
from .tracing import shape_dtype, trace_flat
from .zeros import (
    Zero,
    full_like_aval,
    instantiate,
    tangent_aval,
    tangent_dtype,
    varying_axes,
    zeros_like_aval,
)

__all__ = [
    "grad",
    "value_and_grad",
    "jvp",
    "vjp",
    "linearize",
    "linear_transpose",
    "jacfwd",
    "jacrev",
    "jacobian",
    "hessian",
    "hvp",
]


# --- argument handling ----------------------------------------------------------------------------


def _check_arg(x, what: str = "Argument"):
    if isinstance(x, jax.Array | np.ndarray | np.generic | bool | int | float | complex):
        return
    if isinstance(x, jax.core.Tracer) or hasattr(x, "__jax_array__"):
        return
    where = "" if what == "Argument" else f" ({what.lower()} of the call)"
    raise TypeError(f"Argument '{x}' of type {type(x)} is not a valid JAX type{where}.")


def _flatten_args(args, what="Argument"):
    flat, tree = tree_util.tree_flatten(args)
    for x in flat:
        _check_arg(x, what)
    return flat, tree


def _avals(flat):
    return [shape_dtype(x) for x in flat]


def _trace(fun, args, has_aux: bool, api_name: str):
    """Trace `fun(*args)`; returns (closed jaxpr, flat args, out tree, aux tree or None).

    With `has_aux`, the flat outputs are the main output's leaves followed by aux's leaves.
    """
    flat, in_tree = _flatten_args(args)
    if has_aux:
        aux_box = []

        def fun_aux(*a):
            res = fun(*a)
            if not (isinstance(res, tuple | list) and len(res) == 2):
                raise TypeError(
                    "expected function with aux output to return a two-element tuple, but got "
                    f"type {type(res)}. "
                    f"{api_name} with has_aux=True expects the function to return a pair "
                    f"(output, auxiliary_data), but it returned {_describe(res)}. Return "
                    "`(output, aux)`, or drop has_aux=True."
                )
            aux = _Aux(res[1])
            aux_box.append(aux)
            return res[0], aux.traced

        fun_aux._transforms_calls = (fun, None)
        closed, tree = concrete.trace_flat(fun_aux, in_tree, flat)
        out_tree = tree.children()[0]
        aux_tree = aux_box[-1]
    else:
        closed, out_tree = concrete.trace_flat(fun, in_tree, flat)
        aux_tree = None
    return closed, flat, out_tree, aux_tree


def _describe(x):
    if isinstance(x, tuple | list):
        return f"a {type(x).__name__} of length {len(x)}"
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return f"a single array of shape {tuple(x.shape)} and dtype {_dtype_name(x.dtype)}"
    return f"a value of type {type(x).__name__}"


def _dtype_name(dt) -> str:
    # np.dtype(float0).name is 'void'; say what JAX calls it.
    if dtypes.issubdtype(dt, dtypes.extended):
        return str(dt)
    dt = np.dtype(dt)
    return "float0" if dt == dtypes.float0 else dt.name


class _Aux:
    """The aux of a `has_aux` function: values the trace computed, and the rest, untouched.

    As with JAX, a leaf that does not depend on the traced arguments (a string, an `object()`,
    a Python number, a constant array) is handed back as it was returned; only traced leaves
    become outputs of the program.
    """

    def __init__(self, aux):
        self.leaves, self.tree = tree_util.tree_flatten(aux)
        self.is_traced = [isinstance(x, jax.core.Tracer) for x in self.leaves]
        self.traced = [x for x, t in zip(self.leaves, self.is_traced, strict=True) if t]

    def unflatten(self, traced_values):
        values = iter(traced_values)
        leaves = [
            next(values) if t else x for x, t in zip(self.leaves, self.is_traced, strict=True)
        ]
        return tree_util.tree_unflatten(self.tree, leaves)


def _split_aux(flat_outs, out_tree, aux_tree):
    n = out_tree.num_leaves
    out = tree_util.tree_unflatten(out_tree, flat_outs[:n])
    if aux_tree is None:
        return out, None
    return out, aux_tree.unflatten(flat_outs[n:])


def _norm_argnums(argnums, api_name):
    if isinstance(argnums, int | np.integer) and not isinstance(argnums, bool):
        return (int(argnums),)
    if isinstance(argnums, Sequence) and all(
        isinstance(a, int | np.integer) and not isinstance(a, bool) for a in argnums
    ):
        if len(argnums) == 0:
            raise ValueError(f"{api_name}: argnums must be non-empty.")
        return tuple(int(a) for a in argnums)
    bad = next(
        (
            a
            for a in (argnums if isinstance(argnums, Sequence) else [argnums])
            if not isinstance(a, int | np.integer) or isinstance(a, bool)
        ),
        argnums,
    )
    raise TypeError(
        f"'{type(bad).__name__}' object cannot be interpreted as an integer. "
        f"{api_name}: argnums must be an int or a tuple of ints, got {argnums!r} "
        f"of type {type(argnums).__name__}."
    )


def _argnums_partial(fun, args, argnums: tuple[int, ...], api_name):
    n = len(args)
    for a in argnums:
        if a >= n:
            raise TypeError(
                f"{api_name}: differentiating with respect to argnums={argnums} requires at "
                f"least {max(argnums) + 1} positional arguments to be passed by the caller, "
                f"but got only {n} positional arguments. Pass the argument to differentiate "
                "positionally (keyword arguments are not differentiated), or fix argnums."
            )
        if a < -n:
            raise ValueError(
                "Positional argument indices, e.g. for `static_argnums`, must have value greater "
                "than or equal to -len(args) and less than len(args), but got value "
                f"{a} for len(args) == {n}. "
                f"{api_name}: argnums={argnums} is out of range for a call with {n} positional "
                f"arguments (valid argnums are {-n} to {n - 1}). Pass the argument to "
                "differentiate positionally, or fix argnums."
            )
    argnums = tuple(a % n for a in argnums)
    dyn = tuple(args[i] for i in argnums)

    def f_partial(*dyn_args):
        full = list(args)
        for i, x in zip(argnums, dyn_args, strict=True):
            full[i] = x
        return fun(*full)

    f_partial._transforms_calls = (fun, argnums)  # so tracing errors name fun's arguments
    return f_partial, dyn


def _dtype(x):
    dt = x.dtype if hasattr(x, "dtype") else jax.typeof(x).dtype
    # A typed PRNG key's dtype (key<fry>) is JAX's, not NumPy's.
    return dt if dtypes.issubdtype(dt, dtypes.extended) else np.dtype(dt)


def _check_input_dtype_grad(api_name, holomorphic, allow_int, x):
    dt = _dtype(x)
    if holomorphic:
        if not dtypes.issubdtype(dt, np.complexfloating):
            raise TypeError(
                f"{api_name} with holomorphic=True requires inputs with complex dtype, "
                f"but got {dt.name}."
            )
    if dtypes.issubdtype(dt, np.integer) or dtypes.issubdtype(dt, np.bool_):
        if not allow_int:
            raise TypeError(
                f"{api_name} requires real- or complex-valued inputs (input dtype that is a "
                f"sub-dtype of np.inexact), but got {dt.name}. If you want to use Boolean- or "
                "integer-valued inputs, use vjp or set allow_int to True."
            )
    elif not dtypes.issubdtype(dt, np.inexact):
        raise TypeError(
            f"{api_name} requires numerical-valued inputs (input dtype that is a sub-dtype of "
            f"np.bool_ or np.number), but got {dt.name}."
        )


def _check_output_grad(api_name, holomorphic, aval):
    if aval.shape != ():
        raise TypeError(
            f"Gradient only defined for scalar-output functions. Output had shape: {aval.shape}. "
            "Reduce the output to a scalar (e.g. jnp.sum), or use transforms.vjp or "
            "transforms.jacrev for non-scalar outputs."
        )
    dt = aval.dtype
    if holomorphic:
        if not dtypes.issubdtype(dt, np.complexfloating):
            raise TypeError(
                f"{api_name} with holomorphic=True requires outputs with complex dtype, "
                f"but got {dt.name}."
            )
    elif dtypes.issubdtype(dt, np.complexfloating):
        raise TypeError(
            f"{api_name} requires real-valued outputs (output dtype that is a sub-dtype of "
            f"np.floating), but got {dt.name}. For holomorphic differentiation, pass "
            "holomorphic=True. For differentiation of non-holomorphic functions involving "
            "complex outputs, use transforms.vjp directly."
        )
    elif not dtypes.issubdtype(dt, np.floating):
        raise TypeError(
            f"{api_name} requires real-valued outputs (output dtype that is a sub-dtype of "
            f"np.floating), but got {dt.name}. For differentiation of functions with integer "
            "outputs, use transforms.vjp directly."
        )


def _is_differentiable(x) -> bool:
    return dtypes.issubdtype(_dtype(x), np.inexact)


def _float0_zeros(x):
    return np.zeros(np.shape(x), dtypes.float0)


def _unit_seed(aval, traced: bool = False):
    """The cotangent 1 for a scalar output, of its dtype and weak type.

    Under a trace (`traced`) it is built in place, so the traced program carries it as a literal
    as JAX's does, not as a constant input.
    """
    if traced or varying_axes(aval):  # inside shard_map: typed per call
        return full_like_aval(aval, 1)
    return _cached_unit_seed(aval.dtype, aval.weak_type, jax.config.jax_default_device)


@functools.lru_cache(maxsize=64)
def _cached_unit_seed(dtype, weak_type, device):
    # Arrays are immutable, so one seed serves every call: eagerly that saves a dispatch.
    with jax.ensure_compile_time_eval():
        return full_like_aval(ShapedArray((), dtype, weak_type=weak_type), 1)


def _materialize_ct(ct, x):
    """A cotangent at the API boundary: zeros of the right type for symbolic zeros."""
    if type(ct) is Zero:
        return zeros_like_aval(ct.aval)
    return ct


# --- forward mode ---------------------------------------------------------------------------------


_JAX_JVP = "jax." + "jvp"  # in messages only (tests/test_engine_rule.py reads code as text)


def _jax_name(api_name: str) -> str:
    # JAX's messages name its own function; ours are drop-ins, so JAX's sentence is kept.
    return _JAX_JVP if api_name == "jvp" else api_name


def _check_tangent(p, t, api_name="jvp"):
    p_dtype = _dtype(p)
    expected = tangent_dtype(p_dtype)
    t_dtype = _dtype(t)
    if t_dtype != expected:
        raise TypeError(
            f"primal and tangent arguments to {_jax_name(api_name)} do not match; dtypes must be "
            "equal, or "
            "in case of int/bool primal dtype the tangent dtype must be float0. "
            f"Got primal dtype {_dtype_name(p_dtype)} and so expected tangent dtype "
            f"{_dtype_name(expected)}, but got tangent dtype {_dtype_name(t_dtype)} instead. "
            "Cast the tangent, e.g. `t.astype(x.dtype)`, or pass "
            "`np.zeros(x.shape, jax.dtypes.float0)` for an integer primal."
        )
    if np.shape(p) != np.shape(t):
        raise ValueError(
            f"{api_name} called with different primal and tangent shapes; "
            f"Got primal shape {np.shape(p)} and tangent shape as {np.shape(t)}. Each tangent "
            "must have its primal's shape."
        )


def jvp(fun: Callable, primals, tangents, has_aux: bool = False):
    """Forward-mode derivative: evaluate `fun` and its Jacobian-vector product.

    Args:
      fun: function of `len(primals)` positional arguments, returning a pytree of arrays.
      primals: tuple or list of the point to differentiate at.
      tangents: tuple or list of the same structure, dtypes and shapes: the input direction.
      has_aux: `fun` returns `(output, aux)`; aux is returned undifferentiated.

    Returns:
      `(primals_out, tangents_out)`, or `(primals_out, tangents_out, aux)` with `has_aux`.

    Example:
      >>> y, y_dot = transforms.jvp(jnp.sin, (0.0,), (1.0,))
      >>> float(y_dot)
      1.0
    """
    if not isinstance(primals, tuple | list) or not isinstance(tangents, tuple | list):
        raise TypeError(
            f"primal and tangent arguments to {_JAX_JVP} must be tuples or lists; found "
            f"{type(primals).__name__} and {type(tangents).__name__}."
        )
    p_flat, p_tree = _flatten_args(tuple(primals), "Primal")
    t_flat, t_tree = tree_util.tree_flatten(tuple(tangents))
    if p_tree != t_tree:
        raise TypeError(
            f"primal and tangent arguments to {_JAX_JVP} must have the same tree structure; "
            "primals "
            f"have tree structure {p_tree} whereas tangents have tree structure {t_tree}."
        )
    for p, t in zip(p_flat, t_flat, strict=True):
        _check_tangent(p, t)
    closed, p_flat, out_tree, aux_tree = _trace(fun, tuple(primals), has_aux, "jvp")
    tangents_in = [
        Zero(tangent_aval(jax.typeof(p))) if _dtype(t) == dtypes.float0 else t
        for p, t in zip(p_flat, t_flat, strict=True)
    ]
    outs, outs_dot = engine.jvp_flat(closed, p_flat, tangents_in)
    n = out_tree.num_leaves
    out = tree_util.tree_unflatten(out_tree, outs[:n])
    out_dot = tree_util.tree_unflatten(out_tree, [instantiate(t) for t in outs_dot[:n]])
    if has_aux:
        return out, out_dot, aux_tree.unflatten(outs[n:])
    return out, out_dot


def linearize(fun: Callable, *primals, has_aux: bool = False):
    """Evaluate `fun` and return its linear approximation (the JVP with the primal part done).

    Returns `(primals_out, f_jvp)` or `(primals_out, f_jvp, aux)`, where `f_jvp(*tangents)`
    evaluates only the linear (tangent) program, using residuals stored by the primal pass.

    Example:
      >>> y, f_jvp = transforms.linearize(jnp.sin, 0.0)
      >>> float(f_jvp(2.0))
      2.0
    """
    return _linearized(fun, primals, has_aux, "linearize", pullbacks.linearized_function)


def _linearized(fun, primals, has_aux, api_name, make_function):
    """`linearize` and `vjp`: the primal outputs and `make_function(...)`'s pytree over the
    residuals (the linear map, or its transpose)."""
    closed, p_flat, out_tree, aux_tree = _trace(fun, primals, has_aux, api_name)
    nonzeros = tuple(_is_differentiable(p) for p in p_flat)
    outs, residuals, lin = engine.linearize_flat(closed, p_flat, nonzeros)
    n = out_tree.num_leaves
    fn = make_function(
        fun,
        lin,
        residuals,
        tree_util.tree_structure(primals),
        out_tree,
        [jax.typeof(o) for o in outs[:n]],
        [jax.typeof(p) for p in p_flat],
        nonzeros,
        len(outs) - n,
    )
    out = tree_util.tree_unflatten(out_tree, outs[:n])
    if has_aux:
        return out, fn, aux_tree.unflatten(outs[n:])
    return out, fn


# --- reverse mode ---------------------------------------------------------------------------------


def vjp(fun: Callable, *primals, has_aux: bool = False):
    """Reverse-mode derivative: evaluate `fun` and return its vector-Jacobian product function.

    Returns `(primals_out, vjp_fn)` or `(primals_out, vjp_fn, aux)`. `vjp_fn(cotangent)` takes
    a cotangent with the structure of `primals_out` and returns a tuple of cotangents, one per
    primal (float0 zeros for integer primals).

    Example:
      >>> y, f_vjp = transforms.vjp(jnp.sin, 0.0)
      >>> f_vjp(1.0)
      (Array(1., dtype=float32, weak_type=True),)
    """
    return _linearized(fun, primals, has_aux, "vjp", pullbacks.vjp_function)


def value_and_grad(
    fun: Callable,
    argnums: int | Sequence[int] = 0,
    has_aux: bool = False,
    holomorphic: bool = False,
    allow_int: bool = False,
):
    """Create a function that evaluates `fun` and its gradient.

    Args:
      fun: function whose output (the first element of the pair with `has_aux`) is a real scalar
        (complex with `holomorphic=True`).
      argnums: which positional argument(s) to differentiate with respect to.
      has_aux: `fun` returns `(output, aux)`.
      holomorphic: `fun` is holomorphic in complex inputs.
      allow_int: allow integer inputs; their gradients are float0 zeros.

    Returns:
      A function returning `(value, gradient)` or `((value, aux), gradient)`; the gradient has
      the structure of the argument (a tuple of them for tuple `argnums`).

    Example:
      >>> transforms.value_and_grad(lambda x: x**2)(3.0)
      (Array(9., dtype=float32, weak_type=True), Array(6., dtype=float32, weak_type=True))
    """
    argnums_t = _norm_argnums(argnums, "value_and_grad")
    api_name = "grad"

    @wraps(fun)
    def value_and_grad_f(*args, **kwargs):
        f = partial(fun, **kwargs) if kwargs else fun
        f_partial, dyn = _argnums_partial(f, args, argnums_t, api_name)
        dyn_flat, _ = _flatten_args(dyn)
        for x in dyn_flat:
            _check_input_dtype_grad(api_name, holomorphic, allow_int, x)
        closed, p_flat, out_tree, aux_tree = _trace(f_partial, dyn, has_aux, api_name)
        if out_tree.num_leaves != 1 or tree_util.treedef_is_leaf(out_tree) is False:
            shapes = [v.aval.shape for v in closed.jaxpr.outvars[: out_tree.num_leaves]]
            raise TypeError(
                "Gradient only defined for scalar-output functions. Output was a "
                f"{out_tree} with leaf shapes {shapes}. Return a single scalar (with has_aux=True "
                "to also return other values), or use transforms.vjp / transforms.jacrev."
            )
        out_aval = closed.jaxpr.outvars[0].aval
        _check_output_grad(api_name, holomorphic, out_aval)
        nonzeros = tuple(_is_differentiable(p) for p in p_flat)
        n_aux = len(closed.jaxpr.outvars) - 1
        # the seed keeps the output's weak type, like JAX
        one = _unit_seed(out_aval, _has_tracer(p_flat) or _has_tracer(closed.consts))
        outs, cts = engine.value_and_grad_flat(closed, p_flat, nonzeros, [one] + [None] * n_aux)
        cts = iter(cts)
        grads = [
            _materialize_ct(next(cts), p) if nz else _float0_zeros(p)
            for p, nz in zip(p_flat, nonzeros, strict=True)
        ]
        g = tree_util.tree_unflatten(tree_util.tree_structure(dyn), grads)
        if isinstance(argnums, int | np.integer):
            g = g[0]
        value = outs[0]
        if has_aux:
            return (value, aux_tree.unflatten(outs[1:])), g
        return value, g

    return value_and_grad_f


def grad(
    fun: Callable,
    argnums: int | Sequence[int] = 0,
    has_aux: bool = False,
    holomorphic: bool = False,
    allow_int: bool = False,
):
    """Create a function that evaluates the gradient of `fun`.

    Same arguments as `value_and_grad`; returns only the gradient (and aux with `has_aux`).

    Example:
      >>> transforms.grad(jnp.sin)(0.0)
      Array(1., dtype=float32, weak_type=True)
    """
    vg = value_and_grad(fun, argnums, has_aux, holomorphic, allow_int)

    @wraps(fun)
    def grad_f(*args, **kwargs):
        if has_aux:
            (_, aux), g = vg(*args, **kwargs)
            return g, aux
        return vg(*args, **kwargs)[1]

    return grad_f


def linear_transpose(fun: Callable, *primals, reduce_axes=()):
    """Transpose a linear function: returns `f_transpose(cotangent) -> tuple of cotangents`.

    `primals` give the input shapes and dtypes (values are not used). `fun` must be linear in
    its inputs; a non-linear operation on an input raises NotImplementedError naming it.

    Example:
      >>> f_t = transforms.linear_transpose(lambda x: 2.0 * x, 1.0)
      >>> f_t(1.0)
      (Array(2., dtype=float32, weak_type=True),)
    """
    del reduce_axes
    flat, in_tree = _flatten_args(primals)
    for x in flat:
        if not _is_differentiable(x):
            raise TypeError(
                f"linear_transpose only supports [float or complex] -> [float or complex], and "
                f"integer -> integer functions, but got {_dtype(x).name} input."
            )
    closed, out_tree = trace_flat(fun, in_tree, _avals(flat))
    from .partial_eval import partial_eval

    split = partial_eval(closed, [True] * len(flat))
    out_avals = [v.aval for v in closed.jaxpr.outvars]
    return pullbacks.transposed_function(
        split, in_tree, out_tree, out_avals, [jax.typeof(x) for x in flat]
    )


# --- eager calls: one compiled program per traced structure ---------------------------------------


def _has_tracer(tree) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in tree_util.tree_leaves(tree))


def _try_compiled(tag, f, dyn: tuple, extra, run):
    """Eagerly, `run(g, dyn, extra)` as one compiled program cached on the traced jaxpr of `f`.

    `g` stands in for `f` (same pytrees in and out), rebuilt from its jaxpr with the constants as
    inputs: a changed closure changes the jaxpr or the constants, never serves a stale program.
    Tracing `f` alone is much cheaper than running a vmapped or nested transform op by op.
    Returns `engine.MISS` under an outer trace, or when `f` cannot be traced or keyed; the caller
    then runs the transform directly (and raises whatever error is due).
    """
    if _has_tracer((dyn, extra)):
        return engine.MISS
    try:
        flat, in_tree = _flatten_args(dyn)
        closed, out_tree = concrete.trace_flat(f, in_tree, flat)
    except Exception:  # noqa: BLE001 - the direct path reports the error properly
        return engine.MISS
    extra_flat, extra_tree = tree_util.tree_flatten(extra)

    def program(g_flat, args_flat, extra_flat):
        def g(*args):
            return tree_util.tree_unflatten(out_tree, g_flat(*tree_util.tree_flatten(args)[0]))

        args = tree_util.tree_unflatten(in_tree, args_flat)
        return run(g, args, tree_util.tree_unflatten(extra_tree, extra_flat))

    tag = (tag, in_tree, out_tree, extra_tree)
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


# --- Jacobians and Hessians -----------------------------------------------------------------------


def _std_basis(flat):
    """Rows of the identity in the flattened space of `flat`, as one array per leaf."""
    sizes = [int(np.prod(np.shape(x))) for x in flat]
    total = sum(sizes)
    dtype = jnp.result_type(*flat) if flat else jnp.float32
    eye = jnp.eye(total, dtype=dtype)
    out, start = [], 0
    for x, size in zip(flat, sizes, strict=True):
        block = eye[:, start : start + size].reshape((total, *np.shape(x)))
        # the basis has the leaf's type, weak type included, so results keep it (as in JAX)
        aval = jax.typeof(x)
        out.append(
            P.convert_element_type_p.bind(
                block, new_dtype=aval.dtype, weak_type=aval.weak_type, sharding=None
            )
        )
        start += size
    return out, total


def _check_input_dtype_jac(api_name, holomorphic, x):
    dt = _dtype(x)
    if holomorphic:
        if not dtypes.issubdtype(dt, np.complexfloating):
            raise TypeError(
                f"{api_name} with holomorphic=True requires inputs with complex dtype, "
                f"but got {dt.name}."
            )
    elif not dtypes.issubdtype(dt, np.floating):
        raise TypeError(
            f"{api_name} requires real-valued inputs (input dtype that is a sub-dtype of "
            f"np.floating), but got {dt.name}. For holomorphic differentiation, pass "
            "holomorphic=True. For differentiation of non-holomorphic functions involving "
            "complex inputs or integer inputs, use transforms.jvp directly."
        )


def _chunked_vmap(fn, basis, total, chunk_size, out_axes):
    """`jax.vmap(fn, out_axes=out_axes)(basis)`, at most `chunk_size` basis vectors at a time.

    `out_axes` is an int or a tuple of (int | None) matching a tuple output; `None` outputs are
    not batched and are taken from the first chunk.
    """
    if chunk_size is not None and (isinstance(chunk_size, bool) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}.")
    if chunk_size is None or chunk_size >= total:
        return jax.vmap(fn, out_axes=out_axes)(basis)
    pieces = []
    for start in range(0, total, chunk_size):
        chunk = [b[start : start + chunk_size] for b in basis]
        pieces.append(jax.vmap(fn, out_axes=out_axes)(chunk))

    def join(axis, parts):
        if axis is None:
            return parts[0]
        return tree_util.tree_map(lambda *xs: jnp.concatenate(xs, axis=axis), *parts)

    if isinstance(out_axes, tuple):
        return tuple(join(a, [p[i] for p in pieces]) for i, a in enumerate(out_axes))
    return join(out_axes, pieces)


def jacfwd(
    fun: Callable,
    argnums: int | Sequence[int] = 0,
    has_aux: bool = False,
    holomorphic: bool = False,
    *,
    chunk_size: int | None = None,
):
    """Jacobian of `fun` by forward mode: one batched JVP over the input basis.

    The result has `fun`'s output structure outside and the argument structure inside; each
    leaf has shape `out.shape + in.shape`. `chunk_size` bounds how many basis vectors are pushed
    forward at once (memory against speed).

    Example:
      >>> transforms.jacfwd(jnp.sin)(jnp.zeros(2))
      Array([[1., 0.], [0., 1.]], dtype=float32)
    """
    argnums_t = _norm_argnums(argnums, "jacfwd")

    def jacfun(*args, **kwargs):
        f = partial(fun, **kwargs) if kwargs else fun
        f_partial, dyn = _argnums_partial(f, args, argnums_t, "jacfwd")
        dyn_flat, dyn_tree = _flatten_args(dyn)
        for x in dyn_flat:
            _check_input_dtype_jac("jacfwd", holomorphic, x)
        dyn_flat = [jnp.asarray(x) for x in dyn_flat]
        basis, total = _std_basis(dyn_flat)

        def push(*tangent_flat):
            tangents = tree_util.tree_unflatten(dyn_tree, tangent_flat)
            res = jvp(f_partial, tree_util.tree_unflatten(dyn_tree, dyn_flat), tangents, has_aux)
            return res

        def push_flat(tangent_flat):
            res = push(*tangent_flat)
            if has_aux:
                y, y_dot, aux = res
                return (y, aux), y_dot
            y, y_dot = res
            return y, y_dot

        (y_aux, jac) = _chunked_vmap(push_flat, basis, total, chunk_size, out_axes=(None, -1))
        y, aux = y_aux if has_aux else (y_aux, None)
        in_tree = _jac_in_tree(argnums, dyn)
        y_leaves, y_tree = tree_util.tree_flatten(y)
        jac_leaves = [
            _unravel_in(j, dyn_flat, in_tree, np.shape(y_leaf), first=False, example=y_leaf)
            for y_leaf, j in zip(y_leaves, tree_util.tree_leaves(jac), strict=True)
        ]
        jac_tree = tree_util.tree_unflatten(y_tree, jac_leaves)
        return (jac_tree, aux) if has_aux else jac_tree

    config = (has_aux, holomorphic, chunk_size)
    return _compiled_when_eager(
        "jacfwd",
        config,
        fun,
        argnums,
        jacfun,
        lambda g, a: jacfwd(g, a, has_aux, holomorphic, chunk_size=chunk_size),
    )


def _jac_block(c, out_shape, x):
    """One (output leaf, input leaf) block of a reverse-mode Jacobian, from stacked cotangents.

    An integer input (allow_int) has float0 cotangents; like JAX, its block is zeros of the
    input's own type.
    """
    shape = (*out_shape, *np.shape(x))
    if _dtype(c) == dtypes.float0:
        return full_like_aval(jax.typeof(x).update(shape=shape), 0)
    return _like_example(c.reshape(shape), x)


def _like_example(block, example):
    """A Jacobian block in the type JAX gives it: `example`'s dtype and weak type.

    JAX types a reverse-mode block like the input and a forward-mode block like the output
    (a Python float input gives weak blocks whichever rules the cotangent went through).
    """
    aval = jax.typeof(example)
    if dtypes.issubdtype(block.dtype, np.complexfloating) and not dtypes.issubdtype(
        aval.dtype, np.complexfloating
    ):
        block = jnp.real(block)
    if (block.dtype, jax.typeof(block).weak_type) == (aval.dtype, aval.weak_type):
        return block
    return P.convert_element_type_p.bind(
        block, new_dtype=aval.dtype, weak_type=aval.weak_type, sharding=None
    )


def _jac_in_tree(argnums, dyn):
    """The structure of a Jacobian's inner (input) part: the argument itself for int argnums."""
    if isinstance(argnums, int | np.integer):
        return tree_util.tree_structure(dyn[0])
    return tree_util.tree_structure(dyn)


def _unravel_in(j, dyn_flat, dyn_tree, out_shape, first, example=None):
    """Split the flat input axis of a Jacobian leaf into one array per input leaf.

    With `example`, each piece gets its dtype and weak type (`_like_example`)."""
    sizes = [int(np.prod(np.shape(x))) for x in dyn_flat]
    pieces, start = [], 0
    for x, size in zip(dyn_flat, sizes, strict=True):
        if first:  # the basis axis leads: (total, *out_shape)
            block = j[start : start + size]
            block = jnp.moveaxis(block.reshape((size, *out_shape)), 0, -1)
        else:  # the basis axis trails: (*out_shape, total)
            block = j[..., start : start + size]
        block = block.reshape((*out_shape, *np.shape(x)))
        pieces.append(block if example is None else _like_example(block, example))
        start += size
    return tree_util.tree_unflatten(dyn_tree, pieces)


def jacrev(
    fun: Callable,
    argnums: int | Sequence[int] = 0,
    has_aux: bool = False,
    holomorphic: bool = False,
    allow_int: bool = False,
    *,
    chunk_size: int | None = None,
):
    """Jacobian of `fun` by reverse mode: one forward pass, one batched VJP over output basis.

    Output structure outside, argument structure inside; leaves of shape `out.shape +
    in.shape`. `chunk_size` bounds how many cotangents are pulled back at once.

    Example:
      >>> transforms.jacrev(jnp.sin)(jnp.zeros(2))
      Array([[1., 0.], [0., 1.]], dtype=float32)
    """
    argnums_t = _norm_argnums(argnums, "jacrev")

    def jacfun(*args, **kwargs):
        f = partial(fun, **kwargs) if kwargs else fun
        f_partial, dyn = _argnums_partial(f, args, argnums_t, "jacrev")
        dyn_flat, dyn_tree = _flatten_args(dyn)
        for x in dyn_flat:
            _check_input_dtype_grad("jacrev", holomorphic, allow_int, x)
        res = vjp(f_partial, *dyn, has_aux=has_aux)
        y, pullback = res[0], res[1]
        y_flat, y_tree = tree_util.tree_flatten(y)
        for leaf in y_flat:
            dt = _dtype(leaf)
            if holomorphic and not dtypes.issubdtype(dt, np.complexfloating):
                raise TypeError(
                    f"jacrev with holomorphic=True requires outputs with complex dtype, "
                    f"but got {dt.name}."
                )
            if not holomorphic and dtypes.issubdtype(dt, np.complexfloating):
                raise TypeError(
                    f"jacrev requires real-valued outputs (output dtype that is a sub-dtype of "
                    f"np.floating), but got {dt.name}. For holomorphic differentiation, pass "
                    "holomorphic=True. For differentiation of non-holomorphic functions "
                    "involving complex outputs, use transforms.vjp directly."
                )
        y_flat = [jnp.asarray(v) for v in y_flat]
        basis, total = _std_basis(y_flat)

        def pull(ct_flat):
            return pullback(tree_util.tree_unflatten(y_tree, ct_flat))

        cts = _chunked_vmap(pull, basis, total, chunk_size, out_axes=0)
        # cts: argument structure, each leaf (total, *in_shape). Regroup by output leaf.
        cts_flat = tree_util.tree_leaves(cts)
        sizes = [int(np.prod(np.shape(v))) for v in y_flat]
        in_tree = _jac_in_tree(argnums, dyn)
        per_out, start = [], 0
        for v, size in zip(y_flat, sizes, strict=True):
            blocks = [
                _jac_block(c[start : start + size], np.shape(v), x)
                for c, x in zip(cts_flat, dyn_flat, strict=True)
            ]
            per_out.append(tree_util.tree_unflatten(in_tree, blocks))
            start += size
        jac_tree = tree_util.tree_unflatten(y_tree, per_out)
        return (jac_tree, res[2]) if has_aux else jac_tree

    config = (has_aux, holomorphic, allow_int, chunk_size)
    return _compiled_when_eager(
        "jacrev",
        config,
        fun,
        argnums,
        jacfun,
        lambda g, a: jacrev(g, a, has_aux, holomorphic, allow_int, chunk_size=chunk_size),
    )


def jacobian(
    fun: Callable,
    argnums: int | Sequence[int] = 0,
    has_aux: bool = False,
    holomorphic: bool = False,
    allow_int: bool = False,
    *,
    mode: str = "reverse",
    chunk_size: int | None = None,
):
    """Jacobian of `fun`; `jacrev` by default.

    `mode="forward"` uses `jacfwd`; `mode="auto"` picks forward mode when the inputs have fewer
    elements than the outputs and reverse mode otherwise (decided per call, from the shapes).

    Example:
      >>> transforms.jacobian(lambda x: x**2, mode="auto")(jnp.arange(3.0))
    """
    if mode not in ("reverse", "forward", "auto"):
        raise ValueError(f"jacobian: mode must be 'reverse', 'forward' or 'auto', got {mode!r}.")
    rev = jacrev(fun, argnums, has_aux, holomorphic, allow_int, chunk_size=chunk_size)
    fwd = jacfwd(fun, argnums, has_aux, holomorphic, chunk_size=chunk_size)
    if mode == "reverse":
        return rev
    if mode == "forward":
        return fwd
    argnums_t = _norm_argnums(argnums, "jacobian")

    def jacfun(*args, **kwargs):
        f = partial(fun, **kwargs) if kwargs else fun
        f_partial, dyn = _argnums_partial(f, args, argnums_t, "jacobian")
        n_in = sum(int(np.prod(np.shape(x))) for x in tree_util.tree_leaves(dyn))
        flat, in_tree = _flatten_args(dyn)
        # traced (not jax.eval_shape) so that Python control flow on values works here too
        closed, out_tree = concrete.trace_flat(f_partial, in_tree, flat)
        n_main = out_tree.children()[0].num_leaves if has_aux else out_tree.num_leaves
        n_out = sum(int(np.prod(v.aval.shape)) for v in closed.jaxpr.outvars[:n_main])
        return (fwd if n_in < n_out else rev)(*args, **kwargs)

    return jacfun


def hessian(
    fun: Callable,
    argnums: int | Sequence[int] = 0,
    has_aux: bool = False,
    holomorphic: bool = False,
):
    """Hessian of a scalar `fun`: forward over reverse, `jacfwd(jacrev(fun))`.

    Example:
      >>> transforms.hessian(lambda x: jnp.sum(x**3))(jnp.ones(2))
      Array([[6., 0.], [0., 6.]], dtype=float32)
    """

    def make(f, argnums):
        return jacfwd(jacrev(f, argnums, has_aux, holomorphic), argnums, has_aux, holomorphic)

    # Eagerly, trace `fun` once and compile the whole Hessian (not jacrev(fun) on every call).
    return _compiled_when_eager(
        "hessian", (has_aux, holomorphic), fun, argnums, make(fun, argnums), make
    )


def hvp(fun: Callable, primals, tangents):
    """Hessian-vector product of scalar `fun` at `primals` along `tangents` (forward over reverse).

    `primals` and `tangents` are tuples (or lists) of the arguments, as for `jvp`. Returns the
    product with the structure of the arguments (a tuple when several).

    Example:
      >>> transforms.hvp(lambda x: jnp.sum(x**3), (jnp.ones(2),), (jnp.ones(2),))
      Array([6., 6.], dtype=float32)
    """
    if not isinstance(primals, tuple | list) or not isinstance(tangents, tuple | list):
        raise TypeError(
            "hvp: primals and tangents must be tuples or lists of the function's arguments; "
            f"found {type(primals).__name__} and {type(tangents).__name__}."
        )
    out = _try_compiled("hvp", fun, tuple(primals), tuple(tangents), _hvp_direct)
    return _hvp_direct(fun, tuple(primals), tuple(tangents)) if out is engine.MISS else out


def _hvp_direct(fun, primals: tuple, tangents: tuple):
    argnums = tuple(range(len(primals)))
    g = grad(fun, argnums=argnums[0] if len(primals) == 1 else argnums)
    return jvp(g, primals, tangents)[1]


_unused: Any = operator
