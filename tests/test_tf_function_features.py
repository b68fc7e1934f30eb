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


def none_dimensions(tf):
    """One trace serves every size of a `None` dimension: Python side effects run once, the
    shape shows None, Variables assigned inside and tapes inside and outside see each size."""
    w = tf.Variable([[0.5, -1.0], [2.0, 0.25]])
    traced = []

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
    def step(x):
        traced.append(str(x.shape))
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.relu(tf.matmul(x, w)) ** 2)
        w.assign_sub(0.1 * tape.gradient(loss, w))
        return loss, tf.shape(x)[0], tf.size(x)

    out = {"steps": []}
    for n in [1, 3, 5, 3]:
        x = tf.reshape(tf.range(2.0 * n), [n, 2]) / 4.0 - 0.5
        out["steps"].append([step(x), w.read_value(), step.experimental_get_tracing_count()])
    out["numpy"] = step(np.ones([2, 2], np.float32))
    out["counts"] = [step.experimental_get_tracing_count()]
    out["traced"] = traced

    v = tf.Variable(2.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def soft(x):
        return tf.reduce_sum(tf.nn.softplus(x * v) + tf.nn.relu(x - 1.0))

    grads = []
    for x in [tf.constant([1.0, 2.0, 3.0]), tf.constant([-1.0, 0.5])]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = soft(x)
        grads.append([y, *tape.gradient(y, [v, x])])
    out["outer_tape"] = grads
    out["counts"].append(soft.experimental_get_tracing_count())

    @tf.function
    def norm(x, p):
        traced.append(f"norm {x.shape}")
        return tf.reduce_sum(tf.abs(x) ** p)

    cf = norm.get_concrete_function(tf.TensorSpec([None, None], tf.float32), 2.0)
    out["counts"].append(norm.experimental_get_tracing_count())  # traced when made
    out["concrete"] = [cf(tf.ones([2, 3])), cf(tf.ones([4, 1]))]
    out["counts"].append(norm.experimental_get_tracing_count())
    return out


def test_none_dimensions_trace_once_as_in_tensorflow():
    ours, theirs = to_numpy(none_dimensions(ttf)), to_numpy(none_dimensions(tf_real))
    assert ours.pop("counts") == theirs.pop("counts") == [1, 1, 1, 1]
    assert ours.pop("traced") == theirs.pop("traced") == ["(None, 2)", "norm (None, None)"]
    assert_match(ours, theirs, rtol=1e-5)


def relaxed(tf):
    shapes = []

    @tf.function(reduce_retracing=True)
    def f(x, scale):
        shapes.append(str(x.shape))
        return tf.reduce_sum(tf.sin(x)) * scale

    out = []
    for shape, scale in [([2], 1.0), ([3], 1.0), ([4], 1.0), ([2, 2], 1.0), ([2, 3], 1.0)]:
        out.append([f(tf.ones(shape), scale), f.experimental_get_tracing_count()])
    out.append([f(tf.ones([3]), 2.0), f(tf.ones([5]), 2.0), f.experimental_get_tracing_count()])
    return {"values": out, "shapes": shapes}


def test_reduce_retracing_relaxes_sizes_as_tensorflow_does():
    # Within one rank TF's relaxed traces are ours; TF also relaxes the rank itself (to an
    # unknown rank), which an XLA program cannot leave open, so the rank-2 calls are left out.
    ours, theirs = relaxed(ttf), relaxed(tf_real)
    ours_1d = [ours["values"][i] for i in (0, 1, 2)]
    theirs_1d = [theirs["values"][i] for i in (0, 1, 2)]
    assert [c for _, c in ours_1d] == [c for _, c in theirs_1d] == [1, 2, 2]
    assert ours["shapes"][:2] == theirs["shapes"][:2] == ["(2,)", "(None,)"]
    values = [[r[0] for r in ours["values"][:5]], ours["values"][5][:2]]
    expected = [[r[0] for r in theirs["values"][:5]], theirs["values"][5][:2]]
    assert_match(to_numpy(values), to_numpy(expected))
    # The rank-2 calls: one concrete trace, then one relaxed one; a new Python value retraces.
    assert [c for _, c in ours["values"][3:5]] == [3, 4]
    assert ours["shapes"][2:4] == ["(2, 2)", "(2, None)"]
    assert ours["values"][5][2] == 6


def test_size_dependent_python_traces_each_size():
    # Python that needs a size (`if x.shape[0] > 2`) cannot be traced once for all sizes: TF
    # sees None there and raises; we trace each size instead and give each its own result.
    traced = []

    @ttf.function(input_signature=[ttf.TensorSpec([None], ttf.float32)])
    def f(x):
        traced.append(x.shape[0])
        return tf_sum(x) if x.shape[0] > 2 else -x

    def tf_sum(x):
        return ttf.reduce_sum(x * x)

    assert float(f(ttf.ones([3]))) == 3.0
    np.testing.assert_array_equal(f(ttf.ones([1])).numpy(), [-1.0])
    np.testing.assert_array_equal(f(ttf.ones([0])).numpy(), np.zeros([0]))
    # The first entry is the symbolic size of the attempt at one trace for all sizes: a
    # Python side effect of that attempt has happened by the time the branch needs the size.
    assert str(traced[0]) == "d0" and traced[1:] == [3, 1, 0]
    assert f.experimental_get_tracing_count() == 3
