"""AutoGraph: Python control flow on traced values (transforms.autograph, and tf.function).

1. tf.function programs with `if`/`while`/`for`/`break`/`continue`/`return` on tensors, run under
   TensorFlow 2.21 and under transforms.tf: results, gradients, tracing counts and error
   messages must agree (eager runs of the same Python functions are checked too).
2. transforms.autograph for JAX: converted functions called eagerly, under jax.jit and
   jax.vmap agree; derivatives through them (our engine) match jax.grad / jax.jvp of the
   hand-written lax.cond / lax.scan / lax.while_loop programs; Python values still unroll.
3. The errors: what cannot be converted, and reverse mode through an unbounded loop.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from test_tf_oracle import assert_match, to_numpy

import transforms as T
import transforms.tf as ttf
from transforms.autograph import ConversionError

tf_real = pytest.importorskip("tensorflow")

# --------------------------------------------------------------------------------------------------
# 1. tf.function against TensorFlow
# --------------------------------------------------------------------------------------------------

PROGRAMS = {}


def program(fn):
    PROGRAMS[fn.__name__] = fn
    return fn


def attempt(fn, *args):
    """The result, or the error as (builtin exception class name, message)."""
    try:
        return fn(*args)
    except (ValueError, TypeError, NotImplementedError) as e:
        kind = next(k for k in (NotImplementedError, TypeError, ValueError) if isinstance(e, k))
        return ("raises", kind.__name__, str(e))


@program
def seed000_conditional_loss(tf):
    # Seed 000, example 2, wrapped in tf.function: one program serves both branches.
    W = tf.Variable([[0.5], [-0.3]])
    b = tf.Variable([0.1])

    @tf.function
    def conditional_loss(x, y, W, b):
        if tf.reduce_mean(x) > 1.0:
            return tf.reduce_mean(tf.square(y - (tf.matmul(x, W) + b)))
        else:
            return tf.reduce_mean(tf.abs(y - (tf.matmul(x, W) + b)))

    out = []
    y = tf.constant([[1.0], [2.0], [0.5]])
    for scale in (3.0, 0.2):
        x = tf.constant([[1.0, 2.0], [0.5, 1.5], [2.0, 0.3]]) * scale
        with tf.GradientTape() as tape:
            loss = conditional_loss(x, y, W, b)
        out.append([loss, *tape.gradient(loss, [W, b])])
    out.append(conditional_loss.experimental_get_tracing_count())
    return out


@program
def if_elif_else(tf):
    @tf.function
    def f(x):
        if x > 1.0:
            y = x * 2.0
        elif x > -1.0:
            y = x * x
        else:
            y = -x
        return y + 1.0

    return [f(tf.constant(v)) for v in (2.0, 0.5, -3.0)] + [f.experimental_get_tracing_count()]


@program
def while_data_dependent(tf):
    @tf.function
    def collatz_steps(n):
        steps = 0
        while n > 1:
            if n % 2 == 0:
                n = n // 2
            else:
                n = 3 * n + 1
            steps += 1
        return steps, n

    return [collatz_steps(tf.constant(v)) for v in (6, 7, 1)] + [
        collatz_steps.experimental_get_tracing_count()
    ]


@program
def for_range_break_continue(tf):
    @tf.function
    def f(n):
        s = 0
        for i in tf.range(n):
            if i > 6:
                break
            if i % 2 == 0:
                continue
            s += i
        return s

    return [f(tf.constant(v)) for v in (0, 4, 20)] + [f.experimental_get_tracing_count()]


@program
def for_over_tensor_rows(tf):
    @tf.function
    def f(x):
        total = tf.zeros([2])
        count = 0
        for row in x:
            if tf.reduce_sum(row) < 0.0:
                continue
            total = total + row * row
            count += 1
        return total, count

    x = tf.constant([[1.0, 2.0], [-3.0, 1.0], [0.5, 0.5]])
    return [f(x), f(x * -1.0), f.experimental_get_tracing_count()]


@program
def break_out_of_tensor_loop(tf):
    @tf.function
    def first_above(x, limit):
        found = tf.constant(-1.0)
        for v in x:
            if v > limit:
                found = v
                break
        return found

    x = tf.constant([0.5, 2.0, 3.5, 1.0])
    return [first_above(x, tf.constant(l)) for l in (1.0, 3.0, 9.0)]


@program
def python_values_unroll(tf):
    @tf.function
    def f(x, flip):
        parts = []
        for k in range(3):  # a Python loop: unrolled, the list holds three tensors
            parts.append(x * float(k))
        out = tf.stack(parts)
        if flip:  # a Python bool: a Python `if`, one trace per value
            out = -out
        return out

    x = tf.constant(1.5)
    return [f(x, True), f(x, False), f(x * 2.0, True), f.experimental_get_tracing_count()]


@program
def early_returns(tf):
    @tf.function
    def f(x):
        if x < 0.0:
            return -x
        if x > 10.0:
            return tf.constant(10.0)
        return x * x

    return [f(tf.constant(v)) for v in (-2.0, 20.0, 3.0)] + [f.experimental_get_tracing_count()]


@program
def boolean_operators(tf):
    @tf.function
    def f(x, y):
        if x > 0.0 and not y > 0.0:
            z = x - y
        elif x > 0.0 or y > 0.0:
            z = x * y
        else:
            z = tf.constant(0.0)
        return z, (x if x > y else y)

    return [f(tf.constant(a), tf.constant(b)) for a, b in ((1.0, -1.0), (1.0, 2.0), (-1.0, -2.0))]


@program
def variables_in_branches_and_loops(tf):
    v = tf.Variable(0.0)

    @tf.function
    def f(x, v):
        for i in tf.range(4):
            if x > tf.cast(i, tf.float32):
                v.assign_add(x)
            else:
                v.assign_sub(1.0)
        return v.read_value()

    return [f(tf.constant(2.0), v), v.read_value(), f(tf.constant(0.5), v), v.read_value()]


@program
def nested_loops(tf):
    @tf.function
    def f(n):
        total = 0
        i = 0
        while i < n:
            for j in tf.range(i):
                total += j * i
            i += 1
        return total

    return [f(tf.constant(v)) for v in (0, 3, 5)] + [f.experimental_get_tracing_count()]


@program
def gradient_through_converted_for(tf):
    @tf.function
    def f(w, xs):
        h = tf.constant(1.0)
        for x in xs:
            if x > 0.0:
                h = tf.tanh(w * h + x)
            else:
                h = h * w
        return h

    w = tf.Variable(0.7)
    xs = tf.constant([0.5, -1.0, 2.0, 0.3])
    with tf.GradientTape() as tape:
        out = f(w, xs)
    return [out, tape.gradient(out, w)]


@program
def gradient_inside_function(tf):
    @tf.function
    def f(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            if tf.reduce_sum(x) > 0.0:
                y = tf.reduce_sum(tf.sin(x) * x)
            else:
                y = tf.reduce_sum(x * x * x)
        return y, tape.gradient(y, x)

    return [f(tf.constant([0.5, 1.5])), f(tf.constant([-0.5, -1.5]))]


@program
def error_one_branch_only(tf):
    @tf.function
    def f(x):
        if x > 0.0:
            y = x
        return y

    @tf.function
    def g(x):
        if x > 0.0:
            pass
        else:
            y = x
        return y

    return [attempt(f, tf.constant(1.0)), attempt(g, tf.constant(1.0))]


@program
def one_branch_but_not_used_after(tf):
    @tf.function
    def f(x):
        if x > 0.0:
            y = x * 2.0
            x = y
        return x

    return [f(tf.constant(1.0)), f(tf.constant(-1.0))]


@program
def error_branch_dtypes_and_none(tf):
    @tf.function
    def dtypes(x):
        if x > 0.0:
            y = tf.constant(1)
        else:
            y = tf.constant(1.0)
        return y

    @tf.function
    def none(x):
        if x > 0.0:
            y = None
        else:
            y = x
        return y

    return [attempt(dtypes, tf.constant(1.0)), attempt(none, tf.constant(1.0))]


@program
def error_loop_shape(tf):
    @tf.function
    def f(n):
        i = 0
        x = tf.constant([1.0])
        while i < n:
            x = tf.concat([x, x], 0)
            i += 1
        return x

    return [attempt(f, tf.constant(3))]


@program
def error_return_in_tensor_loop_and_missing_return(tf):
    @tf.function
    def in_loop(x):
        for v in x:
            if v > 1.0:
                return v
        return x[0] * 0.0 - 1.0

    @tf.function
    def one_return(x):
        if x > 0.0:
            return x

    return [attempt(in_loop, tf.constant([1.0, 2.5])), attempt(one_return, tf.constant(1.0))]


@program
def helpers_are_converted_too(tf):
    # TF's AutoGraph converts the user functions a converted function calls, methods included.
    def clip(x, hi):
        if x > hi:
            return hi
        return x

    def count_halvings(x):
        n = 0
        while x > 1.0:
            x = x / 2.0
            n += 1
        return n

    def summary(y):
        return clip(tf.reduce_sum(y), 5.0), count_halvings(tf.reduce_max(tf.abs(y)))

    class Scaler(tf.Module):
        def scale(self, x):
            if tf.reduce_sum(x) > 0:
                return x * 2.0
            return x * -1.0

    scaler = Scaler()

    @tf.function
    def f(x):
        return summary(scaler.scale(x))

    inputs = ([1.0, 2.0], [-3.0, 0.5], [0.1, 0.1])
    return [f(tf.constant(v)) for v in inputs] + [f.experimental_get_tracing_count()]


@program
def gradient_through_converted_helper(tf):
    def act(x):
        if x > 0:
            return x * x
        return -3.0 * x

    w = tf.Variable(2.0)

    @tf.function
    def g(x):
        with tf.GradientTape() as tape:
            y = act(w * x)
        return y, tape.gradient(y, w)

    return [g(tf.constant(v)) for v in (1.5, -1.5)] + [g.experimental_get_tracing_count()]


@program
def explicit_tf_while_loop_inside_function(tf):
    # tf.while_loop itself (not a converted Python while) on traced values: data-dependent,
    # with a static and with a tensor maximum_iterations, a one-variable loop whose body returns
    # a bare tensor; tapes outside and inside the tf.function differentiate through it.
    w = tf.Variable(1.5)

    @tf.function
    def grow(x):
        return tf.while_loop(lambda i, y: y < 10.0, lambda i, y: (i + 1, y * x + 0.5), [0, x])

    @tf.function
    def bounded(x, m):
        (y,) = tf.while_loop(lambda y: y < 100.0, lambda y: y * x + 0.5, (x,), maximum_iterations=m)
        return y

    @tf.function
    def inside(x):
        with tf.GradientTape() as tape:
            y = tf.while_loop(lambda y: y < 10.0, lambda y: [y * w + x], [x], maximum_iterations=3)
        return y[0], tape.gradient(y[0], w)

    with tf.GradientTape(persistent=True) as tape:
        i, y = grow(w)
        static = bounded(w, 3)
        dynamic = bounded(w, tf.constant(4))
    grads = [tape.gradient(t, w) for t in (y, static, dynamic)]
    return [
        i,
        y,
        static,
        dynamic,
        grads,
        grow(tf.constant(2.0)),
        inside(tf.constant(0.5)),
        [f.experimental_get_tracing_count() for f in (grow, bounded, inside)],
    ]


@program
def tape_inside_function_through_converted_loops(tf):
    # The tape records each converted loop as one op and differentiates through it (TF's tape
    # does so through tf.while_loop): a data-dependent while, a for over rows, a tf.range loop.
    w = tf.Variable(0.9)

    @tf.function
    def grow(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            h = x
            n = 0
            while h < 10.0:
                h = h * w + x
                n += 1
            y = h * h
        return y, n, tape.gradient(y, [x, w])

    @tf.function
    def rows(xs):
        with tf.GradientTape() as tape:
            s = tf.constant(0.0)
            for row in xs:
                if tf.reduce_sum(row) > 4.0:
                    s = s + tf.reduce_sum(row * w)
        return s, tape.gradient(s, w)

    @tf.function
    def power(x, n):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            acc = x
            for _ in tf.range(n):
                acc = acc * x
            out = acc * w
        return out, tape.gradient(out, x), tape.gradient(out, w)

    table = tf.constant([[1.0, 2.0], [3.0, 4.0], [0.5, 0.5]])
    return [
        grow(tf.constant(2.0)),
        grow(tf.constant(3.0)),
        rows(table),
        power(tf.constant(1.5), tf.constant(3)),
        power(tf.constant(0.5), tf.constant(0)),
        [f.experimental_get_tracing_count() for f in (grow, rows, power)],
    ]


@program
def loop_variable_defined_inside(tf):
    @tf.function
    def f(n):
        i = 0
        while i < n:
            y = i * 2
            i += 1
        return y

    return [f(tf.constant(3)), f(tf.constant(5))]


def _is_error(result):
    return isinstance(result, tuple) and len(result) == 3 and isinstance(result[0], str)


def _normalise(result):
    """Errors compare by builtin type and TF's sentence (TF adds "in user code:" frames)."""
    if _is_error(result):
        return result
    if isinstance(result, list | tuple):
        return [_normalise(r) for r in result]
    return to_numpy(result)


def _compare(ours, theirs, path):
    if _is_error(theirs):
        assert _is_error(ours), f"{path}: ours {ours!r}, TensorFlow {theirs!r}"
        assert ours[1] == theirs[1], f"{path}: ours {ours}, TensorFlow {theirs}"
        sentence = re.split(r"(?<=\.) |;|\n", ours[2])[0]
        assert sentence in theirs[2], f"{path}: {sentence!r} not in TF's {theirs[2]!r}"
        return
    if isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), f"{path}: {ours} {theirs}"
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            _compare(a, b, f"{path}[{i}]")
        return
    assert_match(ours, theirs, path)


@pytest.fixture(scope="module")
def tf_results():
    return {name: _normalise(fn(tf_real)) for name, fn in PROGRAMS.items()}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_tf_function_matches_tensorflow(name, tf_results):
    ours = _normalise(PROGRAMS[name](ttf))
    _compare(ours, tf_results[name], name)


class _EagerFunction:
    """tf.function replaced by the plain Python function: control flow on concrete tensors."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def experimental_get_tracing_count(self):
        return _EAGER


_EAGER = "eager: no tracing"


class _EagerModule:
    def __getattr__(self, name):
        return getattr(ttf, name)

    @staticmethod
    def function(fn=None, **kwargs):
        return _EagerFunction(fn) if fn is not None else _EagerFunction


def _compare_eager(ours, theirs, path):
    if isinstance(ours, str) and ours == _EAGER:
        return
    if isinstance(ours, int | float):  # eagerly a Python number (a loop that never ran)
        np.testing.assert_allclose(ours, theirs, err_msg=path)
        return
    if isinstance(theirs, list):
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            _compare_eager(a, b, f"{path}[{i}]")
        return
    assert_match(ours, theirs, path)


@pytest.mark.parametrize("name", sorted(n for n in PROGRAMS if not n.startswith("error_")))
def test_eager_python_matches_tensorflow(name, tf_results):
    # The same programs without tf.function: Python control flow on concrete tensors.
    _compare_eager(_normalise(PROGRAMS[name](_EagerModule())), tf_results[name], name)


def test_tf_function_autograph_false_raises_on_tensor_condition():
    @ttf.function(autograph=False)
    def f(x):
        if x > 0.0:
            return x
        return -x

    with pytest.raises(TypeError, match="symbolic tensor as a Python bool"):
        f(ttf.constant(1.0))

    @tf_real.function(autograph=False)
    def g(x):
        if x > 0.0:
            return x
        return -x

    with pytest.raises(TypeError):
        g(tf_real.constant(1.0))


def test_tf_function_converted_equals_eager():
    # The same Python function, eager (Python control flow on concrete tensors) and compiled.
    def f(x):
        s = ttf.constant(0.0)
        for v in x:
            if v > 0.0:
                s = s + ttf.sin(v)
            else:
                s = s - v
        while s > 1.0:
            s = s / 2.0
        return s

    compiled = ttf.function(f)
    for x in ([0.5, -1.0, 2.0], [3.0, 3.0, 3.0], [-0.1, -0.2, 0.0]):
        x = ttf.constant(x)
        np.testing.assert_allclose(compiled(x).numpy(), f(x).numpy(), rtol=1e-6)
    assert compiled.experimental_get_tracing_count() == 1


def test_tf_function_reverse_mode_through_unbounded_while():
    @ttf.function
    def f(w):
        y = w
        while y < 10.0:
            y = y * w + 0.5
        return y

    w = ttf.Variable(1.5)
    with ttf.GradientTape() as tape:
        out = f(w)
    assert out.numpy() == pytest.approx(float(grow_lax(1.5)))
    np.testing.assert_allclose(tape.gradient(out, w).numpy(), jax.grad(grow)(1.5), rtol=1e-5)


def test_tf_function_bounded_while_differentiates_in_reverse_mode():
    @ttf.function
    def bounded_grow(w):
        y = w
        while y < 10.0:
            ttf.autograph.experimental.set_loop_options(maximum_iterations=25)
            y = y * w + 0.5
        return y

    w = ttf.Variable(1.5)
    with ttf.GradientTape() as tape:
        out = bounded_grow(w)
    w32 = jnp.float32(1.5)
    np.testing.assert_allclose(out.numpy(), grow_lax(w32), rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(out, w).numpy(), jax.grad(grow)(w32), rtol=1e-6)
    y = w09 = np.float32(0.9)  # never reaches 10: the bound stops it after 25 steps
    for _ in range(25):
        y = y * w09 + np.float32(0.5)
    np.testing.assert_allclose(bounded_grow(ttf.constant(0.9)).numpy(), y, rtol=1e-6)


def test_tf_function_print_stays_a_trace_time_print(capsys):
    # TF 2.21's AutoGraph leaves print() as Python's: it runs while tracing, once.
    @ttf.function
    def f(x):
        print("tracing")
        if x > 0.0:
            x = x + 1.0
        return x

    f(ttf.constant(1.0))
    f(ttf.constant(-1.0))
    assert capsys.readouterr().out == "tracing\n"


# --------------------------------------------------------------------------------------------------
# 2. transforms.autograph for JAX
# --------------------------------------------------------------------------------------------------


def branchy(x):
    if x > 1.0:
        y = jnp.sin(x) * x
    elif x > -1.0:
        y = x**3
    else:
        y = -x
    return y


def branchy_lax(x):
    return lax.cond(
        x > 1.0, lambda: jnp.sin(x) * x, lambda: lax.cond(x > -1.0, lambda: x**3, lambda: -x)
    )


def rows(w, xs):
    h = jnp.ones(2)
    for x in xs:
        if jnp.sum(x) > 0.0:
            h = jnp.tanh(w * h + x)
        else:
            continue
        h = h * 0.9
    return jnp.sum(h)


def rows_lax(w, xs):
    def step(h, x):
        h = lax.cond(jnp.sum(x) > 0.0, lambda h: jnp.tanh(w * h + x) * 0.9, lambda h: h, h)
        return h, None

    return jnp.sum(lax.scan(step, jnp.ones(2), xs)[0])


def grow(x):
    y = x
    while y < 10.0:
        y = y * x + 0.5
    return y


def grow_lax(x):
    return lax.while_loop(lambda y: y < 10.0, lambda y: y * x + 0.5, x)


def grow_bounded(x):
    y = x
    while y < 10.0:
        T.autograph.set_loop_options(maximum_iterations=30)
        y = y * x + 0.5
    return y


def grow_bounded_lax(x):
    def step(state, _):
        active, y = state
        active = active & (y < 10.0)
        return (active, lax.cond(active, lambda y: y * x + 0.5, lambda y: y, y)), None

    return lax.scan(step, (True, x), None, length=30)[0][1]


def traced_range(x, n):
    s = 0.0
    for i in range(n):
        if i % 3 == 0:
            continue
        s = s + x * i
        if s > 20.0:
            break
    return s


def early_return(x):
    for k in range(4):  # a Python loop: the return inside it is fine
        if k == 2:
            return x * k
    return x


PAIRS = [
    (branchy, branchy_lax, [(2.0,), (0.5,), (-3.0,)]),
    (rows, rows_lax, [(0.7, np.array([[0.5, 1.0], [-2.0, 0.5], [1.0, 1.0]]))]),
    (grow_bounded, grow_bounded_lax, [(1.5,), (3.0,), (20.0,)]),
]


@pytest.mark.parametrize("fn,ref,args_list", PAIRS, ids=[p[0].__name__ for p in PAIRS])
def test_autograph_matches_lax_values_and_gradients(fn, ref, args_list):
    converted = T.autograph(fn)
    ref_value, ref_grad = jax.jit(ref), jax.jit(jax.grad(ref))
    ref_jvp = jax.jit(lambda args, tangents: jax.jvp(ref, args, tangents))
    our_grad, our_jvp = T.grad(converted), jax.jit(lambda a, t: T.jvp(converted, a, t))
    for args in args_list:
        args = tuple(jnp.asarray(a, jnp.float64) for a in args)
        expected = ref_value(*args)
        np.testing.assert_allclose(fn(*args), expected, rtol=1e-12)  # eager: plain Python
        np.testing.assert_allclose(converted(*args), expected, rtol=1e-12)
        np.testing.assert_allclose(jax.jit(converted)(*args), expected, rtol=1e-12)
        np.testing.assert_allclose(our_grad(*args), ref_grad(*args), rtol=1e-10)
        tangents = (jnp.ones_like(args[0]), *map(jnp.zeros_like, args[1:]))
        np.testing.assert_allclose(our_jvp(args, tangents), ref_jvp(args, tangents), rtol=1e-10)


def test_unbounded_while_forward_mode_and_values():
    converted = T.autograph(grow)
    for x in (1.5, 3.0):
        x = jnp.float64(x)
        np.testing.assert_allclose(jax.jit(converted)(x), grow_lax(x), rtol=1e-12)
        np.testing.assert_allclose(
            T.jvp(converted, (x,), (1.0,)), jax.jvp(grow_lax, (x,), (1.0,)), rtol=1e-10
        )
        np.testing.assert_allclose(T.jacfwd(converted)(x), jax.jacfwd(grow_lax)(x), rtol=1e-10)


def test_reverse_mode_through_unbounded_while():
    # A converted `while` on a traced condition is a lax.while_loop, which our reverse mode
    # differentiates (bounded snapshots): its gradient is the Python loop's, as jax.grad takes it
    # on concrete values, eagerly and under jit.
    converted = T.autograph(grow)
    for x in (1.5, 2.5):
        expected = jax.grad(grow)(x)
        np.testing.assert_allclose(T.grad(converted)(x), expected, rtol=1e-12)
        np.testing.assert_allclose(jax.jit(T.grad(converted))(x), expected, rtol=1e-12)
    assert "while" in str(jax.make_jaxpr(converted)(1.5))


def test_range_with_traced_bound_and_python_bound():
    converted = T.autograph(traced_range)
    for n in (0, 4, 9):
        expected = traced_range(1.5, n)
        np.testing.assert_allclose(jax.jit(converted)(1.5, n), expected, rtol=1e-12)
        np.testing.assert_allclose(converted(1.5, n), expected, rtol=1e-12)
        np.testing.assert_allclose(
            T.jvp(jax.jit(converted), (1.5, n), (1.0, np.zeros((), jax.dtypes.float0)))[1],
            jax.jvp(lambda x, n=n: traced_range(x, n), (1.5,), (1.0,))[1],
            rtol=1e-12,
        )
    jaxpr = str(jax.make_jaxpr(converted, static_argnums=1)(1.5, 4))
    assert "while" not in jaxpr  # a Python bound: the loop unrolls (the traced break is a cond)
    assert "while" in str(jax.make_jaxpr(converted)(1.5, 4))


def test_python_loop_with_return_and_vmap():
    converted = T.autograph(early_return)
    np.testing.assert_allclose(jax.jit(converted)(3.0), 6.0)
    xs = jnp.array([2.0, 0.5, -3.0])
    np.testing.assert_allclose(
        jax.vmap(T.autograph(branchy))(xs), jnp.array([branchy(x) for x in xs]), rtol=1e-12
    )
    np.testing.assert_allclose(
        jax.vmap(T.grad(T.autograph(branchy)))(xs), jax.vmap(jax.grad(branchy_lax))(xs), rtol=1e-12
    )
    starts = jnp.array([1.5, 3.0, 11.0])
    np.testing.assert_allclose(
        jax.vmap(T.autograph(grow))(starts), jax.vmap(grow_lax)(starts), rtol=1e-12
    )


def test_one_trace_serves_every_value():
    traces = []

    @T.autograph
    def f(x):
        traces.append(1)
        return x * 2.0 if x > 0 else x - 1.0

    g = jax.jit(f)
    assert [float(g(v)) for v in (1.0, -1.0, 3.0)] == [2.0, -2.0, 6.0]
    assert len(traces) == 1


def test_print_of_traced_values_runs_each_call(capsys):
    @T.autograph
    def f(x):
        print("x is", x)
        return x + 1.0

    g = jax.jit(f)
    g(1.5)
    g(2.5)
    jax.effects_barrier()
    assert capsys.readouterr().out == "x is 1.5\nx is 2.5\n"


def test_autograph_decorator_forms_and_methods():
    class Model:
        def __init__(self, scale):
            self.scale = scale

        def __call__(self, x):
            if x > 0:
                return x * self.scale
            return -x

    m = Model(3.0)
    converted = T.autograph(m.__call__)
    assert float(jax.jit(converted)(2.0)) == 6.0 and float(jax.jit(converted)(-2.0)) == 2.0

    @T.autograph(convert_print=False)
    def h(x):
        return x if x > 0 else -x

    assert float(jax.jit(h)(-4.0)) == 4.0
    assert T.autograph(h) is h  # converting twice changes nothing


def test_closure_and_global_reads_see_current_values():
    scale = [2.0]

    def f(x):
        if x > 0:
            return x * scale[0]
        return x

    g = jax.jit(T.autograph(f))
    assert float(g(1.0)) == 2.0
    scale[0] = 5.0
    assert float(T.autograph(f)(1.0)) == 5.0


# --------------------------------------------------------------------------------------------------
# 3. Errors
# --------------------------------------------------------------------------------------------------


def test_cannot_convert_lambdas_generators_or_builtins():
    with pytest.raises(ConversionError, match="lambdas are not"):
        T.autograph(lambda x: x)

    def gen(x):
        yield x

    with pytest.raises(ConversionError, match="generators"):
        T.autograph(gen)
    with pytest.raises(ConversionError, match="Python functions and methods"):
        T.autograph(jnp.sin)
    ns: dict = {}
    exec("def f(x):\n    return x\n", ns)
    with pytest.raises(ConversionError, match="source code is not available"):
        T.autograph(ns["f"])


def test_branch_and_loop_errors_name_the_variable():
    def one_branch(x):
        if x > 0:
            y = x
        return y

    with pytest.raises(ValueError, match="'y' must also be initialized in the else branch"):
        jax.jit(T.autograph(one_branch))(1.0)
    assert float(T.autograph(one_branch)(1.0)) == 1.0  # Python values: Python semantics
    with pytest.raises(UnboundLocalError):
        T.autograph(one_branch)(-1.0) + 1.0

    def shapes(x):
        if x > 0:
            y = jnp.ones(2)
        else:
            y = jnp.ones(3)
        return y

    with pytest.raises(ValueError, match=re.escape("'y' has shape (2,) in the main branch")):
        jax.jit(T.autograph(shapes))(1.0)

    def loop_shape(x):
        while jnp.sum(x) < 10:
            x = jnp.concatenate([x, x])
        return x

    with pytest.raises(ValueError, match=re.escape("'x' has shape (1,) before the loop")):
        jax.jit(T.autograph(loop_shape))(jnp.ones(1))

    def vector_condition(x):
        if x > 0:
            x = -x
        return x

    with pytest.raises(ValueError, match="shape \\(2,\\).*ambiguous"):
        jax.jit(T.autograph(vector_condition))(jnp.ones(2))

    def return_in_traced_loop(xs):
        for x in xs:
            if x > 0:
                return x
        return xs[0]

    with pytest.raises(NotImplementedError, match="return statement cannot be placed"):
        jax.jit(T.autograph(return_in_traced_loop))(jnp.ones(2))


def _sign_of(x):
    if x > 0:
        return 1.0
    return -1.0


def _scaled(x):
    return _sign_of(x) * jnp.sqrt(jnp.abs(x))  # a helper calling a helper


def test_called_functions_are_converted_recursively():
    @T.autograph
    def f(x):
        return _scaled(x) + 1.0

    for x in (4.0, -9.0):
        expected = jnp.sign(x) * jnp.sqrt(jnp.abs(x)) + 1.0
        assert float(jax.jit(f)(x)) == pytest.approx(float(expected))
        assert float(jax.jit(T.grad(f))(x)) == pytest.approx(0.5 / np.sqrt(abs(x)))
    assert np.allclose(jax.vmap(f)(jnp.array([4.0, -9.0])), [3.0, -2.0])


def test_library_functions_lambdas_and_objects_are_called_as_they_are():
    from transforms.autograph import calls

    assert calls.callee(jnp.sin, True) is jnp.sin  # a library's function
    assert calls.callee(np.mean, True) is np.mean
    assert calls.callee(T.grad, True) is T.grad  # this package's
    lam = lambda x: x  # noqa: E731 - lambdas cannot be converted: run as they are
    assert calls.callee(lam, True) is lam
    assert calls.callee(_sign_of, True).__autograph_converted__

    class Layer:
        def __call__(self, x):
            return _sign_of(x)

    layer = Layer()
    assert calls.callee(layer, True) is layer  # a callable object (a Keras layer): as it is
    method = calls.callee(Layer().__call__, True)  # a bound method of user code: converted
    assert method.__func__.__autograph_converted__

    namespace = {"jnp": jnp}
    exec("def no_source(x):\n    return x + 1\n", namespace)  # noqa: S102
    assert calls.callee(namespace["no_source"], True) is namespace["no_source"]


def _count_leaves(tree):
    # recursive by its global name: the converted function must still find the global
    if isinstance(tree, list | tuple):
        return sum(_count_leaves(t) for t in tree)
    return 1


def test_recursive_function_called_from_converted_code():
    @T.autograph
    def f(x):
        n = _count_leaves([x, [x, (x,)]])
        return x * n if x > 0 else -x

    assert float(jax.jit(f)(2.0)) == 6.0 and float(jax.jit(f)(-2.0)) == 2.0
    assert T.autograph(_count_leaves)([1, [2, 3]]) == 3
