"""`jax.debug.print` and `jax.debug.callback` on differentiated values.

They have no outputs, so nothing to differentiate: the derivative program prints (or calls back
with) the primal values, once, as JAX's does. Tangents never reach them, so partial evaluation
leaves them on the known side and reverse mode prints during the forward pass.
"""

from __future__ import annotations

from .._jax import debugging
from ..jvp import jvp_rules


def _primals_only(prim):
    def rule(primals, tangents, **params):
        return prim.bind(*primals, **params), []

    return rule


for _prim in (debugging.debug_print_p, debugging.debug_callback_p):
    jvp_rules[_prim] = _primals_only(_prim)
