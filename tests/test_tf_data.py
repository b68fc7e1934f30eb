"""tf.data.Dataset for in-memory pipelines, against TensorFlow 2.21: the same pipelines give
the same elements (shuffle: the same elements per pass, repeatable with a seed, since the
random numbers differ), and a training loop over a dataset trains the same."""

from __future__ import annotations

import numpy as np
import pytest

import transforms.tf as ttf
from tests.test_tf_oracle import assert_match, to_numpy

tf_real = pytest.importorskip("tensorflow")

X = np.arange(20, dtype=np.float32).reshape(10, 2) / 10.0
Y = np.arange(10, dtype=np.int32) % 3


def pipelines(tf):
    D = tf.data.Dataset
    base = D.from_tensor_slices((X, Y))
    out = {
        "slices": list(base),
        "dict_slices": list(D.from_tensor_slices({"x": X, "y": Y}).batch(4)),
        "map_batch": list(base.map(lambda x, y: (x * 2.0, y + 1)).batch(3)),
        "drop_remainder": list(base.batch(4, drop_remainder=True)),
        "repeat_take": list(base.batch(4).repeat(2).take(5)),
        "repeat_forever_take": list(D.from_tensor_slices(Y).repeat().take(13)),
        "skip": list(base.skip(7)),
        "cache_prefetch": list(base.map(lambda x, y: tf.reduce_sum(x)).cache().prefetch(2)),
        "range": list(D.range(2, 9, 3)),
        "zip": list(D.zip((D.from_tensor_slices(Y), D.range(4)))),
        "filter": list(D.from_tensor_slices(Y).filter(lambda y: y > 0)),
        "from_tensors": list(D.from_tensors((X[:2], Y[:2]))),
        "unbatch": list(base.batch(3).unbatch().take(4)),
        "enumerate": list(D.from_tensor_slices(Y[:3]).enumerate()),
        "reduce": D.from_tensor_slices(X).reduce(tf.zeros([2]), lambda s, x: s + x),
        "cardinality": [
            base.cardinality(),
            base.batch(3).cardinality(),
            base.batch(3, drop_remainder=True).cardinality(),
            base.repeat().cardinality(),
            base.repeat().take(4).cardinality(),
            base.filter(lambda x, y: y > 0).cardinality(),
        ],
        "numpy": [list(e) for e in base.take(2).as_numpy_iterator()],
    }
    it = iter(D.from_tensor_slices(Y[:2]))
    it.get_next(), it.get_next()
    try:
        it.get_next()
        out["end"] = None
    except tf.errors.OutOfRangeError:
        out["end"] = "OutOfRangeError"
    return out


def test_pipelines_match_tensorflow():
    ours, theirs = pipelines(ttf), pipelines(tf_real)
    assert ours.pop("end") == theirs.pop("end") == "OutOfRangeError"
    assert list(ours["dict_slices"][0]) == list(theirs["dict_slices"][0]) == ["x", "y"]
    # (elements of int64 ranges are int64 in both: x64 is on in the tests)
    assert_match(to_numpy(ours), to_numpy(theirs))


def shuffles(tf):
    D = tf.data.Dataset
    ds = D.from_tensor_slices(np.arange(12, dtype=np.int32))

    def order(d):
        return [int(v) for v in d]

    seeded = ds.shuffle(5, seed=3)
    fixed = ds.shuffle(5, seed=3, reshuffle_each_iteration=False)
    passes = order(seeded.repeat(2))
    return {
        "same_elements_each_pass": sorted(passes[:12]) == sorted(passes[12:]) == list(range(12)),
        "reshuffled_per_pass": passes[:12] != passes[12:],
        "same_seed_same_orders": order(ds.shuffle(5, seed=3).repeat(2)) == passes,
        "fixed_order_per_pass": order(fixed) == order(fixed),
        "shuffled": order(seeded) != list(range(12)),
        "buffer_one_keeps_order": order(ds.shuffle(1, seed=3)) == list(range(12)),
        # An element can only move as far forward as the buffer is long (TF's algorithm).
        "bounded_by_buffer": all(
            v <= i + 4 for s in range(6) for i, v in enumerate(order(ds.shuffle(5, seed=s)))
        ),
    }


def test_shuffle_follows_tensorflow_semantics():
    ours, theirs = shuffles(ttf), shuffles(tf_real)
    assert ours == theirs
    assert all(theirs.values())


# The training loop over a Dataset uses `tf.optimizers` (Keras's), so it is compared with
# TensorFlow in subprocesses: tests/keras_training_programs.py::dataset_training_loop.
