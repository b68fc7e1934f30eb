"""`tf.function`: compile a TF-style step (tapes, Variables, assign*) into one `jax.jit` program.

The Python function is traced with its tensor arguments as JAX tracers. Every Variable it
touches is lifted: its value becomes an input of the jitted program, reads inside see the
traced value, `assign*` replaces it, and the final values are program outputs written back to
the Variables after each call. Variables read but not passed as arguments are discovered while
tracing (the trace is then redone with them lifted). Python side effects, `print` included,
happen while tracing, as in TF: once per new input signature.
"""

from __future__ import annotations

import contextlib
import functools
import io
import sys

import jax
import numpy as np
from jax import tree_util

from .core import apply, lifted_variables, state
from .tensor import Tensor
from .variable import Variable


def _is_leaf(x):
    return isinstance(x, Tensor | Variable)


def _spec(x):
    """How an argument enters the program: traced (shape, dtype), a Variable, or static."""
    if isinstance(x, Variable):
        return ("var", id(x))
    if isinstance(x, Tensor | np.ndarray | jax.Array):
        return ("dyn", tuple(x.shape), np.dtype(x.dtype).str)
    try:
        hash(x)
        return ("static", type(x).__name__, x)
    except TypeError:
        return ("static", type(x).__name__, id(x))


class _Program:
    """One trace: the jitted step for one input signature and one list of lifted Variables."""

    def __init__(self, variables, jitted, compiled, out_tree, out_static, out_kinds):
        self.variables = variables
        self.jitted = jitted
        self.compiled = compiled
        self.out_tree = out_tree
        self.out_static = out_static  # output leaves that are not tensors (Python values)
        self.out_kinds = out_kinds


@contextlib.contextmanager
def _fresh_recorders():
    # Tapes outside the function must not see ops on traced values.
    saved = state.recorders, state.paused
    state.recorders, state.paused = [], 0
    try:
        yield
    finally:
        state.recorders, state.paused = saved


class Function:
    """A Python function compiled with `jax.jit` on each new input signature (TF's
    `tf.function`).

    Example:
      >>> @tf.function
      ... def step(x):
      ...     with tf.GradientTape() as t: loss = tf.reduce_sum(w * x)
      ...     w.assign_sub(0.1 * t.gradient(loss, w))
      >>> step(tf.constant([1.0, 2.0]))
    """

    def __init__(self, python_function, **options):
        self.python_function = python_function
        self._options = options
        self._programs: dict = {}
        self._globals: dict[int, Variable] = {}  # Variables discovered while tracing
        self._tracing_count = 0
        functools.update_wrapper(self, python_function)

    def __get__(self, instance, owner):
        if instance is None:
            return self
        bound = self.__dict__.setdefault("_bound", {})
        key = id(instance)
        if key not in bound:
            bound[key] = Function(self.python_function.__get__(instance, owner), **self._options)
        return bound[key]

    def experimental_get_tracing_count(self) -> int:
        """How many times the Python function was traced (TF's name)."""
        return self._tracing_count

    def __call__(self, *args, **kwargs):
        if state.var_values is not None:  # inside another function's trace: inline
            return self.python_function(*args, **kwargs)
        flat, in_tree = tree_util.tree_flatten((args, kwargs), is_leaf=_is_leaf)
        specs = tuple(_spec(x) for x in flat)
        key = (in_tree, specs)
        prog = self._programs.get(key)
        if prog is None:
            prog = self._programs[key] = self._trace(flat, in_tree, specs)
        return self._run(prog, flat, specs)

    def _converted_function(self):
        """The Python function with AutoGraph's control-flow conversion (unless autograph=False)."""
        if not self._options.get("autograph", True):
            return self.python_function
        from ..autograph import convert_for_tf_function

        return convert_for_tf_function(self.python_function)

    # --- tracing ----------------------------------------------------------------------------------
    def _trace(self, flat, in_tree, specs):
        arg_vars = [x for x in flat if isinstance(x, Variable)]
        while True:
            variables = list({id(v): v for v in [*arg_vars, *self._globals.values()]}.values())
            box: dict = {}
            pure = self._pure(flat, in_tree, specs, variables, box)
            jitted = jax.jit(pure)
            var_vals = [v._value for v in variables]
            dyn_vals = [_value(x) for x, s in zip(flat, specs, strict=True) if s[0] == "dyn"]
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                traced = jitted.trace(var_vals, dyn_vals)
            self._tracing_count += 1
            new = [v for v in box["discovered"] if id(v) not in {id(u) for u in variables}]
            if not new:
                sys.stdout.write(out.getvalue())
                break
            for v in new:  # retrace with these lifted too; the first trace's output is dropped
                self._globals[id(v)] = v
        compiled = traced.lower().compile()
        return _Program(
            variables, jitted, compiled, box["out_tree"], box["out_static"], box["out_kinds"]
        )

    def _pure(self, flat, in_tree, specs, variables, box):
        fn = self._converted_function()

        def pure(var_vals, dyn_vals):
            lifted = {id(v): val for v, val in zip(variables, var_vals, strict=True)}
            log: list = []
            dyn = iter(dyn_vals)
            leaves = [
                Tensor(next(dyn)) if s[0] == "dyn" else x for x, s in zip(flat, specs, strict=True)
            ]
            args, kwargs = tree_util.tree_unflatten(in_tree, leaves)
            with _fresh_recorders(), lifted_variables(lifted, log):
                result = fn(*args, **kwargs)
                out_flat, out_tree = tree_util.tree_flatten(result, is_leaf=_is_leaf)
                kinds, values, static = [], [], []
                for o in out_flat:
                    if isinstance(o, Variable):
                        kinds.append("var")
                        values.append(o._current())
                    elif isinstance(o, Tensor):
                        kinds.append("tensor")
                        values.append(o._value)
                    else:
                        kinds.append("static")
                        static.append(o)
            box.update(
                discovered=list({id(v): v for v in log}.values()),
                out_tree=out_tree,
                out_static=static,
                out_kinds=kinds,
            )
            return values, [lifted[id(v)] for v in variables]

        return pure

    # --- calling ----------------------------------------------------------------------------------
    def _run(self, prog, flat, specs):
        dyn_args = [x for x, s in zip(flat, specs, strict=True) if s[0] == "dyn"]
        dyn_vals = [_value(x) for x in dyn_args]
        var_vals = [v._value for v in prog.variables]
        outs, new_vars = prog.compiled(var_vals, dyn_vals)
        if state.recorders and not state.paused:
            out_tensors = self._record_call(prog, dyn_args, outs)
        else:
            out_tensors = [Tensor(o) for o in outs]
        for v, val in zip(prog.variables, new_vars, strict=True):
            v._value = val
        it_t, it_s = iter(out_tensors), iter(prog.out_static)
        leaves = [next(it_t) if k != "static" else next(it_s) for k in prog.out_kinds]
        return tree_util.tree_unflatten(prog.out_tree, leaves)

    def _record_call(self, prog, dyn_args, outs):
        """Show the call to active tapes as one op of the Variables' reads and tensor inputs."""
        reads = [v._read_value_for_op() for v in prog.variables]
        inputs = [*reads, *[x if isinstance(x, Tensor) else Tensor(_value(x)) for x in dyn_args]]
        n_vars, jitted = len(reads), prog.jitted

        def call(*vals):
            res, _ = jitted(list(vals[:n_vars]), list(vals[n_vars:]))
            return tuple(res)

        return list(apply(call, inputs, outputs=tuple(outs)))


def _value(x):
    return x._value if isinstance(x, Tensor) else jax.numpy.asarray(x)


def function(
    func=None,
    input_signature=None,
    autograph=True,
    jit_compile=None,
    reduce_retracing=False,
    experimental_compile=None,
    **kwargs,
):
    """Compile `func` into one XLA program per input signature (TF's `tf.function`).

    Tensors (and arrays) are traced; Python values are static (a new value retraces);
    Variables it reads or assigns become inputs and outputs, written back after each call.
    With `autograph=True` (the default) `if`/`while`/`for` on tensor values in `func` become
    conditionals and loops of the compiled program (`transforms.autograph`).

    Example:
      >>> @tf.function
      ... def f(x): return x * x
      >>> f(tf.constant(3.0)).numpy()
      9.0
    """
    if func is None:
        return lambda f: Function(f, autograph=autograph)
    return Function(func, autograph=autograph)
