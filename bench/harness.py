"""Timing, memory, scaling fit and reporting for the benchmark.

Timings are noisy on a shared machine, so every case runs its implementations interleaved (one
call of each, in a rotating order, repeated) and reports medians; ratios compare medians.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import jax
import numpy as np

from .workloads import Case


@dataclass
class Result:
    case: Case
    medians: dict[str, float]  # seconds
    reps: int
    samples: dict[str, list[float]] = field(default_factory=dict)  # seconds, one per round

    @property
    def ratio(self) -> float:
        """transforms / JAX: the median of the per-round ratios.

        Each round times both back to back, so a round's ratio is measured under one machine
        load; on a shared machine whose speed drifts between rounds, the median of those paired
        ratios is steadier than the ratio of the two medians.
        """
        ours, ref = self.samples.get("transforms"), self.samples.get("JAX")
        if not ours or not ref or len(ours) != len(ref):
            return self.medians["transforms"] / self.medians["JAX"]
        return statistics.median(a / b for a, b in zip(ours, ref, strict=True))

    @property
    def met(self) -> bool:
        return self.ratio <= self.case.target


def _block(out):
    jax.block_until_ready(jax.tree_util.tree_map(_to_array, out, is_leaf=_is_tf))
    return out


def _is_tf(x):
    return type(x).__module__.startswith("tensorflow")


def _to_array(x):
    # TensorFlow values are synchronised by reading them back; anything else passes through.
    if _is_tf(x) and hasattr(x, "numpy"):
        return x.numpy()
    return x


# Before each timed call: lets the previous implementation's worker threads go idle.
PAUSE_S = 0.003


def _round_order(names: list[str], r: int) -> list[str]:
    """Round `r`'s order: transforms and JAX back to back (taking turns to go first), and the
    other libraries rotated around them, so no implementation always follows the same one."""
    pair = ["transforms", "JAX"] if r % 2 == 0 else ["JAX", "transforms"]
    units = [pair, *([n] for n in names if n not in pair)]
    k = r % len(units)
    return [n for unit in units[k:] + units[:k] for n in unit]


def time_case(case: Case, budget_s: float = 2.0, min_reps: int = 5, max_reps: int = 41) -> Result:
    """Median wall time of each implementation, runs interleaved in a rotating order.

    Two untimed warm-up calls each (compilation, caches; tiered programs compiled), then as
    many rounds as fit in `budget_s` (between `min_reps` and `max_reps`).
    """
    names = list(case.impls)
    first = {}
    for name in names:
        _block(case.impls[name]())  # warm-up: compile, fill caches
        _block(case.impls[name]())  # a second call hands tiered programs to the compiler
    _wait_for_compilations()
    for name in names:
        time.sleep(PAUSE_S)
        t0 = time.perf_counter()
        _block(case.impls[name]())
        first[name] = time.perf_counter() - t0
    per_round = sum(first.values())
    if per_round > 5.0:  # the largest chains: a few rounds are all the time allows
        min_reps = min(min_reps, 3)
    reps = int(min(max_reps, max(min_reps, budget_s / max(per_round, 1e-9))))
    samples: dict[str, list[float]] = {name: [first[name]] for name in names}
    for r in range(reps - 1):
        for name in _round_order(names, r):
            thunk = case.impls[name]
            time.sleep(PAUSE_S)
            t0 = time.perf_counter()
            _block(thunk())
            samples[name].append(time.perf_counter() - t0)
    return Result(case, {n: statistics.median(s) for n, s in samples.items()}, reps, samples)


def _wait_for_compilations():
    # Warm rows time the steady state: eager derivative programs compile in the background
    # after their second call (transforms.tiered), and the timed calls start once they have.
    from transforms import tiered

    tiered.wait(timeout=600)


def fitted_exponent(sizes: Sequence[float], times: Sequence[float]) -> float:
    """The slope of log(time) against log(size): 1.0 is linear, 2.0 quadratic."""
    return float(np.polyfit(np.log(sizes), np.log(times), 1)[0])


# --- memory -------------------------------------------------------------------------------------


def compiled_memory(fn: Callable, *args) -> dict[str, int]:
    """Bytes XLA reports for the compiled program: temporaries, outputs, and their sum."""
    stats = jax.jit(fn).lower(*args).compile().memory_analysis()
    temp, out = int(stats.temp_size_in_bytes), int(stats.output_size_in_bytes)
    return {"temp": temp, "output": out, "peak": temp + out}


def residual_bytes_jax(fun, *args) -> int:
    """Bytes JAX's reverse mode keeps between its forward and backward pass (jax.vjp's closure)."""
    _, pullback = jax.vjp(fun, *args)
    return sum(int(np.asarray(x).nbytes) for x in jax.tree_util.tree_leaves(pullback))


def residual_bytes_ours(fun, *args) -> int:
    """Bytes our reverse mode keeps: the residual outputs of the known (primal) program."""
    from transforms import engine
    from transforms.api import _is_differentiable, _trace

    closed, flat, _, _ = _trace(fun, args, False, "vjp")
    nonzeros = tuple(_is_differentiable(p) for p in flat)
    _, residuals, _ = engine.linearize_flat(closed, flat, nonzeros)
    return sum(int(np.asarray(r).nbytes) for r in residuals)


def hlo_instructions(fn, *args) -> int:
    """Instructions in XLA's optimised program for `jax.jit(fn)`: a noise-free cost proxy."""
    text = jax.jit(fn).lower(*args).compile().as_text()
    return sum(1 for line in text.splitlines() if line.lstrip().startswith(("%", "ROOT ")))


def compiled_sizes(results: Sequence[Result]) -> list[str]:
    """Markdown rows: optimised-program instruction counts, transforms against JAX."""
    rows = []
    for r in results:
        if r.case.programs is None:
            continue
        ours, theirs, args = r.case.programs
        n_ours, n_jax = hlo_instructions(ours, *args), hlo_instructions(theirs, *args)
        rows.append(f"| {r.case.workload} | {n_ours} | {n_jax} |")
    return rows


# --- reporting ----------------------------------------------------------------------------------


def machine() -> str:
    dev = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        cpu = f"{names[0]} ({len(names)} logical cores)" if names else cpu
    except OSError:
        pass
    import os

    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return (
        f"{cpu}{load}; JAX {jax.__version__} on {dev.platform.upper()} ({dev.device_kind}); "
        f"Python {platform.python_version()}; {platform.system()} {platform.release()}"
    )


def _fmt_time(s: float | None) -> str:
    if s is None:
        return "—"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.0f} µs"


def markdown_table(results: Sequence[Result], extra: Sequence[str]) -> str:
    head = ["workload", "mode", "size", "transforms", "JAX", "ratio", "target", "met", *extra]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        c = r.case
        row = [
            c.workload,
            c.mode,
            str(c.size),
            _fmt_time(r.medians["transforms"]),
            _fmt_time(r.medians["JAX"]),
            f"{r.ratio:.2f}",
            f"≤ {c.target}",
            "yes" if r.met else "**no**",
            *(_fmt_time(r.medians.get(lib)) for lib in extra),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot_scaling(results: Sequence[Result], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, mode, title in zip(
        axes,
        ("build", "eager"),
        ("building grad's program (make_jaxpr)", "eager grad call"),
        strict=True,
    ):
        rs = [r for r in results if r.case.workload == "chain" and r.case.mode == mode]
        libs = sorted({lib for r in rs for lib in r.medians}, key=lambda s: s != "transforms")
        for lib in libs:
            pts = [(r.case.size, r.medians[lib]) for r in rs if lib in r.medians]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.loglog(xs, ys, marker="o", label=lib)
        if rs:
            xs = np.array([r.case.size for r in rs], float)
            ref = rs[0].medians["JAX"] * xs / xs[0]
            ax.loglog(xs, ref, ls=":", color="gray", label="linear")
        ax.set_xlabel("equations in the chain")
        ax.set_ylabel("median time (s)")
        ax.set_title(title)
        ax.legend()
    fig.savefig(path, dpi=120)
    plt.close(fig)
