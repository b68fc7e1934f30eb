"""Tiered execution: a derivative program runs op by op until its compiled form is ready.

XLA needs ~100 ms on a CPU to compile even a small derivative program, while running the same
program op by op (each primitive on JAX's own cached kernel) takes a few milliseconds. A
derivative called once (a notebook cell, a test, a loss over a Python float that changes every
step) should not wait for XLA, and one called in a loop should end up compiled. So:

- call 1 runs op by op;
- call 2 lowers the program here and hands the XLA compilation to a background thread (XLA
  compiles without holding the GIL), and runs op by op again;
- every later call runs the compiled executable once it is ready, op by op until then.

`set_policy("sync")` compiles on the first call instead (warm-call benchmarks, and code that
wants compiled numerics from the start); `set_policy("never")` always runs op by op. The
environment variable `TRANSFORMS_TIERED` sets the initial policy.
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
from collections.abc import Callable

import jax

POLICIES = ("tiered", "sync", "never")
_policy = os.environ.get("TRANSFORMS_TIERED", "tiered")
if _policy not in POLICIES:
    raise ValueError(f"TRANSFORMS_TIERED must be one of {POLICIES}, not {_policy!r}")

# Compilations queued beyond this are not started: the program keeps running op by op and asks
# again on a later call, so a burst of new programs cannot build an unbounded backlog.
MAX_PENDING = 8


def set_policy(policy: str) -> str:
    """Set how eager derivative programs are executed; returns the previous policy.

    "tiered" (default): op by op for the first calls, compiled in the background from the
    second call and used once ready. "sync": compiled on the first call. "never": op by op.
    """
    global _policy
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, not {policy!r}")
    previous, _policy = _policy, policy
    return previous


def get_policy() -> str:
    return _policy


class Tiered:
    """`raw` (a function of arrays) that switches to its compiled form once that is built."""

    __slots__ = ("raw", "jitted", "calls", "compiled", "failed", "pending", "__weakref__")

    def __init__(self, raw: Callable):
        self.raw = raw
        self.jitted = jax.jit(raw)
        self.calls = 0
        self.compiled = None  # the XLA executable, once built
        self.failed = False  # compiling or calling the executable failed: use jax.jit
        self.pending = False

    def ready(self) -> bool:
        return self.compiled is not None or self.failed or _policy == "sync"

    def __call__(self, *args):
        return self.call_or(lambda: self.raw(*args), args)

    def call_or(self, op_by_op: Callable, args: tuple):
        """The compiled program's result when it is ready, else `op_by_op()`'s."""
        if jax.config.jax_disable_jit:  # the user asked for op by op (jax.disable_jit())
            return op_by_op()
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except (TypeError, ValueError):
                # Arguments typed (weak types) or placed (another sharding of the same mesh,
                # another device) unlike those it was lowered for: the executable refuses them
                # before running; jax.jit compiles for each.
                self.compiled, self.failed = None, True
        if self.failed or _policy == "sync":
            return self.jitted(*args)
        self.calls += 1
        if _policy == "tiered" and self.calls >= 2 and not self.pending:
            self._start(args)  # also asks again when the backlog was full last time
        return op_by_op()

    def _start(self, args):
        if _jobs.qsize() >= MAX_PENDING:
            return
        try:
            lowered = self.jitted.lower(*args)
        except Exception:  # noqa: BLE001 - compiled form unavailable; jit reports real errors
            self.failed = True
            return
        self.pending = True
        _ensure_worker()
        _jobs.put((self, lowered))


_jobs: queue.Queue = queue.Queue()
_worker: threading.Thread | None = None
_worker_lock = threading.Lock()
_stopping = threading.Event()


def _work():
    while not _stopping.is_set():
        try:
            tiered, lowered = _jobs.get(timeout=0.5)
        except queue.Empty:
            continue
        try:
            if not _stopping.is_set():
                tiered.compiled = lowered.compile()
        except Exception:  # noqa: BLE001 - fall back to jax.jit, which raises what is due
            tiered.failed = True
        finally:
            tiered.pending = False
            _jobs.task_done()


def _ensure_worker():
    global _worker
    with _worker_lock:
        if _worker is None or not _worker.is_alive():
            _worker = threading.Thread(target=_work, name="transforms-compile", daemon=True)
            _worker.start()


def wait(timeout: float | None = None) -> None:
    """Block until every queued background compilation has finished (tests, benchmarks)."""
    if _worker is None:
        return
    done = threading.Event()

    def join():
        _jobs.join()
        done.set()

    threading.Thread(target=join, daemon=True).start()
    done.wait(timeout)


@atexit.register
def _stop():
    # Queued compilations are dropped; one in flight is waited for, so that XLA is not torn
    # down under a thread still compiling.
    _stopping.set()
    worker = _worker
    if worker is not None and worker.is_alive():
        worker.join(timeout=60)
