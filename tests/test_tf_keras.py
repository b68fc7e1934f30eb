# ruff: noqa: E501  (the articles' code is kept verbatim)
"""`transforms.tf.keras`: real Keras 3 (JAX backend) under our tape, against TensorFlow 2.21
(Keras 3.15 on its TF backend, run in one subprocess per module) on the same weights."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests import keras_training_programs as training
from tests.keras_compare import ROOT, program, run_programs
from tests.tf_compare import assert_same_output

pytest.importorskip("tensorflow")

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

# --- item 3: Keras optimizers through apply_gradients, metrics in custom loops ----------------------

keras_case(
    "optimizers_ten_steps",
    """
    keras = tf.keras
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=3, decay_rate=0.5)
    makers = {
        "sgd": lambda: keras.optimizers.SGD(0.05),
        "momentum": lambda: keras.optimizers.SGD(0.05, momentum=0.9),
        "nesterov": lambda: keras.optimizers.SGD(0.05, momentum=0.8, nesterov=True),
        "adam": lambda: keras.optimizers.Adam(0.02),
        "adam_amsgrad": lambda: keras.optimizers.Adam(0.02, amsgrad=True),
        "adamw": lambda: keras.optimizers.AdamW(0.02, weight_decay=0.1),
        "rmsprop": lambda: keras.optimizers.RMSprop(0.01, momentum=0.5),
        "adagrad": lambda: keras.optimizers.Adagrad(0.1),
        "schedule": lambda: keras.optimizers.SGD(schedule, momentum=0.5),
    }
    x = tf.constant(data(1, 6, 3))
    result = {}
    for name, make in makers.items():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="tanh")])
        same_weights(model)
        target = tf.Variable(tf.constant(data(2, 6, 2)))
        unused = tf.Variable(1.0)
        opt = make()
        variables = model.trainable_variables + [target, unused]
        for step in range(10):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.square(model(x) - 2.0 * target))
            grads = tape.gradient(loss, variables)
            opt.apply_gradients(zip(grads, variables))
        result[name] = [v.numpy() for v in variables] + [int(opt.iterations.numpy()), loss]
    """,
)

keras_case(
    "metrics_custom_loop",
    """
    keras = tf.keras
    mean = keras.metrics.Mean()
    acc = keras.metrics.SparseCategoricalAccuracy()
    auc = keras.metrics.AUC(num_thresholds=20)
    seen = []
    for i in range(3):
        logits = tf.constant(data(i, 8, 3))
        labels = tf.constant(np.random.RandomState(i).randint(0, 3, (8,)).astype(np.int32))
        mean.update_state(tf.reduce_sum(logits))
        acc.update_state(labels, logits)
        auc.update_state(tf.cast(labels > 0, tf.float32), tf.sigmoid(logits[:, 0]))
        seen.append([mean.result().numpy(), acc.result().numpy(), auc.result().numpy()])
    called = mean(tf.constant(5.0))
    mean.reset_state()
    result = dict(seen=seen, called=called, reset=mean.result(), count=float(acc.count.numpy()))
    """,
)

# --- item 5: a whole training step under tf.function ----------------------------------------------

keras_case(
    "quickstart_for_experts",
    """
    keras = tf.keras
    x = tf.constant(data(1, 16, 4))
    y = tf.constant(np.random.RandomState(0).randint(0, 3, (16,)).astype(np.int32))
    loss_object = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def const(seed, *shape):
        return keras.initializers.Constant(data(seed, *shape))

    def run(compiled):
        # No input shape: the model is built by its first call, inside the tf.function.
        model = keras.Sequential([
            keras.layers.Dense(8, activation="relu", kernel_initializer=const(3, 4, 8)),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.0),
            keras.layers.Dense(3, kernel_initializer=const(4, 8, 3)),
        ])
        optimizer = keras.optimizers.Adam(0.01)
        train_loss = keras.metrics.Mean(name="train_loss")
        train_accuracy = keras.metrics.SparseCategoricalAccuracy(name="train_accuracy")

        def train_step(images, labels):
            with tf.GradientTape() as tape:
                predictions = model(images, training=True)
                loss = loss_object(labels, predictions)
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            train_loss(loss)
            train_accuracy(labels, predictions)

        step = tf.function(train_step) if compiled else train_step
        history = []
        for epoch in range(2):
            train_loss.reset_state()
            train_accuracy.reset_state()
            for _ in range(3):
                step(x, y)
            history.append([train_loss.result(), train_accuracy.result()])
        return dict(history=history, weights=model.get_weights(),
                    slots=[v.numpy() for v in optimizer.variables[1:]])

    result = dict(eager=run(False), compiled=run(True))
    """,
)

# --- item 7: higher order through Keras ------------------------------------------------------------

keras_case(
    "higher_order",
    """
    keras = tf.keras
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5, activation="tanh"),
                              keras.layers.Dense(2, activation="softplus")])
    same_weights(model)
    x = tf.constant(data(1, 4, 3))
    with tf.GradientTape() as outer:  # a gradient penalty (WGAN-GP style)
        with tf.GradientTape() as inner:
            inner.watch(x)
            out = model(x)
        gx = inner.gradient(out, x)
        penalty = tf.reduce_mean(tf.square(tf.norm(gx, axis=1) - 1.0))
    gp = outer.gradient(penalty, model.trainable_variables)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        out = model(x)
    jac = tape.jacobian(out, x)
    bjac = tape.batch_jacobian(out, x)
    jw = tape.jacobian(out, model.trainable_variables[0])
    tangent = tf.constant(data(2, 4, 3))
    with tf.autodiff.ForwardAccumulator(x, tangent) as acc:
        out2 = model(x)
    result = dict(penalty=penalty, gp=gp, jac=jac, bjac=bjac, jw=jw, jvp=acc.jvp(out2))
    """,
)

# --- item 6: compile / fit / evaluate / predict ---------------------------------------------------

keras_case(
    "fit_evaluate_predict",
    """
    keras = tf.keras
    x, y = data(1, 32, 4), data(2, 32, 1)
    xv, yv = data(3, 8, 4), data(4, 8, 1)
    weights = np.linspace(0.5, 1.5, 32).astype(np.float32)

    class Log(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seen = []
        def on_epoch_end(self, epoch, logs=None):
            self.seen.append([float(logs["loss"]), float(logs["val_loss"])])

    def run(eagerly):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(1)])
        same_weights(model)
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.5), loss="mse",
                      metrics=["mae"], run_eagerly=eagerly)
        log = Log()
        history = model.fit(x, y, sample_weight=weights, batch_size=8, epochs=3,
                            validation_data=(xv, yv), shuffle=False, verbose=0, callbacks=[log])
        return dict(
            history={k: [float(v) for v in vs] for k, vs in history.history.items()},
            callback=log.seen,
            evaluate=model.evaluate(xv, yv, verbose=0, return_dict=True),
            predict=model.predict(xv, verbose=0),
            weights=model.get_weights(),
        )

    result = dict(compiled=run(False), eager=run(True))
    """,
)

# --- programs run only under transforms.tf (their oracle is inside them) --------------------------


def _docs_page_code():
    # docs/tf-keras.md fences its code as `py` (test_docs.py runs `python` blocks inside pytest's
    # process, where Keras may already be on TF); it runs here, in the transforms.tf worker.
    page = (ROOT / "docs" / "tf-keras.md").read_text()
    return "\n".join(re.findall(r"^```py\n(.*?)^```", page, flags=re.S | re.M))


OURS_ONLY = {
    "plain_keras_and_failures": program(
        """
        import jax
        keras = tf.keras
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2),
                                  keras.layers.BatchNormalization()])
        x = data(1, 4, 3)
        plain = model(x)  # NumPy in, no tape: Keras's own path, untouched
        before = [v.numpy() for v in model.variables]
        try:
            with tf.GradientTape() as tape:
                model(tf.constant(data(1, 4, 5)), training=True)
            error = ""
        except ValueError as e:
            error = str(e)
        result = dict(
            plain_is_jax=isinstance(plain, jax.Array),
            ours=type(model(tf.constant(x))).__name__,
            error=error,
            unchanged=all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.variables)),
        )
        """
    ),
    "docs_page": _docs_page_code() + "\nresult = dict(accuracy=train_accuracy.result())\n",
    # The migration guide's blocks, its `py` one with `tf.optimizers` (Keras's) included, in order
    # and with their source registered as test_docs.py does (autograph reads it).
    "migration_page": f"""
import linecache, re
page = open({str(ROOT / "docs" / "tf-migration.md")!r}).read()
ns = {{"__name__": "docs_tf_migration"}}
for i, block in enumerate(re.findall(r"^```py(?:thon)?\\n(.*?)^```", page, flags=re.S | re.M)):
    filename = f"tf-migration.md[block {{i}}]"
    linecache.cache[filename] = (len(block), None, block.splitlines(True), filename)
    exec(compile(block, filename, "exec"), ns)
result = dict(first=ns["first"], last=ns["last"])
""",
    "save_load": program(
        """
        import os, tempfile
        keras = tf.keras
        def make():
            return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"),
                                     keras.layers.BatchNormalization(), keras.layers.Dense(2)])
        model = make()
        same_weights(model)
        x = tf.constant(data(1, 5, 3))
        optimizer = keras.optimizers.Adam(0.1)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(x, training=True) ** 2)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                      model.trainable_variables))
        folder = tempfile.mkdtemp()
        model.save(os.path.join(folder, "model.keras"))
        loaded = keras.models.load_model(os.path.join(folder, "model.keras"))
        model.save_weights(os.path.join(folder, "model.weights.h5"))
        other = make()
        other.load_weights(os.path.join(folder, "model.weights.h5"))
        result = dict(
            outputs=[model(x), loaded(x), other(x)],
            weights=[model.get_weights(), loaded.get_weights(), other.get_weights()],
        )
        with tf.GradientTape() as tape:
            loaded_loss = tf.reduce_sum(loaded(x, training=True) ** 2)
        result["grads_loaded"] = tape.gradient(loaded_loss, loaded.trainable_variables)
        """
    ),
    "fit_uses_our_engine": program(
        """
        import transforms
        from keras.src.backend.jax import trainer
        tf.keras
        result = dict(ours=trainer.jax.value_and_grad is transforms.value_and_grad)
        """
    ),
    "seed_003_verbatim": S003_EX3 + AFTER,
    "version": program(
        """
        import keras
        from transforms.tf.keras import SUPPORTED
        result = dict(version=keras.__version__, supported=[list(v) for v in SUPPORTED])
        """
    ),
    "layers_are_modules": program(
        """
        keras = tf.keras
        class Head(tf.Module):
            def __init__(self):
                super().__init__()
                self.body = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)])
                self.scale = tf.Variable(2.0, name="scale")
        head = Head()
        dense = head.body.layers[0]
        x = tf.constant(np.ones((2, 3), np.float32))
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(head.body(x) * head.scale)
        result = dict(
            is_module=[isinstance(dense, tf.Module), isinstance(head.body, tf.Module)],
            found=[head.submodules[0] is head.body, dense in head.submodules,
                   dense in head.body.submodules],
            names=[v.name for v in head.trainable_variables],
            grads=tape.gradient(loss, head.trainable_variables),
            out=head.body(x),
        )
        """
    ),
    "dropout": program(
        """
        import jax, jax.numpy as jnp
        keras = tf.keras
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8),
                                  keras.layers.Dropout(0.5), keras.layers.Dense(1)])
        x = data(0, 5, 6)
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(tf.constant(x), training=True) ** 2)
        grads = tape.gradient(loss, model.trainable_variables)
        def stateless_loss(tv):
            out, _ = model.stateless_call(tv, non_trainable, x, training=True)
            return jnp.sum(out ** 2)
        value, expected = jax.value_and_grad(stateless_loss)(trainable)
        result = dict(
            seed_advanced=any(not np.array_equal(a, b.value)
                              for a, b in zip(non_trainable, model.non_trainable_variables)),
            loss=loss, jax_loss=value, grads=grads, jax_grads=list(expected),
            drops=not np.allclose(model(x, training=True), model(x, training=False)),
        )
        """
    ),
}

# --- the oracle: every program once under TensorFlow ----------------------------------------------


PROGRAMS.update(training.PROGRAMS)
OURS_ONLY.update(training.OURS_ONLY)


@pytest.fixture(scope="module")
def runs():
    """Every program under TensorFlow and under transforms.tf, the two subprocesses at once."""
    with ThreadPoolExecutor(2) as pool:
        theirs = pool.submit(run_programs, PROGRAMS, "tensorflow")
        ours = pool.submit(run_programs, {**PROGRAMS, **OURS_ONLY}, "jax")
        return ours.result(), theirs.result()


def ours_only(runs, name):
    ours = runs[0][name]
    assert ours["error"] is None, ours["error"]
    return ours["result"]


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


def compare(name, runs, **tol):
    ours, theirs = runs[0][name], runs[1][name]
    assert theirs["error"] is None, theirs["error"]
    assert ours["error"] is None, ours["error"]
    assert_close(ours["result"], theirs["result"], **tol)
    return ours, theirs


@pytest.mark.parametrize("name", ["seed_002_ex2", "seed_003_ex3"])
def test_seed_keras_examples_print_what_tensorflow_prints(name, runs):
    ours, theirs = compare(name, runs)
    assert_same_output(_squash(ours["stdout"]), _squash(theirs["stdout"]))


def _squash(text):
    # NumPy pads columns to the widest number printed: one digit more or less (float32
    # rounding) moves the spaces, not the numbers.
    return re.sub(r" ?([\[\]]) ?", r"\1", re.sub(r"\s+", " ", text))


def test_seed_003_runs_with_the_long_loss_name_unchanged(runs):
    # TF 2.21's tf.keras.losses lacks mean_squared_error (the seed calls it); ours has it.
    assert_close(ours_only(runs, "seed_003_verbatim"), runs[0]["seed_003_ex3"]["result"])


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
def test_tape_gradients_of_keras_models_equal_tensorflow(name, runs):
    ours, _ = compare(name, runs, rtol=2e-4, atol=2e-5)
    grads = ours["result"]["grads"]
    assert all(g is not None for g in grads)


def test_keras_optimizers_ten_steps_equal_tensorflow(runs):
    # Keras Variables and tf.Variables alike; `unused` has a None gradient and is skipped.
    ours, _ = compare("optimizers_ten_steps", runs, rtol=2e-5, atol=2e-6)
    assert all(r[3] == 1.0 for r in ours["result"].values())


@pytest.mark.parametrize(
    "name", ["tf_optimizers_on_tf_variables", "dataset_training_loop", "steps_that_assign"]
)
def test_tf_optimizers_are_keras_optimizers_and_equal_tensorflow(name, runs):
    # tf.optimizers on tf.Variables, eager and under tf.function; a None gradient is skipped.
    ours, _ = compare(name, runs, rtol=2e-5, atol=2e-6)
    r = ours["result"]
    if name == "tf_optimizers_on_tf_variables":
        assert r.pop("same_classes") == "True"
        assert all(v["iterations"] == 10 and v["unused"] == 1.0 for v in r.values())
    else:
        assert_close(r["compiled"], r["eager"], rtol=1e-6, atol=1e-7)


def test_optimizer_failure_changes_nothing(runs):
    r = ours_only(runs, "optimizer_failure_changes_nothing")
    assert "must match" in r["error"]
    assert r["w"].tolist() == [1.0, 2.0] and r["b"] == 0.5 and r["iterations"] == 0


def test_fit_with_a_tf_train_step_equals_tensorflow_and_run_eagerly(runs):
    ours, _ = compare("fit_with_tf_train_step", runs, rtol=2e-5, atol=2e-6)
    assert_close(ours["result"]["compiled"], ours["result"]["eager"], rtol=1e-5, atol=1e-6)
    engine = ours_only(runs, "fit_with_tf_train_step_our_engine")  # JAX's autodiff refused
    assert engine["tf_style"]
    assert_close(engine["runs"], ours["result"], rtol=0, atol=0)


def test_keras_masks_ride_on_tensors_between_top_level_calls(runs):
    ours, _ = compare("masks_between_top_level_calls", runs, rtol=2e-4, atol=2e-5)
    r = ours["result"]
    assert not np.allclose(r["h"], r["unmasked"])  # the mask changed the LSTM's output


def test_keras_metrics_in_a_custom_loop_equal_tensorflow(runs):
    compare("metrics_custom_loop", runs)


def test_custom_training_step_under_tf_function_gives_the_eager_results(runs):
    # Model built, optimizer slots and metric totals created inside the first trace.
    ours, _ = compare("quickstart_for_experts", runs, rtol=2e-5, atol=2e-6)
    assert_close(ours["result"]["compiled"], ours["result"]["eager"], rtol=1e-5, atol=1e-6)


def test_higher_order_through_keras_equals_tensorflow(runs):
    compare("higher_order", runs, rtol=1e-4, atol=1e-6)


def test_fit_evaluate_predict_equal_tensorflow_and_run_eagerly(runs):
    ours, _ = compare("fit_evaluate_predict", runs, rtol=2e-5, atol=2e-6)
    assert_close(ours["result"]["compiled"], ours["result"]["eager"], rtol=1e-5, atol=1e-6)
    assert ours_only(runs, "fit_uses_our_engine")["ours"]


def test_save_and_load_round_trip(runs):
    r = ours_only(runs, "save_load")
    for i in (1, 2):  # load_model (.keras) and load_weights (.weights.h5)
        assert_close(r["outputs"][i], r["outputs"][0], rtol=0, atol=0)
        assert_close(r["weights"][i], r["weights"][0], rtol=0, atol=0)
    assert all(g is not None and np.all(np.isfinite(g)) for g in r["grads_loaded"])


def test_the_docs_page_trains_a_keras_model_with_the_tape(runs):
    assert ours_only(runs, "docs_page")["accuracy"] > 0.8


def test_the_migration_guide_trains_with_tf_optimizers(runs):
    r = ours_only(runs, "migration_page")
    assert r["last"] < r["first"]


def test_plain_keras_is_untouched_and_a_failed_call_changes_nothing(runs):
    r = ours_only(runs, "plain_keras_and_failures")
    assert r["plain_is_jax"] and r["ours"] == "Tensor"
    assert "incompatible" in r["error"]  # Keras's own input-spec error
    assert r["unchanged"]


def test_tf_module_tracks_what_tensorflow_tracks(runs):
    compare("module_tracking", runs)


def test_keras_layers_are_modules(runs):
    r = ours_only(runs, "layers_are_modules")
    assert r["is_module"] == [True, True]
    assert r["found"] == [True, True, True]
    # Own Variables first, then each submodule's (TF's order); Keras names have no ":0".
    assert r["names"] == ["scale:0", "kernel", "bias"]
    np.testing.assert_allclose(r["grads"][1], np.full((3, 4), 4.0), rtol=1e-6)
    np.testing.assert_allclose(r["grads"][0], np.sum(r["out"]), rtol=1e-5)


def test_dropout_mask_is_the_same_forward_and_backward(runs):
    # Keras-on-TF draws other masks, so the oracle is jax.grad of Keras's stateless function
    # with the same seed state.
    r = ours_only(runs, "dropout")
    assert r["seed_advanced"]
    np.testing.assert_allclose(r["loss"], r["jax_loss"], rtol=1e-6)
    assert_close(r["grads"], r["jax_grads"], rtol=1e-5, atol=1e-7)
    assert r["drops"]  # training and inference outputs differ


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


def test_keras_version_is_the_pinned_range(runs):
    import tomllib

    r = ours_only(runs, "version")
    with open(ROOT / "pyproject.toml", "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    low, high = (".".join(map(str, v)) for v in r["supported"])
    assert f"keras>={low},<{high}" in extras["keras"]
    assert f"keras>={low},<{high}" in extras["test"]
    version = tuple(int(p) for p in r["version"].split(".")[:2])
    assert tuple(r["supported"][0]) <= version < tuple(r["supported"][1])
