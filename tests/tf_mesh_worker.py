"""A `transforms.tf` training step on Variables sharded over an Explicit mesh, run by
tests/test_sharding_patterns.py in its own process (8 simulated CPU devices; Keras, and so
`tf.optimizers`, is imported only here, never in pytest's process).

Trains the same steps with the Variables sharded under `jax.set_mesh` and unsharded, and
writes to the .npz named by argv[1]: the parameters of both runs, and for each Variable the
partition of its tape gradient (eager, inside the `tf.function` and returned from it) and of
its value after `assign_sub` or `apply_gradients`, and after an eager `assign` of a NumPy array.
"""

from __future__ import annotations

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

jax.config.update("jax_enable_x64", True)

import transforms.tf as tf  # noqa: E402

STEPS = 2
SPECS = {"w": P("data"), "b": P()}  # w split over its rows (FSDP-like), b replicated


def _rand(shape, seed):
    return np.random.RandomState(seed).randn(*shape)


def _spec(x) -> str:
    spec = tuple(jax.typeof(x).sharding.spec)
    return repr(spec + (None,) * (np.ndim(x) - len(spec)))


def train(mesh, optimizer: bool) -> dict:
    init = {"w": _rand((8, 4), 1), "b": _rand((4,), 2)}
    x = _rand((16, 8), 3)
    if mesh is not None:
        init = {k: jax.device_put(v, NamedSharding(mesh, SPECS[k])) for k, v in init.items()}
        x = jax.device_put(x, NamedSharding(mesh, P("data")))
    w, b = tf.Variable(init["w"]), tf.Variable(init["b"])
    opt = tf.optimizers.SGD(learning_rate=0.1, momentum=0.5) if optimizer else None
    seen = {}

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(tf.tanh(tf.matmul(x, w) + b)))
        grads = tape.gradient(loss, [w, b])
        seen.update({f"traced_grad/{k}": _spec(g._value) for k, g in zip("wb", grads)})
        if opt is None:
            w.assign_sub(0.1 * grads[0])
            b.assign_sub(0.1 * grads[1])
        else:
            opt.apply_gradients(zip(grads, [w, b]))
        return grads

    with tf.GradientTape() as tape:  # eagerly, outside any tf.function, too
        loss = tf.reduce_mean(tf.square(tf.tanh(tf.matmul(tf.constant(x), w) + b)))
    seen.update(
        {f"eager_grad/{k}": _spec(g._value) for k, g in zip("wb", tape.gradient(loss, [w, b]))}
    )
    for _ in range(STEPS):
        grads = step(tf.constant(x))
    seen.update({f"grad/{k}": _spec(g._value) for k, g in zip("wb", grads)})
    seen.update({f"value/{k}": _spec(v._value) for k, v in zip("wb", (w, b))})
    seen.update({f"param/{k}": np.asarray(v.numpy()) for k, v in zip("wb", (w, b))})
    w.assign(np.zeros((8, 4)))  # an eager assign of a host value keeps the placement, as in TF
    seen["assigned/w"] = _spec(w._value)
    return seen


def main(out: str) -> None:
    mesh = jax.make_mesh((8,), ("data",))  # Explicit axes, JAX's default
    results = {}
    for name, optimizer in (("assign", False), ("optimizer", True)):
        with jax.set_mesh(mesh):
            sharded = train(mesh, optimizer)
        plain = train(None, optimizer)
        results.update({f"{name}/sharded/{k}": v for k, v in sharded.items()})
        results.update({f"{name}/plain/{k}": v for k, v in plain.items() if k.startswith("param")})
    np.savez(out, **results)


if __name__ == "__main__":
    main(sys.argv[1])
