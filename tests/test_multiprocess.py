"""Several processes, as on several hosts: `jax.distributed.initialize` on loopback addresses.

Two local processes, two CPU devices each, gloo collectives, one global mesh over all four
devices (with Auto axes, then with Explicit axes, JAX's default): a few data-parallel and FSDP
training steps with `transforms.grad` and Optax. Both
processes must end with the same parameters, equal to a single-process run of the same steps.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import optax
from jax.sharding import AxisType
from multiprocess_model import STEPS, data, init, loss_dp, loss_fsdp

import transforms

WORKER = os.path.join(os.path.dirname(__file__), "multiprocess_worker.py")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _single_process(loss) -> dict:
    # One device, one process; the mesh only names the axis the FSDP loss constrains.
    mesh = jax.make_mesh((1,), ("data",), axis_types=(AxisType.Auto,), devices=jax.devices()[:1])
    with jax.set_mesh(mesh):
        return _train(loss)


def _train(loss) -> dict:
    x, y = data()
    params = init()
    optimizer = optax.sgd(0.1)
    opt_state = optimizer.init(params)
    for _ in range(STEPS):
        grads = transforms.grad(loss)(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    return jax.device_get(params)


def test_two_processes_train_data_parallel_and_fsdp(tmp_path):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop("XLA_FLAGS", None)
    outs = [tmp_path / f"process{i}.npz" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, WORKER, str(port), str(i), str(outs[i])],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for i in range(2)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=TIMEOUT_S)[0].decode(errors="replace"))
    finally:
        for p in procs:  # a process left waiting for its peer is ended, never left behind
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-4000:]
    first, second = (dict(np.load(o)) for o in outs)
    assert sorted(first) == sorted(second)
    for k in first:
        np.testing.assert_array_equal(first[k], second[k])  # identical across processes
    assert {k.split("/")[0] for k in first} == {"auto", "explicit"}
    for name, loss in (("dp", loss_dp), ("fsdp", loss_fsdp)):
        for k, v in _single_process(loss).items():
            for axes in ("auto", "explicit"):  # the same steps on either kind of mesh axes
                got = first[f"{axes}/{name}/{k}"]
                np.testing.assert_allclose(got, v, rtol=1e-10, atol=1e-12)
