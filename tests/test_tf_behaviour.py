"""TensorFlow 2.21 as the oracle for tape, RNG and tf.function behaviours that TF users rely
on: the same programs run under TF and transforms.tf must agree."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import transforms.tf as ttf
from tests.test_tf_oracle import assert_match, to_numpy

tf_real = pytest.importorskip("tensorflow")


def both(program):
    return to_numpy(program(ttf)), to_numpy(program(tf_real))


def behaviours(tf):
    out = {}
    v0, v1 = tf.Variable(2.0), tf.Variable([3.0, -1.0])
    with tf.GradientTape() as tape:
        y = v0 * tf.reduce_sum(v1)
    tape.gradient(y, v0)
    out["watched_after_gradient"] = [v.numpy() for v in tape.watched_variables()]
    with tf.GradientTape() as tape:
        result = v0 * tf.reduce_sum(v1)
        result = v0  # the target is a source (a Python branch)
    out["target_is_source"] = tape.gradient(result, [v0, v1])
    with tf.GradientTape() as tape:
        y = v0 * v0
    out["unread_target_is_source"] = tape.gradient(v1, [v0, v1])
    x = tf.constant([0.5, 2.0])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        z = x * v0
    out["tensor_target_is_source"] = tape.gradient([x, z], [x, v0])
    out["seeded_self_gradient"] = tape.gradient(x, x, output_gradients=tf.constant([2.0, 3.0]))
    out["jacobian_self"] = tape.jacobian(v1, v1)
    out["linspace_int"] = tf.linspace(-2, 2, 5)
    out["linspace_float"] = tf.linspace(0.0, 1.0, 3)
    a, b = tf.Variable(1.5), tf.Variable(-0.5)
    with tf.GradientTape() as tape:
        loss = a * b + b
    grads = tape.gradient(loss, {"w": a, "b": b, "nested": {"z": b, "a": a}})
    out["dict_order"] = [list(grads), list(grads["nested"])]
    out["dict_values"] = grads
    return out


def test_tape_behaviours_match_tensorflow():
    ours, theirs = both(behaviours)
    assert ours.pop("dict_order") == theirs.pop("dict_order") == [["w", "b", "nested"], ["z", "a"]]
    assert_match(ours, theirs)


def test_linspace_gradients_match_tensorflow():
    def prog(tf):
        lo, hi = tf.Variable(-1.0), tf.Variable(3.0)
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(tf.linspace(lo, hi, 4) ** 2)
        return [y, tape.gradient(y, [lo, hi])]

    ours, theirs = both(prog)
    assert_match(ours, theirs, rtol=1e-5)


def _singleton(tf):
    results = {}

    @tf.function
    def every_call(x):
        v = tf.Variable(1.0)
        return v + x

    store = {}

    @tf.function
    def per_shape(x):
        n = int(x.shape[0])
        if n not in store:
            store[n] = tf.Variable(tf.zeros(x.shape))
        return store[n] + x

    holder = []

    @tf.function
    def singleton(x):
        if not holder:
            holder.append(tf.Variable(2.0))
        holder[0].assign_add(1.0)
        return holder[0] * x

    def run(name, fn):
        try:
            results[name] = fn()
        except ValueError as e:
            # TF prefixes the user-code frames and "ValueError: " to its sentence.
            last = str(e).strip().splitlines()[-1].strip()
            results[name] = ("ValueError", last.removeprefix("ValueError: "))

    run("every_call", lambda: every_call(tf.constant(1.0)))
    run("per_shape_first", lambda: per_shape(tf.ones([2])))
    run("per_shape_new", lambda: per_shape(tf.ones([3])))
    run("singleton", lambda: [singleton(tf.constant(1.5)), singleton(tf.constant(1.5))])
    results["singleton_value"] = holder[0] if holder else None
    return results


def test_variables_created_in_tf_function_follow_tensorflow():
    ours, theirs = _singleton(ttf), _singleton(tf_real)
    for name in ("every_call", "per_shape_new"):
        assert theirs[name][0] == ours[name][0] == "ValueError"
        assert ours[name][1] == theirs[name][1]
        assert ours[name][1].startswith("tf.function only supports singleton tf.Variables")
    assert_match(to_numpy(ours["per_shape_first"]), to_numpy(theirs["per_shape_first"]))
    assert_match(to_numpy(ours["singleton"]), to_numpy(theirs["singleton"]))
    assert ours["singleton_value"].numpy() == theirs["singleton_value"].numpy() == 4.0


_DRAWS = textwrap.dedent(
    """
    import {module} as tf
    unseeded = tf.random.normal([4]).numpy()
    op_a = tf.random.uniform([3], seed=5).numpy()
    op_b = tf.random.uniform([3], seed=5).numpy()
    tf.random.set_seed(7)
    seeded = tf.random.normal([4]).numpy()
    tf.random.set_seed(11)
    d = tf.random.normal([4]).numpy()
    tf.random.set_seed(11)
    e = tf.random.normal([4]).numpy()
    print(repr([x.tolist() for x in (unseeded, op_a, op_b, seeded, d, e)]))
    """
)


def _start(module):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-c", _DRAWS.format(module=module)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )


def _finish(proc):
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0
    return eval(out.strip().splitlines()[-1])  # noqa: S307  (our own repr)


def test_random_streams_follow_tensorflow_seeding_rules():
    """Unseeded: new numbers in each fresh process; after set_seed: the same ones, and again
    after every set_seed with that seed; an op seed: repeatable across processes, new per call.
    Two fresh processes per library, started together."""

    def facts(runs):
        (u1, a1, b1, s1, d1, e1), (u2, a2, b2, s2, d2, e2) = runs
        return {
            "unseeded_same_across_processes": u1 == u2,
            "seeded_same_across_processes": s1 == s2,
            "op_seed_same_across_processes": a1 == a2,
            "op_seed_new_per_call": a1 != b1,
            "set_seed_repeats": d1 == e1 == d2,
        }

    procs = {m: [_start(m), _start(m)] for m in ("tensorflow", "transforms.tf")}
    theirs = facts([_finish(p) for p in procs["tensorflow"]])
    ours = facts([_finish(p) for p in procs["transforms.tf"]])
    assert ours == theirs
    assert theirs["seeded_same_across_processes"] and not theirs["unseeded_same_across_processes"]
