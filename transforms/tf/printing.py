"""`tf.print`: TF's text for tensors, printed when the op runs (inside a compiled tf.function,
each time the program runs, through a JAX host callback), not when it is traced."""

from __future__ import annotations

import sys

import jax
import numpy as np
from jax import tree_util

from .tensor import Tensor
from .variable import Variable


def _scalar_text(x) -> str:
    if isinstance(x, np.bool_ | bool):
        return "1" if x else "0"
    if isinstance(x, np.floating):
        # TF's text: %g with the type's decimal digits (6 for float32) if that reads back to
        # the same value, else with enough digits to round-trip (9).
        short, full = (15, 17) if x.dtype == np.float64 else (6, 9)
        text = f"{float(x):.{short}g}"
        return text if x.dtype.type(text) == x else f"{float(x):.{full}g}"
    if isinstance(x, np.complexfloating):
        return f"({x.real:g},{x.imag:g})"
    return str(x)


def format_tensor(arr: np.ndarray, summarize: int = 3) -> str:
    """TF's `tf.print` text: nested brackets, `...` past `summarize` entries at each end of a
    dimension longer than twice that (summarize=-1: everything)."""
    arr = np.asarray(arr)
    if arr.ndim == 0:
        return _scalar_text(arr[()])

    def rows(a, depth):
        n = a.shape[0]
        if summarize >= 0 and n > 2 * summarize:
            idx = [*range(summarize), None, *range(n - summarize, n)]
        else:
            idx = list(range(n))
        if a.ndim == 1:
            parts = ["..." if i is None else _scalar_text(a[i]) for i in idx]
            return "[" + " ".join(parts) + "]"
        sep = "\n" * (a.ndim - 1) + " " * (depth + 1)
        parts = ["..." if i is None else rows(a[i], depth + 1) for i in idx]
        return "[" + sep.join(parts) + "]"

    return rows(arr, 0)


def _text(x, summarize):
    if isinstance(x, np.ndarray):
        return format_tensor(x, summarize)
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k!r}: {_text(v, summarize)}" for k, v in x.items()) + "}"
    if isinstance(x, list):
        return "[" + ", ".join(_text(v, summarize) for v in x) + "]"
    if isinstance(x, tuple):
        return "(" + ", ".join(_text(v, summarize) for v in x) + ")"
    return str(x)


def _write(stream, text):
    if stream is None or stream == "stderr":
        stream = sys.stderr
    elif stream == "stdout":
        stream = sys.stdout
    elif isinstance(stream, str) and stream.startswith("file://"):
        with open(stream[len("file://") :], "a") as f:
            f.write(text)
        return
    stream.write(text)


def tf_print(*inputs, output_stream=None, summarize=3, sep=" ", end="\n", name=None):
    """Print tensors (and nests of them, and Python values) as TF's `tf.print` does: to stderr
    by default; inside a compiled `tf.function` each time it runs.

    Example:
      >>> tf.print("loss:", tf.constant([1.0, 2.5]), output_stream=sys.stdout)
      loss: [1 2.5]
    """
    is_t = lambda x: isinstance(x, Tensor | Variable)  # noqa: E731
    leaves, tree = tree_util.tree_flatten(list(inputs), is_leaf=is_t)
    values = [
        x._current() if isinstance(x, Variable) else x._value if is_t(x) else x for x in leaves
    ]
    slots = [i for i, x in enumerate(leaves) if is_t(x)]
    arrays = [values[i] for i in slots]
    # The stream is chosen at trace time (TF too), but sys.stdout / sys.stderr are looked up
    # when the print runs: while tf.function traces, sys.stdout is its capture buffer.
    stream = output_stream
    if output_stream is sys.stdout:
        stream = "stdout"
    elif output_stream is sys.stderr:
        stream = "stderr"

    def emit(*concrete):
        filled = list(values)
        for i, a in zip(slots, concrete, strict=True):
            filled[i] = np.asarray(a)
        items = tree_util.tree_unflatten(tree, filled)
        _write(stream, sep.join(_text(x, summarize) for x in items) + end)

    if any(isinstance(a, jax.core.Tracer) for a in arrays):
        jax.debug.callback(emit, *arrays, ordered=True)
    else:
        emit(*arrays)
