"""Which `tf.*` names `transforms.tf` provides, read from the module itself: the docs page
"TensorFlow names" is this table, generated when the site is built (`docs/hooks.py`).

Print it with `python -m transforms.tf.catalog`.
"""

from __future__ import annotations

import types

import numpy as np

# Namespaces shown, in order: `tf` itself, then its sub-namespaces that hold names.
_NAMESPACES = (
    "",
    "math",
    "nn",
    "linalg",
    "image",
    "random",
    "data",
    "data.Dataset",
    "errors",
    "autodiff",
    "dtypes",
)
# `tf.keras` is Keras 3 itself (imported on first access, on the JAX backend), and
# `tf.optimizers` is Keras's optimizers, so their names are Keras's: the table does not import
# them, and the page points to the Keras guide instead.


def _is_api(name, obj) -> bool:
    if name.startswith("_") or isinstance(obj, types.ModuleType | types.SimpleNamespace):
        return False
    if isinstance(obj, np.dtype) or name == "newaxis":
        return True
    module = getattr(obj, "__module__", None) or ""
    # Helpers a module imports for itself (numpy, jax, __future__) are not its API.
    return module.startswith("transforms.") and (callable(obj) or isinstance(obj, int | str))


def _public(namespace, top_level) -> list[str]:
    explicit = getattr(namespace, "__all__", None)
    if isinstance(namespace, types.ModuleType) and explicit is not None and not top_level:
        return sorted(explicit)
    if isinstance(namespace, types.SimpleNamespace | type):
        return sorted(n for n in vars(namespace) if not n.startswith("_"))
    return sorted(n for n in dir(namespace) if _is_api(n, getattr(namespace, n)))


def _resolve(tf, path):
    obj = tf
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def names() -> dict[str, list[str]]:
    """`{namespace: [name, ...]}` for every namespace of `transforms.tf` that exists."""
    import transforms.tf as tf

    table = {}
    for path in _NAMESPACES:
        ns = tf if not path else _resolve(tf, path)
        if ns is None:
            continue
        entries = _public(ns, top_level=not path)
        if entries:
            table["tf" if not path else f"tf.{path}"] = entries
    return table


def markdown_table() -> str:
    """The names as a Markdown table: one row per namespace."""
    rows = ["| namespace | count | names |", "|---|---|---|"]
    for ns, entries in names().items():
        listed = ", ".join(f"`{n}`" for n in entries)
        rows.append(f"| `{ns}` | {len(entries)} | {listed} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table())
