"""Sharded training as people write it, on meshes with Explicit axes (JAX 0.10's default).

Each parallelism pattern (data parallel, FSDP, Megatron-style tensor parallelism, a 2-D
data x model mesh, a two-stage `shard_map` pipeline) is differentiated by `transforms.grad` and
by `jax.grad` with the same shardings, on 8 simulated CPU devices (tests/conftest.py). Checked:
the values, that every cotangent has its primal's sharding, that the compiled gradients move the
same data between devices (kind, count and shapes of the collectives in the compiled HLO), and
that ours needs no more memory per device (`memory_analysis`).

A second table checks rule by rule that shardings pass through forward and reverse mode.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import PartitionSpec as P
from jax.sharding import auto_axes, explicit_axes, reshard

import transforms

TOL = dict(rtol=1e-10, atol=1e-10)
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rand(shape, seed=0):
    return jnp.asarray(np.random.RandomState(seed).randn(*shape))


def _put(mesh, value, spec):
    return jax.device_put(value, jax.sharding.NamedSharding(mesh, spec))


_COLLECTIVE = re.compile(
    r"= (.+?) (all-reduce|all-gather|reduce-scatter|collective-permute|all-to-all)(?:-start)?\("
)


def _collectives(compiled_text: str) -> collections.Counter:
    """(kind, sizes of its results) of every collective in a compiled HLO module, with counts.

    Sizes are element counts, sorted: the same data moved in another dimension order (a weight
    gradient reduced as (in, out) or as (out, in)) counts as the same collective.
    """
    found = collections.Counter()
    for shape, kind in _COLLECTIVE.findall(compiled_text):
        dims = re.findall(r"\w+\[([\d,]*)\]", shape)
        sizes = sorted(int(np.prod([int(d) for d in ds.split(",") if d])) for ds in dims)
        found[kind, tuple(sizes)] += 1
    return found


def _spec(x) -> tuple:
    """The partition of each dimension of `x` (None where not split)."""
    spec = tuple(x.sharding.spec)
    return spec + (None,) * (x.ndim - len(spec))


def _memory(compiled) -> int:
    stats = compiled.memory_analysis()
    return stats.temp_size_in_bytes + stats.output_size_in_bytes


def _compare(mesh, loss, *args, check_memory=True):
    """`transforms.grad(loss)` against `jax.grad(loss)` under `mesh`: values, shardings,
    collectives and memory of the compiled gradient programs."""
    argnums = tuple(range(len(args)))
    with jax.set_mesh(mesh):
        ours = jax.jit(transforms.grad(loss, argnums))
        theirs = jax.jit(jax.grad(loss, argnums))
        got, want = ours(*args), theirs(*args)
        for g, w, a in zip(jax.tree.leaves(got), jax.tree.leaves(want), jax.tree.leaves(args)):
            np.testing.assert_allclose(g, w, **TOL)
            assert _spec(g) == _spec(w) == _spec(a)
        ours_c = ours.lower(*args).compile()
        theirs_c = theirs.lower(*args).compile()
    ours_coll = _collectives(ours_c.as_text())
    assert ours_coll == _collectives(theirs_c.as_text())
    if check_memory:
        assert _memory(ours_c) <= _memory(theirs_c)
    return ours_coll


def _data_mesh():
    return jax.make_mesh((8,), ("data",))


def _data_model_mesh():
    return jax.make_mesh((2, 4), ("data", "model"))


def test_data_parallel():
    mesh = _data_mesh()
    params = [_put(mesh, _rand((6, 16), 1), P()), _put(mesh, _rand((16, 2), 2), P())]
    x, y = _put(mesh, _rand((32, 6), 3), P("data")), _put(mesh, _rand((32, 2), 4), P("data"))

    def loss(w1, w2, x, y):
        return jnp.mean((jnp.tanh(x @ w1) @ w2 - y) ** 2)

    coll = _compare(mesh, loss, *params, x, y)
    assert any(kind == "all-reduce" for kind, _ in coll)  # the weight gradients are summed


def test_fsdp_parameters_gathered_per_layer():
    # Parameters stored split over the data axis, gathered for their layer only; their
    # gradients go back split (a reduce-scatter, or an all-reduce and a slice).
    mesh = _data_mesh()
    w1, w2 = _put(mesh, _rand((8, 16), 1), P("data")), _put(mesh, _rand((16, 8), 2), P("data"))
    x = _put(mesh, _rand((32, 8), 3), P("data"))

    def loss(w1, w2, x):
        h = jax.nn.gelu(x @ reshard(w1, P()))
        return jnp.mean((h @ reshard(w2, P())) ** 2)

    # Memory is not compared here: XLA's buffer assignment gives ours 64 bytes more per device
    # (5224 vs 5160; 4712 vs 4648 with tanh) for one 4-byte value, the device's partition id
    # that both gradients' reshards slice by, padded to 64 bytes in the temporary buffer. Ours
    # slices each gradient straight into its output buffer, so the id must live apart from them;
    # JAX's computes w2's gradient transposed, slices it into a temporary and copies it out (one
    # more op, 128 bytes more traffic), and XLA keeps the id in that output buffer until the
    # copy. The arrays are the same (--xla_dump_to: *-buffer-assignment.txt).
    coll = _compare(mesh, loss, w1, w2, x, check_memory=False)
    assert any(kind == "all-gather" for kind, _ in coll)


def _megatron_mlp(x, w1, w2):
    # Column-parallel then row-parallel: the hidden layer is split over `model`, the output
    # is summed over it.
    h = jax.nn.gelu(jnp.einsum("bd,df->bf", x, w1, out_sharding=P("data", "model")))
    return jnp.einsum("bf,fd->bd", h, w2, out_sharding=P("data", None))


def test_megatron_mlp_on_a_data_by_model_mesh():
    mesh = _data_model_mesh()
    w1, w2 = (
        _put(mesh, _rand((8, 16), 1), P(None, "model")),
        _put(mesh, _rand((16, 8), 2), P("model", None)),
    )
    x = _put(mesh, _rand((16, 8), 3), P("data"))

    def loss(w1, w2, x):
        return jnp.mean(_megatron_mlp(x, w1, w2) ** 2)

    _compare(mesh, loss, w1, w2, x)


def test_megatron_attention_block():
    # Heads split over `model` (query/key/value projections column-sharded), the output
    # projection row-sharded; the batch over `data`.
    mesh = _data_model_mesh()
    d, heads, hd = 8, 4, 2
    wq, wk, wv = (_put(mesh, _rand((d, heads, hd), s), P(None, "model")) for s in (1, 2, 3))
    wo = _put(mesh, _rand((heads, hd, d), 4), P("model"))
    x = _put(mesh, _rand((4, 6, d), 5), P("data"))

    def attention(x, wq, wk, wv, wo):
        spec = P("data", None, "model")
        q = jnp.einsum("bsd,dhk->bshk", x, wq, out_sharding=spec)
        k = jnp.einsum("bsd,dhk->bshk", x, wk, out_sharding=spec)
        v = jnp.einsum("bsd,dhk->bshk", x, wv, out_sharding=spec)
        scores = jnp.einsum("bshk,bthk->bhst", q, k, out_sharding=P("data", "model")) / np.sqrt(hd)
        probs = jax.nn.softmax(scores, axis=-1)
        mixed = jnp.einsum("bhst,bthk->bshk", probs, v, out_sharding=spec)
        return jnp.einsum("bshk,hkd->bsd", mixed, wo, out_sharding=P("data"))

    def loss(wq, wk, wv, wo, x):
        return jnp.mean(jnp.tanh(attention(x, wq, wk, wv, wo) + x) ** 2)

    _compare(mesh, loss, wq, wk, wv, wo, x)


def test_two_stage_shard_map_pipeline():
    # Stage s holds layer s; stage 0's activations move to stage 1 with a ppermute.
    mesh = jax.make_mesh((2, 4), ("stage", "data"))
    ws = _put(mesh, _rand((2, 6, 6), 1) / 2, P("stage"))
    x = _put(mesh, _rand((16, 6), 2), P("data"))

    def stages(w, x):
        w = w[0]
        first = jnp.tanh(x @ w)
        received = lax.ppermute(first, "stage", [(0, 1)])
        last = jnp.tanh(received @ w)
        mine = jnp.where(lax.axis_index("stage") == 1, last, 0.0)
        return lax.psum(mine, "stage")

    pipeline = jax.shard_map(
        stages, mesh=mesh, in_specs=(P("stage"), P("data")), out_specs=P("data")
    )

    def loss(ws, x):
        return jnp.mean(pipeline(ws, x) ** 2)

    coll = _compare(mesh, loss, ws, x)
    assert any(kind == "collective-permute" for kind, _ in coll)


def test_nothing_cached_outlives_its_mesh():
    # The same (eager) gradient under one mesh, then another: hoisted constants and cached
    # programs built under the first must not serve the second.
    def loss(w, x):
        return jnp.mean(jnp.tanh(x @ w) ** 2)

    for mesh, specs in (
        (_data_mesh(), (P(), P("data"))),
        (_data_model_mesh(), (P(None, "model"), P("data"))),
        (_data_mesh(), (P(), P("data"))),
    ):
        with jax.set_mesh(mesh):
            w, x = _put(mesh, _rand((4, 8), 1), specs[0]), _put(mesh, _rand((16, 4), 2), specs[1])
            for _ in range(3):  # first call op by op, then compiled
                got = transforms.grad(loss)(w, x)
            np.testing.assert_allclose(got, jax.grad(loss)(w, x), **TOL)
            assert _spec(got) == _spec(w)


_IDX = np.array([0, 3, 5, 1])

# name -> (function, input specs); inputs are (8, 12) arrays unless the spec says otherwise.
RULES = {
    "elementwise": (lambda x, y: x * jnp.tanh(y), (P("data", "model"), P("data", "model"))),
    "broadcast": (lambda x, v: x * v, (P("data", "model"), P("model"))),
    "reduce_sum": (lambda x: jnp.sum(x, axis=1), (P("data", "model"),)),
    "reduce_max": (lambda x: jnp.max(x, axis=0), (P("data", "model"),)),
    "reshape": (
        lambda x: jnp.reshape(x, (8, 3, 4), out_sharding=P("data", None, "model")),
        (P("data", "model"),),
    ),
    "transpose": (lambda x: x.T * 2.0, (P("data", "model"),)),
    "dot_general": (
        lambda x, w: jnp.matmul(x, w, out_sharding=P("data", "model")),
        (P("data", "model"), P("model", None)),
    ),
    "gather": (lambda x: x[:, _IDX], (P("data", None),)),
    "scatter": (lambda x, y: x.at[:, _IDX].add(y[:, :4]), (P("data", None), P("data", None))),
    "reshard": (lambda x: reshard(x, P(None, "model")) * 2, (P("data", "model"),)),
    "sharding_constraint": (
        lambda x: lax.with_sharding_constraint(jnp.sin(x), P("data", "model")),
        (P("data", "model"),),
    ),
    "auto_axes": (
        lambda x: auto_axes(lambda y: jnp.sin(y) * 2, out_sharding=P("data", "model"))(x),
        (P("data", "model"),),
    ),
    "explicit_axes": (
        lambda x: explicit_axes(
            lambda y: jnp.sin(reshard(y, P("data", None))), in_sharding=P("data", "model")
        )(auto_axes(lambda z: z * 3, out_sharding=P("data", "model"))(x)),
        (P("data", "model"),),
    ),
    "scan": (
        lambda x: lax.scan(lambda c, r: (c * jnp.cos(r), c * r), x[0], x)[1],
        (P(None, "model"),),
    ),
    "cond": (lambda x: lax.cond(x.sum() > 0, jnp.sin, jnp.cos, x), (P("data", "model"),)),
    "fori_loop": (
        lambda x: lax.fori_loop(0, 3, lambda i, c: jnp.sin(c) * 1.5, x),
        (P("data", "model"),),
    ),
    "softmax": (lambda x: jax.nn.softmax(x, axis=-1), (P("data", "model"),)),
}


@pytest.mark.parametrize("name", sorted(RULES))
def test_rule_passes_shardings(name):
    fun, specs = RULES[name]
    mesh = _data_model_mesh()
    shapes = {1: (12,), 2: (8, 12)}
    args = []
    for i, spec in enumerate(specs):
        shape = (12, 8) if name == "dot_general" and i == 1 else shapes[len(spec)]
        args.append(_put(mesh, _rand(shape, i), spec))
    tangents = tuple(
        _put(mesh, _rand(a.shape, 10 + i), a.sharding.spec) for i, a in enumerate(args)
    )
    argnums = tuple(range(len(args)))

    def loss(*a):
        return jnp.sum(jnp.sin(fun(*a)))

    with jax.set_mesh(mesh):
        for ours, theirs in (
            (transforms.grad(loss, argnums), jax.grad(loss, argnums)),
            (lambda *a: transforms.jvp(fun, a, tangents), lambda *a: jax.jvp(fun, a, tangents)),
        ):
            got, want = jax.jit(ours)(*args), jax.jit(theirs)(*args)
            for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
                np.testing.assert_allclose(g, w, **TOL)
                assert _spec(g) == _spec(w)


def test_tf_variables_keep_their_shardings_through_a_training_step():
    import transforms.tf as tf

    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    w0, b0, x = _rand((8, 4), 1), _rand((4,), 2), _rand((16, 8), 3)

    def train(w, b, x, steps=2):
        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(tf.tanh(tf.matmul(x, w) + b)))
            gw, gb = tape.gradient(loss, [w, b])
            w.assign_sub(0.1 * gw)
            b.assign_sub(0.1 * gb)
            return loss

        for _ in range(steps):
            step(x)
        return w, b

    w = tf.Variable(_put(mesh, w0, P("data")))
    b = tf.Variable(_put(mesh, b0, P()))
    train(w, b, _put(mesh, x, P("data")))
    plain_w, plain_b = train(tf.Variable(w0), tf.Variable(b0), x)
    for v, plain, spec in ((w, plain_w, P("data")), (b, plain_b, P())):
        assert v._value.sharding == jax.sharding.NamedSharding(mesh, spec)
        np.testing.assert_allclose(v.numpy(), plain.numpy(), **TOL)
    # An eager assign of a host value keeps the placement too, as in TF.
    w.assign(np.zeros((8, 4)))
    assert w._value.sharding == jax.sharding.NamedSharding(mesh, P("data"))


# --- forward mode with tangents placed unlike their primals ----------------------------------

_SWAPPED = {"data": "model", "model": "data", None: None}


def _rule_args(mesh, name):
    """The primals of RULES[name] (as in test_rule_passes_shardings) and their specs."""
    _, specs = RULES[name]
    shapes = {1: (12,), 2: (8, 12)}
    args = []
    for i, spec in enumerate(specs):
        shape = (12, 8) if name == "dot_general" and i == 1 else shapes[len(spec)]
        args.append(_put(mesh, _rand(shape, i), spec))
    return args


def _misplaced(mesh, primal, placement, seed):
    """A tangent for `primal` placed otherwise: replicated, split over the other mesh axes, or
    not placed at all (a NumPy array)."""
    value = _rand(primal.shape, seed)
    if placement == "placed":  # as its primal, for contrast
        return _put(mesh, value, primal.sharding.spec)
    if placement == "unplaced":
        return np.asarray(value)
    if placement == "replicated":
        return _put(mesh, value, P())
    return _put(mesh, value, P(*(_SWAPPED[a] for a in _spec(primal))))


_PLACEMENTS = ("replicated", "swapped", "unplaced")


@pytest.mark.parametrize(
    "name",
    [
        "elementwise",
        "broadcast",
        "dot_general",
        "reduce_sum",
        "reduce_max",
        "reshape",
        "softmax",
        "reshard",
        "auto_axes",
    ],
)
def test_jvp_gives_tangents_their_primals_shardings(name):
    # jax.jvp traces each jitted function's JVP (every jnp function is one) with the primals'
    # tangent types, so its output tangents are laid out as the primal outputs are, however the
    # input tangents were placed; ours casts the tangents to their primals' shardings on entry.
    fun = RULES[name][0]
    mesh = _data_model_mesh()
    args = _rule_args(mesh, name)
    with jax.set_mesh(mesh):
        for placement in _PLACEMENTS:
            tangents = tuple(_misplaced(mesh, a, placement, 10 + i) for i, a in enumerate(args))
            for wrap in (lambda f: f, jax.jit):  # eager and staged
                got = wrap(lambda a, t: transforms.jvp(fun, a, t))(tuple(args), tangents)
                want = wrap(lambda a, t: jax.jvp(fun, a, t))(tuple(args), tangents)
                for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
                    np.testing.assert_allclose(g, w, **TOL)
                    assert _spec(g) == _spec(w), (placement, _spec(g), _spec(w))
                    assert jax.typeof(g).sharding == jax.typeof(w).sharding


@pytest.mark.parametrize("name", ["transpose", "gather", "scan"])
def test_jvp_tangents_have_their_primals_shardings_where_jax_mistypes_them(name):
    # Through lax-level operations that are not jitted (`x.T`, indexing) jax.jvp passes a
    # misplaced tangent on as it is, so its output tangent's type is not its primal's (a scan
    # carry even fails to type-check); JAX asserts that tangents have their primals' shardings
    # under jax_enable_checks. Ours gives every output tangent its primal output's sharding,
    # with JAX's values.
    fun = RULES[name][0]
    mesh = _data_model_mesh()
    args = _rule_args(mesh, name)
    placed = tuple(_put(mesh, _rand(a.shape, 10 + i), a.sharding.spec) for i, a in enumerate(args))
    with jax.set_mesh(mesh):
        want_out, want_dot = jax.jit(lambda *a: jax.jvp(fun, a, placed))(*args)
        for placement in _PLACEMENTS:
            tangents = tuple(_misplaced(mesh, a, placement, 10 + i) for i, a in enumerate(args))
            out, out_dot = jax.jit(lambda a, t: transforms.jvp(fun, a, t))(tuple(args), tangents)
            np.testing.assert_allclose(out_dot, want_dot, **TOL)  # same values as placed ones
            assert _spec(out_dot) == _spec(out) == _spec(want_dot)
        with jax.enable_checks(True), pytest.raises(AssertionError):
            jax.jvp(fun, tuple(args), tuple(_misplaced(mesh, a, "swapped", 0) for a in args))


def test_jacfwd_on_explicit_axes():
    mesh = _data_model_mesh()
    for name in ("dot_general", "reduce_sum", "reshape", "elementwise"):
        fun = RULES[name][0]
        args = _rule_args(mesh, name)
        argnums = tuple(range(len(args)))
        with jax.set_mesh(mesh):
            got = jax.jit(transforms.jacfwd(fun, argnums))(*args)
            want = jax.jit(jax.jacfwd(fun, argnums))(*args)
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(g, w, **TOL)
            assert _spec(g) == _spec(w), (name, _spec(g), _spec(w))


def test_hvp_on_explicit_axes_with_tangents_placed_otherwise():
    from transforms import tiered

    def f(x):
        return jnp.sum(jnp.sin(x) ** 2)

    mesh = _data_model_mesh()
    (x,) = _rule_args(mesh, "reduce_sum")
    with jax.set_mesh(mesh):
        for placement in ("placed", *_PLACEMENTS):
            t = _misplaced(mesh, x, placement, 1)
            # Eager calls run op by op, then compiled (in the background from the second call):
            # the program compiled for one placement of the tangent never serves another.
            for _ in range(3):
                got = transforms.hvp(f, (x,), (t,))
                tiered.wait(timeout=120)
            want = jax.jvp(jax.grad(f), (x,), (t,))[1]
            np.testing.assert_allclose(got, want, **TOL)
            assert _spec(got) == _spec(want) == _spec(x)


def test_linearize_and_vjp_check_tangent_shardings_as_jax_does():
    fun = RULES["reduce_sum"][0]
    mesh = _data_model_mesh()
    (x,) = _rule_args(mesh, "reduce_sum")
    with jax.set_mesh(mesh):
        y, f_jvp = transforms.linearize(fun, x)
        _, jax_f_jvp = jax.linearize(fun, x)
        # A tangent with no mesh is placed as its primal is (JAX's linear program, run on it
        # as it is, leaves this output tangent unsplit: typed unlike its primal).
        t = _misplaced(mesh, x, "unplaced", 1)
        for wrap in (lambda f: f, jax.jit):
            got, want = wrap(f_jvp)(t), wrap(jax_f_jvp)(t)
            np.testing.assert_allclose(got, want, **TOL)
            assert _spec(got) == _spec(y) == ("data",)
        # One on the mesh but laid out otherwise is refused, with JAX's error.
        for placement in ("replicated", "swapped"):
            t = _misplaced(mesh, x, placement, 1)
            with pytest.raises(ValueError, match="inconsistent with the original primal values"):
                jax_f_jvp(t)
            with pytest.raises(ValueError, match="inconsistent with the original primal values"):
                f_jvp(t)
        # And so is a cotangent laid out otherwise than its output.
        _, f_vjp = transforms.vjp(fun, x)
        _, jax_f_vjp = jax.vjp(fun, x)
        for placement in ("replicated", "swapped"):
            ct = _misplaced(mesh, y, placement, 2)
            with pytest.raises(ValueError, match="unexpected JAX type"):
                jax_f_vjp(ct)
            with pytest.raises(ValueError, match="unexpected JAX type"):
                f_vjp(ct)
        ct = _misplaced(mesh, y, "unplaced", 2)
        got, want = f_vjp(ct)[0], jax_f_vjp(ct)[0]
        np.testing.assert_allclose(got, want, **TOL)
        assert _spec(got) == _spec(want) == _spec(x)


def test_tf_training_step_on_explicit_axes(tmp_path):
    # tf.Variables holding arrays sharded over an Explicit mesh: the tape gradient has each
    # Variable's sharding, and the Variable keeps it through assign_sub and a tf.optimizers
    # (Keras) apply_gradients; the values are those of the same steps unsharded. Keras is
    # imported in the worker's own process only.
    out = tmp_path / "tf_mesh.npz"
    env = {**os.environ, "PYTHONPATH": _ROOT}
    env.pop("XLA_FLAGS", None)
    done = subprocess.run(
        [sys.executable, os.path.join(_ROOT, "tests", "tf_mesh_worker.py"), str(out)],
        cwd=_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    got = dict(np.load(out))
    specs = {"w": repr(("data", None)), "b": repr((None,))}
    for run in ("assign", "optimizer"):
        for k, spec in specs.items():
            for what in ("eager_grad", "traced_grad", "grad", "value"):
                assert str(got[f"{run}/sharded/{what}/{k}"]) == spec, (run, what, k)
            np.testing.assert_allclose(
                got[f"{run}/sharded/param/{k}"], got[f"{run}/plain/param/{k}"], **TOL
            )
        assert str(got[f"{run}/sharded/assigned/w"]) == specs["w"]
    # The optimizer's momentum makes its steps differ from plain SGD's.
    assert not np.allclose(got["optimizer/plain/param/w"], got["assign/plain/param/w"])


def test_eager_programs_serve_arguments_placed_otherwise():
    # On Auto axes the placement is not in the types, so one cached derivative program serves
    # arguments split over the mesh and replicated alike; the executable compiled for one
    # placement refuses another, and the call goes through jax.jit instead.
    from transforms import tiered

    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    x = _put(mesh, _rand((16, 4), 0), P("data"))

    def f(x):
        return jnp.sum(jnp.sin(x) ** 2, axis=1)

    with jax.set_mesh(mesh):
        for spec in (P("data"), P(), P("data")):
            t = _put(mesh, _rand((16, 4), 1), spec)
            for _ in range(3):  # op by op, then compiled in the background
                got_dot = transforms.jvp(f, (x,), (t,))[1]
                got_grad = transforms.grad(lambda v: jnp.sum(f(v)))(t)
                tiered.wait(timeout=120)
            np.testing.assert_allclose(got_dot, jax.jvp(f, (x,), (t,))[1], **TOL)
            np.testing.assert_allclose(got_grad, jax.grad(lambda v: jnp.sum(f(v)))(t), **TOL)


@pytest.mark.parametrize("name", ["auto_axes", "explicit_axes"])
def test_eager_derivatives_through_axis_type_regions(name):
    # Eagerly (no jax.jit): a Python float inside an auto_axes / explicit_axes region is typed
    # with that region's mesh, so it is not hoisted out into a constant made under the outer one.
    from transforms import tiered

    fun, (spec,) = RULES[name]
    mesh = _data_model_mesh()
    x, t = _put(mesh, _rand((8, 12), 0), spec), _put(mesh, _rand((8, 12), 1), spec)

    def loss(x):
        return jnp.sum(jnp.sin(fun(x)))

    with jax.set_mesh(mesh):
        for _ in range(3):  # op by op, then compiled
            got = transforms.grad(loss)(x)
            got_dot = transforms.jvp(fun, (x,), (t,))[1]
            tiered.wait(timeout=120)
        want, want_dot = jax.grad(loss)(x), jax.jvp(fun, (x,), (t,))[1]
    np.testing.assert_allclose(got, want, **TOL)
    np.testing.assert_allclose(got_dot, want_dot, **TOL)
    assert _spec(got) == _spec(x) and _spec(got_dot) == _spec(want_dot)


def test_tf_forward_accumulator_on_explicit_axes():
    # tf.autodiff.ForwardAccumulator runs on transforms.jvp: a replicated tangent for a Variable
    # split over "data" pushes forward to the output's sharding, with jax.jvp's values.
    import transforms.tf as tf

    mesh = _data_mesh()
    with jax.set_mesh(mesh):
        w = tf.Variable(_put(mesh, _rand((8, 4), 1), P("data")))
        t = _put(mesh, _rand((8, 4), 2), P())
        with tf.autodiff.ForwardAccumulator(w, tf.constant(t)) as acc:
            y = tf.reduce_sum(3.0 * w, axis=1)  # linear in w: the tangent meets no split value
        got = acc.jvp(y)._value
        want = jax.jvp(lambda v: jnp.sum(3.0 * v, axis=1), (w._value,), (t,))[1]
    np.testing.assert_allclose(got, want, **TOL)
    assert _spec(got) == _spec(want) == _spec(y._value) == ("data",)


@pytest.mark.parametrize("how", [{"max_steps": 5}, {"snapshots": 2}])
def test_while_loops_in_reverse_mode_keep_shardings(how):
    # Reverse mode through a while loop (stored residuals with a bound, snapshots without one):
    # the per-step buffers and snapshots are typed as the carry is, sharding included, and the
    # gradient has its primal's sharding, as JAX's gradient of the same loop unrolled.
    mesh = _data_model_mesh()
    x = _put(mesh, _rand((8, 12)), P("data", "model"))
    w = _put(mesh, _rand((12,), 1), P("model"))

    def loss(x, w, n):
        body = lambda i, c: jnp.sin(c) * w + 0.1 * c  # noqa: E731
        return jnp.sum(transforms.fori_loop(0, n, body, x, **how) ** 2)

    def unrolled(x, w):
        c = x
        for _ in range(3):
            c = jnp.sin(c) * w + 0.1 * c
        return jnp.sum(c**2)

    with jax.set_mesh(mesh):
        got = jax.jit(transforms.grad(loss, (0, 1)))(x, w, 3)
        want = jax.jit(jax.grad(unrolled, (0, 1)))(x, w)
    for g, e in zip(got, want, strict=True):
        np.testing.assert_allclose(g, e, **TOL)
        assert _spec(g) == _spec(e)
