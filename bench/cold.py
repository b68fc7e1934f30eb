"""First calls: derivatives of functions never seen before, against JAX's eager autodiff.

A notebook cell, a test, or a loss that closes over a changing Python float calls each
derivative once or a few times. Each round builds a fresh function (a new closure over a new
Python float, so nothing traced before matches it) and times its first call, for us and for
JAX, interleaved; "x3" times three calls of one new function. Medians per call.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

TARGET_ONE = 1.0  # first call: ours / JAX
TARGET_THREE = 0.8  # three calls of a new function: ours / JAX


def _mlp(c):
    def loss(params, x):
        h = x
        for w, b in params[:-1]:
            h = jnp.tanh(h @ w + b)
        w, b = params[-1]
        return jnp.mean((h @ w + b - c) ** 2)

    return loss


def _scalar(c):
    return lambda x: jnp.sum(jnp.sin(x * c) * x**2) + jnp.sum(jnp.tanh(x)) ** 2


@dataclass
class Kind:
    name: str
    ours: Callable[[float], Callable[[], object]]  # c -> thunk doing the first call
    jax: Callable[[float], Callable[[], object]]


def kinds() -> list[Kind]:
    import transforms as T
    import transforms.tf as tf

    rng = np.random.default_rng(0)
    sizes = (16, 32, 32, 4)
    params = [
        (jnp.asarray(rng.standard_normal((a, b)) / np.sqrt(a)), jnp.zeros((b,)))
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]
    xb = jnp.asarray(rng.standard_normal((8, sizes[0])))
    x24 = jnp.asarray(rng.standard_normal(24))
    v24 = jnp.asarray(rng.standard_normal(24))

    def tape_grad(c):
        w = tf.Variable(np.ones((4, 3)))

        def run():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.tanh(tf.matmul(np.ones((2, 4)), w) * c))
            return tape.gradient(loss, w)

        return run

    def jax_tape(c):
        w = jnp.ones((4, 3))
        return lambda: jax.grad(lambda w: jnp.sum(jnp.tanh((jnp.ones((2, 4)) @ w) * c)))(w)

    return [
        Kind(
            "grad of an MLP loss",
            lambda c: lambda: T.grad(_mlp(c))(params, xb),
            lambda c: lambda: jax.grad(_mlp(c))(params, xb),
        ),
        Kind(
            "jvp, 24 inputs",
            lambda c: lambda: T.jvp(_scalar(c), (x24,), (v24,)),
            lambda c: lambda: jax.jvp(_scalar(c), (x24,), (v24,)),
        ),
        Kind(
            "hessian, 24 inputs",
            lambda c: lambda: T.hessian(_scalar(c))(x24),
            lambda c: lambda: jax.hessian(_scalar(c))(x24),
        ),
        Kind(
            "jacfwd, 24 inputs",
            lambda c: lambda: T.jacfwd(T.grad(_scalar(c)))(x24),
            lambda c: lambda: jax.jacfwd(jax.grad(_scalar(c)))(x24),
        ),
        Kind(
            "hvp, 24 inputs",
            lambda c: lambda: T.hvp(_scalar(c), (x24,), (v24,)),
            lambda c: lambda: jax.jvp(jax.grad(_scalar(c)), (x24,), (v24,)),
        ),
        Kind("tape gradient", tape_grad, jax_tape),
    ]


@dataclass
class Row:
    name: str
    ours_one: float
    jax_one: float
    ours_three: float
    jax_three: float


def _time(thunk, calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        jax.block_until_ready(thunk())
    return time.perf_counter() - t0


def rows(quick: bool = False, log=print) -> list[Row]:
    out = []
    rounds = 3 if quick else 9
    fresh = iter(np.linspace(1.0, 2.0, 10_000)[1:])  # a new Python float per function
    for kind in kinds():
        for make in (kind.ours, kind.jax):  # primitives' own kernels warm for both sides
            jax.block_until_ready(make(float(next(fresh)))())
        samples = {"ours1": [], "jax1": [], "ours3": [], "jax3": []}
        for r in range(rounds):
            order = [("ours", kind.ours), ("jax", kind.jax)]
            for name, make in order if r % 2 == 0 else order[::-1]:
                samples[name + "1"].append(_time(make(float(next(fresh))), 1))
                samples[name + "3"].append(_time(make(float(next(fresh))), 3))
        med = {k: statistics.median(v) for k, v in samples.items()}
        row = Row(kind.name, med["ours1"], med["jax1"], med["ours3"], med["jax3"])
        log(
            f"cold {row.name:>22}: one call {row.ours_one * 1e3:.1f} ms vs {row.jax_one * 1e3:.1f}"
            f" ms; three calls {row.ours_three * 1e3:.1f} ms vs {row.jax_three * 1e3:.1f} ms"
        )
        out.append(row)
    return out


def markdown(results: list[Row]) -> list[str]:
    from .harness import _fmt_time

    lines = [
        "## First calls of new functions",
        "",
        "Each round builds a function never seen before (a new closure over a new Python",
        "float) and times its first call; `x3` is three calls of one new function. Medians;",
        f"targets: one call ≤ {TARGET_ONE}× JAX's eager autodiff, three calls ≤ {TARGET_THREE}×.",
        "",
        "| first call of | transforms | JAX | ratio | x3 transforms | x3 JAX | x3 ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        one, three = r.ours_one / r.jax_one, r.ours_three / r.jax_three
        miss_one = "" if one <= TARGET_ONE else " (**no**)"
        miss_three = "" if three <= TARGET_THREE else " (**no**)"
        lines.append(
            f"| {r.name} | {_fmt_time(r.ours_one)} | {_fmt_time(r.jax_one)} | {one:.2f}"
            f"{miss_one} | {_fmt_time(r.ours_three)} | "
            f"{_fmt_time(r.jax_three)} | {three:.2f}{miss_three} |"
        )
    lines.append("")
    return lines


if __name__ == "__main__":
    import sys

    jax.config.update("jax_enable_x64", False)
    print("\n".join(markdown(rows(quick="--quick" in sys.argv))))
