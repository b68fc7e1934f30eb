"""Every tf.* name added for TF autodiff code, against TensorFlow 2.21: values and gradients,
eagerly and under tf.function. Each case differentiates a weighted sum of its outputs with
respect to all its float inputs (held in Variables)."""

from __future__ import annotations

import numpy as np
import pytest

import transforms.tf as ttf
from tests.test_tf_oracle import assert_match, to_numpy

tf_real = pytest.importorskip("tensorflow")

rng = np.random.RandomState(0)
_A = rng.randn(3, 3)
INPUTS = {
    "spd": (_A @ _A.T + 3 * np.eye(3)),
    "a": _A + 2 * np.eye(3),
    "b": rng.randn(3, 2),
    "v3": rng.randn(3),
    "tall": rng.randn(5, 3),
    "rhs5": rng.randn(5, 2),
    "batch_sq": rng.randn(2, 3, 3) + 2 * np.eye(3),
    "x": rng.randn(2, 3).astype(np.float32) + np.array([[0.1, 0.2, 0.3]], np.float32),
    "logits": rng.randn(4, 5).astype(np.float32),
    "probs": np.abs(rng.randn(4, 5)).astype(np.float32),
    "labels": np.array([1, 0, 4, 2], np.int32),
    "big": (rng.randn(3, 4) * 3).astype(np.float32),
    "small": (rng.randn(3, 4) * 0.1).astype(np.float32),
    "img": rng.rand(2, 4, 6, 3).astype(np.float32),
    "img1": rng.rand(4, 6, 3).astype(np.float32),
    "seq": rng.randn(2, 7, 3).astype(np.float32),
    "k1": rng.randn(3, 3, 4).astype(np.float32),
    "k2": rng.randn(2, 3, 3, 2).astype(np.float32),
    "table": rng.randn(6, 4).astype(np.float32),
    "ids": np.array([[0, 5], [2, 2], [3, 1]], np.int32),
    "mean": rng.randn(3).astype(np.float32),
    "var": np.abs(rng.randn(3)).astype(np.float32) + 0.5,
    "offset": rng.randn(3).astype(np.float32),
    "scale": rng.randn(3).astype(np.float32),
    "bn_x": rng.randn(4, 3).astype(np.float32),
}

# name -> (function of the module and the inputs, input names)
CASES = {
    # clipping and padding
    "clip_by_norm_big": (lambda tf, t: tf.clip_by_norm(t, 2.0), ["big"]),
    "clip_by_norm_small": (lambda tf, t: tf.clip_by_norm(t, 2.0), ["small"]),
    "clip_by_norm_axes": (lambda tf, t: tf.clip_by_norm(t, 1.5, axes=[1]), ["big"]),
    "clip_by_global_norm": (
        lambda tf, a, b: tf.clip_by_global_norm([a, None, b], 3.0),
        ["big", "x"],
    ),
    "clip_by_global_norm_unclipped": (
        lambda tf, a, b: tf.clip_by_global_norm([a, b], 100.0),
        ["small", "x"],
    ),
    "pad_constant": (lambda tf, t: tf.pad(t, [[1, 0], [2, 1]], constant_values=0.5), ["x"]),
    "pad_reflect": (lambda tf, t: tf.pad(t, [[1, 1], [2, 2]], mode="REFLECT"), ["x"]),
    "pad_symmetric": (lambda tf, t: tf.pad(t, [[1, 1], [1, 2]], mode="SYMMETRIC"), ["x"]),
    # tf.linalg
    "solve": (lambda tf, a, b: tf.linalg.solve(a, b), ["a", "b"]),
    "solve_adjoint": (lambda tf, a, b: tf.linalg.solve(a, b, adjoint=True), ["a", "b"]),
    "inv": (lambda tf, a: tf.linalg.inv(a), ["a"]),
    "inv_batch": (lambda tf, a: tf.linalg.inv(a), ["batch_sq"]),
    "det": (lambda tf, a: tf.linalg.det(a), ["a"]),
    "det_batch": (lambda tf, a: tf.linalg.det(a), ["batch_sq"]),
    "slogdet": (lambda tf, a: tf.linalg.slogdet(a), ["a"]),
    "logdet": (lambda tf, s: tf.linalg.logdet(s), ["spd"]),
    "cholesky": (lambda tf, s: tf.linalg.cholesky(s), ["spd"]),
    "cholesky_solve": (
        lambda tf, s, b: tf.linalg.cholesky_solve(tf.linalg.cholesky(s), b),
        ["spd", "b"],
    ),
    "triangular_solve_lower": (
        lambda tf, a, b: tf.linalg.triangular_solve(a, b, lower=True),
        ["a", "b"],
    ),
    "triangular_solve_upper_adjoint": (
        lambda tf, a, b: tf.linalg.triangular_solve(a, b, lower=False, adjoint=True),
        ["a", "b"],
    ),
    # Eigen- and singular vectors are unique up to sign: compare sign-free functions of them.
    "eigh": (
        lambda tf, s: [tf.linalg.eigh(s)[0], tf.square(tf.linalg.eigh(s)[1])],
        ["spd"],
    ),
    "svd": (
        lambda tf, a: [
            tf.linalg.svd(a)[0],
            tf.square(tf.linalg.svd(a)[1]),
            tf.square(tf.linalg.svd(a)[2]),
            tf.linalg.svd(a, compute_uv=False),
        ],
        ["a"],
    ),
    "svd_tall": (
        lambda tf, a: [tf.linalg.svd(a)[0], tf.square(tf.linalg.svd(a)[1])],
        ["tall"],
    ),
    "qr": (lambda tf, a: [tf.abs(tf.linalg.qr(a)[1]), tf.square(tf.linalg.qr(a)[0])], ["tall"]),
    "matvec": (lambda tf, a, v: tf.linalg.matvec(a, v), ["a", "v3"]),
    "matvec_transpose": (lambda tf, a, v: tf.linalg.matvec(a, v, transpose_a=True), ["a", "v3"]),
    "diag": (lambda tf, v: tf.linalg.diag(v), ["v3"]),
    "diag_batch": (lambda tf, x: tf.linalg.diag(x), ["x"]),
    "diag_part": (lambda tf, a: tf.linalg.diag_part(a), ["batch_sq"]),
    "trace": (lambda tf, a: tf.linalg.trace(a), ["batch_sq"]),
    "band_part": (lambda tf, a: tf.linalg.band_part(a, 1, 0), ["batch_sq"]),
    "band_part_upper": (lambda tf, a: tf.linalg.band_part(a, 0, -1), ["tall"]),
    "norm_default": (lambda tf, a: tf.linalg.norm(a), ["tall"]),
    "norm_axis": (lambda tf, a: tf.norm(a, axis=1, keepdims=True), ["tall"]),
    "norm_ord1": (lambda tf, a: tf.norm(a, ord=1, axis=0), ["tall"]),
    "norm_inf": (lambda tf, a: tf.norm(a, ord=np.inf, axis=1), ["tall"]),
    "norm_p3": (lambda tf, a: tf.norm(a, ord=3, axis=1), ["tall"]),
    "norm_fro": (lambda tf, a: tf.norm(a, ord="fro", axis=[0, 1]), ["tall"]),
    "norm_matrix_1": (lambda tf, a: tf.norm(a, ord=1, axis=[-2, -1]), ["batch_sq"]),
    "norm_matrix_inf": (lambda tf, a: tf.norm(a, ord=np.inf, axis=[-2, -1]), ["batch_sq"]),
    "norm_matrix_2": (  # reshaped: TF's graph mode does not infer this norm's shape
        lambda tf, a: tf.reshape(tf.norm(a, ord=2, axis=[-2, -1]), [2]),
        ["batch_sq"],
    ),
    "expm": (lambda tf, a: tf.linalg.expm(a * 0.3), ["a"]),
    "lstsq": (lambda tf, a, b: tf.linalg.lstsq(a, b), ["tall", "rhs5"]),
    "lstsq_l2": (lambda tf, a, b: tf.linalg.lstsq(a, b, l2_regularizer=0.5), ["tall", "rhs5"]),
    "global_norm": (lambda tf, a, b: tf.linalg.global_norm([a, b]), ["big", "x"]),
    "l2_normalize": (lambda tf, x: tf.math.l2_normalize(x, axis=1), ["x"]),
    # tf.math
    "divide_no_nan": (
        lambda tf, x: tf.math.divide_no_nan(x, x * tf.constant([[1.0, 0.0, 2.0]])),
        ["x"],
    ),
    "xlogy": (lambda tf, x: tf.math.xlogy(tf.constant([[0.0, 1.0, 2.0]]), x * x + 1.0), ["x"]),
    "reduce_euclidean_norm": (
        lambda tf, x: tf.math.reduce_euclidean_norm(x, axis=0),
        ["x"],
    ),
    "math_log_softmax": (lambda tf, z: tf.math.log_softmax(z), ["logits"]),
    # tf.nn
    "softmax_xent": (
        lambda tf, y, z: tf.nn.softmax_cross_entropy_with_logits(
            labels=y / tf.reduce_sum(y, axis=1, keepdims=True), logits=z
        ),
        ["probs", "logits"],
    ),
    "sparse_softmax_xent": (
        lambda tf, z: tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.constant(INPUTS["labels"]), logits=z
        ),
        ["logits"],
    ),
    "log_softmax": (lambda tf, z: tf.nn.log_softmax(z, axis=0), ["logits"]),
    "l2_loss": (lambda tf, x: tf.nn.l2_loss(x), ["x"]),
    "moments": (lambda tf, x: tf.nn.moments(x, axes=[0]), ["bn_x"]),
    "moments_keepdims": (lambda tf, x: tf.nn.moments(x, axes=[0, 1], keepdims=True), ["bn_x"]),
    "batch_normalization": (
        lambda tf, x, m, v, o, s: tf.nn.batch_normalization(x, m, v, o, s, 1e-3),
        ["bn_x", "mean", "var", "offset", "scale"],
    ),
    "batch_normalization_no_affine": (
        lambda tf, x, m, v: tf.nn.batch_normalization(x, m, v, None, None, 1e-3),
        ["bn_x", "mean", "var"],
    ),
    "conv1d_same": (lambda tf, x, k: tf.nn.conv1d(x, k, stride=1, padding="SAME"), ["seq", "k1"]),
    "conv1d_valid_stride": (
        lambda tf, x, k: tf.nn.conv1d(x, k, stride=2, padding="VALID"),
        ["seq", "k1"],
    ),
    "conv2d_same": (
        lambda tf, x, k: tf.nn.conv2d(x, k, strides=1, padding="SAME"),
        ["img", "k2"],
    ),
    "conv2d_valid_strided": (
        lambda tf, x, k: tf.nn.conv2d(x, k, strides=[1, 2, 2, 1], padding="VALID"),
        ["img", "k2"],
    ),
    "conv2d_dilated": (
        lambda tf, x, k: tf.nn.conv2d(x, k, strides=1, padding="SAME", dilations=2),
        ["img", "k2"],
    ),
    "max_pool2d": (lambda tf, x: tf.nn.max_pool2d(x, 2, 2, "VALID"), ["img"]),
    "max_pool2d_same": (lambda tf, x: tf.nn.max_pool2d(x, 3, 2, "SAME"), ["img"]),
    "avg_pool2d": (lambda tf, x: tf.nn.avg_pool2d(x, 2, 2, "VALID"), ["img"]),
    "avg_pool2d_same": (lambda tf, x: tf.nn.avg_pool2d(x, 3, 2, "SAME"), ["img"]),
    "embedding_lookup": (
        lambda tf, t: tf.nn.embedding_lookup(t, tf.constant(INPUTS["ids"])),
        ["table"],
    ),
    "gelu": (lambda tf, x: tf.nn.gelu(x), ["x"]),
    "gelu_approximate": (lambda tf, x: tf.nn.gelu(x, approximate=True), ["x"]),
    "selu": (lambda tf, x: tf.nn.selu(x), ["x"]),
    "elu": (lambda tf, x: tf.nn.elu(x), ["x"]),
    "leaky_relu": (lambda tf, x: tf.nn.leaky_relu(x), ["x"]),
    "leaky_relu_alpha": (lambda tf, x: tf.nn.leaky_relu(x, alpha=0.05), ["x"]),
    "relu6": (lambda tf, x: tf.nn.relu6(x * 8.0), ["x"]),
    "silu": (lambda tf, x: tf.nn.silu(x), ["x"]),
    "swish_beta": (lambda tf, x: tf.nn.silu(x, beta=1.5), ["x"]),
    # tf.image
    "resize_up": (lambda tf, x: tf.image.resize(x, [7, 9]), ["img"]),
    "resize_down": (lambda tf, x: tf.image.resize(x, [2, 3]), ["img"]),
    "resize_nearest": (lambda tf, x: tf.image.resize(x, [8, 5], method="nearest"), ["img"]),
    "flip_left_right": (lambda tf, x: tf.image.flip_left_right(x), ["img1"]),
    "flip_left_right_batch": (lambda tf, x: tf.image.flip_left_right(x), ["img"]),
    "per_image_standardization": (lambda tf, x: tf.image.per_image_standardization(x), ["img"]),
    # tf.TensorArray
    "tensor_array": (lambda tf, x: _tensor_array(tf, x), ["x"]),
}


def _tensor_array(tf, x):
    ta = tf.TensorArray(tf.float32, size=3)
    for i in range(3):
        ta = ta.write(i, x[0] * float(i + 1) + x[1])
    grow = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
    grow = grow.unstack(x)
    grow = grow.write(2, tf.sin(x[0]))
    # read last: TF's eager TensorArray clears an element on read, its graph one does not
    # (test_errors_and_specs_match_tensorflow checks the eager rule).
    out = [ta.stack(), ta.gather([2, 0]), ta.concat(), grow.stack(), ta.read(1)]
    # Reshaped to their known shapes: TF's graph-mode TensorArray does not infer them.
    shapes = [[3, 3], [2, 3], [9], [3, 3], [3]]
    return [tf.reshape(o, s) for o, s in zip(out, shapes, strict=True)] + [ta.size()]


def _weights(shape, dtype):
    n = int(np.prod(shape)) if len(shape) else 1
    return np.cos(np.arange(n) * 0.7 + 0.3).reshape(shape).astype(dtype)


def _flat(out):
    if isinstance(out, list | tuple):
        return [y for o in out for y in _flat(o)]
    return [] if out is None else [out]


def _is_float(dtype):
    return dtype.is_floating if hasattr(dtype, "is_floating") else dtype.kind == "f"


def run_group(tf, names, compiled):
    """The cases `names` in one tape (and one tf.function when `compiled`): their Variables
    are separate, so each case's gradient is the one it would have alone."""
    variables = {name: [tf.Variable(INPUTS[n]) for n in CASES[name][1]] for name in names}

    def body():
        outs = {}
        with tf.GradientTape() as tape:
            loss = 0.0
            for name in names:
                outs[name] = out = CASES[name][0](tf, *variables[name])
                for o in _flat(out):
                    if _is_float(o.dtype):
                        np_dtype = getattr(o.dtype, "as_numpy_dtype", o.dtype)
                        term = tf.reduce_sum(o * _weights(tuple(o.shape), np_dtype))
                        # float32 and float64 cases share the loss: sum it in float64
                        loss = loss + tf.cast(term, tf.float64)
        grads = tape.gradient(loss, variables)
        # TF's embedding gradient is IndexedSlices: compare it as the dense tensor it means.
        return {
            name: {
                "out": outs[name],
                "grads": [None if g is None else tf.convert_to_tensor(g) for g in grads[name]],
            }
            for name in names
        }

    if compiled:
        body = tf.function(body)
    return to_numpy(body())


# A dozen cases per test: one TF run, one eager tape and one compiled program each, so the
# suite stays fast; a failure names its case in the assertion's path.
_SORTED = sorted(CASES)
GROUPS = [_SORTED[i : i + 12] for i in range(0, len(_SORTED), 12)]


@pytest.mark.parametrize("names", GROUPS, ids=[f"{g[0]}..{g[-1]}" for g in GROUPS])
def test_names_match_tensorflow_eager_and_in_tf_function(names):
    # TF's eager values are its tf.function values too (same kernels): one TF run is the
    # oracle for both of ours.
    theirs = run_group(tf_real, names, compiled=False)
    for compiled in (False, True):
        ours = run_group(ttf, names, compiled)
        assert_match(ours, theirs, path="function" if compiled else "eager")


def test_adjust_contrast_values_and_gradient_match_tensorflow():
    """TF has no gradient for AdjustContrastv2 (LookupError); ours is the gradient of TF's
    own formula, which TF differentiates when it is written out with its ops."""
    x_np = INPUTS["img"]

    def contrast(tf, x):
        mean = tf.reduce_mean(x, axis=[-3, -2], keepdims=True)
        return (x - mean) * 1.7 + mean

    def prog(tf, fn, compiled=False):
        x = tf.Variable(x_np)

        def run():
            with tf.GradientTape() as tape:
                y = fn(x)
                loss = tf.reduce_sum(y * _weights(y.shape, np.float32))
            return [y, tape.gradient(loss, x)]

        return (tf.function(run) if compiled else run)()

    theirs_value = tf_real.image.adjust_contrast(tf_real.constant(x_np), 1.7)
    with pytest.raises(LookupError):
        prog(tf_real, lambda x: tf_real.image.adjust_contrast(x, 1.7))
    theirs = to_numpy(prog(tf_real, lambda x: contrast(tf_real, x)))
    ours = to_numpy(prog(ttf, lambda x: ttf.image.adjust_contrast(x, 1.7)))
    ours_fn = to_numpy(prog(ttf, lambda x: ttf.image.adjust_contrast(x, 1.7), compiled=True))
    assert_match(ours[0], theirs_value.numpy())
    assert_match(ours, theirs)
    assert_match(ours_fn, theirs)


def test_dropout_follows_tensorflow_semantics():
    """Random masks differ between libraries; what TF guarantees must hold for both: kept
    entries scaled by 1 / (1 - rate), the gradient the mask over (1 - rate), rate 0 the
    identity, and a bad rate TF's ValueError."""

    def facts(tf):
        x = tf.Variable(np.linspace(1.0, 2.0, 400).astype(np.float32).reshape(20, 20))
        with tf.GradientTape() as tape:
            y = tf.nn.dropout(x, rate=0.25)
        g = tape.gradient(y, x).numpy()
        y, xv = y.numpy(), x.numpy()
        kept = y != 0
        try:
            tf.nn.dropout(x, rate=1.5)
            bad = None
        except ValueError:
            bad = "ValueError"
        return {
            "kept_scaled": bool(np.allclose(y[kept], xv[kept] / 0.75)),
            "grad_is_mask": bool(np.allclose(g, kept / 0.75)),
            "fraction_plausible": 0.6 < kept.mean() < 0.9,
            "rate_zero_identity": bool(np.array_equal(tf.nn.dropout(x, 0.0).numpy(), xv)),
            "bad_rate": bad,
        }

    assert (
        facts(ttf)
        == facts(tf_real)
        == {
            "kept_scaled": True,
            "grad_is_mask": True,
            "fraction_plausible": True,
            "rate_zero_identity": True,
            "bad_rate": "ValueError",
        }
    )


def test_errors_and_specs_match_tensorflow():
    def facts(tf):
        out = {}
        ta = tf.TensorArray(tf.float32, size=2)
        try:
            ta.write(3, tf.constant(1.0))
        except tf.errors.OpError as e:
            out["ta_write_past_end"] = (type(e).__name__, isinstance(e, tf.errors.OpError))
        ta = tf.TensorArray(tf.float32, size=2).write(0, tf.constant([1.0, 2.0]))
        ta = ta.write(1, tf.constant([3.0, 4.0]))
        first = ta.read(0)
        out["clear_after_read"] = [first.numpy().tolist(), ta.stack().numpy().tolist()]
        e = tf.errors.OutOfRangeError(None, None, "done")
        out["error_fields"] = (e.message, e.error_code, str(e))
        out["codes"] = [tf.errors.INVALID_ARGUMENT, tf.errors.OUT_OF_RANGE, tf.errors.NOT_FOUND]
        spec = tf.TensorSpec([None, 3], tf.float32, name="x")
        out["spec"] = (
            repr(spec),
            spec.is_compatible_with(tf.zeros([5, 3])),
            spec.is_compatible_with(tf.zeros([5, 4])),
            spec.is_compatible_with(tf.TensorSpec([2, 3], tf.float32)),
            spec.is_compatible_with(tf.zeros([5, 3], tf.float64)),
            repr(tf.TensorSpec.from_tensor(tf.ones([2, 1], tf.int32))),
        )
        return out

    assert facts(ttf) == facts(tf_real)
