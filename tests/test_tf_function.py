"""transforms.tf.function: one jitted program with lifted Variables, equal to the eager run."""

from __future__ import annotations

import numpy as np
import pytest

import transforms.tf as tf
from tests.test_tf_seeds import S001_FUNCTION
from tests.tf_compare import run_code


def test_seed_function_example_equals_its_eager_run():
    compiled, ns_c = run_code(S001_FUNCTION, "transforms.tf", tf, seed=3)
    eager, ns_e = run_code(S001_FUNCTION.replace("@tf.function", ""), "transforms.tf", tf, seed=3)
    assert compiled == eager
    np.testing.assert_allclose(ns_c["W"].numpy(), ns_e["W"].numpy(), rtol=1e-6)
    assert ns_c["train_step"].experimental_get_tracing_count() == 1


# Steps with `tf.optimizers` (Keras's) run in subprocesses, against TensorFlow:
# tests/keras_training_programs.py (steps_that_assign, optimizer_failure_changes_nothing).


def test_retraces_only_on_new_shapes_dtypes_or_variables(capsys):
    v1, v2 = tf.Variable(1.0), tf.Variable(2.0)

    @tf.function
    def f(x, v):
        print("tracing")
        v.assign_add(tf.reduce_sum(x))
        return v * 2.0

    f(tf.constant([1.0, 2.0]), v1)
    f(tf.constant([3.0, 4.0]), v1)
    assert f.experimental_get_tracing_count() == 1
    assert capsys.readouterr().out == "tracing\n"  # side effects at trace time only
    assert v1.numpy() == 11.0
    f(tf.constant([1.0, 2.0, 3.0]), v1)  # new shape
    assert f.experimental_get_tracing_count() == 2
    out = f(tf.constant([1.0, 2.0]), v2)  # a different Variable
    assert f.experimental_get_tracing_count() == 3
    assert out.numpy() == 10.0 and v2.numpy() == 5.0 and v1.numpy() == 17.0
    f(tf.constant([1.0, 2.0], dtype=tf.float64), tf.Variable(1.0, dtype=tf.float64))
    assert f.experimental_get_tracing_count() == 4


def test_global_variables_are_lifted_and_written_back():
    counter = tf.Variable(0)
    total = tf.Variable(0.0)

    @tf.function
    def add(x):
        counter.assign_add(1)
        total.assign_add(x)
        return total + 0.0

    for i in range(3):
        out = add(tf.constant(float(i)))
    assert counter.numpy() == 3 and total.numpy() == 3.0 and out.numpy() == 3.0
    n = add.experimental_get_tracing_count()
    total.assign(10.0)  # changed outside: the compiled program reads the new value
    assert add(tf.constant(1.0)).numpy() == 11.0
    assert add.experimental_get_tracing_count() == n


def test_python_values_are_static():
    @tf.function
    def f(x, power):
        return x**power

    assert f(tf.constant(2.0), 2).numpy() == 4.0
    assert f(tf.constant(2.0), 3).numpy() == 8.0
    assert f.experimental_get_tracing_count() == 2


def test_tape_outside_differentiates_a_function_call():
    w = tf.Variable([1.0, 2.0])

    @tf.function
    def loss_fn(x):
        return tf.reduce_sum(tf.sin(w * x))

    x = tf.constant([0.5, -1.0])
    with tf.GradientTape() as tape:
        loss = loss_fn(x)
    g = tape.gradient(loss, w)
    np.testing.assert_allclose(g.numpy(), np.cos([0.5, -2.0]) * [0.5, -1.0], rtol=1e-6)


def test_python_bool_of_a_traced_tensor_says_what_to_do():
    # AutoGraph converts the decorated function's `if` and its `def` helpers' (below); a
    # lambda's conditional expression is not converted, and the error says what to do.
    helper = lambda x: x if x > 0 else -x  # noqa: E731

    @tf.function
    def f(x):
        return helper(x)

    with pytest.raises(TypeError, match="tf.cond"):
        f(tf.constant(1.0))

    @tf.function
    def g(x):
        if x > 0:
            return x
        return -x

    assert g(tf.constant(1.0)).numpy() == 1.0 and g(tf.constant(-2.0)).numpy() == 2.0


def test_cond_inside_function_selects():
    @tf.function
    def f(x):
        return tf.cond(x > 0, lambda: x * 2.0, lambda: -x)

    assert f(tf.constant(3.0)).numpy() == 6.0 and f(tf.constant(-3.0)).numpy() == 3.0


def test_failed_trace_leaves_variables_unchanged():
    v = tf.Variable([1.0, 2.0])

    @tf.function
    def bad():
        v.assign_add([1.0, 1.0])
        v.assign([1.0, 2.0, 3.0])  # wrong shape

    with pytest.raises(ValueError):
        bad()
    np.testing.assert_array_equal(v.numpy(), [1.0, 2.0])


def test_random_inside_function_draws_new_numbers_each_call():
    @tf.function
    def draw():
        return tf.random.normal([3])

    tf.random.set_seed(1)
    a, b = draw().numpy(), draw().numpy()
    assert not np.allclose(a, b)
    tf.random.set_seed(1)
    np.testing.assert_array_equal(draw().numpy(), a)  # the seed restarts the stream
    assert draw.experimental_get_tracing_count() <= 2
