# ruff: noqa: E501  (the articles' code is kept verbatim)
"""`transforms.tf.keras`: real Keras 3 (JAX backend) under our tape, against TensorFlow 2.21
(Keras 3.15 on its TF backend, run in one subprocess per module) on the same weights."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import transforms.tf as ttf
from tests.keras_compare import ROOT, program, run_ours, run_tensorflow
from tests.tf_compare import assert_same_output

pytest.importorskip("tensorflow")
ttf.keras  # noqa: B018  (Keras on JAX, before anything else imports it)

# --- the seeds' Keras examples (verbatim) ---------------------------------------------------------

S002_EX2 = """
import tensorflow as tf

# Define a simple model
model = tf.keras.models.Sequential([
  tf.keras.layers.Dense(units=10, activation='relu', input_shape=(5,)),
  tf.keras.layers.Dense(units=2)
])

# Define some dummy data
input_data = tf.random.normal((32, 5))
labels = tf.random.normal((32, 2))

# Define the loss function
loss_function = tf.keras.losses.MeanSquaredError()

# Calculate the loss and gradients
with tf.GradientTape() as tape:
    predictions = model(input_data)
    loss = loss_function(labels, predictions)

gradients = tape.gradient(loss, model.trainable_variables)

# Apply gradients
optimizer = tf.keras.optimizers.Adam(learning_rate=0.001)
optimizer.apply_gradients(zip(gradients, model.trainable_variables))

# Output a few gradients to illustrate the calculation
for g in gradients[:3]:
   print(g)
"""

S003_EX3 = """
import tensorflow as tf
from tensorflow import keras

model = keras.Sequential([
    keras.layers.Dense(1, input_shape=(2,), activation='linear')
])
optimizer = tf.keras.optimizers.SGD(learning_rate=0.01)
x_train = tf.constant([[1.0, 2.0], [3.0, 4.0]])
y_train = tf.constant([[3.0], [7.0]])

with tf.GradientTape() as tape:
    predictions = model(x_train)
    loss = tf.keras.losses.mean_squared_error(y_train, predictions)

gradients = tape.gradient(loss, model.trainable_variables)
optimizer.apply_gradients(zip(gradients, model.trainable_variables))

"""

# What the harness reads back after the verbatim code (003 prints nothing).
AFTER = "\nresult = dict(weights=model.get_weights(), gradients=gradients, loss=loss)\n"

# TF 2.21's tf.keras.losses lacks the long name (seed README); Keras 3's own module has it.
S003_TF = S003_EX3.replace("tf.keras.losses.mean_squared_error", "tf.keras.losses.mse")

PROGRAMS = {
    "seed_002_ex2": S002_EX2 + AFTER,
    "seed_003_ex3": S003_TF + AFTER,
}


# --- item 2: tape gradients of model.trainable_variables ------------------------------------------


def keras_case(name, text):
    PROGRAMS[name] = program(text)


keras_case(
    "dense_mlp",
    """
    keras = tf.keras
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(3, activation="softplus"), keras.layers.Dense(1)])
    same_weights(model)
    x, y = tf.constant(data(1, 6, 4)), tf.constant(data(2, 6, 1))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x) - y))
    result = dict(loss=loss, grads=tape.gradient(loss, model.trainable_variables))
    """,
)

keras_case(
    "conv_batchnorm_pool",
    """
    keras = tf.keras
    model = keras.Sequential([
        keras.Input((8, 8, 2)),
        keras.layers.Conv2D(4, 3, padding="same"),
        keras.layers.BatchNormalization(),
        keras.layers.Activation("relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(3, 3),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(2),
    ])
    same_weights(model)
    x, y = tf.constant(data(1, 5, 8, 8, 2)), tf.constant(data(2, 5, 2))
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        loss = tf.reduce_mean(tf.square(out - y))
    grads = tape.gradient(loss, model.trainable_variables)
    bn = model.layers[1]
    result = dict(loss=loss, grads=grads, mean=bn.moving_mean, var=bn.moving_variance,
                  infer=model(x, training=False))
    """,
)

keras_case(
    "embedding_lstm",
    """
    keras = tf.keras
    model = keras.Sequential([keras.Input((7,), dtype="int32"),
                              keras.layers.Embedding(11, 5), keras.layers.LSTM(6),
                              keras.layers.Dense(1)])
    same_weights(model)
    ids = tf.constant(np.random.RandomState(3).randint(0, 11, (4, 7)).astype(np.int32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(ids) ** 2)
    grads = tape.gradient(loss, model.trainable_variables)
    grads = [tf.convert_to_tensor(g) for g in grads]  # TF: IndexedSlices for the Embedding
    result = dict(loss=loss, grads=grads)
    """,
)

keras_case(
    "subclassed_add_weight_tf_ops",
    """
    keras = tf.keras
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(5, activation="relu")
            self.out = keras.layers.Dense(2)
        def build(self, input_shape):
            self.scale = self.add_weight(shape=(5,), initializer="ones", name="scale")
            self.shift = self.add_weight(shape=(), initializer="zeros", name="shift")
        def call(self, x):
            h = self.hidden(x) * self.scale + tf.reduce_mean(x, axis=1, keepdims=True)
            h = tf.tanh(h) + tf.sin(self.shift)
            return self.out(tf.concat([h[:, :3], tf.square(h[:, 3:])], axis=1))
    model = Net()
    x, y = tf.constant(data(1, 6, 4)), tf.constant(data(2, 6, 2))
    model(x)
    same_weights(model)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x) - y))
    grads = tape.gradient(loss, model.trainable_variables)
    result = dict(loss=loss, grads=grads, names=[v.name for v in model.trainable_variables])
    """,
)

keras_case(
    "kernel_regularizer_losses",
    """
    keras = tf.keras
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(6, activation="relu", kernel_regularizer=keras.regularizers.L2(0.05)),
        keras.layers.Dense(2, kernel_regularizer=keras.regularizers.L1(0.01),
                           bias_regularizer=keras.regularizers.L2(0.1)),
    ])
    same_weights(model)
    x, y = tf.constant(data(1, 6, 4)), tf.constant(data(2, 6, 2))
    with tf.GradientTape() as tape:
        loss = keras.losses.MeanSquaredError()(y, model(x, training=True))
        total = loss + tf.add_n(model.losses)
    grads = tape.gradient(total, model.trainable_variables)
    result = dict(loss=loss, total=total, grads=grads)
    """,
)

keras_case(
    "attention_layernorm_gru",
    """
    keras = tf.keras
    inp = keras.Input((5, 8))
    att = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)(inp, inp)
    x = keras.layers.LayerNormalization()(att + inp)
    x = keras.layers.Bidirectional(keras.layers.GRU(6, return_sequences=True))(x)
    x = keras.layers.Conv1D(3, 2, padding="causal")(x)
    model = keras.Model(inp, keras.layers.GRU(4)(x))
    same_weights(model)
    x, y = tf.constant(data(1, 3, 5, 8)), tf.constant(data(2, 3, 4))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x) - y))
    result = dict(loss=loss, grads=tape.gradient(loss, model.trainable_variables))
    """,
)

keras_case(
    "tf_variable_read_inside_keras_call",
    """
    keras = tf.keras
    temperature = tf.Variable(1.5)
    class Scaled(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)
        def call(self, x):
            return self.dense(x) / temperature
    layer = Scaled()
    x = tf.constant(data(1, 4, 2))
    layer(x)
    same_weights(layer)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.sin(layer(x)))
    grads = tape.gradient(loss, [temperature] + layer.trainable_variables)
    result = dict(loss=loss, grads=grads)
    """,
)


# --- item 4: tf.Module ------------------------------------------------------------------------------

keras_case(
    "module_tracking",
    """
    class Dense(tf.Module):
        def __init__(self, n_in, n_out, name=None):
            super().__init__(name=name)
            with self.name_scope:
                self.w = tf.Variable(tf.constant(data(n_in, n_in, n_out)), name="w")
                self.b = tf.Variable(tf.zeros([n_out]), name="b", trainable=False)
        @tf.Module.with_name_scope
        def __call__(self, x):
            return tf.matmul(x, self.w) + self.b

    class MLP(tf.Module):
        def __init__(self, name=None):
            super().__init__(name=name)
            self.layers = [Dense(3, 4, name="first"), Dense(4, 2)]
            self.extra = {"z": tf.Variable(1.5, name="z"),
                          "a": (tf.Variable(2.0, name="a"), Dense(2, 1, name="head"))}
            self.shared = self.layers[0]
            self.count = 3

    mlp = MLP(name="mlp")
    x = tf.constant(data(1, 5, 3))
    with tf.GradientTape() as tape:
        y = mlp.extra["a"][1](mlp.layers[1](mlp.layers[0](x))) * mlp.extra["z"]
        loss = tf.reduce_sum(tf.tanh(y))
    with tf.name_scope("outer"):
        inner = Dense(1, 1)
    result = dict(
        names=[v.name for v in mlp.variables],
        trainable=[v.name for v in mlp.trainable_variables],
        subs=[m.name for m in mlp.submodules],
        scope=mlp.name_scope.name,
        inner=[inner.name, inner.name_scope.name, inner.w.name],
        default=Dense(1, 1).name,
        grads=tape.gradient(loss, mlp.trainable_variables),
    )
    try:
        tf.Module(name="not valid")
    except ValueError as e:
        result["error"] = str(e)
    """,
)

# --- the oracle: every program once under TensorFlow ----------------------------------------------


@pytest.fixture(scope="module")
def tensorflow_runs():
    return run_tensorflow(PROGRAMS)


def assert_close(ours, theirs, path="result", rtol=2e-5, atol=2e-6):
    if theirs is None or ours is None:
        assert ours is None and theirs is None, f"{path}: ours {ours!r}, TensorFlow {theirs!r}"
    elif isinstance(theirs, dict):
        assert ours.keys() == theirs.keys(), path
        for k in theirs:
            assert_close(ours[k], theirs[k], f"{path}[{k!r}]", rtol, atol)
    elif isinstance(theirs, list):
        assert len(ours) == len(theirs), f"{path}: {len(ours)} vs {len(theirs)}"
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_close(a, b, f"{path}[{i}]", rtol, atol)
    elif isinstance(theirs, str):
        assert ours == theirs, path
    else:
        a, b = np.asarray(ours), np.asarray(theirs)
        assert a.shape == b.shape, f"{path}: shape {a.shape} vs {b.shape}"
        assert a.dtype == b.dtype, f"{path}: dtype {a.dtype} vs {b.dtype}"
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=path)


def compare(name, tensorflow_runs, **tol):
    theirs = tensorflow_runs[name]
    assert theirs["error"] is None, theirs["error"]
    ours = run_ours(PROGRAMS[name], name)
    assert_close(ours["result"], theirs["result"], **tol)
    return ours, theirs


@pytest.mark.parametrize("name", ["seed_002_ex2", "seed_003_ex3"])
def test_seed_keras_examples_print_what_tensorflow_prints(name, tensorflow_runs):
    ours, theirs = compare(name, tensorflow_runs)
    assert_same_output(_squash(ours["stdout"]), _squash(theirs["stdout"]))


def _squash(text):
    # NumPy pads columns to the widest number printed: one digit more or less (float32
    # rounding) moves the spaces, not the numbers.
    return re.sub(r" ?([\[\]]) ?", r"\1", re.sub(r"\s+", " ", text))


def test_seed_003_runs_with_the_long_loss_name_unchanged():
    # TF 2.21's tf.keras.losses lacks mean_squared_error (the seed calls it); ours has it.
    ours = run_ours(S003_EX3 + AFTER)["result"]
    tf_name = run_ours(S003_TF + AFTER)["result"]
    assert_close(ours, tf_name, rtol=0, atol=0)


@pytest.mark.parametrize(
    "name",
    [
        "dense_mlp",
        "conv_batchnorm_pool",
        "embedding_lstm",
        "subclassed_add_weight_tf_ops",
        "kernel_regularizer_losses",
        "attention_layernorm_gru",
        "tf_variable_read_inside_keras_call",
    ],
)
def test_tape_gradients_of_keras_models_equal_tensorflow(name, tensorflow_runs):
    ours, _ = compare(name, tensorflow_runs, rtol=2e-4, atol=2e-5)
    grads = ours["result"]["grads"]
    assert all(g is not None for g in grads)


def test_tf_module_tracks_what_tensorflow_tracks(tensorflow_runs):
    compare("module_tracking", tensorflow_runs)


def test_keras_layers_are_modules():
    keras = ttf.keras

    class Head(ttf.Module):
        def __init__(self):
            super().__init__()
            self.body = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)])
            self.scale = ttf.Variable(2.0, name="scale")

    head = Head()
    dense = head.body.layers[0]
    assert isinstance(dense, ttf.Module) and isinstance(head.body, ttf.Module)
    assert head.submodules[0] is head.body and dense in head.submodules
    assert dense in head.body.submodules
    names = [v.name for v in head.trainable_variables]
    # Own Variables first, then each submodule's (TF's order); Keras names have no ":0".
    assert names == ["scale:0", "kernel", "bias"]
    x = ttf.constant(np.ones((2, 3), np.float32))
    with ttf.GradientTape() as tape:
        loss = ttf.reduce_sum(head.body(x) * head.scale)
    grads = tape.gradient(loss, head.trainable_variables)
    np.testing.assert_allclose(grads[1].numpy(), np.full((3, 4), 4.0), rtol=1e-6)
    np.testing.assert_allclose(grads[0].numpy(), np.sum(head.body(x).numpy()), rtol=1e-5)


def test_dropout_mask_is_the_same_forward_and_backward():
    # Keras-on-TF draws other masks, so the oracle is jax.grad of Keras's stateless function
    # with the same seed state.
    keras = ttf.keras
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8), keras.layers.Dropout(0.5), keras.layers.Dense(1)]
    )
    x = np.random.RandomState(0).normal(size=(5, 6)).astype(np.float32)
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    with ttf.GradientTape() as tape:
        loss = ttf.reduce_sum(model(ttf.constant(x), training=True) ** 2)
    grads = tape.gradient(loss, model.trainable_variables)
    # The seed state advanced, as Keras advances it.
    assert any(
        not np.array_equal(a, b.value) for a, b in zip(non_trainable, model.non_trainable_variables)
    )

    def stateless_loss(tv):
        out, _ = model.stateless_call(tv, non_trainable, x, training=True)
        return jnp.sum(out**2)

    value, expected = jax.value_and_grad(stateless_loss)(trainable)
    np.testing.assert_allclose(loss.numpy(), value, rtol=1e-6)
    for g, e in zip(grads, expected, strict=True):
        np.testing.assert_allclose(g.numpy(), e, rtol=1e-5, atol=1e-7)
    # The mask really drops units: training and inference outputs differ.
    assert not np.allclose(model(x, training=True), model(x, training=False))


# --- item 9: packaging, lazy import, clear errors -------------------------------------------------


def _python(code, **env):
    full = dict(os.environ, PYTHONPATH=str(ROOT), **env)
    full.pop("KERAS_BACKEND", None) if "KERAS_BACKEND" not in env else None
    return subprocess.run(
        [sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=300
    )


def test_import_transforms_tf_does_not_import_keras_and_errors_are_clear():
    code = """
import sys
import transforms.tf as tf
assert "keras" not in sys.modules, "import transforms.tf imported keras"
keras = tf.keras
assert "keras" in sys.modules and keras.backend.backend() == "jax"
assert tf.keras is keras and keras.layers.Dense is sys.modules["keras"].layers.Dense
print("ok")
"""
    proc = _python(code)
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]

    other = """
import keras
import transforms.tf as tf
try:
    tf.keras
except ImportError as e:
    print(e)
"""
    proc = _python(other, KERAS_BACKEND="numpy")
    assert "already imported with the 'numpy' backend" in proc.stdout, proc.stderr[-2000:]

    missing = """
import sys
sys.modules["keras"] = None
import transforms.tf as tf
try:
    tf.keras
except ImportError as e:
    print(e)
"""
    proc = _python(missing)
    assert "pip install 'transforms[keras]'" in proc.stdout, proc.stderr[-2000:]


def test_keras_version_is_the_pinned_range():
    import tomllib

    import keras

    from transforms.tf.keras import SUPPORTED

    with open(ROOT / "pyproject.toml", "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    low, high = (".".join(map(str, v)) for v in SUPPORTED)
    assert f"keras>={low},<{high}" in extras["keras"]
    assert f"keras>={low},<{high}" in extras["test"]
    version = tuple(int(p) for p in keras.__version__.split(".")[:2])
    assert SUPPORTED[0] <= version < SUPPORTED[1]
