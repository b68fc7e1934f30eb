"""The primitive coverage table: every primitive JAX can differentiate is ours or explained.

"JAX can differentiate" is decided by the oracle: the same probe (one equation, or the corpus
program for custom rules) is run through `jax.jvp` / `jax.vjp`. Primitives no corpus program
reaches fall back to JAX's rule tables. New rules landing on other branches only turn rows
green; a reason left behind for a primitive that gained rules is harmless data.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax._src.interpreters import ad  # the oracle's rule tables; tests only, never transforms/
from jax.extend.core import Primitive

from transforms import coverage
from transforms.jvp import jvp_rules
from transforms.transpose import transpose_rules


@pytest.fixture(scope="module")
def rows():
    return {r.name: r for r in coverage.coverage_table()}


def _jax_can(run, hit) -> bool:
    fun, avals = coverage.probe_target(hit)
    try:
        run(fun, avals)
    except Exception:
        return False
    return True


def _jax_modes(name, prim):
    """(forward, reverse): whether JAX itself differentiates this primitive."""
    hit = coverage.corpus_equations().get(name)
    if hit is not None:
        if not coverage._differentiable(hit.eqn):
            return False, False
        return (
            _jax_can(lambda f, a: coverage.run_forward(f, a, jax.jvp), hit),
            _jax_can(lambda f, a: coverage.run_reverse(f, a, jax.vjp), hit),
        )
    linear = prim in ad.primitive_transposes
    return prim in ad.primitive_jvps or linear, linear


def test_every_primitive_jax_differentiates_is_supported_or_explained(rows):
    prims = coverage.reachable_primitives()
    unexplained = []
    for name, prim in sorted(prims.items()):
        row = rows[name]
        jax_fwd, jax_rev = _jax_modes(name, prim)
        for mode, jax_ok, ours in (
            ("forward", jax_fwd, row.forward),
            ("reverse", jax_rev, row.reverse),
        ):
            if jax_ok and ours != "yes" and name not in coverage.REASONS:
                unexplained.append(
                    f"{name} ({mode}: {ours}{'; ' + row.detail if row.detail else ''})"
                )
    assert not unexplained, (
        "JAX differentiates these primitives but transforms does not, and REASONS says nothing "
        "about them: add a rule, or a reason to transforms.coverage.REASONS:\n  "
        + "\n  ".join(unexplained)
    )


def test_no_registered_rule_fails_its_probe_unexplained(rows):
    broken = [f"{r.name}: {r.detail}" for r in rows.values() if "error" in (r.forward, r.reverse)]
    assert not broken, "registered rules that fail on their probe:\n  " + "\n  ".join(broken)


def test_reasons_name_real_primitives():
    names = set(coverage.reachable_primitives())
    unknown = sorted(set(coverage.REASONS) - names)
    assert not unknown, (
        f"REASONS mentions primitives no corpus program or module reaches: {unknown}"
    )


def test_table_agrees_with_registries(rows):
    for name, prim in coverage.reachable_primitives().items():
        row = rows[name]
        if row.forward == "yes" and coverage.corpus_equations().get(name) is not None:
            assert prim in jvp_rules or any(p.name == name for p in jvp_rules), (
                f"{name}: probed forward without a registered rule?"
            )
    assert rows["sin"].forward == rows["sin"].reverse == "yes"
    assert rows["mul"].reverse == "yes" and jax.lax.mul_p in transpose_rules
    assert rows["and"].forward == "n/a"
    # Beyond JAX, which refuses both: forward mode through custom_vjp, reverse through while.
    assert rows["custom_vjp_call"].forward == rows["custom_vjp_call"].reverse == "yes"
    assert rows["while"].forward == rows["while"].reverse == "yes"


def test_probe_detects_a_primitive_without_rules():
    # The table must be able to say "no": a fresh primitive has no rule in either mode.
    noop_p = Primitive("coverage_test_noop")
    noop_p.def_impl(lambda x: x)
    noop_p.def_abstract_eval(lambda x: x)
    closed = jax.make_jaxpr(lambda x: noop_p.bind(x))(np.ones(3, np.float32))
    hit = coverage.CorpusHit("noop", closed.jaxpr.eqns[0], noop_p.bind, (np.ones(3),))
    forward, reverse = coverage.probe(hit)
    assert forward.status == "missing" and "coverage_test_noop" in forward.message
    assert reverse.status == "missing"


def test_probe_flags_a_rule_that_raises():
    bad_p = Primitive("coverage_test_bad")
    bad_p.def_impl(lambda x: x)
    bad_p.def_abstract_eval(lambda x: x)

    def bad_rule(primals, tangents):
        raise ValueError("broken rule")

    jvp_rules[bad_p] = bad_rule
    try:
        closed = jax.make_jaxpr(lambda x: bad_p.bind(x))(jnp.ones(3))
        hit = coverage.CorpusHit("bad", closed.jaxpr.eqns[0], bad_p.bind, (np.ones(3),))
        forward, _ = coverage.probe(hit)
    finally:
        del jvp_rules[bad_p]
    assert forward.status == "error" and "broken rule" in forward.message


def test_markdown_lists_every_primitive(rows):
    md = coverage.markdown_table()
    for name in rows:
        assert f"| `{name}` |" in md
    assert md.count("\n| `") == len(rows)


# --- engine bugs the probes found, kept fixed ----------------------------------------------------


def test_custom_jvp_with_a_zero_input_tangent():
    # The custom_jvp equation is re-bound (not differentiated) when its input tangent is zero.
    import transforms

    f = lambda x, y: jax.nn.relu(y) * x + jax.nn.relu(x)
    for argnums in (0, 1):
        ours = transforms.grad(f, argnums)(1.5, 2.0)
        assert np.allclose(ours, jax.grad(f, argnums)(1.5, 2.0))


def test_closing_over_a_prng_key():
    import transforms

    key = jax.random.key(0)
    f = lambda x: jnp.sum(x * jax.random.normal(key, (3,)))
    x = jnp.arange(3.0)
    assert np.allclose(transforms.grad(f)(x), jax.grad(f)(x))
    g = lambda k, x: jnp.sum(x * jax.random.normal(k, (3,)))
    assert np.allclose(transforms.grad(g, 1)(key, x), jax.grad(g, 1)(key, x))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_stack_both_modes(axis):
    # jnp.stack is its own primitive in JAX 0.10; the coverage corpus found it missing.
    import transforms

    f = lambda x, y: jnp.sin(jnp.stack([x * y, x, y**2], axis=axis))
    x, y = jnp.arange(1.0, 7.0).reshape(2, 3), jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)
    for argnums in (0, 1, (0, 1)):
        ours = transforms.jacrev(f, argnums)(x, y)
        assert jax.tree_util.tree_all(
            jax.tree_util.tree_map(np.allclose, ours, jax.jacrev(f, argnums)(x, y))
        )
        ours_fwd = transforms.jacfwd(f, argnums)(x, y)
        assert jax.tree_util.tree_all(
            jax.tree_util.tree_map(np.allclose, ours_fwd, jax.jacfwd(f, argnums)(x, y))
        )
