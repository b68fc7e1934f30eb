"""`python -m bench.control_flow`: grad of functions with a Python `if`, ours against jax.grad.

First call, new program: a fresh function each time with a new structure (one more `sin` in a
chain), so that no derivative program of ours is cached for it, after both libraries have warmed up
on another one; JAX's and ours alternate, so load on the machine hits both alike. New constant: a
fresh function that differs only in a Python float (a schedule value, a new closure in a notebook
cell), for which our derivative program of the path taken is reused with the float as an input.
Steady state: the same function, the same branch, called again (a training loop). Prints
medians, in milliseconds.
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp

import transforms as T


def make_scalar(k: float, n: int = 1):
    def f(x):
        if x > 0:
            y = x
            for _ in range(n):  # the same operations as before, in a program of a new length
                y = jnp.sin(y)
            return y * x + k
        return -x

    return f


def make_mlp(k: float, n: int = 0):
    # a small model whose loss branches on the value of its activations
    def loss(params, x):
        h = jnp.tanh(x @ params["w1"] + params["b1"])
        if jnp.mean(h) > 0.0:
            h = h * (1.0 + k)
        else:
            h = jnp.sin(h)
        for _ in range(2):
            h = jnp.tanh(h @ params["w2"])
        for _ in range(n):
            h = jnp.sin(h)
        return jnp.mean(h**2)

    return loss


def _args_mlp():
    key = jax.random.PRNGKey(0)
    k1, k2, k3 = jax.random.split(key, 3)
    params = {
        "w1": jax.random.normal(k1, (16, 32)) * 0.3,
        "b1": jnp.full((32,), 0.1),
        "w2": jax.random.normal(k2, (32, 32)) * 0.3,
    }
    return params, jax.random.normal(k3, (8, 16))


def _time(fn, *args):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t


def measure(make, args, reps: int = 15, steady_reps: int = 30):
    jax.block_until_ready(jax.grad(make(100.0))(*args))  # warm both on an unrelated function
    jax.block_until_ready(T.grad(make(100.0))(*args))
    first_jax, first_ours, const_jax, const_ours = [], [], [], []
    for i in range(reps):
        length = 2 + i  # a program never seen before by either library
        first_jax.append(_time(jax.grad(make(1.0, length)), *args))
        first_ours.append(_time(T.grad(make(1.0, length)), *args))
        const_jax.append(_time(jax.grad(make(float(i))), *args))
        const_ours.append(_time(T.grad(make(float(i) + 0.5)), *args))
    f = make(7.0)
    steady = {}
    for name, g in (("jax", jax.grad(f)), ("ours", T.grad(f))):
        g(*args)
        g(*args)
        steady[name] = statistics.median(_time(g, *args) for _ in range(steady_reps))
    ms = 1e3
    return {
        "first_jax": statistics.median(first_jax) * ms,
        "first_ours": statistics.median(first_ours) * ms,
        "const_jax": statistics.median(const_jax) * ms,
        "const_ours": statistics.median(const_ours) * ms,
        "steady_jax": steady["jax"] * ms,
        "steady_ours": steady["ours"] * ms,
    }


def main():
    cases = {
        "scalar `if x > 0`": (make_scalar, (1.0,)),
        "MLP loss, `if jnp.mean(h) > 0`": (make_mlp, _args_mlp()),
    }
    print(
        "| function | new program: jax.grad | ours | new constant: jax.grad | ours "
        "| steady state: jax.grad | ours |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, (make, args) in cases.items():
        r = measure(make, args)
        print(
            f"| {name} | {r['first_jax']:.2f} ms | {r['first_ours']:.2f} ms | "
            f"{r['const_jax']:.2f} ms | {r['const_ours']:.2f} ms | "
            f"{r['steady_jax']:.2f} ms | {r['steady_ours']:.2f} ms |"
        )


if __name__ == "__main__":
    main()
