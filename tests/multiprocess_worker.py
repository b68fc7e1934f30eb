"""One process of tests/test_multiprocess.py: `python multiprocess_worker.py PORT ID OUT`.

Two CPU devices per process, gloo collectives; a global mesh over every process's devices
(with Auto axes, then with Explicit axes); a few data-parallel and FSDP training steps with
`transforms.grad` and Optax. Writes the final parameters (gathered) to OUT as .npz.
"""

from __future__ import annotations

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_cpu_collectives_implementation", "gloo")

import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
from jax.sharding import AxisType, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import transforms  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from multiprocess_model import (  # noqa: E402
    STEPS,
    data,
    init,
    loss_dp,
    loss_fsdp,
    loss_fsdp_explicit,
)


def main(port: int, process_id: int, out: str) -> None:
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process_id
    )
    assert jax.device_count() == 4 and jax.local_device_count() == 2
    results = {}
    for axis_type, fsdp in ((AxisType.Auto, loss_fsdp), (AxisType.Explicit, loss_fsdp_explicit)):
        mesh = jax.make_mesh((4,), ("data",), axis_types=(axis_type,))

        def global_array(value, spec, mesh=mesh):
            sharding = NamedSharding(mesh, spec)
            return jax.make_array_from_callback(value.shape, sharding, lambda idx: value[idx])

        with jax.set_mesh(mesh):
            for k, v in train(global_array, fsdp).items():
                results[f"{axis_type.name.lower()}/{k}"] = v
    np.savez(out, **results)
    jax.distributed.shutdown()


def train(global_array, loss_fsdp) -> dict:
    x, y = (global_array(a, P("data")) for a in data())
    results = {}
    for name, loss, spec in (("dp", loss_dp, P()), ("fsdp", loss_fsdp, P("data"))):
        params = {k: global_array(v, spec) for k, v in init().items()}
        optimizer = optax.sgd(0.1)
        opt_state = optimizer.init(params)

        @jax.jit
        def step(params, opt_state, x, y, loss=loss, optimizer=optimizer):
            grads = transforms.grad(loss)(params, x, y)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        for _ in range(STEPS):
            params, opt_state = step(params, opt_state, x, y)
        for k, v in params.items():
            # Explicit axes spell each dimension's partition out: P() is P(None, None) there.
            placed = tuple(v.sharding.spec) + (None,) * (v.ndim - len(v.sharding.spec))
            assert placed == tuple(spec) + (None,) * (v.ndim - len(spec)), (name, k, v.sharding)
            results[f"{name}/{k}"] = np.asarray(multihost_utils.process_allgather(v, tiled=True))
    return results


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
