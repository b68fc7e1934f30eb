"""Programs for tests/test_tf_keras.py that train: `tf.optimizers` (Keras's optimizers) on
`tf.Variable`s, a `tf.data` training loop, a TF-style `train_step` inside `fit`, and Keras masks
between top-level calls. Each runs under TensorFlow 2.21 and under `transforms.tf` in the
subprocesses of tests/keras_compare.py (Keras has one backend per process, so no test that
uses `tf.optimizers` runs in pytest's own process).
"""

from __future__ import annotations

from tests.keras_compare import program

# Both sides; a program sets `result`.
PROGRAMS = {}
# transforms.tf only (their oracle is inside them).
OURS_ONLY = {}

PROGRAMS["tf_optimizers_on_tf_variables"] = program(
    """
    X = np.array([[0.3, -1.2, 2.0], [1.5, 0.4, -0.7]], np.float32)
    W = np.array([[0.5, -0.3], [0.8, 0.1], [-0.6, 0.9]], np.float32)
    schedule = tf.optimizers.schedules.ExponentialDecay(0.1, decay_steps=3, decay_rate=0.5)
    makers = {
        "sgd": lambda: tf.optimizers.SGD(learning_rate=0.1),
        "momentum": lambda: tf.optimizers.SGD(learning_rate=0.05, momentum=0.9),
        "nesterov": lambda: tf.optimizers.SGD(learning_rate=0.05, momentum=0.8, nesterov=True),
        "adam": lambda: tf.optimizers.Adam(learning_rate=0.05),
        "adam_betas": lambda: tf.optimizers.Adam(0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-5),
        "adamw": lambda: tf.optimizers.AdamW(0.02, weight_decay=0.1),
        "rmsprop": lambda: tf.optimizers.RMSprop(0.01, momentum=0.5),
        "adagrad": lambda: tf.optimizers.Adagrad(0.1),
        "schedule": lambda: tf.optimizers.SGD(schedule, momentum=0.5),
    }

    def train(make, compiled):
        w = tf.Variable(W)
        b = tf.Variable(tf.zeros([2]))
        unused = tf.Variable(1.0)  # None gradient: skipped, as TF does
        x = tf.constant(X)
        y = tf.constant([[1.0, 0.0], [0.0, 1.0]])
        opt = make()

        def step():
            with tf.GradientTape() as tape:
                logits = tf.matmul(x, w) + b
                loss = tf.reduce_mean(
                    tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits)
                )
            grads = tape.gradient(loss, [w, b, unused])
            opt.apply_gradients(zip(grads, [w, b, unused]))
            return loss

        if compiled:
            step = tf.function(step)
        losses = [step() for _ in range(10)]
        return dict(losses=losses, w=w, b=b, unused=unused,
                    iterations=int(opt.iterations.numpy()))  # int64 on TF, int32 on JAX

    # Every optimizer eagerly; under tf.function those with the most state (CI time).
    compiled = ("nesterov", "adam_betas", "adamw", "schedule")
    result = {f"{name}_eager": train(make, False) for name, make in makers.items()}
    result.update({f"{name}_function": train(makers[name], True) for name in compiled})
    result["same_classes"] = str(tf.optimizers.Adam is tf.keras.optimizers.Adam)
    """
)

PROGRAMS["dataset_training_loop"] = program(
    """
    X = np.arange(20, dtype=np.float32).reshape(10, 2) / 10.0
    Y = np.arange(10, dtype=np.int32) % 3

    def training(compiled):
        w = tf.Variable([[0.1], [-0.2]])
        b = tf.Variable([0.0])
        opt = tf.optimizers.SGD(learning_rate=0.1)
        targets = (Y.astype(np.float32) - 1.0).reshape(-1, 1)
        ds = tf.data.Dataset.from_tensor_slices((X, targets)).batch(4).repeat(3)

        def step(x, y):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(tf.matmul(x, w) + b - y))
            grads = tape.gradient(loss, [w, b])
            opt.apply_gradients(zip(grads, [w, b]))
            return loss

        if compiled:
            step = tf.function(step)
        losses = [step(x, y) for x, y in ds]
        return {"losses": losses, "w": w, "b": b}

    result = dict(eager=training(False), compiled=training(True))
    """
)

PROGRAMS["steps_that_assign"] = program(
    """
    def run(compiled):
        w = tf.Variable([[0.5, -0.3], [0.8, 0.1]])
        b = tf.Variable([0.0, 0.1])
        opt = tf.optimizers.Adam(0.1)

        def step(x):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(tf.tanh(tf.matmul(x, w) + b) - 0.2))
            grads = tape.gradient(loss, [w, b])
            opt.apply_gradients(zip(grads, [w, b]))
            b.assign_add(tf.constant([0.01, -0.01]))  # an assign inside the step
            return loss

        step = tf.function(step) if compiled else step
        xs = tf.constant([[1.0, 2.0], [-0.5, 0.3], [0.2, -1.0]])
        losses = [step(xs) for _ in range(5)]
        return [losses, w, b, int(opt.iterations.numpy())]

    result = dict(eager=run(False), compiled=run(True))
    """
)

# TF's TensorFlow guide "Customizing what happens in fit()": a train_step with a tape inside.
CUSTOM_TRAIN_STEP = """
keras = tf.keras

class CustomModel(keras.Model):
    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(y=y, y_pred=y_pred)
        trainable_vars = self.trainable_variables
        gradients = tape.gradient(loss, trainable_vars)
        self.optimizer.apply(gradients, trainable_vars)
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
            else:
                metric.update_state(y, y_pred)
        return {m.name: m.result() for m in self.metrics}

def run(eagerly):
    inp = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu",
                                kernel_regularizer=keras.regularizers.L2(0.01))(inp)
    model = CustomModel(inp, keras.layers.Dense(1)(hidden))
    same_weights(model)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"],
                  run_eagerly=eagerly)
    history = model.fit(data(1, 20, 4), data(2, 20, 1), batch_size=8, epochs=3, shuffle=False,
                        verbose=0, validation_data=(data(3, 8, 4), data(4, 8, 1)))
    return dict(history={k: [float(v) for v in vs] for k, vs in history.history.items()},
                weights=model.get_weights(), predict=model.predict(data(3, 8, 4), verbose=0))
"""

PROGRAMS["fit_with_tf_train_step"] = program(
    CUSTOM_TRAIN_STEP + "\nresult = dict(compiled=run(False), eager=run(True))\n"
)

# The same fit with JAX's autodiff made to fail: the gradients are our engine's.
OURS_ONLY["fit_with_tf_train_step_our_engine"] = program(
    CUSTOM_TRAIN_STEP
    + """
import jax
from transforms.tf.keras.trainer import tf_style_train_step
saved = {n: getattr(jax, n) for n in ("grad", "value_and_grad", "vjp", "jvp", "linearize")}
def refuse(*args, **kwargs):
    raise AssertionError("JAX's autodiff was called")
for n in saved:
    setattr(jax, n, refuse)
try:
    runs = dict(compiled=run(False), eager=run(True))
finally:
    for n, f in saved.items():
        setattr(jax, n, f)
result = dict(runs=runs, tf_style=tf_style_train_step(object.__new__(CustomModel)))
"""
)

PROGRAMS["masks_between_top_level_calls"] = program(
    """
    keras = tf.keras
    emb = keras.layers.Embedding(7, 4, mask_zero=True)
    lstm = keras.layers.LSTM(3)
    gru = keras.layers.GRU(2, return_sequences=True)
    ids = tf.constant(np.array([[1, 2, 5, 0, 0], [3, 0, 0, 0, 0], [4, 6, 1, 2, 3]], np.int32))
    emb(ids), lstm(emb(ids)), gru(emb(ids))
    same_weights(emb), same_weights(lstm, 1), same_weights(gru, 2)
    with tf.GradientTape() as tape:
        e = emb(ids)  # one top-level call ...
        h = lstm(e)  # ... and another: the mask comes along on `e`
        seq = gru(e)
        loss = tf.reduce_sum(h ** 2) + tf.reduce_sum(seq)
    variables = emb.trainable_variables + lstm.trainable_variables + gru.trainable_variables
    grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]
    result = dict(mask=e._keras_mask, seq_mask=seq._keras_mask, h=h, loss=loss, grads=grads,
                  unmasked=lstm(e, mask=tf.ones([3, 5], tf.bool)))
    """
)

OURS_ONLY["optimizer_failure_changes_nothing"] = program(
    """
    # A shape mismatch raises ValueError before anything is written (TF's Keras has already
    # updated `w` when it raises on `b`).
    w, b = tf.Variable([1.0, 2.0]), tf.Variable(0.5)
    opt = tf.optimizers.SGD(0.1, momentum=0.9)
    try:
        opt.apply_gradients([(tf.constant([1.0, 1.0]), w), (tf.constant([1.0, 1.0]), b)])
        error = ""
    except ValueError as e:
        error = str(e)
    result = dict(error=error, w=w, b=b, iterations=int(opt.iterations.numpy()))
    """
)
