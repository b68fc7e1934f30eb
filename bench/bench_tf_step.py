"""Time a TF-style MLP training step: transforms.tf eager and compiled (tf.function) against
TensorFlow eager and tf.function, and against a hand-written jax.jit(jax.value_and_grad) step.

    python bench/bench_tf_step.py [--quick] [--steps N]

Prints a markdown table of median step times and their ratio to the jax.jit baseline.
(The baseline may use JAX's autodiff: it is the reference, not our engine.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def make_data(batch, d_in, d_hidden, d_out, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "x": rng.standard_normal((batch, d_in)).astype(np.float32),
        "y": rng.standard_normal((batch, d_out)).astype(np.float32),
        "w1": (rng.standard_normal((d_in, d_hidden)) / np.sqrt(d_in)).astype(np.float32),
        "b1": np.zeros(d_hidden, np.float32),
        "w2": (rng.standard_normal((d_hidden, d_out)) / np.sqrt(d_hidden)).astype(np.float32),
        "b2": np.zeros(d_out, np.float32),
    }


def tf_style_step(tf, data, compiled):
    """The step users write: tape, loss, gradient, assign_sub. Works for both modules."""
    params = [tf.Variable(data[k]) for k in ("w1", "b1", "w2", "b2")]
    x, y = tf.constant(data["x"]), tf.constant(data["y"])

    def step():
        w1, b1, w2, b2 = params
        with tf.GradientTape() as tape:
            h = tf.nn.relu(tf.matmul(x, w1) + b1)
            pred = tf.matmul(h, w2) + b2
            loss = tf.reduce_mean(tf.square(pred - y))
        grads = tape.gradient(loss, params)
        for p, g in zip(params, grads, strict=True):
            p.assign_sub(0.01 * g)
        return loss

    return tf.function(step) if compiled else step


def jax_step(data):
    import jax
    import jax.numpy as jnp

    params = [jnp.asarray(data[k]) for k in ("w1", "b1", "w2", "b2")]
    x, y = jnp.asarray(data["x"]), jnp.asarray(data["y"])

    def loss_fn(ps):
        w1, b1, w2, b2 = ps
        h = jax.nn.relu(x @ w1 + b1)
        return jnp.mean(jnp.square(h @ w2 + b2 - y))

    @jax.jit
    def update(ps):
        loss, grads = jax.value_and_grad(loss_fn)(ps)
        return loss, [p - 0.01 * g for p, g in zip(ps, grads, strict=True)]

    state = {"ps": params}

    def step():
        loss, state["ps"] = update(state["ps"])
        return loss

    return step


def time_step(step, n, warmup=5):
    for _ in range(warmup):
        _block(step())
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        _block(step())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _block(x):
    if hasattr(x, "block_until_ready"):
        x.block_until_ready()
    elif hasattr(x, "numpy"):
        x.numpy()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small model, few steps")
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args(argv)
    shape = (16, 32, 64, 4) if args.quick else (64, 256, 512, 10)
    n = args.steps or (20 if args.quick else 100)
    data = make_data(*shape)

    import transforms.tf as ttf

    rows = [("jax.jit(jax.value_and_grad) step", time_step(jax_step(data), n))]
    rows.append(("transforms.tf eager", time_step(tf_style_step(ttf, data, False), n)))
    rows.append(("transforms.tf tf.function", time_step(tf_style_step(ttf, data, True), n)))
    try:
        import tensorflow as tf_real
    except ImportError:
        tf_real = None
    if tf_real is not None:
        rows.append(("TensorFlow eager", time_step(tf_style_step(tf_real, data, False), n)))
        rows.append(("TensorFlow tf.function", time_step(tf_style_step(tf_real, data, True), n)))
    base = rows[0][1]
    batch, d_in, d_hidden, d_out = shape
    print(
        f"MLP step: batch {batch}, {d_in} -> {d_hidden} (relu) -> {d_out}, MSE, SGD via "
        f"assign_sub; median of {n} steps after 5 warm-up steps.\n"
    )
    print("| step | median (ms) | vs jax.jit |")
    print("|---|---:|---:|")
    for name, t in rows:
        print(f"| {name} | {t * 1e3:.3f} | {t / base:.1f}x |")


if __name__ == "__main__":
    main()
