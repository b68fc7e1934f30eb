"""The values converted code works on: variables not yet assigned, transforms.tf Tensors and
Variables around JAX arrays, and the state of one statement (the user's variables plus the
Variables a `transforms.tf.function` has lifted).

State values are pytrees. Their array leaves (and Python numbers that differ between branches or
change in a loop) travel through the lax construct; every other leaf (a list, a module, a
Variable object) must be the same object at the end of each branch or iteration.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# --------------------------------------------------------------------------------------------------
# Undefined variables
# --------------------------------------------------------------------------------------------------


class Undefined:
    """The value of a local variable before its first assignment (the converter pre-binds every
    local so that the blocks it moves into nested functions can assign it)."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self):
        return f"<undefined {self.name}>"

    def __getattr__(self, attr):
        raise _unbound(self.name)


def _unbound(name):
    return UnboundLocalError(
        f"cannot access local variable '{name}' where it is not associated with a value"
    )


def _fail(self, *args, **kwargs):
    raise _unbound(self.name)


for _op in (
    "__bool__ __call__ __iter__ __len__ __getitem__ __neg__ __pos__ __abs__ __add__ __radd__ "
    "__sub__ __rsub__ __mul__ __rmul__ __truediv__ __rtruediv__ __floordiv__ __rfloordiv__ "
    "__mod__ __rmod__ __pow__ __rpow__ __matmul__ __rmatmul__ __lt__ __le__ __gt__ __ge__ "
    "__array__ __jax_array__ __float__ __int__ __index__"
).split():
    setattr(Undefined, _op, _fail)


class UndefinedReturn(Undefined):
    """The return value before a `return` ran."""

    __slots__ = ()

    def __init__(self):
        super().__init__("return value")


def ret(value):
    """The function's result: None when no `return` ran (Python's)."""
    return None if isinstance(value, UndefinedReturn) else value


# --------------------------------------------------------------------------------------------------
# Values: traced or not, tensors of transforms.tf
# --------------------------------------------------------------------------------------------------


def tf_types():
    from ..tf.tensor import Tensor
    from ..tf.variable import Variable

    return Tensor, Variable


def unwrap(x):
    tensor, variable = tf_types()
    if isinstance(x, tensor):
        return x._value
    if isinstance(x, variable):
        return x._read_value_for_op()._value
    return x


def is_traced(x) -> bool:
    """True when `x` is a JAX tracer (or a transforms.tf Tensor/Variable holding one)."""
    return isinstance(unwrap(x), jax.core.Tracer)


def is_leaf(x):
    tensor, variable = tf_types()
    return isinstance(x, tensor | variable | Undefined)


def leaf_kind(leaf):
    tensor, variable = tf_types()
    if isinstance(leaf, Undefined):
        return "undefined"
    if isinstance(leaf, variable):
        return "variable"  # static while it stays the same Variable, else its value
    if isinstance(leaf, tensor | jax.Array | np.ndarray | np.generic):
        return "array"
    if isinstance(leaf, bool | int | float | complex):
        return "number"
    return "static"


def tf_mode():
    """Inside a transforms.tf.function trace: every array a statement yields is a Tensor, and
    Python numbers become tensors with TF's dtypes (int32, float32)."""
    return lifted_variables() is not None


def tape_recording():
    from ..tf.core import state

    return state.var_values is not None and bool(state.recorders) and not state.paused


def number_array(x):
    if tf_mode() and not isinstance(x, bool):
        dtype = {int: np.int32, float: np.float32, complex: np.complex64}[type(x)]
        return jnp.asarray(x, dtype)
    return jnp.asarray(x)


def wrap(value, as_tensor):
    tensor, _ = tf_types()
    if isinstance(value, tensor):
        return value
    if as_tensor or tf_mode():
        return tensor(value)
    return value


def predicate(cond, what):
    value = jnp.asarray(unwrap(cond))
    if value.shape != ():
        raise ValueError(
            f"The condition of {what} is a traced value of shape {value.shape}: its truth value "
            "is ambiguous. Reduce it to a scalar first (jnp.any / jnp.all, tf.reduce_any / "
            "tf.reduce_all)."
        )
    return value if value.dtype == bool else value != 0


def aval_of(x):
    return jax.typeof(x)


def same_static(a, b):
    if a is b:
        return True
    return type(a) is type(b) and isinstance(a, bool | int | float | complex | str) and a == b


def safe_repr(x):
    # The repr of a symbolic tf Tensor would try to read its value.
    if is_traced(x):
        return f"a traced value {jax.typeof(unwrap(x)).str_short()}"
    return repr(x)


# --------------------------------------------------------------------------------------------------
# State of one statement: the user's variables, plus Variables a tf.function has lifted
# --------------------------------------------------------------------------------------------------


def lifted_variables():
    from ..tf.core import state

    return state.var_values


class State:
    """Reads and writes the variables a statement assigns. Inside a `transforms.tf.function`
    trace the lifted Variables' values are part of it, so `v.assign(...)` in a branch or a loop
    body works like an assignment to a local."""

    def __init__(self, get_state, set_state, names, live):
        self._get, self._set = get_state, set_state
        self._n = len(names)
        self.lifted = lifted_variables()
        self.keys = list(self.lifted) if self.lifted is not None else []
        self.names = [*names, *["a tf.Variable"] * len(self.keys)]
        self.live = [*live, *[True] * len(self.keys)]

    def get(self):
        values = list(self._get())
        return values + [self.lifted[k] for k in self.keys]

    def set(self, values):
        self._set(tuple(values[: self._n]))
        for k, v in zip(self.keys, values[self._n :], strict=True):
            self.lifted[k] = unwrap(v)  # lifted Variables hold arrays, not Tensors

    def forget_new_variables(self):
        # A Variable first touched inside a traced block is not part of this statement's state;
        # its traced value must not leak out. tf.function retraces with it lifted from the start.
        if self.lifted is not None:
            known = set(self.keys)
            from ..tf.core import state

            for k in [k for k in self.lifted if k not in known]:
                del self.lifted[k]
                if state.var_forgotten is not None:
                    state.var_forgotten.append(k)
