"""Differentiating sharded programs: shard_map, collectives, sharding constraints, jit on a mesh.

JAX's autodiff is the oracle (float64, 8 simulated CPU devices set up by conftest.py). Every
collective is checked in forward and reverse mode, with and without `check_vma`, and reverse
mode is checked against forward mode by the dot-product identity <J t, c> = <t, Jᵀ c>.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import transforms

TOL = dict(rtol=1e-10, atol=1e-10)


@pytest.fixture(scope="module")
def mesh():
    assert jax.device_count() == 8, (
        "tests/conftest.py must set XLA_FLAGS=--xla_force_host_platform_device_count=8 "
        "before JAX starts"
    )
    return jax.make_mesh((4, 2), ("i", "j"), axis_types=(AxisType.Auto,) * 2)


def _rand(shape, seed=0):
    return jnp.asarray(np.random.RandomState(seed).randn(*shape))


def _close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **TOL)


def _check(fun, *args, jax_grad=True):
    """`fun` (array args -> array) against JAX: grad of a scalar loss, jvp, and vjp/jvp duality.

    `jax_grad=False` compares reverse mode only through the duality with forward mode, for
    programs JAX itself cannot differentiate in reverse mode.

    Each side runs as one jitted program (our transforms stage into it like any jax code), which
    keeps the 8-device compiles few.
    """
    weights = _rand(jax.eval_shape(fun, *args).shape, seed=7)
    tangents = tuple(_rand(a.shape, seed=11 + i) for i, a in enumerate(args))
    argnums = tuple(range(len(args)))

    def loss(*a):
        return jnp.sum(jnp.cos(fun(*a)) * weights)

    def derivatives(grad, jvp):
        def both(args):
            return grad(loss, argnums)(*args) if jax_grad else (), jvp(fun, args, tangents)

        return jax.jit(both)(args)

    ours = derivatives(transforms.grad, transforms.jvp)
    _close(ours, derivatives(jax.grad, jax.jvp))

    @jax.jit
    def duality(args):
        # Dot-product test of our transpose against our own forward mode: <J t, c> = <t, Jᵀ c>.
        _, f_vjp = transforms.vjp(fun, *args)
        _, y_dot = transforms.jvp(fun, args, tangents)
        cts = f_vjp(weights)
        return jnp.vdot(y_dot, weights), sum(
            jnp.vdot(t, c) for t, c in zip(tangents, cts, strict=True)
        )

    np.testing.assert_allclose(*duality(args), **TOL)


# (name, body, in_specs, out_specs, argument shapes). Bodies see their local blocks; the mesh is
# 4 x 2 with axes "i", "j". Each body is nonlinear around the collective so that the residuals
# crossing the shard_map boundary matter.
CASES = [
    ("psum", lambda x: lax.psum(jnp.sin(x), "i"), P("i", "j"), P(None, "j"), [(8, 4)]),
    ("psum_both_axes", lambda x: lax.psum(x * x, ("i", "j")), P("i", "j"), P(), [(8, 4)]),
    ("pmean", lambda x: jnp.tanh(lax.pmean(x, "j")) * x, P("i", "j"), P("i", "j"), [(8, 4)]),
    (
        "replicated_input",  # x is invariant: an implicit pvary, whose transpose is a psum
        lambda w, x: jnp.sin(w * x),
        (P(), P("i", "j")),
        P("i", "j"),
        [(1, 2), (8, 4)],
    ),
    (
        "all_gather",
        lambda x: jnp.sin(lax.all_gather(x, "i")) * 2.0,
        P("i"),
        P(None, "i"),
        [(8, 3)],
    ),
    (
        "all_gather_tiled_axis1",
        lambda x: jnp.exp(lax.all_gather(x, "j", axis=1, tiled=True)),
        P("i", "j"),
        P("i", "j"),
        [(8, 4)],
    ),
    (
        "psum_scatter_tiled",
        lambda x: lax.psum_scatter(jnp.sin(x), "i", scatter_dimension=0, tiled=True),
        P(None, "j"),
        P("i", "j"),
        [(8, 4)],
    ),
    (
        "psum_scatter",
        lambda x: lax.psum_scatter(x * x, "j", scatter_dimension=1),
        P("i"),
        P("i", "j"),
        [(8, 2, 3)],
    ),
    (
        "ppermute_cycle",
        lambda x: jnp.sin(lax.ppermute(x, "i", [(k, (k + 1) % 4) for k in range(4)])) * x,
        P("i"),
        P("i"),
        [(8, 2)],
    ),
    (
        "ppermute_partial",  # devices no one sends to receive zeros
        lambda x: lax.ppermute(x**3, "i", [(0, 2), (1, 0)]),
        P("i"),
        P("i"),
        [(8, 2)],
    ),
    (
        "all_to_all_tiled",
        lambda x: jnp.sin(lax.all_to_all(x, "i", 0, 1, tiled=True)),
        P("i"),
        P("i"),
        [(16, 4)],
    ),
    (
        "all_to_all",
        lambda x: lax.all_to_all(jnp.sin(x), "j", 1, 0) ** 2,
        P("j"),
        P("j"),
        [(2, 2, 3)],
    ),
    (
        "all_to_all_same_axis",
        lambda x: lax.all_to_all(jnp.sin(x), "i", 0, 0) * x,
        P("i"),
        P("i"),
        [(16, 2)],
    ),
    (
        "axis_index",
        lambda x: jnp.sin(x) * (lax.axis_index("i") + 1.0),
        P("i"),
        P("i"),
        [(8, 3)],
    ),
    (
        "pmax",
        lambda x: jnp.sin(lax.pmax(x, "i")),
        P("i"),
        P(),
        [(8, 3)],
    ),
    (
        "pmin",
        lambda x: lax.pmin(x * x, ("i", "j")),
        P("i", "j"),
        P(),
        [(8, 4)],
    ),
    (
        "two_outputs_and_integer",  # an integer output has no tangent; a float one does
        lambda x: (jnp.sin(lax.psum(x, "i")), lax.axis_index("i") * jnp.ones(2, jnp.int32)),
        P("i"),
        (P(), P("i")),
        [(8, 2)],
    ),
]


@pytest.mark.parametrize("check_vma", [True, False])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_shard_map_collective(mesh, case, check_vma):
    name, body, in_specs, out_specs, shapes = case
    if name in ("pmax", "pmin", "psum_both_axes") and not check_vma:
        # Without check_vma JAX itself cannot tell that the replicated output is invariant.
        out_specs = P("i") if name == "pmax" else P(("i", "j"))
    sharded = jax.shard_map(
        body, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=check_vma
    )
    args = [_rand(s, seed=n) for n, s in enumerate(shapes)]

    if isinstance(out_specs, tuple):  # only the float output is differentiated

        def fun(*a):
            return sharded(*a)[0]

        np.testing.assert_array_equal(sharded(*args)[1], np.repeat(np.arange(4), 2))
    else:
        fun = sharded
    if name in ("pmax", "pmin"):
        _check_pextremum(name, fun, *args)
    else:
        _check(fun, *args)


def _check_pextremum(name, fun, x):
    # JAX has no derivative for pmax/pmin: the oracle is the same computation written globally.
    if name == "pmax":

        def glob(x):
            return jnp.sin(jnp.max(x.reshape(4, 2, 3), axis=0))

    else:

        def glob(x):
            blocks = (x * x).reshape(4, 2, 2, 2).transpose(0, 2, 1, 3).reshape(8, 2, 2)
            return jnp.min(blocks, axis=0)

    out = fun(x)
    n = glob(x).shape[0]  # without check_vma the output stacks one copy per device
    np.testing.assert_allclose(out[:n], glob(x), **TOL)
    weights = _rand(out.shape, seed=7)
    glob_weights = weights.reshape(-1, *glob(x).shape).sum(0)
    t = _rand(x.shape, seed=3)

    @jax.jit
    def ours(x):
        grad = transforms.grad(lambda x: jnp.sum(fun(x) * weights))(x)
        return grad, transforms.jvp(fun, (x,), (t,))[1][:n]

    @jax.jit
    def oracle(x):
        grad = jax.grad(lambda x: jnp.sum(glob(x) * glob_weights))(x)
        return grad, jax.jvp(glob, (x,), (t,))[1]

    _close(ours(x), oracle(x))


def test_pmax_ties_share_the_derivative(mesh):
    # Two devices hold the maximum: each gets half, as jnp.max does for ties.
    x = jnp.array([1.0, 3.0, 3.0, 0.0])
    fun = jax.shard_map(lambda x: lax.pmax(x, "i"), mesh=mesh, in_specs=P("i"), out_specs=P())
    _close(transforms.grad(lambda x: fun(x).sum())(x), jax.grad(jnp.max)(x))
    np.testing.assert_allclose(transforms.grad(lambda x: fun(x).sum())(x), [0, 0.5, 0.5, 0])


def test_shard_map_inside_jit_and_nested_derivatives(mesh):
    sharded = jax.jit(
        jax.shard_map(
            lambda w, x: lax.psum(jnp.sum(jnp.tanh(x @ w) ** 2), ("i", "j")),
            mesh=mesh,
            in_specs=(P(), P(("i", "j"))),
            out_specs=P(),
        )
    )
    w, x = _rand((3, 2)), _rand((16, 3), seed=1)

    def derivatives(grad, hessian, jacfwd):
        return jax.jit(
            lambda w, x: (grad(sharded)(w, x), hessian(sharded)(w, x), jacfwd(grad(sharded))(w, x))
        )(w, x)

    _close(
        derivatives(transforms.grad, transforms.hessian, transforms.jacfwd),
        derivatives(jax.grad, jax.hessian, jax.jacfwd),
    )


def test_shard_map_with_zero_tangent_inputs(mesh):
    # Only one of two inputs is differentiated: the other's tangent stays symbolic.
    sharded = jax.shard_map(
        lambda a, b: lax.psum(jnp.sin(a) * b, "i"), mesh=mesh, in_specs=P("i"), out_specs=P()
    )
    a, b = _rand((8,)), _rand((8,), seed=1)
    for argnums in (0, 1):
        loss = lambda a, b: jnp.sum(sharded(a, b) ** 2)  # noqa: E731
        _close(transforms.grad(loss, argnums)(a, b), jax.grad(loss, argnums)(a, b))


def test_sharding_constraint(mesh):
    spec = NamedSharding(mesh, P("i", "j"))

    def fun(x):
        return jnp.sin(lax.with_sharding_constraint(x * x, spec))

    x = _rand((8, 4))
    _check(fun, x)
    jaxpr = jax.make_jaxpr(transforms.grad(lambda x: fun(x).sum()))(x)
    # The cotangent carries the same layout constraint as the value.
    assert str(jaxpr).count("sharding_constraint") >= 2


def _mlp_loss(params, x, y):
    w1, b1, w2 = params
    h = jnp.tanh(x @ w1 + b1)
    return jnp.mean((h @ w2 - y) ** 2)


def test_data_parallel_grad_is_partitioned(mesh):
    # Parameters replicated, batch split over all 8 devices: the gradient is a sum over the
    # batch, so the partitioned program must all-reduce the per-device partial sums.
    data = NamedSharding(mesh, P(("i", "j")))
    replicated = NamedSharding(mesh, P())
    params = (_rand((3, 5)), _rand((5,), seed=1), _rand((5, 2), seed=2))
    x, y = _rand((16, 3), seed=3), _rand((16, 2), seed=4)
    params_s = jax.device_put(params, replicated)
    x_s, y_s = jax.device_put(x, data), jax.device_put(y, data)

    step = jax.jit(transforms.grad(_mlp_loss))
    _close(step(params_s, x_s, y_s), jax.grad(_mlp_loss)(params, x, y))
    hlo = step.lower(params_s, x_s, y_s).compile().as_text()
    assert "all-reduce" in hlo
    # Eagerly (our compiled derivative program) the result is the same.
    _close(transforms.grad(_mlp_loss)(params_s, x_s, y_s), jax.grad(_mlp_loss)(params, x, y))


def test_pbroadcast_rules_trace(mesh):
    # XLA:CPU cannot run pbroadcast (no lowering), so this only checks that both modes trace and
    # that the cotangent is summed over the axis, as the transpose of a broadcast must be.
    fun = jax.shard_map(
        lambda x: jnp.sin(lax.pbroadcast(x, "i", 2)), mesh=mesh, in_specs=P("i"), out_specs=P("i")
    )
    x = _rand((8,))
    jvp_jaxpr = str(jax.make_jaxpr(lambda x: transforms.jvp(fun, (x,), (x,)))(x))
    assert jvp_jaxpr.count("pbroadcast") == 2
    grad_jaxpr = jax.make_jaxpr(transforms.grad(lambda x: fun(x).sum()))(x)
    (*_, backward) = [e for e in grad_jaxpr.eqns if e.primitive.name == "shard_map"]
    names = {e.primitive.name for e in backward.params["jaxpr"].eqns}
    assert {"psum_invariant", "axis_index", "select_n"} <= names


@pytest.mark.parametrize("check_vma", [True, False])
def test_grad_inside_shard_map_body(mesh, check_vma):
    # Per-device gradients, then averaged: the shard_map data-parallel pattern. With check_vma
    # the gradient of the replicated (invariant) parameters is already summed over devices, as
    # in JAX; without it each device holds its local gradient.
    def per_device(grad):
        def step(w, x, y):
            g_w = grad(_mlp_loss)((w, jnp.zeros(5), jnp.ones((5, 2))), x, y)[0]
            g_xy = grad(lambda x, y: _mlp_loss((w, jnp.zeros(5), jnp.ones((5, 2))), x, y), (0, 1))
            return lax.pmean(g_w, ("i", "j")), g_xy(x, y)

        specs = (P(), P(("i", "j")), P(("i", "j")))
        fun = jax.shard_map(
            step, mesh=mesh, in_specs=specs, out_specs=(P(), specs[1:]), check_vma=check_vma
        )
        return jax.jit(fun)

    w, x, y = _rand((3, 5)), _rand((16, 3), seed=1), _rand((16, 2), seed=2)
    _close(per_device(transforms.grad)(w, x, y), per_device(jax.grad)(w, x, y))


def test_explicit_mesh_data_parallel():
    # jax.make_mesh's default axes are Explicit: shardings are part of the types, and the
    # cotangent of a batch-sharded contraction must be given its primal's (replicated) layout.
    mesh = jax.make_mesh((4, 2), ("i", "j"))
    assert AxisType.Explicit in mesh.axis_types
    params = (_rand((3, 5)), _rand((5,), seed=1), _rand((5, 2), seed=2))
    x, y = _rand((16, 3), seed=3), _rand((16, 2), seed=4)
    params_s = jax.device_put(params, NamedSharding(mesh, P()))
    x_s, y_s = (jax.device_put(a, NamedSharding(mesh, P(("i", "j")))) for a in (x, y))

    step = jax.jit(transforms.grad(_mlp_loss))
    grads = step(params_s, x_s, y_s)
    _close(grads, jax.grad(_mlp_loss)(params, x, y))
    assert all(g.sharding.is_fully_replicated for g in grads)
    assert "all-reduce" in step.lower(params_s, x_s, y_s).compile().as_text()
    tangents = (params, x, y)
    _close(
        jax.jit(lambda *a: transforms.jvp(_mlp_loss, a, tangents))(params_s, x_s, y_s),
        jax.jvp(_mlp_loss, (params, x, y), tangents),
    )


@settings(max_examples=6, deadline=None)
@given(
    perm=st.permutations(range(4)),
    senders=st.lists(st.booleans(), min_size=4, max_size=4),
    split_axis=st.integers(0, 2),
    concat_axis=st.integers(0, 2),
    tiled=st.booleans(),
)
def test_random_permutations_and_all_to_all(mesh, perm, senders, split_axis, concat_axis, tiled):
    pairs = [(k, perm[k]) for k in range(4) if senders[k]]

    def body(x):
        moved = lax.ppermute(jnp.sin(x), "i", pairs)
        return lax.all_to_all(moved * x, "i", split_axis, concat_axis, tiled=tiled)

    in_spec = P("i")
    fun = jax.shard_map(body, mesh=mesh, in_specs=in_spec, out_specs=P("i"))
    # JAX 0.10.2's own reverse mode fails on some untiled all_to_all axis pairs ("Expected
    # cotangent type ..."), so there our transpose is checked against our (JAX-checked) JVP.
    _check(fun, _rand((16, 4, 4)), jax_grad=tiled)
