"""tf.function as TF users use it, with TensorFlow 2.21 as the oracle: retracing rules,
input_signature (None dimensions, TF's TypeError on a mismatch), get_concrete_function, the
accepted compile options, and tf.print printing when the compiled program runs."""

from __future__ import annotations

import numpy as np
import pytest

import transforms.tf as ttf
from tests.test_tf_oracle import assert_match, to_numpy

tf_real = pytest.importorskip("tensorflow")


def retracing(tf):
    @tf.function
    def f(x, n):
        return x * n

    counts, values = [], []
    for x, n in [
        (tf.ones([2]), 2),
        (tf.constant([3.0, 4.0]), 2),  # same shape and dtype: no retrace
        (tf.ones([3]), 2),  # new shape
        (tf.ones([2], tf.float64), 2),  # new dtype
        (tf.ones([2]), 3),  # new Python value
        (tf.constant([5.0, 6.0]), 3),  # seen before
        (np.ones([3], np.float32), 2),  # a NumPy array is a tensor of the same signature
    ]:
        values.append(f(x, n))
        counts.append(f.experimental_get_tracing_count())
    return {"counts": counts, "values": values}


def test_retracing_rules_match_tensorflow():
    ours, theirs = to_numpy(retracing(ttf)), to_numpy(retracing(tf_real))
    assert ours["counts"] == theirs["counts"]
    assert_match(ours["values"], theirs["values"])


def signatures(tf):
    out = {}

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
    def rows(x):
        return tf.reduce_sum(x * x, axis=1)

    out["rows"] = [rows(tf.ones([1, 2])), rows(tf.constant([[1.0, 2.0], [3.0, 4.0]]))]
    out["rows_numpy"] = rows(np.ones([3, 2], np.float32))
    errors = []
    for bad in [tf.ones([2, 3]), tf.ones([2, 2], tf.float64), tf.ones([2]), 1.0]:
        try:
            rows(bad)
            errors.append(None)
        except TypeError as e:
            errors.append(str(e).split("`")[1])  # "Can not cast <spec> to <spec>"
    out["errors"] = errors

    @tf.function(input_signature=[tf.TensorSpec([], tf.float32), tf.TensorSpec([2], tf.float32)])
    def scaled(s, v):
        return s * v

    out["python_number_takes_spec_dtype"] = scaled(2, [1.0, 3.0])
    out["keyword"] = scaled(0.5, v=tf.constant([2.0, 4.0]))

    @tf.function
    def g(x, scale):
        return tf.nn.relu(x) * scale

    cf = g.get_concrete_function(tf.TensorSpec([3], tf.float32), 2.0)
    out["concrete"] = cf(tf.constant([-1.0, 0.5, 2.0]))
    cf_none = g.get_concrete_function(tf.TensorSpec([None], tf.float32), 3.0)
    out["concrete_none"] = [cf_none(tf.constant([1.0])), cf_none(tf.constant([1.0, -2.0]))]
    out["concrete_signature"] = [
        (tuple(s.shape), s.dtype.name) for s in cf_none.structured_input_signature[0][:1]
    ]
    cf_sig = rows.get_concrete_function()
    out["concrete_from_signature"] = cf_sig(tf.ones([4, 2]))

    for kw in [{"jit_compile": True}, {"reduce_retracing": True}]:
        h = tf.function(lambda x: tf.sin(x) * 2.0, **kw)
        out[f"option_{next(iter(kw))}"] = [h(tf.ones([2])), h(tf.ones([3]))]
    return out


def _dtype_name(x):
    return getattr(x, "name", x)


def test_input_signature_and_concrete_functions_match_tensorflow():
    ours, theirs = to_numpy(signatures(ttf)), to_numpy(signatures(tf_real))
    assert ours.pop("errors") == theirs.pop("errors")
    sig_ours, sig_theirs = ours.pop("concrete_signature"), theirs.pop("concrete_signature")
    assert [(s, str(d)) for s, d in sig_ours] == [(s, _dtype_name(d)) for s, d in sig_theirs]
    assert_match(ours, theirs)


def test_input_signature_gradients_match_tensorflow():
    def prog(tf):
        w = tf.Variable([[0.5, -1.0], [2.0, 0.25]])

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
        def loss(x):
            return tf.reduce_sum(tf.tanh(tf.matmul(x, w)))

        out = []
        for x in [tf.ones([1, 2]), tf.constant([[1.0, 2.0], [-3.0, 0.5], [0.1, 0.2]])]:
            with tf.GradientTape() as tape:
                y = loss(x)
            out.append([y, tape.gradient(y, w)])
        return out

    assert_match(to_numpy(prog(ttf)), to_numpy(prog(tf_real)), rtol=1e-5)


def printing(tf, path):
    stream = f"file://{path}"
    tf.print(
        "eager:",
        tf.constant([1.0, 2.5, 3.0]),
        tf.constant(3),
        tf.constant([[1, 2], [3, 4]]),
        tf.constant(0.1234567),
        tf.constant(True),
        tf.constant(1e-7),
        tf.range(20.0),
        1.5,
        output_stream=stream,
    )
    tf.print(tf.reshape(tf.range(8), [2, 2, 2]), tf.constant(2.0, tf.float64), output_stream=stream)

    @tf.function
    def step(x):
        tf.print("step", x, tf.reduce_sum(x), output_stream=stream, sep="|")
        return x + 1.0

    x = tf.constant([0.5, 1.0])
    for _ in range(3):  # one trace; the print runs on every call
        x = step(x)
    return step.experimental_get_tracing_count()


def test_tf_print_text_and_run_time_printing_match_tensorflow(tmp_path):
    ours_path, theirs_path = tmp_path / "ours.txt", tmp_path / "theirs.txt"
    assert printing(ttf, ours_path) == printing(tf_real, theirs_path) == 1
    ours, theirs = ours_path.read_text(), theirs_path.read_text()
    assert ours == theirs
    assert theirs.count("step|") == 3


def global_variables(tf):
    """A training step closing over global Variables: one trace, later assigns are read."""
    w = tf.Variable([1.0, -2.0])
    b = tf.Variable(0.5)
    side_effects = []

    @tf.function
    def step(x):
        side_effects.append(1)  # Python runs once per trace
        with tf.GradientTape() as t:
            loss = tf.reduce_sum(w * x * x) + b * b
        gw, gb = t.gradient(loss, [w, b])
        w.assign_sub(0.1 * gw)
        return loss, gb

    out = [step(tf.constant([1.0, 3.0])), step(tf.constant([2.0, 1.0]))]
    b.assign(4.0)  # the compiled step reads the current value
    out.append(step(tf.constant([1.0, 1.0])))

    @tf.function
    def scale(x):
        side_effects.append(2)
        return tf.sin(x * b) * w

    with tf.GradientTape(persistent=True) as tape:
        y = scale(tf.constant(0.3))
    out.append([y, tape.gradient(y, b), tape.gradient(y, w)])
    return {
        "counts": [step.experimental_get_tracing_count(), scale.experimental_get_tracing_count()],
        "side_effects": side_effects,
        "values": out,
        "w": w.numpy(),
    }


def test_global_variables_trace_once_like_tensorflow():
    ours, theirs = to_numpy(global_variables(ttf)), to_numpy(global_variables(tf_real))
    assert ours["counts"] == theirs["counts"] == [1, 1]
    assert ours["side_effects"] == theirs["side_effects"]
    assert_match(ours["values"], theirs["values"])
    assert_match(ours["w"], theirs["w"])
