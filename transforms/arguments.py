"""Argument handling shared by every transform: flattening, checks, `argnums`, seeds.

The checks raise JAX's exception types with JAX's sentences, since our transforms are drop-ins.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import numpy as np
from jax import dtypes, tree_util
from jax.core import ShapedArray

from . import concrete, reuse, tracing
from .tracing import mesh_context, shape_dtype
from .zeros import (
    Zero,
    full_like_aval,
    tangent_dtype,
    varying_axes,
    zeros_like_aval,
)


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
    reuse_key = reuse.key(fun, (has_aux, api_name), in_tree, flat)
    if reuse_key is not None and (hit := reuse.lookup(reuse_key)) is not None:
        closed, out_tree, aux_tree = hit
        return closed, flat, out_tree, aux_tree
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
    if reuse_key is not None and _reusable(closed, aux_tree):
        reuse.store(reuse_key, (closed, out_tree, aux_tree))
    return closed, flat, out_tree, aux_tree


def _reusable(closed, aux_tree) -> bool:
    # A path-dependent trace (Python control flow on values) holds for its values only; an aux
    # leaf that is a Python object would be handed back shared between calls.
    if tracing.path_of(closed) is not None:
        return False
    if aux_tree is None:
        return True
    return all(
        t or x is None or type(x) in (bool, int, float, complex, str)
        for x, t in zip(aux_tree.leaves, aux_tree.is_traced, strict=True)
    )


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
    f_partial._transforms_partial = (fun, argnums, args)  # what reuse.key checks instead
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
    return _cached_unit_seed(
        aval.dtype, aval.weak_type, jax.config.jax_default_device, mesh_context()
    )


@functools.lru_cache(maxsize=64)
def _cached_unit_seed(dtype, weak_type, device, mesh):
    # Arrays are immutable, so one seed serves every call (on one device, under one mesh):
    # eagerly that saves a dispatch.
    with jax.ensure_compile_time_eval():
        return full_like_aval(ShapedArray((), dtype, weak_type=weak_type), 1)


def _materialize_ct(ct, x):
    """A cotangent at the API boundary: zeros of the right type for symbolic zeros."""
    if type(ct) is Zero:
        return zeros_like_aval(ct.aval)
    return ct


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
