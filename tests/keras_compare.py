"""TensorFlow 2.21 as the oracle for `transforms.tf.keras`: the same program text runs under
`transforms.tf` (Keras on JAX) and under real TensorFlow (Keras on TF), each side in one
subprocess for a whole batch of programs.

Both sides draw the same numbers: `tf.random.normal`/`uniform` come from one NumPy stream
(tests/tf_compare.py) and Keras's random initializers from another (`PATCH_INITIALIZERS`), so
models built by unchanged user code start from the same weights. A program may also set
`result` (a nest of tensors/arrays); it comes back as NumPy.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

# Executed on both sides after Keras is imported: Keras's random initializers draw from one
# NumPy stream (uniform, scaled like Glorot), identical under both backends.
PATCH_INITIALIZERS = """
import numpy as _np
from keras.src.initializers import random_initializers as _ri

_rng = _np.random.RandomState(1234)

def _draw(self, shape, dtype=None):
    import keras
    shape = tuple(int(s) for s in shape)
    fan_in = shape[-2] if len(shape) >= 2 else (shape[0] if shape else 1)
    fan_out = shape[-1] if shape else 1
    for s in shape[:-2]:
        fan_in *= s
        fan_out *= s
    limit = _np.sqrt(6.0 / max(fan_in + fan_out, 1))
    value = _rng.uniform(-limit, limit, shape).astype(_np.float32)
    return keras.ops.cast(keras.ops.convert_to_tensor(value), dtype or "float32")

_saved_init = {}
for _cls in (_ri.RandomNormal, _ri.TruncatedNormal, _ri.RandomUniform, _ri.VarianceScaling,
             _ri.Orthogonal):
    _saved_init[_cls] = _cls.__call__
    _cls.__call__ = _draw
"""

UNPATCH_INITIALIZERS = """
for _cls, _f in _saved_init.items():
    _cls.__call__ = _f
"""

# Helpers available to every program.
PRELUDE = """
import numpy as np

def same_weights(model, seed=0):
    # Deterministic weights for `model` (variances positive, integer state left alone).
    rng = np.random.RandomState(seed)
    for w in model.weights:
        dt = np.dtype(w.dtype)
        if dt.kind != "f":
            continue
        if "variance" in w.path:
            w.assign(rng.uniform(0.5, 1.5, tuple(w.shape)).astype(dt))
        else:
            w.assign(rng.uniform(-0.5, 0.5, tuple(w.shape)).astype(dt))

def data(seed, *shape):
    return np.random.RandomState(seed).uniform(-1, 1, shape).astype(np.float32)
"""


def _to_numpy(x):
    if x is None or isinstance(x, bool | int | float | str):
        return x
    if isinstance(x, dict):
        return {k: _to_numpy(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_to_numpy(v) for v in x]
    if hasattr(x, "numpy"):
        return np.asarray(x.numpy())
    return np.asarray(x)


_WORKER = """
import contextlib, io, os, pickle, sys, traceback
sys.path.insert(0, {root!r})
import numpy as np
backend = os.environ["KERAS_BACKEND"]
if backend == "jax":
    import jax
    jax.config.update("jax_enable_x64", True)  # as in tests/conftest.py
    import transforms.tf as tf
    tf.keras
else:
    import tensorflow as tf
    import keras
from tests.tf_compare import patched_random
from tests.keras_compare import PATCH_INITIALIZERS, UNPATCH_INITIALIZERS, PRELUDE, _to_numpy
programs = pickle.load(open({inp!r}, "rb"))
out = {{}}
for name, code in programs.items():
    if backend == "jax":
        code = code.replace("import tensorflow as tf", "import transforms.tf as tf")
        code = code.replace("from tensorflow import keras", "from transforms.tf import keras")
    ns = {{"__name__": "__seed__"}}
    buf = io.StringIO()
    try:
        with patched_random(tf), contextlib.redirect_stdout(buf):
            exec(PATCH_INITIALIZERS + PRELUDE, ns)
            try:
                exec(compile(code, "<" + name + ">", "exec"), ns)
            finally:
                exec(UNPATCH_INITIALIZERS, ns)
        out[name] = dict(stdout=buf.getvalue(), result=_to_numpy(ns.get("result")), error=None)
    except Exception as e:
        out[name] = dict(stdout=buf.getvalue(), result=None,
                         error=type(e).__name__ + ": " + str(e) + traceback.format_exc())
pickle.dump(out, open({outp!r}, "wb"))
"""


def run_programs(programs: dict[str, str], backend: str, timeout=900) -> dict[str, dict]:
    """Run each program in one subprocess: under real TensorFlow (`backend="tensorflow"`,
    Keras on TF) or under transforms.tf (`"jax"`: its imports rebound, Keras on JAX).

    Keras has one backend per process, and in-process TF oracle tests (test_tf_oracle.py)
    load Keras on TF, so neither side runs inside pytest's process.
    Returns per program: `stdout`, `result` (NumPy nest) and `error` (None, or the exception).
    """
    with tempfile.TemporaryDirectory() as d:
        inp, outp = os.path.join(d, "in.pkl"), os.path.join(d, "out.pkl")
        with open(inp, "wb") as f:
            pickle.dump(programs, f)
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        env["PYTHONWARNINGS"] = "ignore"
        env["PYTHONPATH"] = str(ROOT)
        code = _WORKER.format(root=str(ROOT), inp=inp, outp=outp)
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{backend} worker failed:\n{proc.stderr[-4000:]}")
        with open(outp, "rb") as f:
            return pickle.load(f)


def program(text: str) -> str:
    """A program's text: `import tensorflow as tf` plus the dedented body."""
    return "import tensorflow as tf\n" + textwrap.dedent(text)
