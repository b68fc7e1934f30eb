"""Differential suite: the same TF-style programs run under TensorFlow and transforms.tf.

Each program takes the module as `tf` and returns a nest of results; the two runs must agree
(None where TF gives None, equal values otherwise). Inputs avoid kinks, where we follow JAX.
"""

from __future__ import annotations

import numpy as np
import pytest

import transforms.tf as ttf

tf_real = pytest.importorskip("tensorflow")

X = np.array([[0.3, -1.2, 2.0], [1.5, 0.4, -0.7]], np.float32)
W = np.array([[0.5, -0.3], [0.8, 0.1], [-0.6, 0.9]], np.float32)
V = np.array([0.7, -0.2, 1.1], np.float32)


def to_numpy(result):
    if result is None:
        return None
    if isinstance(result, dict):
        return {k: to_numpy(v) for k, v in result.items()}
    if isinstance(result, list | tuple):
        return [to_numpy(v) for v in result]
    if hasattr(result, "numpy"):
        return np.asarray(result.numpy())
    return result


def assert_match(ours, theirs, path="result", rtol=2e-5, atol=1e-6):
    if theirs is None or ours is None:
        assert ours is None and theirs is None, f"{path}: ours {ours!r}, TensorFlow {theirs!r}"
    elif isinstance(theirs, dict):
        assert ours.keys() == theirs.keys(), path
        for k in theirs:
            assert_match(ours[k], theirs[k], f"{path}[{k!r}]", rtol, atol)
    elif isinstance(theirs, list):
        assert len(ours) == len(theirs), path
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_match(a, b, f"{path}[{i}]", rtol, atol)
    else:
        a, b = np.asarray(ours), np.asarray(theirs)
        assert a.shape == b.shape, f"{path}: shape {a.shape} vs {b.shape}"
        assert a.dtype == b.dtype, f"{path}: dtype {a.dtype} vs {b.dtype}"
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=path)


PROGRAMS = {}


def program(fn):
    PROGRAMS[fn.__name__] = fn
    return fn


# --- elementwise and reductions -------------------------------------------------------------------

UNARY = {
    "square": lambda tf, x: tf.square(x),
    "sqrt": lambda tf, x: tf.sqrt(tf.abs(x) + 0.1),
    "exp": lambda tf, x: tf.exp(x),
    "sin_cos": lambda tf, x: tf.sin(x) * tf.cos(x),
    "tanh": lambda tf, x: tf.tanh(x),
    "sigmoid": lambda tf, x: tf.sigmoid(x),
    "abs": lambda tf, x: tf.abs(x),
    "log": lambda tf, x: tf.math.log(x * x + 1.0),
    "log1p": lambda tf, x: tf.math.log1p(tf.abs(x)),
    "relu": lambda tf, x: tf.nn.relu(x),
    "softplus": lambda tf, x: tf.nn.softplus(x),
    "nn_sigmoid": lambda tf, x: tf.nn.sigmoid(x),
    "softmax": lambda tf, x: tf.nn.softmax(x),
    "softmax_axis0": lambda tf, x: tf.nn.softmax(x, axis=0),
    "pow": lambda tf, x: tf.pow(tf.abs(x) + 0.5, 2.5),
    "pow_op": lambda tf, x: x**3 - 2.0**x,
    "maximum": lambda tf, x: tf.maximum(x, 0.25),
    "minimum": lambda tf, x: tf.minimum(x, 0.25),
    "clip": lambda tf, x: tf.clip_by_value(x, -1.0, 1.0),
    "where": lambda tf, x: tf.where(x > 0.0, x * x, tf.sin(x)),
    "div": lambda tf, x: 1.0 / (x * x + 1.0) - x / 3.0,
    "reduce_sum_axis": lambda tf, x: tf.reduce_sum(x, axis=1),
    "reduce_mean_keep": lambda tf, x: tf.reduce_mean(x, axis=0, keepdims=True),
    "reduce_max": lambda tf, x: tf.reduce_max(x, axis=1),
    "reduce_min": lambda tf, x: tf.reduce_min(x),
    "reduce_prod": lambda tf, x: tf.reduce_prod(x, axis=0),
    "reshape_transpose": lambda tf, x: tf.transpose(tf.reshape(x, [3, 2])) * [[1.0, 2.0, 3.0]],
    "concat_stack": lambda tf, x: tf.stack([tf.concat([x, x * x], 0), tf.concat([x, -x], 0)]),
    "squeeze": lambda tf, x: tf.squeeze(tf.reshape(x, [1, 6, 1])),
    "slicing": lambda tf, x: x[1, :2] * x[0, 1:] + x[:, -1][0],
    "gather": lambda tf, x: tf.gather(x, [1, 0, 1], axis=0) * tf.gather(x, [2, 2], axis=1)[0, 0],
    "matmul": lambda tf, x: tf.matmul(x, tf.constant(W)),
    "matmul_transpose": lambda tf, x: tf.matmul(x, x, transpose_b=True),
    "cast_float64": lambda tf, x: tf.cast(tf.cast(x, tf.float64) ** 2, tf.float32),
    "sigmoid_xent": lambda tf, x: tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.constant([[1.0, 0.0, 0.5], [0.0, 1.0, 0.2]]), logits=x
    ),
    "ones_zeros_like": lambda tf, x: x * tf.ones_like(x) + tf.zeros_like(x),
}


def _unary_program(name, fn):
    def prog(tf):
        x = tf.Variable(X)
        with tf.GradientTape() as tape:
            y = fn(tf, x)
            loss = tf.reduce_sum(y * y) if name != "sin_cos" else tf.reduce_sum(y)
        return {"y": y, "grad": tape.gradient(loss, x)}

    prog.__name__ = f"unary_{name}"
    return prog


for _name, _fn in UNARY.items():
    program(_unary_program(_name, _fn))


# --- tape semantics -------------------------------------------------------------------------------


@program
def lists_dicts_and_unconnected(tf):
    a, b, c = tf.Variable(V), tf.Variable(2.0), tf.Variable(3.0)
    k = tf.constant(1.5)
    with tf.GradientTape() as tape:
        y1 = a * b
        y2 = tf.reduce_sum(a) * k
    g = tape.gradient([y1, y2], {"a": a, "bc": [b, c], "k": k})
    with tf.GradientTape() as tape:
        y = a * b
    z = tape.gradient(y, [c, b], unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return {"g": g, "zero": z}


@program
def output_gradients(tf):
    x = tf.Variable(V)
    with tf.GradientTape() as tape:
        y = tf.sin(x) * 2.0
    return tape.gradient(y, x, output_gradients=tf.constant([1.0, -1.0, 0.5]))


@program
def watch_constant_and_intermediate(tf):
    x = tf.constant(V)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        h = tf.exp(x)
        y = tf.reduce_sum(h * h)
    return [tape.gradient(y, x), tape.gradient(y, h), tape.gradient(h, x)]


@program
def persistent_multiple(tf):
    x = tf.Variable(1.3)
    with tf.GradientTape(persistent=True) as tape:
        y = x * x
        z = tf.sin(y)
    return [tape.gradient(y, x), tape.gradient(z, x), tape.gradient(z, y)]


@program
def nested_third_order(tf):
    x = tf.Variable(0.9)
    with tf.GradientTape() as t3:
        with tf.GradientTape() as t2:
            with tf.GradientTape() as t1:
                y = tf.tanh(x) * x * x
            g1 = t1.gradient(y, x)
        g2 = t2.gradient(g1, x)
    return [g1, g2, t3.gradient(g2, x)]


@program
def nested_mixed_partials(tf):
    x, y = tf.Variable(0.5), tf.Variable(-1.5)
    with tf.GradientTape(persistent=True) as outer:
        with tf.GradientTape() as inner:
            z = tf.sin(x * y) + x * x * y
        gx, gy = inner.gradient(z, [x, y])
    return [outer.gradient(gx, [x, y]), outer.gradient(gy, [x, y])]


@program
def jacobian_and_batch_jacobian(tf):
    x = tf.constant(X)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = tf.tanh(tf.matmul(x, tf.constant(W)))
        s = tf.reduce_sum(x * x, axis=1)
    return [tape.jacobian(y, x), tape.batch_jacobian(y, x), tape.jacobian(s, x)]


@program
def stop_gradient_and_recording(tf):
    x = tf.Variable(V)
    with tf.GradientTape(persistent=True) as tape:
        y = tf.reduce_sum(tf.stop_gradient(x * x) * x)
        with tape.stop_recording():
            c = x * 3.0
        z = tf.reduce_sum(c * x)
    return [tape.gradient(y, x), tape.gradient(z, x), tape.gradient(c, x)]


@program
def integer_paths_are_cut(tf):
    x = tf.Variable(V)
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(tf.cast(tf.cast(x * 10.0, tf.int32), tf.float32) + x)
    return tape.gradient(y, x)


@program
def python_control_flow(tf):
    x = tf.Variable(V)
    with tf.GradientTape() as tape:
        y = tf.constant(0.0)
        i = 0
        while y < 5.0:
            y = y + tf.reduce_sum(x * x) if i % 2 == 0 else y * 1.5
            i += 1
        if tf.reduce_mean(x) > 0:
            y = y * tf.reduce_max(x)
    return [y, tape.gradient(y, x)]


@program
def cond_and_while_loop(tf):
    x = tf.Variable(1.2)
    with tf.GradientTape() as tape:
        y = tf.cond(x > 1.0, lambda: tf.square(x), lambda: x)
        _, z = tf.while_loop(lambda i, z: i < 4, lambda i, z: (i + 1, tf.sin(z) + x), [0, y])
    return [z, tape.gradient(z, x)]


@program
def forward_accumulator(tf):
    x = tf.constant(V)
    with tf.autodiff.ForwardAccumulator(x, tf.constant([1.0, 0.5, -1.0])) as acc:
        y = tf.reduce_sum(tf.exp(x) * tf.sin(x))
        z = tf.nn.softmax(x)
    return [acc.jvp(y), acc.jvp(z)]


@program
def hvp_both_orders(tf):
    x = tf.constant(V)
    v = tf.constant([0.3, -1.0, 2.0])
    with tf.autodiff.ForwardAccumulator(x, v) as acc:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(tf.sin(x) * x * x)
        g = tape.gradient(y, x)
    fwd_over_back = acc.jvp(g)
    with tf.GradientTape() as tape:
        tape.watch(x)
        with tf.autodiff.ForwardAccumulator(x, v) as acc:
            y = tf.reduce_sum(tf.sin(x) * x * x)
        jvp = acc.jvp(y)
    return [fwd_over_back, tape.gradient(jvp, x)]


@program
def custom_gradient_and_second_order(tf):
    @tf.custom_gradient
    def log1pexp(x):
        e = tf.exp(x)

        def grad(dy):
            return dy * (1 - 1 / (1 + e))

        return tf.math.log(1 + e), grad

    x = tf.Variable(V)
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            y = tf.reduce_sum(log1pexp(x))
        g = inner.gradient(y, x)
    return [y, g, outer.gradient(g, x)]


@program
def custom_gradient_with_variables(tf):
    w = tf.Variable(2.0)

    @tf.custom_gradient
    def f(x):
        def grad(dy, variables=None):
            return dy * w * 3.0, [tf.reduce_sum(dy * x)]

        return x * w, grad

    x = tf.Variable(V)
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(f(x))
    return tape.gradient(y, [x, w])


# --- training: optimizers and tf.function ---------------------------------------------------------

# Training with `tf.optimizers` (Keras's optimizers: Keras has one backend per process) is
# compared with TensorFlow in subprocesses: tests/keras_training_programs.py.


@program
def function_assigns_and_returns(tf):
    v = tf.Variable([1.0, 2.0])
    counter = tf.Variable(0.0)

    @tf.function
    def step(x, scale):
        counter.assign_add(1.0)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.sin(v * x)) * scale
        g = tape.gradient(loss, v)
        v.assign_sub(0.1 * g)
        return {"loss": loss, "g": g}

    outs = [step(tf.constant([0.5, 1.5]), 2.0) for _ in range(3)]
    return {"outs": outs, "v": v, "counter": counter}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_program_matches_tensorflow(name):
    theirs = to_numpy(PROGRAMS[name](tf_real))
    ours = to_numpy(PROGRAMS[name](ttf))
    assert_match(ours, theirs)


# --- errors ---------------------------------------------------------------------------------------


def _error_cases(tf):
    x = tf.Variable(2.0)
    cases = {}
    with tf.GradientTape() as tape:
        y = x * x
    tape.gradient(y, x)
    cases["second_gradient"] = lambda: tape.gradient(y, x)
    with tf.GradientTape() as tape2:
        y2 = x * x
    cases["gradient_none"] = lambda: tape2.gradient(None, x)
    cases["bad_unconnected"] = lambda: tape2.gradient(y2, x, unconnected_gradients="maybe")

    def watch_float():
        with tf.GradientTape() as tape3:
            tape3.watch(3.0)

    cases["watch_float"] = watch_float
    return cases


@pytest.mark.parametrize(
    "case", ["second_gradient", "gradient_none", "bad_unconnected", "watch_float"]
)
def test_errors_match_tensorflow(case):
    def raised(tf):
        fn = _error_cases(tf)[case]
        try:
            fn()
        except Exception as e:  # noqa: BLE001  (we compare the exception types)
            return type(e)
        return None

    theirs, ours = raised(tf_real), raised(ttf)
    assert theirs is not None and ours is not None
    assert issubclass(ours, _builtin_base(theirs)), (ours, theirs)


def _builtin_base(exc_type):
    for base in exc_type.__mro__:
        if base.__module__ == "builtins":
            return base
    return Exception
