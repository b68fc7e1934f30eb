"""The generated table of tf.* names: every listed name exists, and the names TF code uses
are listed (so the docs page cannot drift from the module)."""

from __future__ import annotations

import transforms.tf as tf
from transforms.tf.catalog import markdown_table, names


def _resolve(path):
    obj = tf
    for part in path.split(".")[1:]:
        obj = getattr(obj, part)
    return obj


def test_every_listed_name_exists():
    table = names()
    assert table
    for namespace, entries in table.items():
        ns = _resolve(namespace)
        for n in entries:
            assert hasattr(ns, n), f"{namespace}.{n}"


def test_the_names_tf_code_uses_are_listed():
    table = names()
    expected = {
        "tf": [
            "GradientTape",
            "Variable",
            "function",
            "clip_by_norm",
            "clip_by_global_norm",
            "pad",
            "linspace",
            "TensorArray",
            "TensorSpec",
            "print",
            "float32",
            "newaxis",
        ],
        "tf.linalg": [
            "solve",
            "inv",
            "det",
            "slogdet",
            "logdet",
            "cholesky",
            "cholesky_solve",
            "triangular_solve",
            "eigh",
            "svd",
            "qr",
            "matvec",
            "diag",
            "diag_part",
            "trace",
            "band_part",
            "norm",
            "expm",
            "lstsq",
        ],
        "tf.nn": [
            "softmax_cross_entropy_with_logits",
            "sparse_softmax_cross_entropy_with_logits",
            "log_softmax",
            "l2_loss",
            "moments",
            "batch_normalization",
            "dropout",
            "conv1d",
            "conv2d",
            "max_pool2d",
            "avg_pool2d",
            "embedding_lookup",
            "gelu",
            "selu",
            "elu",
            "leaky_relu",
            "relu6",
            "silu",
        ],
        "tf.image": ["resize", "adjust_contrast", "flip_left_right", "per_image_standardization"],
        "tf.data.Dataset": [
            "from_tensor_slices",
            "batch",
            "shuffle",
            "map",
            "repeat",
            "take",
            "prefetch",
            "cache",
        ],
        "tf.errors": ["InvalidArgumentError", "OutOfRangeError", "OpError"],
    }
    for namespace, wanted in expected.items():
        missing = set(wanted) - set(table[namespace])
        assert not missing, f"{namespace}: {sorted(missing)}"
    # helpers a module imports for itself are not listed as its API
    assert "Tensor" not in table["tf.random"] and "stack" not in table["tf.data"]


def test_markdown_has_one_row_per_namespace():
    text = markdown_table()
    rows = [r for r in text.splitlines() if r.startswith("| `tf")]
    assert len(rows) == len(names())
    assert "`tf.linalg`" in text and "`cholesky_solve`" in text
