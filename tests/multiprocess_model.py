"""The model and data shared by tests/test_multiprocess.py and its worker processes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P
from jax.sharding import reshard

STEPS = 3


def init() -> dict:
    rng = np.random.RandomState(0)
    return {"w1": rng.randn(8, 16) / 3, "w2": rng.randn(16, 4) / 4}


def data() -> tuple:
    rng = np.random.RandomState(1)
    x = rng.randn(32, 8)
    return x, np.sin(x[:, :4])


def _mlp(w1, w2, x, y):
    return jnp.mean((jnp.tanh(x @ w1) @ w2 - y) ** 2)


def loss_dp(params, x, y):
    return _mlp(params["w1"], params["w2"], x, y)


def loss_fsdp(params, x, y):
    # Parameters stored split over "data", gathered (replicated) for their layer only.
    def gather(w):
        return jax.lax.with_sharding_constraint(w, P())

    return _mlp(gather(params["w1"]), gather(params["w2"]), x, y)


def loss_fsdp_explicit(params, x, y):
    # The same on Explicit mesh axes, where the layout is part of the type: a reshard.
    def gather(w):
        return reshard(w, P())

    return _mlp(gather(params["w1"]), gather(params["w2"]), x, y)
