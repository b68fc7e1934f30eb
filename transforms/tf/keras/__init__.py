"""`transforms.tf.keras`: the real Keras 3 (JAX backend) under `transforms.tf`'s tape.

`tf.keras` is imported on first access (Keras takes a second or two to import). Layers, models,
losses, metrics and optimizers are Keras's own; each top-level call made by `transforms.tf`
code is one op recorded on the active tapes (see `bridge`), differentiated by our engine.
The namespace follows TensorFlow 2.21's `tf.keras` layout, plus Keras's long loss names
(`mean_squared_error`, which TF's `tf.keras.losses` lacks).

Example:
  >>> import transforms.tf as tf
  >>> model = tf.keras.Sequential([tf.keras.layers.Dense(2, input_shape=(3,))])
  >>> with tf.GradientTape() as tape:
  ...     loss = tf.reduce_sum(model(tf.ones([4, 3])))
  >>> grads = tape.gradient(loss, model.trainable_variables)
"""

from __future__ import annotations

import os
import sys
import types

SUPPORTED = ((3, 15), (3, 16))  # [low, high): Keras minors whose internals the bridge is tested on


def _check_keras():
    loaded = sys.modules.get("keras")
    if loaded is not None:
        try:
            backend = loaded.backend.backend()
        except AttributeError:
            backend = None
        if backend is not None and backend != "jax":
            raise ImportError(
                f"transforms.tf.keras runs Keras on the JAX backend, but Keras was already "
                f"imported with the {backend!r} backend. Set KERAS_BACKEND=jax before anything "
                "imports keras (or import transforms.tf.keras first)."
            )
    else:
        wanted = os.environ.get("KERAS_BACKEND")
        if wanted not in (None, "", "jax"):
            raise ImportError(
                f"transforms.tf.keras runs Keras on the JAX backend, but KERAS_BACKEND is "
                f"{wanted!r}; unset it or set KERAS_BACKEND=jax."
            )
        os.environ["KERAS_BACKEND"] = "jax"
    try:
        import keras
    except ModuleNotFoundError as e:
        if e.name != "keras":
            raise
        raise ImportError(
            "transforms.tf.keras needs the keras package (3.15): pip install 'transforms[keras]'"
        ) from e
    version = tuple(int(p) for p in keras.__version__.split(".")[:2])
    if not SUPPORTED[0] <= version < SUPPORTED[1]:
        low, high = (".".join(map(str, v)) for v in SUPPORTED)
        raise ImportError(
            f"transforms.tf.keras supports keras>={low},<{high} (it relies on Keras internals); "
            f"found keras {keras.__version__}. pip install 'transforms[keras]'"
        )
    return keras


keras = _check_keras()

from keras._tf_keras import keras as _tf_layout  # noqa: E402  (TF 2.21's own tf.keras layout)

from ..module import Module  # noqa: E402
from . import calls, trainer  # noqa: E402

calls.install()
trainer.install()


def _layer_children(layer):
    return [*layer.variables, *layer._flatten_layers(include_self=False, recursive=False)]


# Keras layers are Modules (as TF's Keras 2 layers were; TF 2.21's Keras 3 layers are not).
Module.register(keras.Layer)
keras.Layer._transforms_module_children = staticmethod(_layer_children)
if not hasattr(keras.Layer, "submodules"):
    keras.Layer.submodules = property(
        lambda self: tuple(self._flatten_layers(include_self=False)),
        doc="Every sublayer, recursively (as `tf.Module.submodules`).",
    )

_wrapped: dict[int, object] = {}


def _bridged_module(name, *sources):
    """A namespace of `sources`' public names, Keras functions bridged onto the tape."""
    mod = types.ModuleType(f"{__name__}.{name}")
    mod.__doc__ = f"`tf.keras.{name}`: Keras's {name}, recorded on `transforms.tf` tapes."
    for source in sources:
        for attr in dir(source):
            if attr.startswith("_") or hasattr(mod, attr):
                continue
            value = getattr(source, attr)
            if isinstance(value, types.FunctionType):
                fn = _wrapped.get(id(value))
                if fn is None:
                    fn = _wrapped[id(value)] = calls.bridged_function(value)
                value = fn
            setattr(mod, attr, value)
    sys.modules[mod.__name__] = mod
    return mod


losses = _bridged_module("losses", _tf_layout.losses, keras.losses)
metrics = _bridged_module("metrics", _tf_layout.metrics, keras.metrics)
activations = _bridged_module("activations", _tf_layout.activations)
ops = _bridged_module("ops", _tf_layout.ops)
backend = keras.backend  # Keras 3's own (TF's legacy tf.keras.backend needs TensorFlow)

for _name in dir(_tf_layout):
    if not _name.startswith("_") and _name not in globals():
        globals()[_name] = getattr(_tf_layout, _name)

__all__ = [n for n in dir(_tf_layout) if not n.startswith("_")]
del _name
