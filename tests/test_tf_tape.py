"""transforms.tf: Tensor/Variable semantics, GradientTape and ForwardAccumulator against JAX's
autodiff (float64), and TensorFlow's documented behaviour (None gradients, errors)."""

from __future__ import annotations

import gc
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import transforms
import transforms.tf as tf

RNG = np.random.default_rng(0)


def f64(*shape, low=-2.0, high=2.0):
    return RNG.uniform(low, high, shape)


# --- Tensor and Variable --------------------------------------------------------------------------


def test_constant_dtypes_follow_tensorflow():
    assert tf.constant(3.0).dtype == tf.float32
    assert tf.constant(3).dtype == tf.int32
    assert tf.constant([1.0, 2]).dtype == tf.float32
    assert tf.constant(np.zeros(2)).dtype == tf.float64
    assert tf.constant(True).dtype == tf.bool
    assert tf.constant(2.0, dtype=tf.float64).dtype == tf.float64
    assert tf.constant(1.0, shape=[2, 3]).shape == (2, 3)
    assert (tf.constant(2.0) * 3).dtype == tf.float32  # a Python scalar takes the tensor's dtype


def test_tensor_surface_and_interop():
    t = tf.constant([[1.0, 2.0], [3.0, 4.0]])
    assert t.shape == (2, 2) and t.shape.as_list() == [2, 2] and t.ndim == 2
    np.testing.assert_array_equal(np.asarray(t), [[1, 2], [3, 4]])
    np.testing.assert_array_equal(jnp.asarray(t), [[1, 2], [3, 4]])
    assert float(t[1, 0]) == 3.0 and int(tf.constant(7)) == 7
    np.testing.assert_array_equal(t[:, 1].numpy(), [2.0, 4.0])
    np.testing.assert_array_equal(t[::-1][0].numpy(), [3.0, 4.0])
    np.testing.assert_array_equal((t @ t).numpy(), np.array([[7, 10], [15, 22]]))
    np.testing.assert_array_equal((-t + 1 - t * 2 / 4).numpy(), 1 - 1.5 * np.asarray(t))
    np.testing.assert_array_equal((t**2).numpy(), np.asarray(t) ** 2)
    np.testing.assert_array_equal((2.0**t).numpy(), 2.0 ** np.asarray(t))
    np.testing.assert_array_equal((t > 2).numpy(), np.asarray(t) > 2)
    np.testing.assert_array_equal((t == 2.0).numpy(), np.asarray(t) == 2)
    assert str(tf.constant(3.0)) == "tf.Tensor(3.0, shape=(), dtype=float32)"
    assert repr(tf.constant(6.0)) == "<tf.Tensor: shape=(), dtype=float32, numpy=6.0>"
    assert f"{tf.constant(1.5):.2f}" == "1.50"
    with pytest.raises(TypeError):
        hash(t)
    with pytest.raises(ValueError):
        bool(t)
    assert bool(tf.constant(1.0) > 0)
    assert len(t) == 2 and [float(r[0]) for r in t] == [1.0, 3.0]


def test_variable_surface():
    v = tf.Variable(3.0, name="x")
    assert v.name == "x:0" and v.trainable and v.dtype == tf.float32 and v.shape == ()
    assert v.numpy() == 3.0 and float(v) == 3.0
    assert v.assign(5.0) is v and v.numpy() == 5.0
    v.assign_add(1.0)
    v.assign_sub(tf.constant(2.0))
    assert v.numpy() == 4.0
    assert (v * 2).numpy() == 8.0 and (2 - v).numpy() == -2.0
    assert repr(v) == "<tf.Variable 'x:0' shape=() dtype=float32, numpy=4.0>"
    with pytest.raises(ValueError):
        v.assign([1.0, 2.0])  # a wrong shape changes nothing
    with pytest.raises(TypeError):
        v.assign(tf.constant(1.0, dtype=tf.float64))
    assert v.numpy() == 4.0
    assert not tf.Variable(1.0, trainable=False).trainable
    np.testing.assert_array_equal(np.asarray(tf.Variable([1.0, 2.0])), [1.0, 2.0])


# --- gradient semantics ---------------------------------------------------------------------------


def test_variables_are_watched_and_constants_are_not():
    x = tf.Variable(3.0)
    c = tf.constant(2.0)
    with tf.GradientTape() as tape:
        y = x * x * c
    gx, gc_ = tape.gradient(y, [x, c])
    assert gx.numpy() == 12.0 and gc_ is None


def test_nested_sources_and_targets_sum():
    w = tf.Variable(np.array([1.0, 2.0]))
    b = tf.Variable(0.5, dtype=tf.float64)
    with tf.GradientTape() as tape:
        y1 = w * w  # non-scalar target: summed
        y2 = b * w
    g = tape.gradient([y1, {"k": y2}], {"w": w, "pair": (b, w)})
    np.testing.assert_allclose(g["w"].numpy(), 2 * np.array([1.0, 2.0]) + 0.5)
    np.testing.assert_allclose(g["pair"][0].numpy(), 3.0)
    np.testing.assert_allclose(g["pair"][1].numpy(), g["w"].numpy())


def test_output_gradients_weight_the_targets():
    x = tf.Variable(np.array([1.0, 2.0, 3.0]))
    with tf.GradientTape() as tape:
        y = x**2
    g = tape.gradient(y, x, output_gradients=tf.constant(np.array([1.0, 0.0, -1.0])))
    np.testing.assert_allclose(g.numpy(), [2.0, 0.0, -6.0])


def test_unconnected_unwatched_and_integer_sources():
    x = tf.Variable(2.0)
    z = tf.Variable(1.0)
    u = tf.Variable(1.0, trainable=False)
    i = tf.constant(3)
    with tf.GradientTape() as tape:
        tape.watch(i)
        y = x * x + u * 0.0 + tf.cast(i, tf.float32)
    assert tape.gradient(y, [z, u, i], unconnected_gradients="none") == [None, None, None]
    with tf.GradientTape() as tape:
        y = x * x
    g = tape.gradient(y, [z, x], unconnected_gradients=tf.UnconnectedGradients.ZERO)
    assert g[0].numpy() == 0.0 and g[1].numpy() == 4.0


def test_gradient_through_integer_cast_is_none():
    x = tf.Variable(2.5)
    with tf.GradientTape() as tape:
        y = tf.cast(tf.cast(x, tf.int32), tf.float32) * 2.0
    assert tape.gradient(y, x) is None


def test_gradient_with_respect_to_an_intermediate_tensor():
    x = tf.Variable(2.0)
    with tf.GradientTape() as tape:
        h = x * 3.0
        y = h * h
    assert tape.gradient(y, h).numpy() == 12.0


def test_stop_gradient_and_stop_recording():
    x = tf.Variable(2.0)
    with tf.GradientTape(persistent=True) as tape:
        y = tf.stop_gradient(x * x) * x
        with tape.stop_recording():
            z = x * x
        w = z * x
    assert tape.gradient(y, x).numpy() == 4.0
    assert tape.gradient(w, x).numpy() == 4.0  # z is a constant to the tape


def test_reset_forgets_the_recording():
    x = tf.Variable(2.0)
    with tf.GradientTape() as tape:
        y = x * x
        tape.reset()
        z = x * x * x
    assert tape.gradient(y, x) is None
    with tf.GradientTape() as tape:
        y = x * x
        tape.reset()
        z = x * x * x
    assert tape.gradient(z, x).numpy() == 12.0


def test_watch_explicit_variable_without_auto_watching():
    x = tf.Variable(2.0)
    y = tf.Variable(3.0)
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(x)
        z = x * y
    assert tape.watched_variables() == (x,)
    gx, gy = tape.gradient(z, [x, y])
    assert gx.numpy() == 3.0 and gy is None


def test_watched_variables_in_creation_order():
    # TF orders them by variable id (creation), not by first read.
    a, b = tf.Variable(1.0), tf.Variable(2.0)
    with tf.GradientTape() as tape:
        _ = b * a
    assert tape.watched_variables() == (a, b)


def test_tensorflow_errors():
    x = tf.Variable(2.0)
    with tf.GradientTape() as tape:
        y = x * x
    with pytest.raises(TypeError):
        tape.gradient(None, x)
    with pytest.raises(ValueError):
        tape.gradient(y, x, unconnected_gradients="sometimes")
    assert tape.gradient(y, x).numpy() == 4.0  # the failed calls left the tape usable
    with pytest.raises(RuntimeError):
        tape.gradient(y, x)
    with tf.GradientTape() as tape:
        with pytest.raises(ValueError):
            tape.watch(3.0)


def test_non_persistent_gradient_inside_its_context_stops_recording():
    x = tf.Variable(3.0)
    with tf.GradientTape() as tape:
        y = x * x
        g = tape.gradient(y, x)
        z = g * x  # not recorded: the tape stopped
    assert g.numpy() == 6.0 and z.numpy() == 18.0


def test_persistent_tape_differentiates_its_own_gradient():
    x = tf.Variable(3.0)
    with tf.GradientTape(persistent=True) as tape:
        y = x**3
        g = tape.gradient(y, x)
    assert g.numpy() == 27.0
    assert tape.gradient(g, x).numpy() == 18.0


def test_nested_tapes_any_order():
    x = tf.Variable(0.7, dtype=tf.float64)
    with tf.GradientTape() as t3:
        with tf.GradientTape() as t2:
            with tf.GradientTape() as t1:
                y = tf.sin(x) * x
            g1 = t1.gradient(y, x)
        g2 = t2.gradient(g1, x)
    g3 = t3.gradient(g2, x)
    f = lambda v: jnp.sin(v) * v
    for got, want in zip(
        (g1, g2, g3), (jax.grad(f), jax.grad(jax.grad(f)), jax.grad(jax.grad(jax.grad(f))))
    ):
        np.testing.assert_allclose(got.numpy(), want(0.7), rtol=1e-12)


def test_perturbation_confusion():
    # d/dx [x * d/dy (x + y)] at x = 1 is 1: the inner derivative must not see x.
    x = tf.Variable(1.0, dtype=tf.float64)
    y = tf.Variable(1.0, dtype=tf.float64)
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            s = x + y
        dy = inner.gradient(s, y)
        z = x * dy
    assert outer.gradient(z, x).numpy() == 1.0


def test_several_tapes_at_once():
    x = tf.Variable(2.0)
    with tf.GradientTape() as t1, tf.GradientTape() as t2:
        y = x * x
    assert t1.gradient(y, x).numpy() == 4.0 and t2.gradient(y, x).numpy() == 4.0


def test_tapes_are_local_to_their_thread():
    x = tf.Variable(2.0)
    seen = {}

    def worker():
        with tf.GradientTape() as tape:
            y = x * x * x
        seen["g"] = tape.gradient(y, x).numpy()

    with tf.GradientTape() as tape:
        th = threading.Thread(target=worker)
        th.start()
        th.join()
        y = x * x
    assert seen["g"] == 12.0 and tape.gradient(y, x).numpy() == 4.0
    assert len(tape._nodes) == 0  # released, and nothing from the other thread was recorded


def test_python_control_flow_on_values():
    x = tf.Variable(np.array([1.0, -2.0, 3.0]))
    with tf.GradientTape() as tape:
        total = tf.constant(0.0, dtype=tf.float64)
        for i in range(3):
            if x[i] > 0:
                total = total + x[i] ** 2
            else:
                total = total - x[i]
        while total < 100:
            total = total * 2
    # total = (1 + 2 + 9) = 12 -> 24 -> 48 -> 96 -> 192: derivative picks up a factor 16.
    np.testing.assert_allclose(tape.gradient(total, x).numpy(), 16 * np.array([2.0, -1.0, 6.0]))


def test_cond_and_while_loop_are_differentiable_eagerly():
    x = tf.Variable(1.5, dtype=tf.float64)
    with tf.GradientTape() as tape:
        y = tf.cond(x > 1.0, lambda: x**2, lambda: -x)
        i, z = tf.while_loop(lambda i, z: i < 3, lambda i, z: (i + 1, z * x), [0, y])
    assert tape.gradient(z, x).numpy() == pytest.approx(5 * 1.5**4)


def test_identity_records():
    x = tf.Variable(2.0)
    with tf.GradientTape() as tape:
        y = tf.identity(x) * 3.0
    assert tape.gradient(y, x).numpy() == 3.0


# --- jacobians ------------------------------------------------------------------------------------


def test_jacobian_matches_jax():
    xv = f64(3)
    x = tf.Variable(xv)
    f = lambda v: jnp.tanh(jnp.outer(v, v)) * v
    with tf.GradientTape() as tape:
        y = tf.tanh(tf.reshape(x, [3, 1]) * tf.reshape(x, [1, 3])) * x
    j = tape.jacobian(y, x)
    assert j.shape == (3, 3, 3)
    np.testing.assert_allclose(j.numpy(), jax.jacrev(f)(xv), rtol=1e-12)


def test_jacobian_nested_target_and_unconnected():
    x = tf.Variable(f64(2))
    z = tf.Variable(f64(2))
    with tf.GradientTape() as tape:
        a = x * x
        b = tf.reduce_sum(x)
    j = tape.jacobian({"a": a, "b": b}, [x, z])
    np.testing.assert_allclose(j["a"][0].numpy(), np.diag(2 * x.numpy()))
    np.testing.assert_allclose(j["b"][0].numpy(), np.ones(2))
    assert j["a"][1] is None
    with tf.GradientTape() as tape:
        a = x * x
    j = tape.jacobian(a, z, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    np.testing.assert_array_equal(j.numpy(), np.zeros((2, 2)))


def test_batch_jacobian_matches_jax():
    xv = f64(4, 3)
    w = f64(3, 2)
    x = tf.constant(xv)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.sin(tf.matmul(x, tf.constant(w)))
    bj = tape.batch_jacobian(y, x)
    full = jax.jacrev(lambda v: jnp.sin(v @ w))(xv)  # [4, 2, 4, 3]
    expected = np.stack([full[i, :, i, :] for i in range(4)])
    assert bj.shape == (4, 2, 3)
    np.testing.assert_allclose(bj.numpy(), expected, rtol=1e-12)


# --- forward mode ---------------------------------------------------------------------------------


def test_forward_accumulator_matches_jax_jvp():
    xv, tv = f64(3), f64(3)
    x = tf.constant(xv)
    with tf.autodiff.ForwardAccumulator(x, tf.constant(tv)) as acc:
        y = tf.reduce_sum(tf.exp(x) * tf.sin(x))
        unrelated = tf.constant(1.0) * 2
    _, expected = jax.jvp(lambda v: jnp.sum(jnp.exp(v) * jnp.sin(v)), (xv,), (tv,))
    np.testing.assert_allclose(acc.jvp(y).numpy(), expected, rtol=1e-12)
    assert acc.jvp(unrelated) is None
    assert acc.jvp(unrelated, unconnected_gradients="zero").numpy() == 0.0


def test_forward_accumulator_on_variables():
    v = tf.Variable(2.0, dtype=tf.float64)
    with tf.autodiff.ForwardAccumulator(v, tf.constant(1.0, dtype=tf.float64)) as acc:
        y = v * v * v
    assert acc.jvp(y).numpy() == 12.0


def _hvp_expected(xv, vv):
    f = lambda x: jnp.sum(jnp.sin(x) * x**2)
    return jax.hessian(f)(xv) @ vv


def test_hvp_forward_over_backward():
    xv, vv = f64(3), f64(3)
    x = tf.constant(xv)
    with tf.autodiff.ForwardAccumulator(x, tf.constant(vv)) as acc:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(tf.sin(x) * x**2)
        g = tape.gradient(y, x)
    np.testing.assert_allclose(acc.jvp(g).numpy(), _hvp_expected(xv, vv), rtol=1e-12)


def test_hvp_backward_over_forward():
    xv, vv = f64(3), f64(3)
    x = tf.constant(xv)
    with tf.GradientTape() as tape:
        tape.watch(x)
        with tf.autodiff.ForwardAccumulator(x, tf.constant(vv)) as acc:
            y = tf.reduce_sum(tf.sin(x) * x**2)
        jvp = acc.jvp(y)
    np.testing.assert_allclose(tape.gradient(jvp, x).numpy(), _hvp_expected(xv, vv), rtol=1e-12)


# --- custom_gradient ------------------------------------------------------------------------------


def test_custom_gradient_is_used():
    @tf.custom_gradient
    def clip_grad(x):
        return tf.identity(x) * 1.0, lambda dy: tf.clip_by_value(dy, -0.5, 0.5)

    x = tf.Variable(np.array([1.0, 2.0]))
    with tf.GradientTape() as tape:
        y = clip_grad(x) * np.array([0.1, 3.0])
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), [0.1, 0.5])


def test_custom_gradient_second_order():
    @tf.custom_gradient
    def cube(x):
        def grad(dy):
            return dy * 3.0 * x * x

        return x * x * x, grad

    x = tf.Variable(2.0, dtype=tf.float64)
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            y = cube(x)
        g = inner.gradient(y, x)
    assert g.numpy() == 12.0
    assert outer.gradient(g, x).numpy() == 12.0  # d/dx 3x² = 6x


def test_custom_gradient_with_variables():
    w = tf.Variable(3.0, dtype=tf.float64)

    @tf.custom_gradient
    def scale(x):
        def grad(dy, variables=None):
            assert variables == [w] or list(variables) == [w]
            return dy * w * 10.0, [dy * x * 10.0]

        return x * w, grad

    x = tf.Variable(2.0, dtype=tf.float64)
    with tf.GradientTape() as tape:
        y = scale(x)
    gx, gw = tape.gradient(y, [x, w])
    assert gx.numpy() == 30.0 and gw.numpy() == 20.0


def test_custom_gradient_without_variables_keyword_is_an_error():
    w = tf.Variable(3.0)

    @tf.custom_gradient
    def scale(x):
        return x * w, lambda dy: dy * w

    with pytest.raises(TypeError, match="variables"):
        scale(tf.constant(1.0))


# --- every op name, differentiated on a tape, against jax.grad ------------------------------------

UNARY = [
    ("square", tf.square, jnp.square, None),
    ("sqrt", tf.sqrt, jnp.sqrt, "pos"),
    ("exp", tf.exp, jnp.exp, None),
    ("sin", tf.sin, jnp.sin, None),
    ("cos", tf.cos, jnp.cos, None),
    ("tanh", tf.tanh, jnp.tanh, None),
    ("sigmoid", tf.sigmoid, jax.nn.sigmoid, None),
    ("abs", tf.abs, jnp.abs, None),
    ("math.log", tf.math.log, jnp.log, "pos"),
    ("math.log1p", tf.math.log1p, jnp.log1p, "pos"),
    ("nn.relu", tf.nn.relu, jax.nn.relu, None),
    ("nn.softplus", tf.nn.softplus, jax.nn.softplus, None),
    ("nn.sigmoid", tf.nn.sigmoid, jax.nn.sigmoid, None),
    ("nn.softmax", tf.nn.softmax, jax.nn.softmax, None),
    ("nn.log_softmax", tf.nn.log_softmax, jax.nn.log_softmax, None),
    ("negative", tf.negative, jnp.negative, None),
    ("identity", tf.identity, lambda x: x, None),
    ("reshape", lambda x: tf.reshape(x, [6]), lambda x: x.reshape(6), None),
    ("transpose", tf.transpose, jnp.transpose, None),
    ("squeeze", lambda x: tf.squeeze(x[None]), lambda x: x, None),
    ("expand_dims", lambda x: tf.expand_dims(x, 1), lambda x: x[:, None], None),
    ("concat", lambda x: tf.concat([x, x * 2], 0), lambda x: jnp.concatenate([x, 2 * x]), None),
    ("stack", lambda x: tf.stack([x, x * 2], 1), lambda x: jnp.stack([x, 2 * x], 1), None),
    ("tile", lambda x: tf.tile(x, [2, 1]), lambda x: jnp.tile(x, (2, 1)), None),
    ("slice", lambda x: x[1:, ::2], lambda x: x[1:, ::2], None),
    (
        "clip_by_value",
        lambda x: tf.clip_by_value(x, -0.5, 0.7),
        lambda x: jnp.clip(x, -0.5, 0.7),
        None,
    ),
    ("reduce_sum", lambda x: tf.reduce_sum(x, 1), lambda x: jnp.sum(x, 1), None),
    (
        "reduce_mean",
        lambda x: tf.reduce_mean(x, 0, keepdims=True),
        lambda x: jnp.mean(x, 0, keepdims=True),
        None,
    ),
    ("reduce_max", lambda x: tf.reduce_max(x, 1), lambda x: jnp.max(x, 1), None),
    ("reduce_min", tf.reduce_min, jnp.min, None),
    ("reduce_prod", lambda x: tf.reduce_prod(x, 0), lambda x: jnp.prod(x, 0), None),
    ("reduce_logsumexp", tf.reduce_logsumexp, jax.scipy.special.logsumexp, None),
    ("pow", lambda x: tf.pow(x, 3.0), lambda x: x**3.0, "pos"),
    ("pow_int", lambda x: x**3, lambda x: x**3, None),
    ("maximum", lambda x: tf.maximum(x, 0.3), lambda x: jnp.maximum(x, 0.3), None),
    ("minimum", lambda x: tf.minimum(x, 0.3), lambda x: jnp.minimum(x, 0.3), None),
    ("where", lambda x: tf.where(x > 0, x * x, -x), lambda x: jnp.where(x > 0, x * x, -x), None),
    ("matmul", lambda x: tf.matmul(x, x, transpose_b=True), lambda x: x @ x.T, None),
    ("cast", lambda x: tf.cast(x, tf.float32) * 1.0, lambda x: x.astype(jnp.float32), None),
    ("divide", lambda x: 1.0 / (x * x + 1.0), lambda x: 1.0 / (x * x + 1.0), None),
    ("subtract", lambda x: tf.subtract(x, x * x), lambda x: x - x * x, None),
    ("unstack", lambda x: tf.unstack(x)[1] * 2.0, lambda x: x[1] * 2.0, None),
]


@pytest.mark.parametrize("name,tf_fn,jnp_fn,domain", UNARY, ids=[u[0] for u in UNARY])
def test_op_gradient_matches_jax(name, tf_fn, jnp_fn, domain):
    xv = f64(2, 3, low=0.2 if domain == "pos" else -2.0)
    x = tf.Variable(xv)
    w = jax.random.normal(jax.random.key(1), jnp.shape(jnp_fn(jnp.asarray(xv))))
    with tf.GradientTape() as tape:
        y = tf_fn(x)
        loss = tf.reduce_sum(tf.cast(y, tf.float64) * np.asarray(w, np.float64))
    expected = jax.grad(lambda v: jnp.sum(jnp_fn(v).astype(jnp.float64) * w))(xv)
    rtol = 1e-5 if name == "cast" else 1e-12
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), expected, rtol=rtol, atol=1e-14)


def test_gather_and_indexing_gradients():
    xv = f64(4, 3)
    x = tf.Variable(xv)
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(tf.gather(x, [0, 2, 2], axis=0) ** 2) + tf.reduce_sum(x[1] * 3.0)
    expected = jax.grad(lambda v: jnp.sum(v[jnp.array([0, 2, 2])] ** 2) + jnp.sum(v[1] * 3))(xv)
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), expected, rtol=1e-12)


def test_sigmoid_cross_entropy_matches_jax():
    logits, labels = f64(5), RNG.uniform(0, 1, 5)
    x = tf.Variable(logits)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(
            tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.constant(labels), logits=x)
        )
    ref = lambda z: jnp.mean(optax_sigmoid_xent(z, labels))
    np.testing.assert_allclose(loss.numpy(), ref(logits), rtol=1e-12)
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), jax.grad(ref)(logits), rtol=1e-12)


def optax_sigmoid_xent(z, labels):
    return jnp.maximum(z, 0) - z * labels + jnp.log1p(jnp.exp(-jnp.abs(z)))


def test_creation_ops():
    assert tf.zeros([2, 3]).shape == (2, 3) and tf.ones([2]).dtype == tf.float32
    t = tf.constant([[1, 2]])
    assert tf.zeros_like(t).dtype == tf.int32 and tf.ones_like(t).numpy().tolist() == [[1, 1]]
    assert tf.random.normal([3, 2]).shape == (3, 2)
    assert tf.random.normal([2], dtype=tf.float64).dtype == tf.float64
    assert tf.cast(tf.constant(2.7), tf.int32).numpy() == 2
    assert tf.range(3).numpy().tolist() == [0, 1, 2]


@settings(max_examples=6, deadline=None)
@given(
    st.lists(
        st.sampled_from(["sin", "tanh", "square", "exp_neg", "mul_w"]), min_size=1, max_size=5
    ),
    st.integers(0, 2**16),
)
def test_random_compositions_match_jax(ops, seed):
    rng = np.random.default_rng(seed)
    xv, wv = rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3)
    tf_ops = {
        "sin": tf.sin,
        "tanh": tf.tanh,
        "square": tf.square,
        "exp_neg": lambda v: tf.exp(-v),
        "mul_w": lambda v: v * wv,
    }
    jnp_ops = {
        "sin": jnp.sin,
        "tanh": jnp.tanh,
        "square": jnp.square,
        "exp_neg": lambda v: jnp.exp(-v),
        "mul_w": lambda v: v * wv,
    }

    def run(ops_table, v, reduce):
        for name in ops:
            v = ops_table[name](v)
        return reduce(v)

    x = tf.Variable(xv)
    with tf.GradientTape() as t2:
        with tf.GradientTape() as t1:
            y = run(tf_ops, x, tf.reduce_sum)
        g = t1.gradient(y, x)
    h = t2.jacobian(g, x)
    f = lambda v: run(jnp_ops, v, jnp.sum)
    np.testing.assert_allclose(g.numpy(), jax.grad(f)(xv), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(h.numpy(), jax.hessian(f)(xv), rtol=1e-10, atol=1e-14)


# --- memory ---------------------------------------------------------------------------------------


def test_non_persistent_tape_frees_its_recording():
    x = tf.Variable(2.0)
    with tf.GradientTape() as tape:
        y = x * x
    tape.gradient(y, x)
    assert tape._nodes == [] and tape._tracked == {}


def test_training_loop_holds_live_buffers_flat():
    w = tf.Variable(np.zeros((3, 2)))
    b = tf.Variable(np.zeros(2))
    x = tf.constant(f64(8, 3))
    y = tf.constant(f64(8, 2))

    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(tf.tanh(tf.matmul(x, w) + b) - y))
        gw, gb = tape.gradient(loss, [w, b])
        w.assign_sub(0.1 * gw)
        b.assign_sub(0.1 * gb)

    for _ in range(20):
        step()
    gc.collect()
    before = len(jax.live_arrays())
    for _ in range(500):
        step()
    gc.collect()
    assert len(jax.live_arrays()) <= before


def test_reexports_are_the_same_objects():
    assert transforms.GradientTape is tf.GradientTape
    assert transforms.Variable is tf.Variable
    assert transforms.ForwardAccumulator is tf.autodiff.ForwardAccumulator


def test_cached_gradient_programs_respect_static_arguments():
    # Same ops, different static arguments (axis, exponent): each needs its own program.
    x = tf.Variable(f64(2, 3))
    results = []
    for axis, power in [(0, 2), (1, 2), (0, 3), (1, 3), (0, 2)]:
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(tf.reduce_max(x, axis=axis) ** power)
        results.append(tape.gradient(y, x).numpy())
    for (axis, power), got in zip([(0, 2), (1, 2), (0, 3), (1, 3), (0, 2)], results, strict=True):
        want = jax.grad(lambda v, a=axis, p=power: jnp.sum(jnp.max(v, axis=a) ** p))(x.numpy())
        np.testing.assert_allclose(got, want, rtol=1e-12)
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(tf.maximum(x, 0.0) * -0.0 + tf.maximum(x, -0.0))
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), (x.numpy() > 0).astype(float))
