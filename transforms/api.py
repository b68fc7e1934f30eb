"""The functional API: JAX's signatures, our engine.

Each function flattens its pytree arguments, traces the user's function into a closed jaxpr
(`tracing.trace_flat`) and hands flat lists of arrays to `engine`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from functools import partial, wraps
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import dtypes, tree_util

from . import concrete, engine, layout, pullbacks
from .arguments import (
    _JAX_JVP,
    _argnums_partial,
    _avals,
    _check_input_dtype_grad,
    _check_input_dtype_jac,
    _check_output_grad,
    _check_tangent,
    _dtype,
    _flatten_args,
    _float0_zeros,
    _is_differentiable,
    _materialize_ct,
    _norm_argnums,
    _trace,
    _unit_seed,
)
from .basis import _chunked_vmap, _jac_block, _jac_in_tree, _std_basis, _unravel_in
from .eager import _compiled_when_eager, _has_tracer, _try_compiled
from .tracing import trace_flat
from .zeros import (
    Zero,
    explicit_placement,
    instantiate,
    tangent_aval,
    with_placement,
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


# --- forward mode ---------------------------------------------------------------------------------


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
        Zero(tangent_aval(jax.typeof(p)))
        if _dtype(t) == dtypes.float0
        else with_placement(t, explicit_placement(p))
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
        [explicit_placement(p) for p in p_flat],
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
    # JAX transposes a custom_jvp function's primal body here: trace it, not its rule.
    closed, out_tree = trace_flat(fun, in_tree, _avals(flat), rule_first=False)
    _check_linear_transpose_dtypes(
        [_dtype(x) for x in flat], [v.aval.dtype for v in closed.jaxpr.outvars]
    )
    from .partial_eval import partial_eval

    split = partial_eval(closed, [True] * len(flat))
    out_avals = [v.aval for v in closed.jaxpr.outvars]
    return pullbacks.transposed_function(
        split, in_tree, out_tree, out_avals, [jax.typeof(x) for x in flat]
    )


def _check_linear_transpose_dtypes(in_dtypes, out_dtypes):
    # JAX's rule: floats to floats (a real or complex vector space), or integers to integers
    # (a linear map of integer arrays, transposed with integer cotangents).
    def all_of(kind, ds):
        return all(dtypes.issubdtype(d, kind) for d in ds)

    if (all_of(np.inexact, in_dtypes) and all_of(np.inexact, out_dtypes)) or (
        all_of(np.integer, in_dtypes) and all_of(np.integer, out_dtypes)
    ):
        return
    raise TypeError(
        "linear_transpose only supports [float or complex] -> [float or complex], and integer "
        f"-> integer functions, but got {list(in_dtypes)} -> {list(out_dtypes)}. Cast the "
        "inputs or outputs so that both sides are floating point (or both integer)."
    )


# --- Jacobians and Hessians -----------------------------------------------------------------------


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
        in_tree = _jac_in_tree(argnums, dyn)

        def batched(*primals_flat):
            basis, total = _std_basis(primals_flat)
            primals = tree_util.tree_unflatten(dyn_tree, primals_flat)

            def push_flat(tangent_flat):
                tangents = tree_util.tree_unflatten(dyn_tree, tangent_flat)
                res = jvp(f_partial, primals, tangents, has_aux)
                if has_aux:
                    y, y_dot, aux = res
                    return (y, aux), y_dot
                y, y_dot = res
                return y, y_dot

            (y_aux, jac) = _chunked_vmap(push_flat, basis, total, chunk_size, out_axes=(None, -1))
            y, aux = y_aux if has_aux else (y_aux, None)
            y_leaves, y_tree = tree_util.tree_flatten(y)
            jac_leaves = [
                _unravel_in(j, primals_flat, in_tree, np.shape(y_leaf), first=False, example=y_leaf)
                for y_leaf, j in zip(y_leaves, tree_util.tree_leaves(jac), strict=True)
            ]
            jac_tree = tree_util.tree_unflatten(y_tree, jac_leaves)
            return (jac_tree, aux) if has_aux else jac_tree

        # Staged (jit), the batched program is simplified first: JAX's batching rules leave
        # transposes around elementwise work that XLA compiles into strided loops (layout.py).
        return layout.call_simplified(batched, dyn_flat)

    config = (has_aux, holomorphic, chunk_size)
    return _compiled_when_eager(
        "jacfwd",
        config,
        fun,
        argnums,
        jacfun,
        lambda g, a: jacfwd(g, a, has_aux, holomorphic, chunk_size=chunk_size),
    )


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
