"""Helpers shared by the TensorFlow-comparison tests: run TF-style code under a module, compare
printed output number by number."""

from __future__ import annotations

import contextlib
import io
import linecache
import re

import numpy as np

_NUM = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def deterministic_random(module, seed=0):
    """Replace `module.random.normal`/`uniform` by a NumPy stream, so that TF and
    transforms.tf draw the same numbers (their generators differ)."""
    rng = np.random.RandomState(seed)

    def normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None, name=None):
        shape = [int(s) for s in np.asarray(shape).reshape(-1)]
        v = (rng.standard_normal(shape) * stddev + mean).astype(np.float32)
        return module.constant(v) if dtype is None else module.cast(module.constant(v), dtype)

    def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None, name=None):
        shape = [int(s) for s in np.asarray(shape).reshape(-1)]
        v = rng.uniform(minval, maxval, shape).astype(np.float32)
        return module.constant(v)

    return normal, uniform


@contextlib.contextmanager
def patched_random(module, seed=0):
    normal, uniform = deterministic_random(module, seed)
    saved = module.random.normal, module.random.uniform
    module.random.normal, module.random.uniform = normal, uniform
    try:
        yield
    finally:
        module.random.normal, module.random.uniform = saved


def run_code(code: str, module_name: str, module, seed=0) -> tuple[str, dict]:
    """Exec `code` (which does `import tensorflow as tf`) with `tf` bound to `module`."""
    src = code.replace("import tensorflow as tf", f"import {module_name} as tf")
    # A source cache for the exec'd code (as IPython keeps for cells), so that AutoGraph (TF's
    # and ours) can read the source of the seed's tf.function.
    linecache.cache["<seed>"] = (len(src), None, src.splitlines(True), "<seed>")
    ns: dict = {"__name__": "__seed__"}
    buf = io.StringIO()
    with patched_random(module, seed), contextlib.redirect_stdout(buf):
        exec(compile(src, "<seed>", "exec"), ns)
    return buf.getvalue(), ns


def assert_same_output(ours: str, theirs: str, rtol=1e-5):
    """Same text, and numbers equal up to `rtol` or one unit in their last printed digit."""
    skel_a, skel_b = _NUM.sub("#", ours), _NUM.sub("#", theirs)
    assert skel_a == skel_b, f"outputs differ:\n--- ours\n{ours}\n--- tensorflow\n{theirs}"
    for a, b in zip(_NUM.findall(ours), _NUM.findall(theirs), strict=True):
        decimals = len(b.split(".")[1].split("e")[0].split("E")[0]) if "." in b else 0
        exp = float("1e" + b.lower().split("e")[1]) if "e" in b.lower() else 1.0
        # Fixed-point prints ("{:.4f}") may round the last digit either way; short ones may not.
        ulp = 10.0**-decimals * exp if decimals >= 3 else 0.0
        assert abs(float(a) - float(b)) <= max(rtol * abs(float(b)), 1.01 * ulp), (
            f"{a} != {b}\n--- ours\n{ours}\n--- tensorflow\n{theirs}"
        )
