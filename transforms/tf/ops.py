"""TF-named array ops on Tensors. Each runs eagerly through `core.apply` (and so is recorded).

Each op is a jax-traceable function of the input arrays; static arguments (axes, shapes) are
closed over. Python scalars and lists take the dtype of the tensor they meet, as in TF.
"""

from __future__ import annotations

import builtins
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .core import apply
from .tensor import Tensor, _as_value, float32, is_float
from .variable import Variable, as_variable

newaxis = None


def convert_to_tensor(value, dtype=None, dtype_hint=None, name=None) -> Tensor:
    """A Tensor for `value` (a Tensor, Variable, array, number or nested list).

    Example:
      >>> tf.convert_to_tensor([1.0, 2.0]).dtype
      dtype('float32')
    """
    value = as_variable(value)
    if isinstance(value, Tensor):
        if dtype is not None and value.dtype != np.dtype(dtype):
            raise TypeError(
                f"Tensor conversion requested dtype {np.dtype(dtype).name} for a Tensor of "
                f"dtype {value.dtype.name}; use tf.cast to change dtypes."
            )
        return value
    if isinstance(value, Variable):
        return value._read_value_for_op()
    if dtype is None and dtype_hint is not None and _is_python(value):
        dtype = dtype_hint
    return Tensor(_as_value(value, dtype))


def constant(value, dtype=None, shape=None, name="Const") -> Tensor:
    """A constant Tensor (TF's `tf.constant`): floats become float32 and ints int32.

    Example:
      >>> tf.constant([[1.0, 2.0]]).shape
      TensorShape([1, 2])
    """
    if isinstance(value, Tensor | Variable):
        t = convert_to_tensor(value)
        value = t._value if dtype is None else t._value.astype(dtype)
        out = Tensor(value)
    else:
        out = Tensor(_as_value(value, dtype))
    if shape is not None:
        shape = tuple(shape)
        v = out._value
        if v.size == 1:
            v = jnp.broadcast_to(v.reshape(()), shape)
        else:
            v = v.reshape(shape)
        out = Tensor(v)
    return out


def _is_python(x) -> bool:
    return isinstance(x, int | float | complex | bool | list | tuple) and not isinstance(x, Tensor)


def _t(x) -> Tensor:
    return x if isinstance(x, Tensor) else convert_to_tensor(x)


def _pair(x, y):
    """Two operands: non-tensors take the dtype of the tensor operand (TF's conversion)."""
    x_is = isinstance(x, Tensor | Variable)
    y_is = isinstance(y, Tensor | Variable)
    if x_is and not y_is:
        x = _t(x)
        return x, _scalar_or_value(y, x.dtype)
    if y_is and not x_is:
        y = _t(y)
        return _scalar_or_value(x, y.dtype), y
    x, y = _t(x), _t(y)
    if x.dtype != y.dtype:
        raise TypeError(
            f"cannot compute an op on tensors of different dtypes {x.dtype.name} and "
            f"{y.dtype.name}; tf.cast one of them first."
        )
    return x, y


def _scalar_or_value(v, dtype) -> Tensor:
    # A Python scalar operand stays a NumPy scalar (no device transfer of its own): building a
    # JAX array per `0.01 * g` costs more than the op.
    if isinstance(v, int | float) and not isinstance(v, bool):
        return Tensor(np.asarray(v, dtype))
    return Tensor(_as_value(v, dtype))


def _unary(jfn):
    def op(x, name=None):
        return apply(jfn, [_t(x)])

    op.__name__ = getattr(jfn, "__name__", "op")
    return op


def _binary(jfn):
    def op(x, y, name=None):
        return apply(jfn, list(_pair(x, y)))

    op.__name__ = getattr(jfn, "__name__", "op")
    return op


# --- elementwise ----------------------------------------------------------------------------------


def _relu(x):
    # where, not maximum: relu'(0) = 0, as in TF and jax.nn.relu.
    return jnp.where(x > 0, x, jnp.zeros_like(x))


def _softplus(x):
    return jnp.maximum(x, 0) + jnp.log1p(jnp.exp(-jnp.abs(x)))


def _true_divide(x, y):
    if not is_float(x.dtype):  # TF's truediv of integers is float64 (float32 for small ints)
        dt = jnp.float32 if x.dtype in (jnp.int8, jnp.int16, jnp.uint8) else jnp.float64
        x, y = x.astype(dt), y.astype(dt)
    return x / y


add = _binary(jnp.add)
subtract = _binary(jnp.subtract)
multiply = _binary(jnp.multiply)
divide = _binary(_true_divide)
truediv = divide
floordiv = _binary(jnp.floor_divide)
floormod = _binary(jnp.mod)
mod = floormod
maximum = _binary(jnp.maximum)
minimum = _binary(jnp.minimum)
squared_difference = _binary(lambda x, y: jnp.square(x - y))
equal = _binary(jnp.equal)
not_equal = _binary(jnp.not_equal)
greater = _binary(jnp.greater)
greater_equal = _binary(jnp.greater_equal)
less = _binary(jnp.less)
less_equal = _binary(jnp.less_equal)
logical_and = _binary(jnp.logical_and)
logical_or = _binary(jnp.logical_or)
logical_xor = _binary(jnp.logical_xor)
logical_not = _unary(jnp.logical_not)
negative = _unary(jnp.negative)
square = _unary(jnp.square)
sqrt = _unary(jnp.sqrt)
rsqrt = _unary(lax.rsqrt)
exp = _unary(jnp.exp)
expm1 = _unary(jnp.expm1)
log = _unary(jnp.log)
log1p = _unary(jnp.log1p)
sin = _unary(jnp.sin)
cos = _unary(jnp.cos)
tan = _unary(jnp.tan)
asin = _unary(jnp.arcsin)
acos = _unary(jnp.arccos)
atan = _unary(jnp.arctan)
sinh = _unary(jnp.sinh)
cosh = _unary(jnp.cosh)
tanh = _unary(jnp.tanh)
sigmoid = _unary(lax.logistic)
abs = _unary(jnp.abs)
sign = _unary(jnp.sign)
floor = _unary(jnp.floor)
ceil = _unary(jnp.ceil)
round = _unary(jnp.round)
reciprocal = _unary(lambda x: 1 / x)
erf = _unary(jax.scipy.special.erf)
relu = _unary(_relu)
softplus = _unary(_softplus)
is_nan = _unary(jnp.isnan)
is_finite = _unary(jnp.isfinite)


def pow(x, y, name=None):
    """`x ** y` elementwise (a Python int exponent is an integer power, exact for negative x)."""
    if isinstance(y, int) and not isinstance(y, bool) and not isinstance(x, int | float):
        return apply(lambda v: lax.integer_pow(v, y), [_t(x)])
    x, y = _pair(x, y)
    return apply(jnp.power, [x, y])


def atan2(y, x, name=None):
    return apply(jnp.arctan2, list(_pair(y, x)))


def identity(input, name=None):
    """A new tensor with the same value (recorded, so gradients flow through it)."""
    return apply(lambda v: v, [_t(input)])


def stop_gradient(input, name=None):
    """The same value, cut from differentiation: tapes and accumulators see a constant.

    Example:
      >>> with tf.GradientTape() as t: y = tf.stop_gradient(x * x)
      >>> t.gradient(y, x) is None
      True
    """
    return Tensor(_t(input)._value)


def cast(x, dtype, name=None):
    """`x` converted to `dtype`; float-to-float casts are differentiable, others are not."""
    dtype = np.dtype(dtype)
    x = _t(x)
    if x.dtype == dtype:
        return identity(x)
    return apply(lambda v: v.astype(dtype), [x])


def saturate_cast(value, dtype, name=None):
    return cast(value, dtype)


# --- creation -------------------------------------------------------------------------------------


def _shape_of(shape):
    if isinstance(shape, Tensor | Variable):
        return tuple(int(s) for s in np.asarray(shape))
    if isinstance(shape, int):
        return (shape,)
    return tuple(int(s) for s in shape)


def _constant_array(make):
    # Concrete even while tf.function traces: a constant can then initialise a Variable on the
    # first call (`tf.Variable(tf.zeros(x.shape))`), as TF's constant ops can.
    with jax.ensure_compile_time_eval():
        return Tensor(make())


def zeros(shape, dtype=np.float32, name=None):
    return _constant_array(lambda: jnp.zeros(_shape_of(shape), dtype))


def ones(shape, dtype=np.float32, name=None):
    return _constant_array(lambda: jnp.ones(_shape_of(shape), dtype))


def fill(dims, value, name=None):
    v = _t(value)
    if isinstance(v._value, jax.core.Tracer):
        return apply(lambda x: jnp.full(_shape_of(dims), x, v.dtype), [v])
    return _constant_array(lambda: jnp.full(_shape_of(dims), v._value, v.dtype))


def zeros_like(input, dtype=None, name=None):
    x = _t(input)
    return _constant_array(lambda: jnp.zeros(x.shape, dtype or x.dtype))


def ones_like(input, dtype=None, name=None):
    x = _t(input)
    return _constant_array(lambda: jnp.ones(x.shape, dtype or x.dtype))


def eye(num_rows, num_columns=None, batch_shape=None, dtype=np.float32, name=None):
    def make():
        m = jnp.eye(num_rows, num_columns, dtype=dtype)
        if batch_shape is not None:
            m = jnp.broadcast_to(m, (*_shape_of(batch_shape), *m.shape))
        return m

    return _constant_array(make)


def range(start, limit=None, delta=1, dtype=None, name="range"):
    if limit is None:
        start, limit = 0, start
    # A tensor bound keeps its kind: tf.range(tf.constant(4)) is int32, as in TF.
    vals = [
        np.asarray(v.numpy()).item() if isinstance(v, Tensor | Variable) else v
        for v in (start, limit, delta)
    ]
    if dtype is None:
        is_f = builtins.any(isinstance(v, float) for v in vals)
        dtype = np.float32 if is_f else np.int32
    return Tensor(jnp.arange(vals[0], vals[1], vals[2], dtype=dtype))


def linspace(start, stop, num, name=None, axis=0):
    """`num` evenly spaced values from `start` to `stop` (both included), differentiable in
    both; integer bounds give float64 values, as in TF.

    Example:
      >>> tf.linspace(-2, 2, 5).numpy()
      array([-2., -1.,  0.,  1.,  2.])
    """
    s, e = _t(start), _t(stop)
    # float64 as in TF; float32 when JAX runs without x64 (float64 is unavailable there).
    dtype = s.dtype if is_float(s.dtype) else _index_dtype(np.float64)
    s, e = cast(s, dtype), cast(e, dtype)
    n = int(num)
    return apply(lambda a, b: jnp.linspace(a, b, n, axis=axis, dtype=dtype), [s, e])


def one_hot(indices, depth, on_value=None, off_value=None, axis=None, dtype=np.float32, name=None):
    idx = _t(indices)._value
    on = 1 if on_value is None else on_value
    off = 0 if off_value is None else off_value
    hot = jax.nn.one_hot(idx, depth, dtype=dtype, axis=-1 if axis is None else axis)
    return Tensor((hot * (on - off) + off).astype(dtype))


# --- shapes and structure -------------------------------------------------------------------------


def _size_value(d, dtype):
    # A symbolic size (a `None` of tf.function's input_signature) becomes a value of the
    # program; a known one a constant.
    return jnp.asarray(d).astype(dtype) if jax.export.is_symbolic_dim(d) else np.asarray(d, dtype)


def shape(input, out_type=np.int32, name=None):
    dims = _t(input).shape
    if not any(jax.export.is_symbolic_dim(d) for d in dims):
        return Tensor(jnp.asarray(dims, dtype=out_type))
    return Tensor(jnp.stack([_size_value(d, out_type) for d in dims]))


def size(input, out_type=np.int32, name=None):
    return Tensor(jnp.asarray(_size_value(math.prod(_t(input).shape), out_type)))


def rank(input, name=None):
    return Tensor(jnp.asarray(_t(input).ndim, dtype=np.int32))


def reshape(tensor, shape, name=None):
    s = _shape_of(shape)
    return apply(lambda v: jnp.reshape(v, s), [_t(tensor)])


def transpose(a, perm=None, conjugate=False, name="transpose"):
    p = None if perm is None else _shape_of(perm)
    return apply(lambda v: jnp.transpose(v, p), [_t(a)])


def expand_dims(input, axis, name=None):
    return apply(lambda v: jnp.expand_dims(v, int(axis)), [_t(input)])


def squeeze(input, axis=None, name=None):
    ax = axis if axis is None or isinstance(axis, int) else tuple(axis)
    return apply(lambda v: jnp.squeeze(v, ax), [_t(input)])


def _tensors(values):
    ts = [_t(v) if isinstance(v, Tensor | Variable) else None for v in values]
    dtype = next((t.dtype for t in ts if t is not None), None)
    return [
        t if t is not None else Tensor(_as_value(v, dtype)) for t, v in zip(ts, values, strict=True)
    ]


def concat(values, axis, name="concat"):
    return apply(lambda *vs: jnp.concatenate(vs, axis=axis), _tensors(values))


def stack(values, axis=0, name="stack"):
    # expand + concatenate rather than jnp.stack: the same values, built from primitives whose
    # rules the engine has in every version.
    def stack_(*vs):
        ax = axis % (vs[0].ndim + 1)
        return jnp.concatenate([jnp.expand_dims(v, ax) for v in vs], axis=ax)

    return apply(stack_, _tensors(values))


def unstack(value, num=None, axis=0, name="unstack"):
    x = _t(value)
    n = x.shape[axis]
    return list(apply(lambda v: tuple(jnp.moveaxis(v, axis, 0)[i] for i in builtins.range(n)), [x]))


def split(value, num_or_size_splits, axis=0, num=None, name="split"):
    x = _t(value)
    if isinstance(num_or_size_splits, int):
        cuts = num_or_size_splits
    else:
        sizes = [int(s) for s in num_or_size_splits]
        cuts = list(np.cumsum(sizes)[:-1])
    return list(apply(lambda v: tuple(jnp.split(v, cuts, axis=axis)), [x]))


def tile(input, multiples, name=None):
    m = _shape_of(multiples)
    return apply(lambda v: jnp.tile(v, m), [_t(input)])


def broadcast_to(input, shape, name=None):
    s = _shape_of(shape)
    return apply(lambda v: jnp.broadcast_to(v, s), [_t(input)])


def gather(params, indices, validate_indices=None, axis=None, batch_dims=0, name=None):
    """Slices of `params` along `axis` at integer `indices` (TF's `tf.gather`)."""
    ax = 0 if axis is None else int(axis)
    idx = _t(indices)._value
    if batch_dims:
        raise NotImplementedError(
            "tf.gather with batch_dims is not supported; gather each batch row instead."
        )
    return apply(lambda v: jnp.take(v, idx, axis=ax), [_t(params)])


def where(condition, x=None, y=None, name=None):
    """Elementwise `x if condition else y`; with only `condition`, the indices where it holds."""
    cond = _t(condition)
    if x is None and y is None:
        return Tensor(jnp.argwhere(cond._value).astype(_index_dtype(np.int64)))
    x, y = _pair(x, y)
    c = cond._value
    return apply(lambda a, b: jnp.where(c, a, b), [x, y])


def clip_by_value(t, clip_value_min, clip_value_max, name=None):
    x = _t(t)
    lo, hi = (
        _t(clip_value_min)
        if isinstance(clip_value_min, Tensor | Variable)
        else Tensor(_as_value(clip_value_min, x.dtype)),
        _t(clip_value_max)
        if isinstance(clip_value_max, Tensor | Variable)
        else Tensor(_as_value(clip_value_max, x.dtype)),
    )
    return apply(lambda v, a, b: jnp.minimum(jnp.maximum(v, a), b), [x, lo, hi])


def matmul(
    a,
    b,
    transpose_a=False,
    transpose_b=False,
    adjoint_a=False,
    adjoint_b=False,
    a_is_sparse=False,
    b_is_sparse=False,
    output_type=None,
    name=None,
):
    """Matrix product of the last two axes (batched over leading axes), TF's `tf.matmul`."""
    a, b = _pair(a, b)
    ta, tb = transpose_a or adjoint_a, transpose_b or adjoint_b

    def mm(x, y):
        if ta:
            x = jnp.swapaxes(x, -1, -2)
        if tb:
            y = jnp.swapaxes(y, -1, -2)
        return jnp.matmul(x, y)

    return apply(mm, [a, b])


def tensordot(a, b, axes, name=None):
    return apply(lambda x, y: jnp.tensordot(x, y, axes), list(_pair(a, b)))


def einsum(equation, *inputs, **kwargs):
    return apply(lambda *vs: jnp.einsum(equation, *vs), [_t(x) for x in inputs])


def add_n(inputs, name=None):
    def total(*vs):
        out = vs[0]
        for v in vs[1:]:
            out = out + v
        return out

    return apply(total, _tensors(inputs))


# --- reductions -----------------------------------------------------------------------------------


def _axis(axis):
    if axis is None:
        return None
    if isinstance(axis, Tensor | Variable):
        axis = np.asarray(axis).tolist()
    return tuple(axis) if isinstance(axis, list | tuple) else int(axis)


def _reduction(jfn):
    def op(input_tensor, axis=None, keepdims=False, name=None):
        ax = _axis(axis)
        return apply(lambda v: jfn(v, axis=ax, keepdims=keepdims), [_t(input_tensor)])

    return op


def _mean(v, axis, keepdims):
    if is_float(v.dtype):
        return jnp.mean(v, axis=axis, keepdims=keepdims)
    n = v.size // jnp.sum(v, axis=axis, keepdims=keepdims).size if v.size else 1
    return (jnp.sum(v, axis=axis, keepdims=keepdims) // n).astype(v.dtype)


reduce_sum = _reduction(
    lambda v, axis, keepdims: jnp.sum(v, axis=axis, keepdims=keepdims).astype(v.dtype)
)
reduce_mean = _reduction(_mean)
reduce_max = _reduction(jnp.max)
reduce_min = _reduction(jnp.min)
reduce_prod = _reduction(
    lambda v, axis, keepdims: jnp.prod(v, axis=axis, keepdims=keepdims).astype(v.dtype)
)
reduce_any = _reduction(jnp.any)
reduce_all = _reduction(jnp.all)


def _logsumexp(v, axis, keepdims):
    m = lax.stop_gradient(jnp.max(v, axis=axis, keepdims=True))
    out = jnp.log(jnp.sum(jnp.exp(v - m), axis=axis, keepdims=True)) + m
    return out if keepdims else jnp.squeeze(out, axis=axis)


reduce_logsumexp = _reduction(_logsumexp)


def reduce_variance(input_tensor, axis=None, keepdims=False, name=None):
    ax = _axis(axis)
    return apply(lambda v: jnp.var(v, axis=ax, keepdims=keepdims), [_t(input_tensor)])


def reduce_std(input_tensor, axis=None, keepdims=False, name=None):
    ax = _axis(axis)
    return apply(lambda v: jnp.sqrt(jnp.var(v, axis=ax, keepdims=keepdims)), [_t(input_tensor)])


def _index_dtype(dtype):
    # TF's int64 indices (float64 values); 32 bits when JAX runs without x64 (64-bit types are
    # unavailable there).
    dtype = np.dtype(dtype)
    if jax.config.jax_enable_x64:
        return dtype
    return {np.dtype(np.int64): np.dtype(np.int32), np.dtype(np.float64): float32}.get(dtype, dtype)


def argmax(input, axis=None, output_type=np.int64, name=None):
    ax = 0 if axis is None else int(axis)
    return Tensor(jnp.argmax(_t(input)._value, axis=ax).astype(_index_dtype(output_type)))


def argmin(input, axis=None, output_type=np.int64, name=None):
    ax = 0 if axis is None else int(axis)
    return Tensor(jnp.argmin(_t(input)._value, axis=ax).astype(_index_dtype(output_type)))


def cumsum(x, axis=0, exclusive=False, reverse=False, name=None):
    if exclusive or reverse:
        raise NotImplementedError("tf.cumsum with exclusive/reverse is not supported.")
    return apply(lambda v: jnp.cumsum(v, axis=axis), [_t(x)])


# --- Tensor operators -----------------------------------------------------------------------------


def _getitem(x, key):
    def unwrap(k):
        if isinstance(k, Tensor | Variable):
            v = _t(k)._value
            return (
                v
                if isinstance(v, jax.core.Tracer) or v.ndim
                else int(v)
                if not is_float(v.dtype)
                else v
            )
        if isinstance(k, tuple):
            return tuple(unwrap(i) for i in k)
        if isinstance(k, slice):
            return slice(*(unwrap(i) if i is not None else None for i in (k.start, k.stop, k.step)))
        return k

    k = unwrap(key)
    return apply(lambda v: v[k], [_t(x)])


def _reflect(op):
    return lambda self, other: op(other, self)


def _eq(self, other):
    if other is None or not isinstance(
        other, Tensor | Variable | int | float | bool | list | tuple | np.ndarray | jax.Array
    ):
        return False
    return equal(self, other)


def _ne(self, other):
    if other is None or not isinstance(
        other, Tensor | Variable | int | float | bool | list | tuple | np.ndarray | jax.Array
    ):
        return True
    return not_equal(self, other)


_OPERATORS = {
    "__add__": add,
    "__radd__": _reflect(add),
    "__sub__": subtract,
    "__rsub__": _reflect(subtract),
    "__mul__": multiply,
    "__rmul__": _reflect(multiply),
    "__truediv__": divide,
    "__rtruediv__": _reflect(divide),
    "__floordiv__": floordiv,
    "__rfloordiv__": _reflect(floordiv),
    "__mod__": floormod,
    "__rmod__": _reflect(floormod),
    "__pow__": pow,
    "__rpow__": _reflect(pow),
    "__matmul__": matmul,
    "__rmatmul__": _reflect(matmul),
    "__lt__": less,
    "__le__": less_equal,
    "__gt__": greater,
    "__ge__": greater_equal,
    "__eq__": _eq,
    "__ne__": _ne,
    "__and__": logical_and,
    "__rand__": _reflect(logical_and),
    "__or__": logical_or,
    "__ror__": _reflect(logical_or),
    "__xor__": logical_xor,
    "__invert__": logical_not,
    "__neg__": negative,
    "__pos__": identity,
    "__abs__": abs,
    "__getitem__": _getitem,
}

for _cls in (Tensor, Variable):
    for _name, _fn in _OPERATORS.items():
        setattr(_cls, _name, _fn)
    _cls.__hash__ = None


# Clipping, padding and the zero-guarded ops live in `clipping` (which builds on this module);
# `transforms.tf.ops.<name>` keeps working for them.
_MOVED = frozenset(
    [
        "clip_by_norm",
        "clip_by_global_norm",
        "pad",
        "divide_no_nan",
        "xlogy",
        "reduce_euclidean_norm",
    ]
)


def __getattr__(name):
    if name in _MOVED:
        from . import clipping

        return getattr(clipping, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
