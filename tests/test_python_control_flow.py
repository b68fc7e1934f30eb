"""Python control flow on argument values, outside jit: our transforms take the branch, as JAX's do.

Differential against JAX's autodiff for each construct (`if`/`elif`, `while`, `for` over
`range(int(x))`, `try`/`except`, `int`, `float`, `.item()`, `bool`), each transform, nesting
orders, `jax.custom_jvp` / `jax.custom_vjp` with control flow in the function and its rules;
the cache-reuse property (a path taken again is not re-differentiated; a changed decision is);
and JAX's error under `jax.jit` / `jax.vmap`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_tree_allclose

import transforms as T
from transforms import engine

# --- the constructs: scalar functions whose path depends on the argument's value ----------------


def f_if(x):
    if x > 1.0:
        return jnp.sin(x) * x
    elif x > 0.0:
        return x**3
    else:
        return -jnp.exp(x)


def f_while(x):
    y, n = x, 0
    while y < 4.0 and n < 20:  # trip count depends on x
        y = y * 1.5 + jnp.sin(x)
        n += 1
    return y * x


def f_for_int(x):
    y = x
    for _ in range(int(x)):  # int(x): the number of iterations
        y = jnp.sin(y) * x
    return y


def f_try(x):
    try:
        if x < 0:
            raise ValueError("negative")
        return jnp.log(x) * x
    except ValueError:
        return x**2


def f_item(x):
    return x * x.item() + jnp.cos(x)


def f_float(x):
    return x * float(x) + jnp.cos(x)


def f_bool(x):
    return jnp.sin(x) if bool(x > 0.5) else x**2


# jax.grad raises on float(x) of a differentiated value (while it allows x.item(), the same value);
# we answer both, so float's oracle is the .item() spelling.
CONSTRUCTS = {
    "if_elif": (f_if, f_if, (1.7, 0.6, -0.8)),
    "while": (f_while, f_while, (1.2, 0.3)),
    "for_int": (f_for_int, f_for_int, (2.4, 1.3)),
    "try_except": (f_try, f_try, (1.4, -0.7)),
    "item": (f_item, f_item, (1.3, -0.4)),
    "float": (f_float, f_item, (1.3, -0.4)),
    "bool": (f_bool, f_bool, (1.1, 0.2)),
}


def _transforms(ours, theirs, x):
    """Pairs (our result, JAX's result) of every transform of a scalar function at x."""
    t = 0.7
    _, lin = T.linearize(ours, x)
    _, lin_jax = jax.linearize(theirs, x)
    _, pull = T.vjp(ours, x)
    _, pull_jax = jax.vjp(theirs, x)
    return {
        "grad": (T.grad(ours)(x), jax.grad(theirs)(x)),
        "value_and_grad": (T.value_and_grad(ours)(x), jax.value_and_grad(theirs)(x)),
        "vjp": ((T.vjp(ours, x)[0], pull(t)), (jax.vjp(theirs, x)[0], pull_jax(t))),
        "jvp": (T.jvp(ours, (x,), (t,)), jax.jvp(theirs, (x,), (t,))),
        "linearize": (lin(t), lin_jax(t)),
        "jacfwd": (T.jacfwd(ours)(x), jax.jacfwd(theirs)(x)),
        "jacrev": (T.jacrev(ours)(x), jax.jacrev(theirs)(x)),
        "hessian": (T.hessian(ours)(x), jax.hessian(theirs)(x)),
        "hvp": (T.hvp(ours, (x,), (t,)), jax.jvp(jax.grad(theirs), (x,), (t,))[1]),
    }


@pytest.mark.parametrize("name", sorted(CONSTRUCTS))
def test_construct_every_transform(name):
    ours, theirs, points = CONSTRUCTS[name]
    for x in points:  # points on different paths
        for api, (got, want) in _transforms(ours, theirs, x).items():
            assert_tree_allclose(got, want, what=f"{name} {api} at {x}")


def _vec_f(x):
    # a branch on a reduction of a vector argument, and a loop whose length depends on it
    y = x * 1.0
    if jnp.sum(x) > 0:
        y = jnp.sin(x) * x
    for _ in range(int(jnp.max(jnp.abs(x)) * 2)):
        y = y + jnp.tanh(y) * x[0]
    return y


@pytest.mark.parametrize("x", [np.array([0.4, 0.9, -0.2]), np.array([-0.9, 0.3, -0.6])])
def test_vector_jacobians_and_pytrees(x):
    assert_tree_allclose(T.jacfwd(_vec_f)(x), jax.jacfwd(_vec_f)(x), what="jacfwd")
    assert_tree_allclose(T.jacrev(_vec_f)(x), jax.jacrev(_vec_f)(x), what="jacrev")

    def loss(p, x):
        h = p["w"] * x
        if jnp.mean(h) > 0.0:
            h = jnp.tanh(h) + p["b"]
        return jnp.sum(h**2), {"mean": jnp.mean(h)}

    p = {"w": np.array([0.5, -0.3, 0.8]), "b": np.float64(0.1)}
    got = T.value_and_grad(loss, has_aux=True)(p, x)
    want = jax.value_and_grad(loss, has_aux=True)(p, x)
    assert_tree_allclose(got, want, what="value_and_grad with pytree, has_aux")
    assert_tree_allclose(
        T.grad(loss, argnums=(0, 1), has_aux=True)(p, x),
        jax.grad(loss, argnums=(0, 1), has_aux=True)(p, x),
        what="grad argnums=(0, 1)",
    )


# --- nesting ---------------------------------------------------------------------------------


def _g(x):
    if x > 0.5:
        y = jnp.sin(x) * x**2
    else:
        y = jnp.cos(x) * x
    i = 0
    while y < 2.0 and i < 5:
        y = y + x * y
        i += 1
    return y


NESTINGS = {
    "grad(grad)": (lambda: T.grad(T.grad(_g)), lambda: jax.grad(jax.grad(_g))),
    "grad(grad(grad))": (
        lambda: T.grad(T.grad(T.grad(_g))),
        lambda: jax.grad(jax.grad(jax.grad(_g))),
    ),
    "jacfwd(grad)": (lambda: T.jacfwd(T.grad(_g)), lambda: jax.jacfwd(jax.grad(_g))),
    "jacrev(grad)": (lambda: T.jacrev(T.grad(_g)), lambda: jax.jacrev(jax.grad(_g))),
    "grad(jacfwd)": (lambda: T.grad(T.jacfwd(_g)), lambda: jax.grad(jax.jacfwd(_g))),
    "hessian(grad)": (lambda: T.hessian(T.grad(_g)), lambda: jax.hessian(jax.grad(_g))),
    "jvp-of-grad": (
        lambda: lambda x: T.jvp(T.grad(_g), (x,), (0.3,))[1],
        lambda: lambda x: jax.jvp(jax.grad(_g), (x,), (0.3,))[1],
    ),
    "grad-of-vjp": (
        lambda: T.grad(lambda x: T.vjp(_g, x)[1](x)[0]),
        lambda: jax.grad(lambda x: jax.vjp(_g, x)[1](x)[0]),
    ),
    # JAX's transforms around ours and ours around JAX's: a JVP tracer has a concrete primal
    "jax.grad(T.grad)": (lambda: jax.grad(T.grad(_g)), lambda: jax.grad(jax.grad(_g))),
    "T.grad(jax.grad)": (lambda: T.grad(jax.grad(_g)), lambda: jax.grad(jax.grad(_g))),
}


@pytest.mark.parametrize("name", sorted(NESTINGS))
def test_nesting(name):
    ours, theirs = NESTINGS[name]
    for x in (0.9, 0.2, -0.4):
        assert_tree_allclose(ours()(x), theirs()(x), what=f"{name} at {x}")


def test_branch_on_outer_value_inside_inner_transform():
    # the inner grad's function branches on a value closed over from the outer one
    def outer(a):
        def inner(x):
            return jnp.sin(x * a) if a * x > 0.3 else x * a**2

        return inner(a) * T.grad(inner)(a + 0.1)

    def outer_jax(a):
        def inner(x):
            return jnp.sin(x * a) if a * x > 0.3 else x * a**2

        return inner(a) * jax.grad(inner)(a + 0.1)

    for a in (0.8, 0.1):
        assert_tree_allclose(T.grad(outer)(a), jax.grad(outer_jax)(a), what=f"at {a}")


# --- custom_jvp / custom_vjp with control flow in the function and in the rules -----------------


@jax.custom_jvp
def _cj(x):
    if x > 0:
        return jnp.sin(x) * x
    return x**3


@_cj.defjvp
def _cj_jvp(primals, tangents):
    (x,), (x_dot,) = primals, tangents
    y = _cj(x)
    if x > 0:  # a rule that differs from the true derivative, so that using it shows
        return y, 2.0 * jnp.cos(x) * x_dot
    n = int(x > -1.0) + 2
    return y, n * x * x_dot


def _uses_cj(x):
    y = _cj(x) * x
    return y if y > 0.1 else jnp.sin(y)


@pytest.mark.parametrize("x", [1.2, -0.5, -1.5])
def test_custom_jvp_with_python_control_flow(x):
    for api, (got, want) in _transforms(_uses_cj, _uses_cj, x).items():
        assert_tree_allclose(got, want, what=f"custom_jvp {api} at {x}")
    assert_tree_allclose(
        T.grad(T.grad(_uses_cj))(x), jax.grad(jax.grad(_uses_cj))(x), what="grad(grad)"
    )


@jax.custom_vjp
def _cv(x):
    return jnp.sin(x) if x > 0 else x**2


def _cv_fwd(x):
    y = _cv(x)
    if y > 0.5:  # control flow in fwd, on a value it computes
        return y, (x, jnp.cos(x))
    return y, (x, 2.0 * x)


def _cv_bwd(res, ct):
    x, d = res
    if x > 0:  # control flow in bwd, on a residual
        return (3.0 * d * ct,)
    return (d * ct + float(x < -1.0) * ct,)


_cv.defvjp(_cv_fwd, _cv_bwd)


def _uses_cv(x):
    return _cv(x) * x + (x if x > 0.5 else 0.0)


@pytest.mark.parametrize("x", [1.3, 0.3, -0.5, -1.5])
def test_custom_vjp_with_python_control_flow(x):
    assert_tree_allclose(T.grad(_uses_cv)(x), jax.grad(_uses_cv)(x), what="grad")
    assert_tree_allclose(T.value_and_grad(_uses_cv)(x), jax.value_and_grad(_uses_cv)(x))
    assert_tree_allclose(T.vjp(_uses_cv, x)[1](0.7), jax.vjp(_uses_cv, x)[1](0.7), what="vjp")
    assert_tree_allclose(T.jacrev(_uses_cv)(x), jax.jacrev(_uses_cv)(x), what="jacrev")
    v = np.array([x, -x, 0.5 * x])
    vec = lambda v: jnp.sum(jnp.stack([_cv(v[0]), _cv(v[1]) * v[2]]))  # noqa: E731
    assert_tree_allclose(T.grad(vec)(v), jax.grad(vec)(v), what="grad, vector")


# --- the derivative program is reused while the path is the same ----------------------------------


@pytest.fixture
def count_differentiations(monkeypatch):
    """Counts how often the engine builds a JVP (every derivative program starts with one)."""
    calls = []
    original = engine.jvp_eval

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "jvp_eval", counting)
    engine.clear_caches()
    return calls


def test_same_path_reuses_program_changed_decision_retraces(count_differentiations):
    calls = count_differentiations
    runs = []

    def step_loss(w, x):
        runs.append(1)
        h = jnp.tanh(w * x)
        if jnp.mean(h) > 0.0:  # a Python `if` on a value, as in a training loop
            return jnp.sum(h**2)
        return jnp.sum(jnp.abs(h))

    grad_fn = T.grad(step_loss)
    x = np.array([0.5, 1.0, 1.5])
    w = np.float64(0.3)
    for step in range(6):  # same branch every step: one differentiation in all
        g = grad_fn(w, x)
        assert_tree_allclose(g, jax.grad(step_loss)(w, x), what=f"step {step}")
        w = w - 0.01 * g
    assert len(calls) == 1
    n_runs = len(runs)
    # the other branch: a new decision, a new program (once), then reused
    for w in (np.float64(-0.3), np.float64(-0.4)):
        assert_tree_allclose(grad_fn(w, x), jax.grad(step_loss)(w, x))
    assert len(calls) == 2
    # each call traces the function at most twice (the abstract attempt, then the path)
    assert len(runs) - n_runs <= 2 * 2 + 2  # + JAX's own oracle calls above
    # back to the first branch: its program is still cached
    grad_fn(np.float64(0.2), x)
    assert len(calls) == 2


def test_branching_loss_over_a_changing_python_float_is_differentiated_once(
    count_differentiations,
):
    # A schedule value closed over by a loss with a Python `if`: the path's program takes the
    # float as an input (as for functions without a branch), so every step reuses it, each with
    # its own value.
    calls = count_differentiations
    x = np.array([0.5, 1.0, 1.5])
    for step in range(5):
        decay = 0.9**step

        def loss(w):
            h = jnp.tanh(w * x) * decay  # noqa: B023 - this step's value
            if jnp.mean(h) > 0.0:
                return jnp.sum(h**2) + decay  # noqa: B023
            return jnp.sum(jnp.abs(h))

        assert_tree_allclose(T.grad(loss)(0.3), jax.grad(loss)(0.3), what=f"step {step}")
    assert len(calls) == 1


def test_decisions_are_part_of_the_key():
    from transforms.concrete import trace_concrete
    from transforms.tracing import closed_key, shape_dtype

    def f(x):  # both branches trace to the same jaxpr structure
        return x * 2.0 if x > 0 else x * 2.0

    _, tree = jax.tree_util.tree_flatten((1.0,))
    pos, _ = trace_concrete(f, tree, [1.0], [shape_dtype(1.0)])
    pos2, _ = trace_concrete(f, tree, [3.0], [shape_dtype(3.0)])
    neg, _ = trace_concrete(f, tree, [-1.0], [shape_dtype(-1.0)])
    assert closed_key(pos) == closed_key(pos2)
    assert closed_key(pos) != closed_key(neg)
    assert closed_key(pos)[:2] == closed_key(neg)[:2]  # the same structure otherwise


def test_while_loop_and_retrace_are_bounded():
    # a Python loop whose trip count grows with x: each trip count is its own path
    def f(x):
        y, n = x, 0
        while y < 100.0:
            y = y * 2.0
            n += 1
        return y + n

    for x in (60.0, 30.0, 3.0, 0.5):
        assert_tree_allclose(T.grad(f)(x), jax.grad(f)(x), what=f"at {x}")


# --- under jit and vmap the error is JAX's --------------------------------------------------------


def _branch(x):
    return jnp.sin(x) if x > 0 else -x


def _int_use(x):
    return x * int(x)


@pytest.mark.parametrize(
    "fun, kind",
    [
        (_branch, jax.errors.TracerBoolConversionError),
        (_int_use, jax.errors.ConcretizationTypeError),
    ],
)
@pytest.mark.parametrize("outer", ["jit", "vmap"])
@pytest.mark.parametrize("api", ["grad", "jvp", "vjp", "hessian"])
def test_under_jit_and_vmap_the_error_is_jaxs(fun, kind, outer, api):
    ours = {
        "grad": T.grad(fun),
        "jvp": lambda x: T.jvp(fun, (x,), (x,))[1],
        "vjp": lambda x: T.vjp(fun, x)[1](x)[0],
        "hessian": T.hessian(fun),
    }[api]
    theirs = {
        "grad": jax.grad(fun),
        "jvp": lambda x: jax.jvp(fun, (x,), (x,))[1],
        "vjp": lambda x: jax.vjp(fun, x)[1](x)[0],
        "hessian": jax.hessian(fun),
    }[api]
    wrap = jax.jit if outer == "jit" else jax.vmap
    arg = 1.5 if outer == "jit" else jnp.array([1.5, -0.5])
    with pytest.raises(kind) as jax_info:
        wrap(theirs)(arg)
    with pytest.raises(kind) as info:
        wrap(ours)(arg)
    assert isinstance(info.value, T.TracedControlFlowError)
    jax_sentence = str(jax_info.value).split("\n")[0].split(":")[0]
    assert str(info.value).startswith(jax_sentence), (str(info.value), jax_sentence)
    assert "lax.cond" in str(info.value) and "jnp.where" in str(info.value)


def test_error_names_the_function_and_argument_as_jax_does():
    def model_loss(w, b):
        return jnp.sin(w) * b if w > 0 else b

    with pytest.raises(jax.errors.TracerBoolConversionError) as info:
        jax.jit(T.grad(model_loss))(1.0, 2.0)
    msg = str(info.value)
    assert "the function model_loss at" in msg and "the argument w" in msg, msg
    with pytest.raises(jax.errors.TracerBoolConversionError) as info:
        jax.jit(T.grad(lambda b, w: model_loss(w, b), argnums=1))(2.0, 1.0)
    assert "the argument w" in str(info.value), str(info.value)


def test_jacobian_auto_mode_with_python_control_flow():
    def f(x):
        return jnp.sin(x) * x if jnp.sum(x) > 0 else x**3

    for x in (np.array([0.3, 0.5]), np.array([-0.3, -0.5])):
        assert_tree_allclose(T.jacobian(f, mode="auto")(x), jax.jacobian(f)(x))


def test_function_seen_branching_is_traced_once_per_call():
    runs = []

    def f(x):
        runs.append(1)
        return jnp.sin(x) if x > 0 else -x

    g = T.grad(f)
    g(1.0)  # the abstract attempt, then the path
    assert len(runs) == 2
    for x in (2.0, -1.0, 0.5):
        assert_tree_allclose(g(x), jax.grad(f)(x))
    assert len(runs) == 2 + 3 + 3  # ours: once per call from then on; JAX's: once per call


def test_numpy_constants_lifted_inside_a_branching_function():
    # jnp.array(numpy array) lifts the value into the current trace (`stage_value`).
    def f(x):
        c = jnp.array(np.ones(3))
        if x > 0:
            return jnp.sum(c * x)
        return -x

    for x in (1.0, -2.0):
        assert_tree_allclose(T.grad(f)(x), jax.grad(f)(x))


def test_a_path_runs_op_by_op_first_and_compiles_when_it_comes_back():
    def f(x):
        return jnp.sin(x) * 3.0625 if x > 0 else x  # a constant no other test uses

    engine.clear_caches()
    engine._compiled_cache.clear()
    assert_tree_allclose(T.grad(f)(1.0), jax.grad(f)(1.0))
    assert len(engine._compiled_cache.data) == 0  # first sight of the path: nothing compiled
    assert_tree_allclose(T.grad(f)(1.5), jax.grad(f)(1.5))
    assert len(engine._compiled_cache.data) == 1  # the same path again: compiled, once
    assert_tree_allclose(T.grad(f)(-1.0), jax.grad(f)(-1.0))
    assert len(engine._compiled_cache.data) == 1  # a new path: op by op again


def _with_library_code(x):
    # JAX's own custom_jvp functions, lax control flow and checkpointing on the path taken
    h = jax.nn.relu(x) + jax.nn.softplus(x) * jnp.linalg.norm(x)
    if jnp.linalg.norm(h) > 1.0:
        h = jax.lax.cond(h[0] > 0, jnp.sin, lambda h: h**2, h)
        h = jax.lax.fori_loop(0, 3, lambda i, h: h * 0.9 + jnp.tanh(h), h)
    else:
        h = jax.lax.scan(lambda c, xi: (c + xi * c, c), h[0], h)[1]
    return jax.checkpoint(lambda y: jnp.sin(y) * y)(jnp.sum(h**2))


@pytest.mark.parametrize("x", [np.array([0.5, -0.2, 0.9]), np.array([0.1, -0.2, 0.05])])
def test_library_functions_and_lax_control_flow_on_the_path(x):
    f = _with_library_code
    assert_tree_allclose(T.grad(f)(x), jax.grad(f)(x), what="grad")
    if x[0] > 0.2:  # one point is enough for the Hessian (it compiles many batched ops)
        assert_tree_allclose(T.hessian(f)(x), jax.hessian(f)(x), what="hessian")


def test_only_values_a_decision_needs_are_computed_while_tracing(monkeypatch):
    # The concrete trace computes a value when a branch (or int(), a shape) asks for it: the
    # fifty operations after the branch only go into the jaxpr.
    from transforms import concrete

    applied = []
    original = concrete._apply
    monkeypatch.setattr(
        concrete, "_apply", lambda p, *rest: applied.append(p.name) or original(p, *rest)
    )

    def f(x):
        if x > 0:
            y = x
        else:
            y = -x
        for _ in range(50):
            y = jnp.sin(y) * 1.01
        return y

    def g(x):
        y = x
        for _ in range(50):
            y = jnp.sin(y) * 1.01
        return y

    assert float(T.grad(f)(0.7)) == pytest.approx(float(jax.grad(g)(0.7)), rel=1e-12)
    assert len(applied) == 1, applied  # x > 0 (jnp's comparison, one jit application)


def test_a_decision_at_the_end_of_a_long_chain_is_computed_without_recursion():
    # 20,000 operations before the branch: their values are computed in one iterative sweep
    # (a recursive one would overflow Python's stack).
    def f(x):
        y = x
        for _ in range(20_000):
            y = y + 1e-4
        return y * 3.0 if y > 1.5 else y * 5.0

    assert float(T.grad(f)(0.1)) == 3.0 and float(T.grad(f)(-1.0)) == 5.0
