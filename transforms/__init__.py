"""transforms: automatic differentiation as JAX-style function transforms, with its own engine."""

from . import autograph  # callable: transforms.autograph(f) converts f's control flow
from . import rules as _rules  # noqa: F401  (registers every differentiation rule)
from .api import (
    grad,
    hessian,
    hvp,
    jacfwd,
    jacobian,
    jacrev,
    jvp,
    linear_transpose,
    linearize,
    value_and_grad,
    vjp,
)
from .debug import DerivativeNaNError, debug_nans, debug_nans_enabled
from .engine import clear_caches
from .errors import MissingRuleError, TracedControlFlowError
from .loops import fori_loop, while_loop
from .tf import ForwardAccumulator, GradientTape, Variable  # the same objects as transforms.tf's

__version__ = "0.1.0"

__all__ = [
    "autograph",
    "DerivativeNaNError",
    "MissingRuleError",
    "debug_nans",
    "debug_nans_enabled",
    "ForwardAccumulator",
    "GradientTape",
    "Variable",
    "TracedControlFlowError",
    "clear_caches",
    "fori_loop",
    "grad",
    "hessian",
    "hvp",
    "jacfwd",
    "jacobian",
    "jacrev",
    "jvp",
    "linear_transpose",
    "linearize",
    "value_and_grad",
    "vjp",
    "while_loop",
]
