"""`jax.checkpoint` with each policy JAX ships saves what JAX's autodiff saves.

The pullback `transforms.vjp` returns is a pytree whose leaves are its residuals, so what we
save can be listed and compared with `jax.ad_checkpoint.print_saved_residuals` for JAX: the same
number of residuals, of the same types (arguments and saved intermediates alike), and the same
gradients.
"""

import contextlib
import io
import re
from collections import Counter

import jax
import jax.ad_checkpoint
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_tree_allclose
from jax import tree_util
from jax.ad_checkpoint import checkpoint_name

import transforms as T

cp = jax.checkpoint_policies


def body(w1, w2, x):
    # a dot without batch dimensions named "a", a batched dot named "b", element-wise ops between
    h = jnp.sin(checkpoint_name(w1 @ x, "a"))
    z = checkpoint_name(jnp.einsum("bij,bj->bi", w2, jnp.broadcast_to(h, (2, 3))), "b")
    return jnp.sum(jnp.cos(z) * jnp.tanh(z))


ARGS = (
    jnp.linspace(-0.5, 0.5, 9).reshape(3, 3),
    jnp.linspace(0.1, 0.9, 18).reshape(2, 3, 3),
    jnp.array([0.3, -0.2, 0.7]),
)

POLICIES = {
    "default": None,
    "everything_saveable": cp.everything_saveable,
    "nothing_saveable": cp.nothing_saveable,
    "dots_saveable": cp.dots_saveable,
    "dots_with_no_batch_dims_saveable": cp.dots_with_no_batch_dims_saveable,
    "save_only_these_names": cp.save_only_these_names("a"),
    "save_only_these_names_both": cp.save_only_these_names("a", "b"),
    "save_and_offload_only_these_names": cp.save_and_offload_only_these_names(
        names_which_can_be_saved=["b"],
        names_which_can_be_offloaded=[],
        offload_src="device",
        offload_dst="pinned_host",
    ),
    "save_from_both_policies": cp.save_from_both_policies(
        cp.save_only_these_names("a"), cp.dots_with_no_batch_dims_saveable
    ),
}


def _jax_saved_types(f, *args):
    """The (dtype, shape) of each residual `print_saved_residuals` lists for JAX."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        jax.ad_checkpoint.print_saved_residuals(f, *args)
    types = []
    for line in out.getvalue().strip().splitlines():
        m = re.match(r"(\w+)\[([\d,]*)\]", line)
        assert m, line
        shape = tuple(int(d) for d in m.group(2).split(",") if d)
        types.append((m.group(1), shape))
    return types


def _our_saved_types(f, *args):
    _, pullback = T.vjp(f, *args)
    return [
        (jax.typeof(r).str_short(short_dtypes=True).split("[")[0], tuple(np.shape(r)))
        for r in tree_util.tree_leaves(pullback)
    ]


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_policy_saves_what_jax_saves(name):
    policy = POLICIES[name]
    f = jax.checkpoint(body) if policy is None else jax.checkpoint(body, policy=policy)
    theirs = _jax_saved_types(f, *ARGS)
    ours = _our_saved_types(f, *ARGS)
    assert Counter(ours) == Counter(theirs), f"ours {ours}\nJAX's {theirs}"
    argnums = (0, 1, 2)
    assert_tree_allclose(T.grad(f, argnums)(*ARGS), jax.grad(f, argnums)(*ARGS))


def test_policies_differ_here():
    # The program tells the policies apart, so the test above compares something.
    counts = {
        name: len(_jax_saved_types(jax.checkpoint(body, policy=p), *ARGS))
        for name, p in POLICIES.items()
        if p is not None
    }
    assert len(set(counts.values())) >= 3, counts


def test_offloading_policy_recomputes_what_it_does_not_save():
    # Recompute markers (not True/False) of an offloading policy are honoured: nothing named is
    # saved beyond the arguments when the named value is not in the program.
    policy = cp.save_and_offload_only_these_names(
        names_which_can_be_saved=["absent"],
        names_which_can_be_offloaded=[],
        offload_src="device",
        offload_dst="pinned_host",
    )
    f = jax.checkpoint(body, policy=policy)
    assert Counter(_our_saved_types(f, *ARGS)) == Counter(_jax_saved_types(f, *ARGS))
    assert len(_our_saved_types(f, *ARGS)) == len(ARGS)
