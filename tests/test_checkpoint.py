"""jax.checkpoint (remat) in reverse mode: values inside are recomputed in the backward pass,
not stored as residuals, and `policy` decides which values are saved instead."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.ad_checkpoint import checkpoint_name

import transforms as T
from transforms import engine
from transforms.tracing import trace_flat

policies = jax.checkpoint_policies
X = jnp.linspace(0.1, 0.4, 4)
W = jnp.eye(4) * 0.9 + 0.05


def chain(x, w):
    for i in range(3):
        x = jnp.sin(checkpoint_name(w @ x, f"dot{i}"))
    return x


def _linearized(f, *args):
    flat, tree = jax.tree_util.tree_flatten(args)
    avals = [jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)) for a in flat]
    return engine.linearize_program(trace_flat(f, tree, avals)[0], (True,) * len(flat))


def _loss(policy="no checkpoint"):
    g = chain if policy == "no checkpoint" else jax.checkpoint(chain, policy=policy)
    return lambda x, w: jnp.sum(g(x, w) ** 2)


def _residual_shapes(f):
    lin = _linearized(f, X, W)
    return [v.aval.shape for v in lin.split.linear.invars[: lin.num_residuals]]


POLICIES = [
    None,
    policies.nothing_saveable,
    policies.dots_saveable,
    policies.dots_with_no_batch_dims_saveable,
    policies.everything_saveable,
    policies.save_only_these_names("dot1"),
    policies.save_anything_except_these_names("dot1"),
]


@pytest.mark.parametrize("policy", POLICIES)
def test_gradients_match_jax_under_every_policy(policy):
    f = _loss(policy)
    g = T.grad(f, argnums=(0, 1))(X, W)
    ref = jax.grad(f, argnums=(0, 1))(X, W)
    np.testing.assert_allclose(g[0], ref[0], rtol=1e-12)
    np.testing.assert_allclose(g[1], ref[1], rtol=1e-12)


def test_checkpoint_stores_inputs_not_intermediates():
    # Without checkpoint the residuals are the three cos(w x) and the outputs of each layer;
    # with it only the inputs x and w travel to the backward pass, plus the function's output
    # (which the square outside the checkpoint needs).
    plain = _residual_shapes(_loss())
    remat = _residual_shapes(_loss(None))
    assert len(plain) >= 6
    assert sorted(remat) == [(4,), (4,), (4, 4)]
    assert sorted(_residual_shapes(_loss(policies.nothing_saveable))) == [(4,), (4,), (4, 4)]


def test_policies_decide_what_is_saved():
    nothing = len(_residual_shapes(_loss(policies.nothing_saveable)))
    dots = len(_residual_shapes(_loss(policies.dots_saveable)))
    one_name = len(_residual_shapes(_loss(policies.save_only_these_names("dot1"))))
    all_but_one = len(_residual_shapes(_loss(policies.save_anything_except_these_names("dot1"))))
    everything = len(_residual_shapes(_loss(policies.everything_saveable)))
    plain = len(_residual_shapes(_loss()))
    assert nothing == 3
    assert dots == nothing + 3  # the three w @ x
    assert one_name == nothing + 1  # only the value named dot1
    assert nothing < all_but_one <= everything
    assert everything == plain


def test_backward_pass_recomputes():
    def backward_program(f):
        _, vjp_fn = T.vjp(f, X, W)
        return str(jax.make_jaxpr(vjp_fn)(1.0))

    plain, remat = backward_program(_loss()), backward_program(_loss(None))
    # Only the checkpointed backward pass evaluates sin (the recomputation), behind the
    # optimisation barrier that keeps XLA from reusing the forward pass's values.
    assert "sin" not in plain and "optimization_barrier" not in plain
    # Recomputed: the first two layers' outputs sin(w x) and every cos(w x) (the last layer's
    # own sin is the output, not needed backwards).
    assert remat.count(" sin ") == 2 and remat.count(" cos ") == 3
    assert "optimization_barrier" in remat


def test_forward_mode_and_linearize_through_checkpoint():
    f = jax.checkpoint(chain, policy=policies.dots_saveable)
    t = (jnp.ones(4), jnp.ones((4, 4)) * 0.1)
    out, out_dot = T.jvp(f, (X, W), t)
    ref, ref_dot = jax.jvp(f, (X, W), t)
    np.testing.assert_allclose(out_dot, ref_dot, rtol=1e-12)
    _, f_lin = T.linearize(f, X, W)
    np.testing.assert_allclose(f_lin(*t), ref_dot, rtol=1e-12)


def test_checkpointed_scan_body_stacks_only_the_carry():
    def step(c, x):
        for _ in range(3):
            c = jnp.tanh(W @ c + x)
        return c, None

    def loss(body):
        return lambda xs: jnp.sum(lax.scan(body, X, xs)[0])

    xs = jnp.ones((5, 4)) * 0.1
    for body in (step, jax.checkpoint(step)):
        np.testing.assert_allclose(T.grad(loss(body))(xs), jax.grad(loss(body))(xs), rtol=1e-12)

    def stacked(body):
        lin = _linearized(loss(body), xs)
        (scan,) = [e for e in lin.split.linear.eqns if e.primitive.name == "scan"]
        return [v.aval.shape for v in scan.invars if v.aval.shape[:1] == (5,)]

    assert len(stacked(step)) > len(stacked(jax.checkpoint(step)))
    # The carry per step and xs (residuals), and the tangent of xs (the linear input).
    assert stacked(jax.checkpoint(step)) == [(5, 4)] * 3


def test_second_order_through_checkpoint():
    f = jax.checkpoint(
        lambda x: jnp.sum(jnp.sin(x) * jnp.exp(x[::-1])), policy=policies.dots_saveable
    )
    np.testing.assert_allclose(T.hessian(f)(X), jax.hessian(f)(X), rtol=1e-10)
    g = lambda x: jnp.sum(jax.checkpoint(lambda x: jnp.sin(W @ x) ** 2)(x))  # noqa: E731
    np.testing.assert_allclose(T.hessian(g)(X), jax.hessian(g)(X), rtol=1e-10, atol=1e-12)
