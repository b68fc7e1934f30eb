"""Keras calls as tape ops: each top-level call of a Keras layer, loss, metric or function is one
recorded op, a pure jitted function of the Keras Variables it reads and its inputs.

Keras (JAX backend) computes with `jax.numpy`, so a call can be run as a pure function inside
`keras.StatelessScope`: Variable values go in, outputs and updated state (BatchNormalization
statistics, Dropout seeds, metric totals) come out. `run_node` records that function with
`core.apply`, so tapes differentiate it with our engine like any other op, `tf.function`
lifts the state like any Variable's, and nested tapes / jacobians / forward accumulators work
through it. Each Keras Variable has a `tf.Variable` twin sharing its storage: tapes watch the
twin, so `tape.gradient(loss, model.trainable_variables)` finds them.

Bridging happens only for transforms objects, inside an active tape or `tf.function`; plain
Keras code in the same process runs untouched.
"""

from __future__ import annotations

import itertools
import threading
import weakref

import jax
import keras
import numpy as np
from jax import tree_util
from keras.src.backend.common import stateless_scope as _scope
from keras.src.backend.common.masking import get_keras_mask, set_keras_mask

from ..core import apply, lifted_variables, paused, state
from ..tensor import Tensor
from ..variable import Variable, stand_ins

KerasVariable = keras.Variable


class _Local(threading.local):
    def __init__(self):
        self.depth = 0  # >0 while a node runs Keras's own code


_local = _Local()


# --- twins ----------------------------------------------------------------------------------------


class KerasTwin(Variable):
    """The `tf.Variable` standing for a Keras Variable: reads and writes its storage."""

    def __init__(self, keras_variable):  # no Variable.__init__: the value lives in Keras
        self._keras = keras_variable
        self._name = keras_variable.path
        self._uid = next(_twin_ids)

    @property
    def _value(self):
        return self._keras._value

    @_value.setter
    def _value(self, new):
        self._keras._value = new

    @property
    def trainable(self) -> bool:
        return self._keras.trainable

    @property
    def _trainable(self):
        return self._keras.trainable


_twin_ids = itertools.count()


def twin(kv: KerasVariable) -> KerasTwin:
    """The twin of a Keras Variable (made on first use, kept on the Variable)."""
    t = kv.__dict__.get("_transforms_twin")
    if t is None:
        if kv._value is None:
            raise ValueError(
                f"Keras Variable {kv.path!r} is not initialized yet (it was created inside a "
                "stateless scope); build the layer before using it under a tape."
            )
        t = kv.__dict__["_transforms_twin"] = KerasTwin(kv)
    return t


def _stand_in(x):
    if not isinstance(x, KerasVariable):
        return None
    if _local.depth:  # inside a node: the value Keras's scope holds for it
        return Tensor(x.value)
    return twin(x)


stand_ins.append(_stand_in)


# --- when to bridge -------------------------------------------------------------------------------


def _ours(x) -> bool:
    return isinstance(x, Tensor | Variable)


def inside_node() -> bool:
    return _local.depth > 0


def recording_or_tracing() -> bool:
    """A tape or forward accumulator records, or a tf.function traces."""
    return bool(state.recorders and not state.paused) or state.var_values is not None


def should_bridge(args, kwargs) -> bool:
    """Bridge a top-level Keras call made by transforms code, never Keras's own calls."""
    if _local.depth or _scope.in_stateless_scope():
        return False
    leaves = tree_util.tree_leaves((args, kwargs), is_leaf=_ours)
    if any(isinstance(x, keras.KerasTensor) for x in leaves):
        return False  # building a functional model
    return recording_or_tracing() or any(_ours(x) for x in leaves)


def unwrap(nest):
    """Our tensors and variables as the arrays Keras expects (inside a node)."""

    def one(x):
        if isinstance(x, Tensor):
            return x._value
        if isinstance(x, Variable):
            return x._current()
        return x

    return tree_util.tree_map(one, nest, is_leaf=_ours)


# --- nodes ----------------------------------------------------------------------------------------

_owners: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_tokens = itertools.count()


def _token(owner) -> int:
    # A token per owner, never reused: node functions close over it (not over the owner), so
    # the tape's replay cache can key on them without aliasing after garbage collection.
    tok = owner.__dict__.get("_transforms_token")
    if tok is None:
        tok = owner.__dict__["_transforms_token"] = next(_tokens)
        _owners[tok] = owner
    return tok


def _static_key(x):
    try:
        hash(x)
        return (type(x), x)
    except TypeError:
        return (type(x), id(x))


def _is_dynamic(x) -> bool:
    return isinstance(x, Tensor | Variable | KerasVariable | jax.Array | np.ndarray | np.generic)


class _Program:
    """One traced signature of a node: its jitted and compiled forms and output layout."""

    __slots__ = (
        "jitted",
        "compiled",
        "out_tree",
        "n_out",
        "updated",
        "n_losses",
        "tf_vars",
        "masked",
    )


def _make_program(call, variables, tf_vars, static_leaves, kinds, treedef, dyn_vals, mask_at):
    n_k = len(variables)
    box = {}

    def pure(kvals, tvals, dvals):
        mapping = list(zip(variables, kvals, strict=True))
        lifted = {id(v): val for v, val in zip(tf_vars, tvals, strict=True)}
        log: list = []
        # Masks of the inputs come last; Keras finds them on the inputs (`_keras_mask`).
        dvals, mvals = dvals[: len(dvals) - len(mask_at)], dvals[len(dvals) - len(mask_at) :]
        for j, m in zip(mask_at, mvals, strict=True):
            set_keras_mask(dvals[j], m)
        it_d, it_s = iter(dvals), iter(static_leaves)
        leaves = [next(it_d) if k else next(it_s) for k in kinds]
        args, kwargs = tree_util.tree_unflatten(treedef, leaves)
        _local.depth += 1
        try:
            with (
                paused(),
                lifted_variables(lifted, log),
                keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope,
            ):
                out = call(*args, **kwargs)
                losses = list(scope.losses)
        finally:
            _local.depth -= 1
        out_flat, out_tree = tree_util.tree_flatten(unwrap(out))
        masks = [get_keras_mask(o) for o in out_flat]
        masked = [i for i, m in enumerate(masks) if m is not None]
        new = [scope.get_current_value(v) for v in variables]
        updated = [i for i in range(n_k) if new[i] is not None and new[i] is not kvals[i]]
        box.update(
            out_tree=out_tree,
            n_out=len(out_flat),
            updated=updated,
            n_losses=len(losses),
            masked=masked,
            discovered=list({id(v): v for v in log if id(v) not in lifted}.values()),
        )
        return (
            [jax.numpy.asarray(o) for o in out_flat],
            [new[i] for i in updated],
            [jax.numpy.asarray(x) for x in unwrap(losses)],
            [lifted[id(v)] for v in tf_vars],
            [jax.numpy.asarray(masks[i]) for i in masked],
        )

    jitted = jax.jit(pure)
    kvals = [v._value for v in variables]
    tvals = [v._value for v in tf_vars]
    traced = jitted.trace(*[[_sds(v) for v in vals] for vals in (kvals, tvals, dyn_vals)])
    prog = _Program()
    prog.jitted = jitted
    prog.out_tree, prog.n_out = box["out_tree"], box["n_out"]
    prog.updated, prog.n_losses, prog.tf_vars = box["updated"], box["n_losses"], tf_vars
    prog.masked = box["masked"]
    prog.compiled = None
    return prog, box["discovered"], traced


def _node_fn(owner, token, index):
    def keras_call(*values):
        owner = _owners[token]
        prog, n_k, n_t = owner.__dict__["_transforms_programs"][index]
        kvals, tvals, dvals = (
            list(values[:n_k]),
            list(values[n_k : n_k + n_t]),
            list(values[n_k + n_t :]),
        )
        concrete = prog.compiled is not None and not any(
            isinstance(v, jax.core.Tracer) for v in values
        )
        res = (prog.compiled if concrete else prog.jitted)(kvals, tvals, dvals)
        outs, new_k, losses, new_t, masks = res
        return (*outs, *new_k, *losses, *new_t, *masks)

    # Keeps the owner (say a loss object made for one call) alive while a tape holds the op;
    # an attribute, not a closure cell, so the op's key stays its token.
    keras_call._transforms_owner = owner
    return keras_call


def run_node(owner, call, variables, args, kwargs):
    """Run `call(*args, **kwargs)` (Keras code) as one recorded op; returns our Tensors.

    `variables` are the Keras Variables the call may read or update (a layer's `variables`).
    """
    token = _token(owner)
    flat, treedef = tree_util.tree_flatten((args, kwargs), is_leaf=_ours)
    kinds = [_is_dynamic(x) for x in flat]
    dyn_inputs = []
    for x, k in zip(flat, kinds, strict=True):
        if not k:
            continue
        if isinstance(x, Tensor):
            dyn_inputs.append(x)
        elif isinstance(x, Variable):
            dyn_inputs.append(x._read_value_for_op())
        elif isinstance(x, KerasVariable):
            dyn_inputs.append(twin(x)._read_value_for_op())
        else:
            dyn_inputs.append(Tensor(jax.numpy.asarray(x)))
    static_leaves = [x for x, k in zip(flat, kinds, strict=True) if not k]
    # Masks ride on our tensors between top-level calls; they are inputs of the node too.
    masks = [getattr(t, "_keras_mask", None) for t in dyn_inputs]
    mask_at = tuple(j for j, m in enumerate(masks) if m is not None)
    dyn_inputs += [masks[j] if isinstance(masks[j], Tensor) else Tensor(masks[j]) for j in mask_at]
    dyn_vals = [t._value for t in dyn_inputs]
    twins = [twin(v) for v in variables]
    tf_vars = owner.__dict__.setdefault("_transforms_tf_vars", [])
    key = (
        treedef,
        tuple(kinds),
        mask_at,
        tuple(_static_key(x) for x in static_leaves),
        tuple((tuple(v.shape), np.dtype(v.dtype).str, jax.typeof(v).weak_type) for v in dyn_vals),
        tuple(id(v) for v in variables),
        tuple(np.dtype(v.dtype).str for v in variables),
        len(tf_vars),
    )
    index_of = owner.__dict__.setdefault("_transforms_index", {})
    programs = owner.__dict__.setdefault("_transforms_programs", [])
    index = index_of.get(key)
    if index is None:
        while True:
            prog, discovered, traced = _make_program(
                call, variables, list(tf_vars), static_leaves, kinds, treedef, dyn_vals, mask_at
            )
            if not discovered:
                break
            # tf.Variables read inside the Keras call become inputs of the node (their
            # gradients are then not None); trace again with them.
            tf_vars.extend(discovered)
        concrete = not any(isinstance(v, jax.core.Tracer) for v in [*dyn_vals, *_vals(twins)])
        if concrete:
            prog.compiled = traced.lower().compile()
        key = (*key[:-1], len(tf_vars))
        index = index_of[key] = len(programs)
        programs.append((prog, len(variables), len(prog.tf_vars)))
    # (A program first traced inside tf.function has no compiled form: eager calls then use
    # the jitted one.)
    prog, _, _ = programs[index]
    inputs = [
        *[t._read_value_for_op() for t in twins],
        *[v._read_value_for_op() for v in prog.tf_vars],
        *dyn_inputs,
    ]
    outs = apply(_node_fn(owner, token, index), inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    n_out, n_up, n_l = prog.n_out, len(prog.updated), prog.n_losses
    results = outs[:n_out]
    for i, val in zip(prog.updated, outs[n_out : n_out + n_up], strict=True):
        twins[i]._write(val._value)
    losses = list(outs[n_out + n_up : n_out + n_up + n_l])
    start = n_out + n_up + n_l
    tf_values = outs[start : start + len(prog.tf_vars)]
    for v, val in zip(prog.tf_vars, tf_values, strict=True):
        if val._value is not v._current():
            v._write(val._value)
    for i, mask in zip(prog.masked, outs[start + len(prog.tf_vars) :], strict=True):
        results[i]._keras_mask = mask
    owner.__dict__["_transforms_call_losses"] = losses
    return tree_util.tree_unflatten(prog.out_tree, list(results))


def _sds(v):
    a = jax.typeof(v)
    return jax.ShapeDtypeStruct(a.shape, a.dtype, weak_type=a.weak_type)


def _vals(twins):
    return [t._current() for t in twins]
