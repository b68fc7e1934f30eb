"""A differential fuzzer: random programs, our derivatives against JAX's, in float64.

Hypothesis draws a program as a random expression DAG over a pool of values of one shape: each
step applies an element-wise, reduction-and-broadcast, structural (slice, concatenate, pad,
reverse, transpose, reshape), `dot` or selection op to earlier values (sharing is allowed, so
fan-out and repeated operands occur), or one of those inside `jax.vmap`, `custom_jvp` functions
(`jax.nn.relu`, `jnp.logaddexp`) under `vmap`, and NumPy constants (closed over, or fed to a
vmapped `custom_jvp` function), and `while` loops whose trip count depends on the values, under
`vmap` each row stopping at its own step (JAX's reverse mode refuses a while loop, so its side
runs the same function as a fixed-length loop, `_REFERENCE`). Domains are kept safe by
construction (`log(1 + x²)`, `a / (1 + b²)`, ...), so every derivative is finite. Each program
is checked in forward mode, reverse mode, forward-over-reverse and reverse-over-reverse; the
gradient also with the first input a NumPy array that is not differentiated. Every output must
have JAX's shape, dtype and weak type as well as its value; rank-0 programs are also run on
Python floats (weak types).

The CI budget is small; raise it with `TRANSFORMS_FUZZ_EXAMPLES=500 pytest tests/test_fuzz.py`.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
from helpers import type_of
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import transforms as T

FUZZ_EXAMPLES = int(os.environ.get("TRANSFORMS_FUZZ_EXAMPLES", "6"))
RTOL, ATOL = 1e-7, 1e-9

SHAPES = [(), (3,), (2, 3), (3, 3)]


def _rank_ge(k):
    return lambda shape: len(shape) >= k


def _always(shape):
    return True


def _roll_index(n):
    return jnp.asarray(np.roll(np.arange(n), 1))


def _branch1(a, b):
    return jnp.sin(a) * b


def _branch2(a, b):
    return a - jnp.cos(b)


def _scan_body(carry, x):
    return 0.9 * carry + jnp.sin(x), carry * x + x


def _numpy_like(x, scale=1.0):
    """A NumPy constant of `x`'s shape (a closed-over array, as user code has them)."""
    return scale * np.cos(np.arange(1.0, 1.0 + np.size(x))).reshape(np.shape(x))


def _rows(fn):
    """`fn` mapped over the leading axis with `jax.vmap` (elementwise on a rank-0 value)."""

    def mapped(*xs):
        return jax.vmap(fn)(*xs) if np.ndim(xs[0]) else fn(*xs)

    return mapped


def _until(step, loop):
    """Per row (under vmap), `step` repeated while the row's sum is below 1.5, at most 4 times.

    The trip count depends on the values: under vmap the loop's condition is batched, and each
    row stops at its own step. `loop` is how it is written; `_REFERENCE` has the same function
    as a fixed 4-step loop that leaves finished rows as they are, which JAX's reverse mode takes.
    """

    def one(r):
        if loop == "reference":
            keep = lambda c: jnp.where(jnp.sum(c) < 1.5, step(c), c)  # noqa: E731
            return jax.lax.fori_loop(0, 4, lambda i, c: keep(c), r)
        cond = lambda s: (s[0] < 4) & (jnp.sum(s[1]) < 1.5)  # noqa: E731
        body = lambda s: (s[0] + 1, step(s[1]))  # noqa: E731
        if loop == "bounded":
            return T.while_loop(cond, body, (0, r), max_steps=4)[1]
        return jax.lax.while_loop(cond, body, (0, r))[1]

    return _rows(one)


def _until_step(c):
    return jnp.sin(c) * 0.9 + 0.4


# name -> (arity, applicable(shape), fn). Every fn maps values of shape S to a value of shape S.
OPS = {
    # element-wise, safe domains
    "sin": (1, _always, jnp.sin),
    "cos": (1, _always, jnp.cos),
    "tanh": (1, _always, jnp.tanh),
    "exp_tanh": (1, _always, lambda x: jnp.exp(jnp.tanh(x))),
    "log_1p_sq": (1, _always, lambda x: jnp.log(1.0 + x * x)),
    "log1p_sq": (1, _always, lambda x: jnp.log1p(x * x)),
    "sqrt_1p_sq": (1, _always, lambda x: jnp.sqrt(1.0 + x * x)),
    "rsqrt_1p_sq": (1, _always, lambda x: jax.lax.rsqrt(1.0 + x * x)),
    "square": (1, _always, jnp.square),
    "cube": (1, _always, lambda x: 0.3 * x**3),
    "neg": (1, _always, jnp.negative),
    "sigmoid": (1, _always, jax.nn.sigmoid),
    "atan": (1, _always, jnp.arctan),
    "asinh": (1, _always, jnp.arcsinh),
    "expm1_tanh": (1, _always, lambda x: jnp.expm1(jnp.tanh(x))),
    "sinh_tanh": (1, _always, lambda x: jnp.sinh(jnp.tanh(x))),
    "erf": (1, _always, jax.lax.erf),
    "abs": (1, _always, jnp.abs),
    "clip": (1, _always, lambda x: jnp.clip(x, -0.7, 0.7)),
    "softplus": (1, _always, jax.nn.softplus),
    # reductions, broadcast back
    "center": (1, _rank_ge(1), lambda x: x - jnp.mean(x, axis=-1, keepdims=True)),
    "times_max": (1, _rank_ge(1), lambda x: x * jnp.max(x, axis=-1, keepdims=True)),
    "times_min0": (1, _rank_ge(2), lambda x: x * jnp.min(x, axis=0, keepdims=True)),
    "times_total": (1, _always, lambda x: x * (0.1 * jnp.sum(x))),
    "softmax": (1, _rank_ge(1), lambda x: jax.nn.softmax(x, axis=-1)),
    "logsumexp": (1, _rank_ge(1), lambda x: x - jax.nn.logsumexp(x, axis=-1, keepdims=True)),
    # structural
    "flip": (1, _rank_ge(1), lambda x: jnp.flip(x, axis=-1)),
    "roll": (1, _rank_ge(1), lambda x: jnp.concatenate([x[..., 1:], x[..., :1]], axis=-1)),
    "shift_pad": (
        1,
        _rank_ge(1),
        lambda x: jnp.pad(x[..., 1:], [(0, 0)] * (x.ndim - 1) + [(0, 1)]),
    ),
    "transpose": (1, lambda s: len(s) == 2 and s[0] == s[1], lambda x: x.T),
    "reshape": (1, _rank_ge(2), lambda x: x.reshape(-1)[::-1].reshape(x.shape)),
    "stride": (
        1,
        lambda s: len(s) >= 1 and s[-1] >= 3,
        lambda x: x.at[..., ::2].multiply(x[..., ::2]),
    ),
    "broadcast_row": (1, _rank_ge(2), lambda x: x * x[:1]),
    # indexing and cumulative ops
    "gather_roll": (1, _rank_ge(1), lambda x: x[..., _roll_index(x.shape[-1])]),
    "scatter_add": (2, _rank_ge(1), lambda a, b: a.at[..., 0].add(b[..., -1])),
    "cumsum": (1, _rank_ge(1), lambda x: jnp.cumsum(x, axis=-1)),
    "cumprod": (1, _rank_ge(1), lambda x: jnp.cumprod(0.8 + 0.3 * jnp.tanh(x), axis=-1)),
    "times_prod": (1, _rank_ge(1), lambda x: x * jnp.prod(1.0 + 0.2 * x, axis=-1, keepdims=True)),
    "sort": (1, _rank_ge(1), lambda x: jnp.sort(x, axis=-1)),
    # control flow
    "cond": (2, _always, lambda a, b: jax.lax.cond(jnp.sum(a) > 0, _branch1, _branch2, a, b)),
    "scan": (1, _rank_ge(1), lambda x: jax.lax.scan(_scan_body, jnp.zeros_like(x[0]), x)[1]),
    "fori": (1, _always, lambda x: jax.lax.fori_loop(0, 3, lambda i, c: jnp.sin(c) + 0.5 * c, x)),
    "while_until": (1, _always, _until(_until_step, "while")),
    "bounded_while_until": (1, _always, _until(_until_step, "bounded")),
    # vmap inside the function, custom_jvp functions under vmap, NumPy constants
    "vmap_row_norm": (1, _rank_ge(1), _rows(lambda r: r * jnp.tanh(jnp.sum(r * r)))),
    "vmap_relu": (1, _always, _rows(jax.nn.relu)),
    "vmap_softplus_mix": (2, _always, _rows(lambda a, b: jax.nn.softplus(a) * jnp.sin(b))),
    "vmap_logaddexp": (2, _always, _rows(jnp.logaddexp)),
    "vmap_relu_numpy": (1, _always, lambda x: x * _rows(jax.nn.relu)(_numpy_like(x))),
    "vmap_logaddexp_numpy": (1, _always, lambda x: _rows(jnp.logaddexp)(_numpy_like(x), x)),
    "numpy_mul": (1, _always, lambda x: x * _numpy_like(x, 0.7) + _numpy_like(x, 0.1)),
    "vmap_convolve": (
        2,
        lambda s: len(s) == 2,
        lambda a, b: jax.vmap(lambda u, v: jnp.convolve(u, v, mode="same"))(a, 0.5 * b),
    ),
    # dot
    "dot_self": (1, _rank_ge(1), lambda x: 0.2 * jnp.tensordot(x, x, x.ndim) * x),
    # binary
    "add": (2, _always, jnp.add),
    "sub": (2, _always, jnp.subtract),
    "mul": (2, _always, jnp.multiply),
    "div": (2, _always, lambda a, b: a / (1.0 + b * b)),
    "max": (2, _always, jnp.maximum),
    "min": (2, _always, jnp.minimum),
    "pow": (2, _always, lambda a, b: (1.0 + a * a) ** jnp.tanh(b)),
    "atan2": (2, _always, lambda a, b: jnp.arctan2(a, 2.0 + jnp.tanh(b))),
    "where": (2, _always, lambda a, b: jnp.where(a > b, a * b, a + b)),
    "scalar_bcast": (2, _always, lambda a, b: a * (0.3 * jnp.mean(b))),
    "matmul": (2, lambda s: len(s) == 2, lambda a, b: 0.3 * (a @ b.T) @ a),
    "vecdot": (2, lambda s: len(s) == 1, lambda a, b: 0.3 * jnp.dot(a, b) * a),
    "concat_halves": (
        2,
        _rank_ge(1),
        lambda a, b: jnp.concatenate([a[..., :1], b[..., 1:]], axis=-1),
    ),
}


@st.composite
def programs(draw):
    shape = draw(st.sampled_from(SHAPES))
    n_inputs = draw(st.integers(1, 2))
    names = sorted(n for n, (_, ok, _) in OPS.items() if ok(shape))
    steps = []
    for i in range(draw(st.integers(1, 6))):
        name = draw(st.sampled_from(names))
        arity = OPS[name][0]
        pool = n_inputs + i
        # Favour recent values so programs are deep, not only wide.
        args = tuple(draw(st.integers(max(0, pool - 3), pool - 1)) for _ in range(arity))
        steps.append((name, args))
    n_outs = draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2**31 - 1))
    python_floats = shape == () and draw(st.booleans())
    return shape, n_inputs, steps, n_outs, seed, python_floats


# Ops whose derivative JAX's reverse mode does not take as written: the same function another way.
_REFERENCE = {
    "while_until": _until(_until_step, "reference"),
    "bounded_while_until": _until(_until_step, "reference"),
}


def build(n_inputs, steps, n_outs, reference=False):
    """The program as a Python function of `n_inputs` arrays returning `n_outs` arrays.

    With `reference`, ops JAX cannot differentiate in reverse mode as written take their
    `_REFERENCE` form: the oracle's program.
    """

    def f(*xs):
        pool = list(xs)
        for name, args in steps:
            fn = _REFERENCE.get(name, OPS[name][2]) if reference else OPS[name][2]
            pool.append(fn(*(pool[a] for a in args)))
        return tuple(pool[-n_outs:]) if n_outs > 1 else pool[-1]

    return f


def describe(shape, n_inputs, steps, n_outs):
    lines = [f"inputs v0..v{n_inputs - 1}: f64{list(shape)}"]
    for i, (name, args) in enumerate(steps):
        lines.append(f"v{n_inputs + i} = {name}({', '.join(f'v{a}' for a in args)})")
    lines.append(f"outputs: last {n_outs}")
    return "\n".join(lines)


def close(actual, expected, what):
    """Same structure, and every leaf of JAX's shape, dtype, weak type and (closely) value."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected), what
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert type_of(a) == type_of(e), f"{what}: type {type_of(a)}, JAX gives {type_of(e)}"
        np.testing.assert_allclose(a, e, rtol=RTOL, atol=ATOL, err_msg=what)


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
@given(programs())
def test_random_programs_match_jax(program):
    shape, n_inputs, steps, n_outs, seed, python_floats = program
    note(describe(shape, n_inputs, steps, n_outs) + ("\n(Python floats)" if python_floats else ""))
    f = build(n_inputs, steps, n_outs)
    f_ref = build(n_inputs, steps, n_outs, reference=True)  # what JAX differentiates
    rng = np.random.default_rng(seed)
    xs = tuple(jnp.asarray(rng.uniform(-1.5, 1.5, shape)) for _ in range(n_inputs))
    ts = tuple(jnp.asarray(rng.normal(size=shape)) for _ in range(n_inputs))
    if python_floats:
        xs, ts = tuple(float(x) for x in xs), tuple(float(t) for t in ts)
    ys = f(*xs)
    cts = jax.tree.map(lambda y: jnp.asarray(rng.normal(size=np.shape(y))), ys)

    # forward mode
    close(T.jvp(f, xs, ts), jax.jvp(f_ref, xs, ts), "jvp")
    # reverse mode
    y, pullback = T.vjp(f, *xs)
    y_ref, pullback_ref = jax.vjp(f_ref, *xs)
    close(y, y_ref, "vjp primal")
    close(pullback(cts), pullback_ref(cts), "vjp")

    # second order, on a scalar loss
    def scalar_loss(fun):
        def loss(*xs):
            ys = jax.tree.leaves(fun(*xs))
            return sum(jnp.vdot(c, y) for c, y in zip(jax.tree.leaves(cts), ys))

        return loss

    loss, loss_ref = scalar_loss(f), scalar_loss(f_ref)

    argnums = tuple(range(n_inputs))
    g, g_ref = T.grad(loss, argnums)(*xs), jax.grad(loss_ref, argnums)(*xs)
    close(g, g_ref, "grad")
    hvp_ref = jax.jvp(jax.grad(loss_ref, argnums), xs, ts)[1]
    close(T.jvp(T.grad(loss, argnums), xs, ts)[1], hvp_ref, "forward-over-reverse")

    def grad_dot_t(grad, loss):
        return lambda *xs: sum(jnp.vdot(gi, ti) for gi, ti in zip(grad(loss, argnums)(*xs), ts))

    # against JAX's reverse-over-reverse: the same values as hvp_ref, and its types
    close(
        T.grad(grad_dot_t(T.grad, loss), argnums)(*xs),
        jax.grad(grad_dot_t(jax.grad, loss_ref), argnums)(*xs),
        "reverse-over-reverse",
    )

    # the first input as a NumPy array, not differentiated
    if n_inputs == 2:
        np_xs = (np.asarray(xs[0]), xs[1])
        close(T.grad(loss, 1)(*np_xs), jax.grad(loss_ref, 1)(*np_xs), "grad, NumPy argument")


def test_fuzzer_can_fail():
    """The oracle comparison catches a wrong rule: a sabotaged sin rule must be reported."""
    from transforms.jvp import jvp_rules

    sin_p = jax.make_jaxpr(jnp.sin)(1.0).eqns[0].primitive
    good = jvp_rules[sin_p]

    def wrong(primals, tangents, **params):
        out, out_dot = good(primals, tangents, **params)
        return out, jax.tree.map(lambda t: 1.001 * t, out_dot)

    jvp_rules[sin_p] = wrong
    T.clear_caches()
    try:
        f = build(1, [("sin", (0,))], 1)
        x = (jnp.asarray([0.3, -0.2, 1.0]),)
        try:
            close(T.jvp(f, x, x), jax.jvp(f, x, x), "jvp")
        except AssertionError:
            pass
        else:
            raise AssertionError("a 0.1% error in a rule went unnoticed")
    finally:
        jvp_rules[sin_p] = good
        T.clear_caches()
