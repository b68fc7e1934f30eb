"""Where Keras meets the tape: the Keras methods and functions that become recorded ops.

Layers (`__call__`), losses (`__call__`), `Model.compute_loss`, metrics (`update_state`,
`result`, `reset_state`), a layer's `losses` (weight regularization computed from the twins, so
it has a gradient) and optimizers (`apply`) are wrapped once, when `transforms.tf.keras` is
first imported. A wrapper hands over to `bridge.run_node` only for transforms objects, an active
tape or a `tf.function` trace (`bridge.should_bridge`); otherwise, and for Keras's own nested
calls, it is Keras's method unchanged.
"""

from __future__ import annotations

import functools
import weakref

import jax
import keras
import numpy as np
from keras.src.backend.common import stateless_scope as _scope
from keras.src.trainers.trainer import Trainer

from ..core import paused
from ..tensor import Tensor
from ..variable import Variable
from . import bridge
from .bridge import KerasTwin, inside_node, run_node, should_bridge, unwrap


def _mark(fn):
    fn._transforms_bridged = True
    return fn


def bridged_method(original, variables_of, before=None, always=False):
    """`original` (a Keras method) as a recorded op when called by transforms code (`always`:
    whenever Keras itself is not the caller, so `metric.result()` is a Tensor, as in TF)."""

    @functools.wraps(original)
    def method(self, *args, **kwargs):
        if inside_node():
            return original(self, *unwrap(args), **unwrap(kwargs))
        if always:
            if _scope.in_stateless_scope():
                return original(self, *args, **kwargs)
        elif not should_bridge(args, kwargs):
            return original(self, *args, **kwargs)
        if before is not None:
            before(self, args, kwargs)
        call = functools.partial(original, self)
        return run_node(self, call, list(variables_of(self)), args, kwargs)

    return _mark(method)


def bridged_function(fn):
    """A Keras function (a loss, an activation, a `keras.ops` op) as a recorded op."""

    @functools.wraps(fn)
    def function(*args, **kwargs):
        if inside_node():
            return fn(*unwrap(args), **unwrap(kwargs))
        if not should_bridge(args, kwargs):
            return fn(*args, **kwargs)
        return run_node(function, fn, [], args, kwargs)

    return _mark(function)


def _patch_hierarchy(base, name, wrap):
    """Wrap `name` on `base` and on every subclass that defines its own (now and later)."""

    def patch(cls):
        own = cls.__dict__.get(name)
        if own is not None and not getattr(own, "_transforms_bridged", False):
            setattr(cls, name, wrap(own))

    seen, todo = set(), [base]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        patch(cls)
        todo.extend(cls.__subclasses__())
    hooks = base.__dict__.get("_transforms_subclass_hooks")
    if hooks is None:
        hooks = []
        previous = base.__dict__.get("__init_subclass__")

        def init_subclass(cls, **kwargs):
            if previous is not None:
                previous.__func__(cls, **kwargs)
            else:
                super(base, cls).__init_subclass__(**kwargs)
            for hook in base._transforms_subclass_hooks:
                hook(cls)

        base._transforms_subclass_hooks = hooks
        base.__init_subclass__ = classmethod(init_subclass)
    hooks.append(patch)


# --- layers ---------------------------------------------------------------------------------------


def _build_layer(layer, args, kwargs):
    """Build an unbuilt layer by one call whose state updates are discarded: variables are made
    with concrete values (also inside a tf.function trace) before the recorded call reads them."""
    if layer.built:
        return
    bridge._local.depth += 1
    try:
        with jax.ensure_compile_time_eval(), paused():
            with keras.StatelessScope():  # its exit initializes the variables made inside
                _original_layer_call(layer, *unwrap(args), **unwrap(kwargs))
    finally:
        bridge._local.depth -= 1


def _layer_variables(layer):
    return layer.variables


_original_layer_call = keras.Layer.__call__
_original_losses = keras.Layer.losses


def _losses(self):
    """As Keras's `losses`, but computed from the twins while a tape records or a tf.function
    traces: activity losses from the last recorded call, weight regularization as its own op."""
    if inside_node() or _scope.in_stateless_scope() or not bridge.recording_or_tracing():
        return _original_losses.fget(self)
    call_losses = list(self.__dict__.get("_transforms_call_losses", ()))
    regularized = [v for layer in self._flatten_layers() for v in layer.variables]
    reg = run_node(
        _RegularizationOwner.of(self),
        self._get_regularization_losses,
        list({id(v): v for v in regularized}.values()),
        (),
        {},
    )
    return call_losses + list(reg)


class _RegularizationOwner:
    """Holds the regularization program of one layer (its call programs are elsewhere)."""

    __slots__ = ("__dict__", "__weakref__")

    @staticmethod
    def of(layer):
        owner = layer.__dict__.get("_transforms_reg_owner")
        if owner is None:
            owner = layer.__dict__["_transforms_reg_owner"] = _RegularizationOwner()
        return owner


# --- the trainer's loss ---------------------------------------------------------------------------


def _compute_loss_variables(model):
    # The model's weights (regularization is computed inside) and the loss's own trackers.
    compile_loss = getattr(model, "_compile_loss", None)
    extra = list(compile_loss.variables) if compile_loss is not None else []
    return list({id(v): v for v in [*model.weights, *extra]}.values())


# --- optimizers -----------------------------------------------------------------------------------

_original_apply = keras.optimizers.Optimizer.apply


def _keras_variable_for(optimizer, v):
    """The Keras Variable an optimizer keys `v` by: itself, a twin's, or a proxy for a
    tf.Variable (its slots are built from the proxy's shape and dtype)."""
    if isinstance(v, keras.Variable):
        return v
    if isinstance(v, KerasTwin):
        return v._keras
    if isinstance(v, Variable):
        proxies = optimizer.__dict__.setdefault("_transforms_proxies", {})
        entry = proxies.get(id(v))
        if entry is not None and entry[0]() is v:
            return entry[1]
        with jax.ensure_compile_time_eval():
            proxy = keras.Variable(
                np.zeros(v.shape, v.dtype), dtype=v.dtype, trainable=v.trainable, name=v._name
            )
        proxies[id(v)] = (weakref.ref(v), proxy)
        return proxy
    raise TypeError(f"apply_gradients needs Variables, got {type(v).__name__}.")


def _apply(self, grads, trainable_variables=None):
    grads = list(grads)
    targets = None if trainable_variables is None else list(trainable_variables)
    ours = any(isinstance(x, Tensor | Variable) for x in [*grads, *(targets or ())])
    if inside_node() or _scope.in_stateless_scope() or not (ours or bridge.recording_or_tracing()):
        return _original_apply(self, grads, trainable_variables)
    if targets is None:
        targets = list(self._trainable_variables)
    kvars = [_keras_variable_for(self, v) for v in targets]
    if not self.built:
        with jax.ensure_compile_time_eval():
            with keras.name_scope(self.name, caller=self):
                self.build(kvars)
            self.built = True
    # Current values (inside tf.function: the lifted ones), as plain inputs: an update is not
    # a use of the variables that a tape would differentiate.
    values = [
        (v if isinstance(v, Variable) else bridge.twin(kv))._current()
        for v, kv in zip(targets, kvars)
    ]

    def update(grads, values, kvars_key):
        scope = _scope.get_stateless_scope()
        for kv, val in zip(kvars, values, strict=True):
            scope.add_update((kv, val))
        _original_apply(self, grads, kvars)
        return [scope.get_current_value(kv) for kv in kvars]

    new = run_node(
        self,
        update,
        list(self.variables),
        (grads, values),
        {"kvars_key": tuple(id(k) for k in kvars)},
    )
    for v, kv, val in zip(targets, kvars, new, strict=True):
        target = v if isinstance(v, Variable) else bridge.twin(kv)
        target._write(val._value.astype(target.dtype))


def _apply_gradients(self, grads_and_vars):
    pairs = list(grads_and_vars)
    if not pairs:
        return self._iterations
    grads, variables = zip(*pairs, strict=True)
    self.apply(grads, variables)
    return self._iterations


# --- install --------------------------------------------------------------------------------------

_installed = False


def install():
    """Wrap Keras's methods (once per process)."""
    global _installed
    if _installed:
        return
    _installed = True
    _patch_hierarchy(
        keras.Layer,
        "__call__",
        lambda f: bridged_method(f, _layer_variables, before=_build_layer),
    )
    keras.Layer.losses = property(_losses, doc=_original_losses.__doc__)
    _patch_hierarchy(keras.losses.Loss, "__call__", lambda f: bridged_method(f, lambda s: ()))
    # `Model.compute_loss` returns Keras's raw arrays; as one op it is a Tensor on the tape
    # (a TF-style `train_step` calls it inside its tape).
    _patch_hierarchy(Trainer, "compute_loss", lambda f: bridged_method(f, _compute_loss_variables))
    for name in ("update_state", "result", "reset_state"):
        _patch_hierarchy(
            keras.metrics.Metric,
            name,
            lambda f, name=name: bridged_method(f, lambda s: s.variables, always=name == "result"),
        )
    keras.optimizers.Optimizer.apply = _mark(functools.wraps(_original_apply)(_apply))
    keras.optimizers.Optimizer.apply_gradients = _mark(
        functools.wraps(keras.optimizers.Optimizer.apply_gradients)(_apply_gradients)
    )
