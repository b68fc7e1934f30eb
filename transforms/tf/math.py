"""`tf.math`: the elementwise and reduction ops under their `tf.math` names."""

from .clipping import divide_no_nan, reduce_euclidean_norm, xlogy  # noqa: F401
from .linalg import l2_normalize  # noqa: F401
from .nn import log_softmax, softmax  # noqa: F401
from .ops import (  # noqa: F401
    abs,
    acos,
    add,
    add_n,
    argmax,
    argmin,
    asin,
    atan,
    atan2,
    ceil,
    cos,
    cosh,
    cumsum,
    divide,
    equal,
    erf,
    exp,
    expm1,
    floor,
    floordiv,
    floormod,
    greater,
    greater_equal,
    is_finite,
    is_nan,
    less,
    less_equal,
    log,
    log1p,
    logical_and,
    logical_not,
    logical_or,
    maximum,
    minimum,
    multiply,
    negative,
    not_equal,
    pow,
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
    round,
    rsqrt,
    sigmoid,
    sign,
    sin,
    sinh,
    softplus,
    sqrt,
    square,
    squared_difference,
    subtract,
    tan,
    tanh,
    truediv,
)


def log_sigmoid(x, name=None):
    import jax.numpy as jnp

    from .ops import _t, apply

    return apply(lambda v: -(jnp.maximum(-v, 0) + jnp.log1p(jnp.exp(-jnp.abs(v)))), [_t(x)])
