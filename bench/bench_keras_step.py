"""Time a Keras training step (tape, loss, gradient, Keras SGD): transforms.tf.keras eager and
under tf.function, against TensorFlow 2.21's eager and tf.function steps and against a
hand-written `jax.jit(jax.value_and_grad)` step of Keras's stateless model.

    python bench/bench_keras_step.py [--quick] [--steps N]

Keras has one backend per process: TensorFlow's rows run in a subprocess of this script
(`--tensorflow`, KERAS_BACKEND=tensorflow). Prints a markdown table of median step times.
(The baseline may use JAX's autodiff: it is the reference, not our engine.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def make_model(keras, kind):
    if kind == "mlp":
        layers = [
            keras.Input((256,)),
            keras.layers.Dense(512, activation="relu"),
            keras.layers.Dense(10),
        ]
    else:
        layers = [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10),
        ]
    model = keras.Sequential(layers)
    rng = np.random.default_rng(0)
    model.set_weights(
        [(rng.standard_normal(w.shape) * 0.05).astype(np.float32) for w in model.get_weights()]
    )
    return model


def make_data(kind, batch=64):
    rng = np.random.default_rng(1)
    shape = (batch, 256) if kind == "mlp" else (batch, 16, 16, 3)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, 10, (batch,)).astype(np.int32)
    return x, y


def tf_style_step(tf, kind, compiled):
    """The step users write, for transforms.tf and for TensorFlow alike."""
    keras = tf.keras
    model = make_model(keras, kind)
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    loss_object = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x, y = (tf.constant(a) for a in make_data(kind))

    def step():
        with tf.GradientTape() as tape:
            loss = loss_object(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return tf.function(step) if compiled else step


def jax_step(kind):
    import jax
    import jax.numpy as jnp

    import transforms.tf as ttf

    keras = ttf.keras
    model = make_model(keras, kind)
    x, y = (jnp.asarray(a) for a in make_data(kind))
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def loss_fn(tv):
        logits, _ = model.stateless_call(tv, non_trainable, x, training=True)
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    @jax.jit
    def update(tv, m):
        loss, grads = jax.value_and_grad(loss_fn)(tv)
        m = [0.9 * mi - 0.01 * g for mi, g in zip(m, grads, strict=True)]
        return loss, [p + mi for p, mi in zip(tv, m, strict=True)], m

    state = {"tv": trainable, "m": [jnp.zeros_like(p) for p in trainable]}

    def step():
        loss, state["tv"], state["m"] = update(state["tv"], state["m"])
        return loss

    return step


def time_steps(steps, n, warmup=5, rounds=5):
    """Median step time of each of `steps` (name -> step function): warmed up, then timed in
    `rounds` interleaved rounds, so that a slow spell of a shared machine hits every row alike."""
    for step in steps.values():
        for _ in range(warmup):
            _block(step())
    # Warm means steady state: our derivative programs compile in the background from their
    # second call (transforms.tiered), so wait for those compilations before timing.
    tiered = sys.modules.get("transforms.tiered")
    if tiered is not None:
        tiered.wait()
        for step in steps.values():
            for _ in range(2):
                _block(step())
        tiered.wait()
    times = {name: [] for name in steps}
    per_round = max(1, n // rounds)
    for _ in range(rounds):
        for name, step in steps.items():
            for _ in range(per_round):
                t0 = time.perf_counter()
                _block(step())
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _block(x):
    if hasattr(x, "block_until_ready"):
        x.block_until_ready()
    elif hasattr(x, "numpy"):
        x.numpy()


def tensorflow_rows(n):
    env = dict(os.environ, KERAS_BACKEND="tensorflow", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, __file__, "--tensorflow", "--steps", str(n)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        return {}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few steps")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--tensorflow", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    n = args.steps or (10 if args.quick else 50)
    kinds = ("mlp", "cnn")
    if args.tensorflow:
        import tensorflow as tf

        out = {}
        for k in kinds:
            steps = {
                f"{k} {mode}": tf_style_step(tf, k, mode == "tf.function")
                for mode in ("eager", "tf.function")
            }
            out.update(time_steps(steps, n))
        print(json.dumps(out))
        return
    theirs = tensorflow_rows(n)
    import transforms.tf as ttf

    print(
        "Keras step: batch 64, MLP 256 -> 512 (relu) -> 10 and CNN 16x16x3 -> conv16 -> pool -> "
        f"conv16 -> GAP -> 10; sparse softmax cross-entropy, SGD(momentum=0.9); median of {n} "
        "steps after warm-up (background compilations finished), timed in 5 interleaved rounds."
        "\n"
    )
    print("| model | step | median (ms) | vs jax.jit | vs TF same mode |")
    print("|---|---|---:|---:|---:|")
    for k in kinds:
        steps = {"jax": jax_step(k)}
        for mode in ("eager", "tf.function"):
            steps[mode] = tf_style_step(ttf, k, mode == "tf.function")
        medians = time_steps(steps, n)
        base = medians["jax"]
        rows = [("jax.jit(jax.value_and_grad)", base, None)]
        for mode in ("eager", "tf.function"):
            t = medians[mode]
            rows.append((f"transforms.tf.keras {mode}", t, theirs.get(f"{k} {mode}")))
        for mode in ("eager", "tf.function"):
            if f"{k} {mode}" in theirs:
                rows.append((f"TensorFlow {mode}", theirs[f"{k} {mode}"], None))
        for name, t, tf_t in rows:
            vs_tf = f"{t / tf_t:.2f}x" if tf_t else ""
            print(f"| {k} | {name} | {t * 1e3:.3f} | {t / base:.2f}x | {vs_tf} |")


if __name__ == "__main__":
    main()
