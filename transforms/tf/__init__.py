"""`transforms.tf`: TensorFlow-style eager code (`import transforms.tf as tf`) on our engine.

Tensors wrap JAX arrays; ops run eagerly and are recorded by `GradientTape`, which
differentiates the recorded ops with `transforms.vjp` (forward mode: `ForwardAccumulator` on
`transforms.jvp`). Behaviour (which gradients are None, what raises, what sums) is TF's; at
non-differentiable points (`abs'(0)`, `maximum` ties) the derivative is JAX's.
"""

from types import SimpleNamespace as _NS

from ..autograph.runtime import set_loop_options as _set_loop_options
from . import data, errors, image, linalg, math, nn, random  # noqa: F401
from .clipping import clip_by_global_norm, clip_by_norm, pad  # noqa: F401
from .custom import cond, custom_gradient, while_loop
from .forward import ForwardAccumulator
from .function import function
from .linalg import norm  # noqa: F401
from .module import Module, name_scope
from .ops import (  # noqa: F401  # noqa: F401  (TF's top-level op names)
    abs,
    add,
    add_n,
    argmax,
    argmin,
    broadcast_to,
    cast,
    ceil,
    clip_by_value,
    concat,
    constant,
    convert_to_tensor,
    cos,
    cumsum,
    divide,
    einsum,
    equal,
    exp,
    expand_dims,
    eye,
    fill,
    floor,
    floordiv,
    gather,
    greater,
    greater_equal,
    identity,
    less,
    less_equal,
    linspace,
    logical_and,
    logical_not,
    logical_or,
    logical_xor,
    matmul,
    maximum,
    minimum,
    mod,
    multiply,
    negative,
    newaxis,
    not_equal,
    one_hot,
    ones,
    ones_like,
    pow,
    range,
    rank,
    reciprocal,
    reduce_all,
    reduce_any,
    reduce_logsumexp,
    reduce_max,
    reduce_mean,
    reduce_min,
    reduce_prod,
    reduce_std,
    reduce_sum,
    reduce_variance,
    reshape,
    round,
    saturate_cast,
    shape,
    sigmoid,
    sign,
    sin,
    size,
    split,
    sqrt,
    square,
    squared_difference,
    squeeze,
    stack,
    stop_gradient,
    subtract,
    tan,
    tanh,
    tensordot,
    tile,
    transpose,
    truediv,
    unstack,
    where,
    zeros,
    zeros_like,
)
from .printing import tf_print as print  # noqa: A001, F401  (TF's name)
from .spec import TensorSpec  # noqa: F401
from .tape import GradientTape, UnconnectedGradients
from .tensor import (  # noqa: F401
    DType,
    Tensor,
    TensorShape,
    bfloat16,
    complex64,
    complex128,
    float16,
    float32,
    float64,
    int8,
    int16,
    int32,
    int64,
    uint8,
)
from .tensor import bool_ as bool  # noqa: A001  (TF's name)
from .tensor_array import TensorArray  # noqa: F401
from .variable import Variable

# tf.autograph: the options a converted loop reads (transforms.autograph does the converting).
autograph = _NS(experimental=_NS(set_loop_options=_set_loop_options))

autodiff = _NS(ForwardAccumulator=ForwardAccumulator, GradientTape=GradientTape)
dtypes = _NS(float32=float32, float64=float64, int32=int32, int64=int64, bool=bool)


def __getattr__(name):
    # `tf.keras` imports Keras (a second or two) on first access only; `tf.optimizers` is
    # Keras's optimizers namespace, as in TF 2.21 (`tf.optimizers is tf.keras.optimizers`).
    if name in ("keras", "optimizers"):
        import importlib

        keras = importlib.import_module(".keras", __name__)
        return keras if name == "keras" else keras.optimizers
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def executing_eagerly() -> bool:
    """True outside `tf.function` tracing (as in TF)."""
    from .core import state

    return state.var_values is None


__all__ = [
    "GradientTape",
    "ForwardAccumulator",
    "Tensor",
    "Variable",
    "Module",
    "name_scope",
    "UnconnectedGradients",
    "autodiff",
    "constant",
    "custom_gradient",
    "function",
    "cond",
    "while_loop",
    "stop_gradient",
]
