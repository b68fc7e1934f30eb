"""Every use of JAX's private modules (`jax._src`) in the package goes through this module.

The engine reads jaxprs and drives JAX's tracer, which public `jax.extend` does not fully
expose. Keeping the private imports here makes a new JAX release a change in one file; the
supported range is pinned in pyproject.toml and tested.
"""

from jax._src import (
    api_util,
    config,
    core,
    debugging,
    dtypes,
    effects,
    hijax,
    linear_util,
    mesh,
    source_info_util,
)
from jax._src.ad_checkpoint import CustomRemat
from jax._src.array import ArrayImpl
from jax._src.interpreters import partial_eval
from jax._src.literals import TypedNdArray
from jax._src.pjit import reshard_p

__all__ = [
    "ArrayImpl",
    "CustomRemat",
    "TypedNdArray",
    "api_util",
    "config",
    "core",
    "debugging",
    "dtypes",
    "effects",
    "hijax",
    "linear_util",
    "mesh",
    "partial_eval",
    "reshard_p",
    "evaluate_dim",
    "source_info_util",
]


def evaluate_dim(dim, env: dict):
    """The size a symbolic dimension (`jax.export.symbolic_shape`) has when its variables have
    the sizes in `env` (name -> int)."""
    return dim._evaluate(env)
