"""`python -m bench.loops`: reverse mode through a while loop against a scan storing residuals.

The same loop, `h <- sin(h) * x + 0.5 h` on a carry of `--width` float64s, run n times and
differentiated with `transforms.grad`, written four ways:

- `while`: `lax.while_loop` with a run-time trip count (recomputed from 16 snapshots);
- `while S=4`: the same with `transforms.while_loop(..., snapshots=4)` (n <= 1,000 only: at
  100,000 it recomputes 1,854 primal steps per step, `recompute_steps`);
- `max_steps`: `transforms.while_loop(..., max_steps=n)` (residuals stored per step in buffers
  of n steps, read back in reverse: no recomputation);
- `max_steps=2n`: the same with a bound twice the steps taken (both passes run only the n
  steps taken; the buffers hold 2n);
- `scan`: `lax.scan` of length n, every step's residuals stored (transforms, and JAX's own
  `jax.grad` for reference).

Each gradient is compiled with `jax.jit`; the table gives the run time (best of `--repeats`
calls after the compile) and the compiled program's peak temporary memory as XLA reports it
(`memory_analysis().temp_size_in_bytes`), and checks every gradient against JAX's of the scan.

    python -m bench.loops                  # n = 10, 1,000, 100,000
    python -m bench.loops --sizes 10 1000  # quicker
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

jax.config.update("jax_enable_x64", True)

import transforms as T  # noqa: E402


def _body(h, x):
    return jnp.sin(h) * x + 0.5 * h


def variants(n: int):
    def while_loop(x, n_run):
        step = lambda s: (s[0] + 1, _body(s[1], x))  # noqa: E731
        return jnp.sum(lax.while_loop(lambda s: s[0] < n_run, step, (0, x))[1])

    def while_s4(x, n_run):
        step = lambda s: (s[0] + 1, _body(s[1], x))  # noqa: E731
        return jnp.sum(T.while_loop(lambda s: s[0] < n_run, step, (0, x), snapshots=4)[1])

    def max_steps(x, n_run, bound=n):
        step = lambda s: (s[0] + 1, _body(s[1], x))  # noqa: E731
        return jnp.sum(T.while_loop(lambda s: s[0] < n_run, step, (0, x), max_steps=bound)[1])

    def scan(x, n_run):
        del n_run
        return jnp.sum(lax.scan(lambda h, _: (_body(h, x), None), x, None, length=n)[0])

    out = {"while (S=16)": T.grad(while_loop)}
    if n <= 1000:
        out["while (S=4)"] = T.grad(while_s4)
    out.update(
        {
            "max_steps": T.grad(max_steps),
            "max_steps=2n": T.grad(lambda x, n_run: max_steps(x, n_run, 2 * n)),
            "scan": T.grad(scan),
            "scan, jax.grad": jax.grad(scan),
        }
    )
    return out


def measure(fun, x, n, repeats):
    compiled = jax.jit(fun).lower(x, n).compile()
    memory = compiled.memory_analysis()
    temp = getattr(memory, "temp_size_in_bytes", None) if memory is not None else None
    out = compiled(x, n).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        compiled(x, n).block_until_ready()
        times.append(time.perf_counter() - start)
    return min(times), temp, out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 1000, 100_000])
    parser.add_argument("--width", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    x = jnp.linspace(0.1, 0.9, args.width)
    print(f"carry: {args.width} float64 ({args.width * 8} bytes); device: {jax.devices()[0]}")
    print("| n | loop | time (ms) | x scan | peak temp memory (MiB) | matches jax.grad(scan) |")
    print("|---:|---|---:|---:|---:|:---:|")
    for n in args.sizes:
        results = {name: measure(f, x, n, args.repeats) for name, f in variants(n).items()}
        ref, scan_seconds = results["scan, jax.grad"][2], results["scan"][0]
        for name, (seconds, temp, out) in results.items():
            ok = "yes" if np.allclose(out, ref, rtol=1e-10, atol=1e-12) else "NO"
            mem = "?" if temp is None else f"{temp / 2**20:.2f}"
            ratio = seconds / scan_seconds
            print(f"| {n:,} | {name} | {seconds * 1e3:.2f} | {ratio:.1f} | {mem} | {ok} |")


if __name__ == "__main__":
    main()
