"""Real JAX libraries on our engine: Equinox, diffrax, optimistix, lineax, Flax NNX, numpyro.

Each case runs twice, once with JAX's autodiff and once with JAX's entry points routed to ours
(`routing.routed`, as a user switching over would: the libraries call `jax.grad` & co.
themselves), and the results must agree (float64). Problems are tiny, to keep compile time low.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import lineax as lx
import numpyro
import numpyro.distributions as dist
import optax
import optimistix as optx
import pytest
from flax import nnx
from helpers import assert_tree_allclose
from numpyro.infer import HMC, MCMC, NUTS, SVI, Trace_ELBO, TraceMeanField_ELBO, autoguide
from routing import routed

import transforms


def same_with_our_engine(case, **tols):
    """`case()` with JAX's autodiff, then routed to ours: the results must agree."""
    expected = case()
    with routed():
        actual = case()
    assert_tree_allclose(actual, expected, **tols)
    return actual


# --- Equinox ----------------------------------------------------------------------------------

X3 = jnp.array([0.3, -0.8, 0.5])


def _mlp():
    return eqx.nn.MLP(3, 2, 4, 2, key=jax.random.key(0), dtype=jnp.float64)


def test_equinox_filter_grad_and_filter_vjp_with_aux():
    def loss(model, x):
        return jnp.sum(model(x) ** 2), ("a label", model(x))

    def case():
        (grads, aux) = eqx.filter_grad(loss, has_aux=True)(_mlp(), X3)
        out, pullback, aux2 = eqx.filter_vjp(lambda m: loss(m, X3), _mlp(), has_aux=True)
        assert aux[0] == aux2[0] == "a label"
        return eqx.filter(grads, eqx.is_array), aux[1], pullback(jnp.float64(1.0))

    same_with_our_engine(case)


def test_equinox_custom_rules_and_symbolic_zeros():
    @eqx.filter_custom_vjp
    def f(x__y, *, foo):
        x, y = x__y
        return x * y + foo, x, y

    @f.def_fwd
    def f_fwd(perturbed, x__y, *, foo):
        return f(x__y, foo=foo), None

    unused = []

    @f.def_bwd
    def f_bwd(res, ct, perturbed, x__y, *, foo):
        unused.append(tuple(c is None for c in ct))  # symbolic zeros reach the rule as None
        ct_out, ct_x, ct_y = (0.0 if c is None else c for c in ct)
        x, y = x__y
        return ct_out * y + ct_x, ct_out * x + ct_y

    @eqx.filter_custom_jvp
    def g(x, y):
        return jnp.sin(x) * y

    @g.def_jvp
    def g_jvp(primals, tangents):
        (x, y), (tx, ty) = primals, tangents
        assert ty is None
        return g(x, y), jnp.cos(x) * y * tx

    def case():
        unused.clear()
        run = lambda x, y: jnp.sum(f((x, y), foo=2.0)[0] + f((x, y), foo=1.0)[2])  # noqa: E731
        grads = jax.grad(run, argnums=(0, 1))(X3, X3 * 2)
        assert sorted(unused) == [(False, True, True), (True, True, False)]
        return (
            grads,
            jax.jvp(lambda x: g(x, X3), (X3,), (X3,)),
        )

    same_with_our_engine(case)


def test_equinox_batch_norm_and_state():
    bn, state = eqx.nn.make_with_state(eqx.nn.BatchNorm)(3, "batch", mode="ema")
    xs = jnp.array([[0.3, -1.2, 0.5], [1.1, 0.4, -0.7], [0.2, 0.9, 1.4]])

    def loss(x, state):
        out, state = jax.vmap(bn, axis_name="batch", in_axes=(0, None), out_axes=(0, None))(
            x, state
        )
        return jnp.sum(out * jnp.arange(3.0)), state

    def case():
        g, new_state = jax.grad(loss, has_aux=True)(xs, state)
        return g, new_state.get(bn.ema_state_index)

    same_with_our_engine(case)


def test_equinox_nested_forward_mode():
    # Forward over reverse (a Hessian-vector product through `filter_grad`) and forward over
    # forward, written with `jax.jvp` as Equinox users write them: the library's and the user's
    # calls are both routed. An output of the inner jvp that is the outer tracer `x` itself has
    # a zero inner tangent and still carries the outer one (Equinox's test_double_filter_jvp).
    params, static = eqx.partition(_mlp(), eqx.is_array)
    loss = lambda p, x: jnp.sum(eqx.combine(p, static)(x) ** 2)  # noqa: E731

    def inner(x):
        def g(y):
            return jnp.sin(y) * x, x

        (a, b), (ta, tb) = jax.jvp(g, (x,), (jnp.ones(3),))
        return a, b, ta, tb

    def case():
        grad_loss = eqx.filter_grad(loss)
        hvp = jax.jvp(lambda p: grad_loss(p, X3), (params,), (params,))
        model = lambda x: eqx.combine(params, static)(x)  # noqa: E731
        jvp_of_jvp = jax.jvp(lambda x: jax.jvp(model, (x,), (X3,))[1], (X3,), (2 * X3,))
        return hvp, jvp_of_jvp, jax.jvp(inner, (X3,), (X3,))

    same_with_our_engine(case)


def _while(kind):
    def f(x):
        def body(carry):
            i, y = carry
            return i + 1, jnp.sin(y) * x

        return eqxi.while_loop(lambda c: c[0] < 4, body, (0, x), max_steps=6, kind=kind)[1]

    return f


@pytest.mark.parametrize("kind", ["checkpointed", "bounded"])
def test_equinox_while_loops(kind):
    f, x = _while(kind), jnp.float64(0.7)

    def case():
        out = [jax.grad(lambda x: jnp.sum(f(x)))(x)]
        if kind == "bounded":  # Equinox's checkpointed loop is a custom_vjp: reverse mode only
            out.append(jax.jvp(f, (x,), (1.0,)))
        return out

    same_with_our_engine(case)


# --- diffrax, optimistix, lineax --------------------------------------------------------------


def _ode_loss(adjoint, solver=None):
    def loss(y0, rate):
        term = diffrax.ODETerm(lambda t, y, rate: -rate * y + jnp.sin(t))
        sol = diffrax.diffeqsolve(
            term, solver or diffrax.Tsit5(), 0.0, 1.0, 0.25, y0, args=rate, adjoint=adjoint,
            saveat=diffrax.SaveAt(t1=True), max_steps=8,
        )  # fmt: skip
        return jnp.sum(sol.ys**2)

    return loss


Y0 = jnp.array([1.0, -0.5])


@pytest.mark.parametrize(
    "adjoint",
    [diffrax.RecursiveCheckpointAdjoint(), diffrax.BacksolveAdjoint(), diffrax.DirectAdjoint()],
    ids=["RecursiveCheckpoint", "Backsolve", "Direct"],
)
def test_diffrax_gradients(adjoint):
    loss = _ode_loss(adjoint)
    # A Python float rate: BacksolveAdjoint's bwd takes a parameter that is not an array for
    # no parameter (its gradient was zero, and weakly typed, before the fix in rules/calls.py).
    # (The other diffrax tests pass a strong float64 rate.)
    expected = jax.grad(loss, argnums=(0, 1))(Y0, 0.5)
    assert_tree_allclose(transforms.grad(loss, argnums=(0, 1))(Y0, 0.5), expected)


def test_diffrax_forward_mode_jvp():
    loss = _ode_loss(diffrax.ForwardMode())
    args, tangents = (Y0, 0.5), (jnp.ones(2), 0.1)
    assert_tree_allclose(transforms.jvp(loss, args, tangents), jax.jvp(loss, args, tangents))


def _same_gradients_as_jax(loss):
    # Ours under jit: one compiled program (these solves are long loops, slow op by op on the
    # first eager call; the adjoint tests above run ours eagerly).
    rate = jnp.float64(0.5)
    expected = jax.grad(loss, argnums=(0, 1))(Y0, rate)
    assert_tree_allclose(jax.jit(transforms.grad(loss, argnums=(0, 1)))(Y0, rate), expected)
    return expected


def _saved_values_loss(saveat):
    term = diffrax.ODETerm(lambda t, y, rate: -rate * y + jnp.sin(t))

    def loss(y0, rate):
        sol = diffrax.diffeqsolve(
            term, diffrax.Tsit5(), 0.0, 1.0, 0.25, y0, args=rate, saveat=saveat, max_steps=8
        )
        if saveat.dense:  # the dense interpolant, between and at steps, and its derivative
            dense = sol.evaluate(0.3) + sol.evaluate(0.55, 0.8) + sol.derivative(0.7)
            return jnp.sum(dense**2)
        # SaveAt(steps=True) pads unused slots of ts and ys with inf
        finite = lambda a: jnp.where(jnp.isfinite(a), a, 0.0)  # noqa: E731
        return jnp.sum(finite(sol.ys) ** 2) + jnp.sum(finite(sol.ts))

    return loss


@pytest.mark.parametrize(
    "saveat",
    [
        diffrax.SaveAt(t0=True, t1=True, ts=jnp.array([0.1, 0.45, 0.9])),
        diffrax.SaveAt(steps=True),
        diffrax.SaveAt(dense=True),
    ],
    ids=["t0_t1_ts", "steps", "dense"],
)
def test_diffrax_saveat_variants(saveat):
    _same_gradients_as_jax(_saved_values_loss(saveat))


def _decay_until(cond_fn, root_finder=None):
    def loss(y0, rate):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(lambda t, y, rate: -rate * y), diffrax.Tsit5(), 0.0, 5.0, 0.25, y0,
            args=rate, event=diffrax.Event(cond_fn, root_finder=root_finder),
            saveat=diffrax.SaveAt(t1=True), max_steps=32,
        )  # fmt: skip
        # The solve stops at the event: its time and state depend on y0 and the rate.
        return sol.ts[-1] + jnp.sum(sol.ys**2)

    return loss


@pytest.mark.parametrize(
    "loss",
    [
        _decay_until(lambda t, y, args, **kwargs: y[0] < 0.5),
        # a real-valued condition and a root finder: the event time is where y[0] = 0.5
        _decay_until(lambda t, y, args, **kwargs: y[0] - 0.5, optx.Newton(1e-10, 1e-10)),
    ],
    ids=["boolean_at_step", "root_found_time"],
)
def test_diffrax_event_terminates_the_solve(loss):
    _same_gradients_as_jax(loss)


def test_diffrax_implicit_adjoint_at_a_steady_state():
    def steady_energy(y0, rate):
        # dy/dt = target - rate * y settles at y = target / rate, whatever y0 is; the gradient
        # goes through the implicit function theorem at the steady state (lineax's solve).
        term = diffrax.ODETerm(lambda t, y, rate: jnp.array([0.3, 0.7]) - rate * y)
        sol = diffrax.diffeqsolve(
            term, diffrax.Tsit5(), 0.0, jnp.inf, 0.5, y0, args=rate,
            event=diffrax.Event(diffrax.steady_state_event()), adjoint=diffrax.ImplicitAdjoint(),
            stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-8),
            saveat=diffrax.SaveAt(t1=True), max_steps=256,
        )  # fmt: skip
        return jnp.sum(sol.ys**2 * jnp.array([1.0, 2.0]))

    expected = _same_gradients_as_jax(steady_energy)
    # d/d rate of sum(w * (target / rate)**2) = -2 / rate * energy
    assert_tree_allclose(expected[1], jnp.float64(-2 / 0.5 * 4.28), rtol=1e-6)


def test_optimistix_root_find_gradient_through_the_implicit_function_theorem():
    def root(a):
        solver = optx.Newton(rtol=1e-12, atol=1e-12)
        return jnp.sum(optx.root_find(lambda y, a: y**3 - a, solver, jnp.ones(2), args=a).value)

    a = jnp.array([2.0, 3.0])
    assert_tree_allclose(transforms.grad(root)(a), jax.grad(root)(a))


def test_lineax_linear_solve_both_modes():
    def solve(matrix, b):
        return lx.linear_solve(lx.MatrixLinearOperator(matrix), b).value

    matrix, b = jnp.array([[3.0, 1.0], [0.5, 2.0]]), jnp.array([1.0, 2.0])
    for ours, theirs in [(transforms.jacfwd, jax.jacfwd), (transforms.jacrev, jax.jacrev)]:
        expected = theirs(solve, argnums=(0, 1))(matrix, b)
        assert_tree_allclose(ours(solve, argnums=(0, 1))(matrix, b), expected)


# --- Flax NNX ---------------------------------------------------------------------------------

XS = jnp.arange(6.0).reshape(2, 3) / 7


def _linear():
    return nnx.Linear(3, 2, rngs=nnx.Rngs(0), param_dtype=jnp.float64)


def test_nnx_grad_value_and_grad_diffstate_remat():
    class Scaled(nnx.Module):
        def __init__(self):
            self.a = nnx.Param(jnp.array([1.0, 2.0, 0.5]))
            self.scale = nnx.BatchStat(jnp.array(0.5))

        def __call__(self, x):
            return jnp.sum(self.a * x) * self.scale

    def case():
        loss = lambda m, x: jnp.sum(m(x) ** 2)  # noqa: E731
        with_aux = lambda m, x: (loss(m, x), {"n": 2.0, "y": m(x)})  # noqa: E731
        (value, aux), g_aux = nnx.value_and_grad(with_aux, has_aux=True)(_linear(), XS)
        return (
            nnx.state(nnx.grad(loss)(_linear(), XS)),
            value,
            aux,
            nnx.state(g_aux),
            nnx.state(nnx.grad(nnx.remat(loss))(_linear(), XS)),
            nnx.state(nnx.grad(lambda m, x: m(x), argnums=nnx.DiffState(0, nnx.BatchStat))(
                Scaled(), XS[1]
            )),
        )  # fmt: skip

    same_with_our_engine(case)


def test_nnx_custom_vjp_and_optimizer():
    class Pair(nnx.Module):
        def __init__(self):
            self.x, self.y = nnx.Param(jnp.array(1.0)), nnx.Param(jnp.array(2.0))

    @nnx.custom_vjp
    def f(m: Pair):
        return jnp.sin(m.x) * m.y

    def f_fwd(m: Pair):
        return f(m), (jnp.cos(m.x), jnp.sin(m.x), m)

    def f_bwd(res, g):
        _, out_g = g
        cos_x, sin_x, m = res
        return (nnx.State({"x": cos_x * out_g * m.y, "y": sin_x * out_g}),)

    f.defvjp(f_fwd, f_bwd)

    def case():
        model = _linear()
        optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

        @nnx.jit
        def step(model, optimizer):
            loss, grads = nnx.value_and_grad(lambda m: jnp.sum(m(XS) ** 2))(model)
            optimizer.update(model, grads)
            return loss

        losses = [step(model, optimizer) for _ in range(3)]
        return nnx.state(nnx.grad(f)(Pair())), losses, nnx.state(model)

    same_with_our_engine(case)


@pytest.mark.parametrize("graph_updates", [None, True], ids=["default", "graph_updates"])
def test_nnx_custom_vjp_diff_state_with_state_updates(graph_updates):
    # Flax's own TestCustomVJP::test_diff_state: the function updates the module (a counter),
    # its fwd calls it, and only the `x` Params are differentiated. Flax's fwd wrapper reads
    # the module state its fwd leaves: JAX's grad calls fwd in place of the function (never
    # tracing the function first), and ours must too (issue #24).
    class Counted(nnx.Module):
        def __init__(self):
            self.x = nnx.Param(jnp.array(1.0))
            self.y = nnx.Param(jnp.array(2.0))
            self.calls = 0

    only_x = nnx.DiffState(0, nnx.PathContains("x"))
    flags = {} if graph_updates is None else {"graph": True, "graph_updates": True}

    def case():
        @nnx.custom_vjp(nondiff_argnums=(only_x,), **flags)
        def f(m):
            m.calls += 1
            return jnp.sin(m.x) * m.y

        def f_fwd(m):
            return f(m), (jnp.cos(m.x), m)

        def f_bwd(res, g):
            (m_g,), out_g = g
            cos_x, m = res
            m_g["x"][...] = 3.0 * cos_x * out_g * m.y  # not f's derivative: the rule is used
            del m_g["y"]
            return (m_g,)

        f.defvjp(f_fwd, f_bwd)
        m = Counted()
        grads = nnx.grad(f, argnums=only_x, **flags)(m)
        value = f(m)
        return nnx.state(grads), value, m.calls, nnx.state(m)

    grads, _, calls, _ = same_with_our_engine(case)
    assert_tree_allclose(grads["x"][...], 3.0 * jnp.cos(1.0) * 2.0)
    assert calls == 2  # once under grad (fwd's call), once after


# --- numpyro ----------------------------------------------------------------------------------


def _regression(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("data", x.shape[0], subsample_size=4):
        xb = numpyro.subsample(x, event_dim=0)
        yb = numpyro.subsample(y, event_dim=0) if y is not None else None
        numpyro.sample("y", dist.Normal(w * xb + b, sigma), obs=yb)


XN = jnp.linspace(-1.0, 1.0, 8)
YN = 0.7 * XN - 0.2 + 0.05 * jnp.sin(7 * XN)


@pytest.mark.parametrize(
    "guide, elbo",
    [
        (autoguide.AutoNormal, Trace_ELBO),
        (autoguide.AutoDelta, Trace_ELBO),
        (autoguide.AutoMultivariateNormal, TraceMeanField_ELBO),
    ],
    ids=["AutoNormal", "AutoDelta", "AutoMultivariateNormal"],
)
def test_numpyro_svi_same_losses(guide, elbo):
    def case():
        svi = SVI(_regression, guide(_regression), numpyro.optim.Adam(0.05), elbo())
        result = svi.run(jax.random.key(0), 5, XN, YN, progress_bar=False)
        return result.losses, result.params

    same_with_our_engine(case)


def test_numpyro_nuts_same_samples():
    def model(x, y):
        w = numpyro.sample("w", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(w * x, 0.3), obs=y)

    def case():
        mcmc = MCMC(NUTS(model), num_warmup=10, num_samples=10, progress_bar=False)
        mcmc.run(jax.random.key(1), XN, YN)
        return mcmc.get_samples()

    same_with_our_engine(case)


def test_numpyro_hmc_same_samples():
    def model(x, y):
        w = numpyro.sample("w", dist.Normal(0.0, 1.0))
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))  # a constrained site
        numpyro.sample("y", dist.Normal(w * x, sigma), obs=y)

    def case():
        kernel = HMC(model, step_size=0.1, num_steps=4, adapt_step_size=False)
        mcmc = MCMC(kernel, num_warmup=5, num_samples=8, progress_bar=False)
        mcmc.run(jax.random.key(2), XN, YN, extra_fields=("potential_energy",))
        return mcmc.get_samples(), mcmc.get_extra_fields()

    same_with_our_engine(case)


def test_nnx_mutable_hijax_variables():
    # JAX 0.10 hi-types: a Variable backed by mutable state, captured, passed as an argument
    # that is not differentiated, and updated (outside the derivative) inside the function.
    def case():
        captured = nnx.Variable(jnp.array(2.0), hijax=True)
        passed = nnx.Variable(jnp.array(2.0), hijax=True)

        def loss_captured(x):
            captured[...] = jax.lax.stop_gradient(x * 3)
            return x**2 + captured[...]

        def loss_passed(x, v):
            v[...] = jax.lax.stop_gradient(x * 2)
            return x**3 * v[...]

        @jax.jit
        def step(x, v):  # under jit the Variable is a traced hi-type constant
            return jax.value_and_grad(loss_passed)(x, v)

        x = jnp.array(1.5)
        g1 = jax.grad(loss_captured)(x)
        g2 = jax.grad(loss_passed)(x, passed)
        g3 = step(x + 1, passed)
        return g1, captured[...], g2, g3, passed[...]

    same_with_our_engine(case)
