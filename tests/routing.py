"""Route JAX's autodiff entry points to transforms', as a user switching over would.

Libraries call `jax.grad` & co. themselves (`eqx.filter_grad` is `jax.value_and_grad` inside,
numpyro does `from jax import grad`), so replacing the attributes of the `jax` module is not
enough: every loaded module's global bound to one of JAX's functions is replaced too.
`routed()` is a context manager; everything is restored on exit.
"""

from __future__ import annotations

import contextlib
import sys

import jax

import transforms

NAMES = (
    "grad",
    "value_and_grad",
    "jvp",
    "vjp",
    "linearize",
    "jacfwd",
    "jacrev",
    "jacobian",
    "hessian",
    "linear_transpose",
)


def replacements() -> dict:
    """{id(JAX's function): transforms' function} for every entry point both provide."""
    out = {}
    for name in NAMES:
        ours = getattr(transforms, name, None)
        if ours is not None:
            out[id(getattr(jax, name))] = (getattr(jax, name), ours)
    return out


@contextlib.contextmanager
def routed():
    """Within the block, JAX's autodiff entry points are transforms', wherever imported."""
    table = replacements()
    patched = []
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        name = getattr(module, "__name__", "")
        # JAX's own internals and ours stay as they are: a user replaces the public names.
        if namespace is None or name.startswith(("transforms", "jax.", "jaxlib")):
            continue
        for attr, value in list(namespace.items()):
            hit = table.get(id(value))
            if hit is not None and hit[0] is value:
                patched.append((namespace, attr, value))
                namespace[attr] = hit[1]
    try:
        yield
    finally:
        for namespace, attr, value in reversed(patched):
            namespace[attr] = value
