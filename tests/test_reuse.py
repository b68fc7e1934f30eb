"""Eager calls reuse a traced program only when nothing it was traced from has changed."""

import dataclasses
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import transforms as T
from transforms import concrete, reuse


@pytest.fixture
def traces(monkeypatch):
    """Counts the traces of the user's function (reuse skips them)."""
    reuse.clear()
    count = {"n": 0}
    real = concrete.trace_flat

    def counting(*a, **k):
        count["n"] += 1
        return real(*a, **k)

    monkeypatch.setattr(concrete, "trace_flat", counting)
    return count


SCALE = 2.0
TABLE = jnp.arange(3.0)
LOG: list = []
ns = types.ModuleType("user_settings")
ns.power = 2.0


def helper(x):
    return jnp.sin(x) * SCALE


def uses_helper(x):
    return jnp.sum(helper(x) ** 2)


def uses_table(x):
    return jnp.sum(TABLE * x**2)


def uses_module_attribute(x):
    return jnp.sum(x**ns.power)


def test_the_same_function_is_traced_once(traces):
    g = T.grad(uses_helper)
    x = jnp.arange(3.0)
    for _ in range(4):
        np.testing.assert_allclose(g(x), jax.grad(uses_helper)(x))
    assert traces["n"] == 2  # the first call traces; the second proves it is called again


@pytest.mark.parametrize("api", ["grad", "value_and_grad", "vjp", "jvp"])
def test_every_reverse_and_forward_entry_reuses(traces, api):
    x = jnp.arange(3.0)
    call = {
        "grad": lambda: T.grad(uses_helper)(x),
        "value_and_grad": lambda: T.value_and_grad(uses_helper)(x)[1],
        "vjp": lambda: T.vjp(uses_helper, x)[1](1.0)[0],
        "jvp": lambda: T.jvp(uses_helper, (x,), (jnp.ones(3),))[1],
    }[api]
    first = call()
    for _ in range(3):
        assert np.allclose(call(), first)
    assert traces["n"] == 2


def test_a_changed_global_value_is_seen(traces):
    global SCALE
    g = T.grad(uses_helper)
    x = jnp.arange(3.0)
    before = g(x)
    SCALE = 3.0
    try:
        np.testing.assert_allclose(g(x), jax.grad(uses_helper)(x))
        assert not np.allclose(g(x), before)
    finally:
        SCALE = 2.0
    assert traces["n"] == 2  # one trace with SCALE = 2, one with SCALE = 3 (called twice)


def test_a_reassigned_global_array_is_seen(traces):
    global TABLE
    x = jnp.arange(3.0)
    g = T.grad(uses_table)
    g(x)
    TABLE = jnp.array([5.0, 6.0, 7.0])
    try:
        np.testing.assert_allclose(g(x), 2 * TABLE * x)
    finally:
        TABLE = jnp.arange(3.0)


def test_a_changed_closure_cell_and_module_attribute_are_seen(traces):
    x = jnp.arange(1.0, 4.0)
    c = 1.0

    def f(x):
        return jnp.sum(c * x**2)

    g = T.grad(f)
    g(x)
    c = 4.0
    np.testing.assert_allclose(g(x), 8.0 * x)
    h = T.grad(uses_module_attribute)
    h(x)
    ns.power = 3.0
    try:
        np.testing.assert_allclose(h(x), 3.0 * x**2)
    finally:
        ns.power = 2.0


def test_functions_with_effects_or_unknown_reads_are_traced_every_call(traces, capsys):
    x = jnp.arange(3.0)

    def prints(x):
        print("tracing")
        return jnp.sum(x**2)

    def appends(x):
        LOG.append(1)
        return jnp.sum(x**2)

    @dataclasses.dataclass
    class Config:
        scale: float

    cfg = Config(2.0)

    def reads_object(x):
        return jnp.sum(cfg.scale * x**2)

    for f in (prints, appends):
        T.grad(f)(x)
        T.grad(f)(x)
    assert capsys.readouterr().out.count("tracing") == 2  # as with jax.grad
    assert len(LOG) == 2
    T.grad(reads_object)(x)
    cfg.scale = 5.0
    np.testing.assert_allclose(T.grad(reads_object)(x), 10.0 * x)
    assert traces["n"] == 6
    LOG.clear()


def test_a_mutable_numpy_global_is_not_trusted(traces):
    weights = np.array([1.0, 2.0, 3.0])

    def f(x):
        return jnp.sum(weights * x**2)

    x = jnp.ones(3)
    T.grad(f)(x)
    weights[:] = 10.0
    np.testing.assert_allclose(T.grad(f)(x), 20.0 * np.ones(3))


def test_static_arguments_and_configuration_are_part_of_the_key(traces):
    def f(x, s):
        return jnp.sum(s * x**2)

    x = jnp.ones(3)
    np.testing.assert_allclose(T.grad(f)(x, 2.0), 4.0 * np.ones(3))
    np.testing.assert_allclose(T.grad(f)(x, 3.0), 6.0 * np.ones(3))
    with jax.numpy_dtype_promotion("strict"):
        T.grad(f)(x, 3.0)
    assert traces["n"] == 3


def test_branches_on_values_and_custom_pytrees_still_trace(traces):
    def branchy(x):
        return jnp.sin(x) * x if x > 0 else -x

    for v, want in ((1.0, jax.grad(branchy)(1.0)), (-1.0, -1.0), (2.0, jax.grad(branchy)(2.0))):
        np.testing.assert_allclose(T.grad(branchy)(v), want, rtol=1e-6)

    @jax.tree_util.register_dataclass
    @dataclasses.dataclass
    class Params:
        w: jax.Array

        def loss(self, x):
            return jnp.sum((self.w * x) ** 2)

    p = Params(jnp.ones(3))
    before = traces["n"]
    T.grad(lambda p: p.loss(2.0))(p)
    T.grad(lambda p: p.loss(2.0))(p)
    assert traces["n"] == before + 2


def test_python_aux_objects_are_fresh_each_call(traces):
    def f(x):
        return jnp.sum(x**2), {"note": object()}

    g = T.grad(f, has_aux=True)
    _, a1 = g(jnp.ones(2))
    _, a2 = g(jnp.ones(2))
    assert a1["note"] is not a2["note"]
