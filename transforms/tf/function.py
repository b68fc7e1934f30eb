"""`tf.function`: compile a TF-style step (tapes, Variables, assign*) into one `jax.jit` program.

The Python function is traced with its tensor arguments as JAX tracers. Every Variable it
touches is lifted: its value becomes an input of the jitted program, reads inside see the
traced value, `assign*` replaces it, and the final values are program outputs written back to
the Variables after each call. Variables read but not passed as arguments (globals) are
discovered while tracing: their first read is a marked constant of the program, which is then
made an input, so the one trace serves later calls with their current values. The trace is redone
(counted twice) only when the first trace creates Variables, or when a global Variable is first
touched inside a traced `if`/loop block that autograph converted. Python side effects, `print`
included, happen while tracing, as in TF: once per new input signature; `tf.print` prints when
the compiled program runs.

TF's retracing rules: a new tensor shape or dtype, a new Python value, or a different Variable
argument traces again; the same ones reuse the program. A size the input signature leaves open
(`None`, or relaxed by `reduce_retracing`) is traced once, symbolically (`symbolic.py`). Only
the first trace may create Variables (TF's singleton rule), which the trace that follows must
then find existing.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import sys

import jax
import numpy as np
from jax import tree_util
from jax.ad_checkpoint import checkpoint_name

from .. import _jax
from . import symbolic
from .core import apply, created_variables, lifted_variables, state
from .ops import convert_to_tensor
from .spec import TensorSpec, spec_of
from .tape import in_order_of, skeleton
from .tensor import Tensor
from .variable import Variable

# TF's message, word for word.
_SINGLETON_VARIABLES = (
    "tf.function only supports singleton tf.Variables created on the first call. Make sure the "
    "tf.Variable is only created once or created outside tf.function. See "
    "https://www.tensorflow.org/guide/function#creating_tfvariables for more information."
)
# Retraces of one call, to lift Variables discovered while tracing. A function that reads new
# Variables on every trace would otherwise never finish.
_MAX_TRACES = 16
# Names the markers of Variables a trace discovered (see `_lift_marked`).
_MARK = "__tf_function_variable_"


def _is_leaf(x):
    return isinstance(x, Tensor | Variable | TensorSpec)


def _spec(x):
    """How an argument enters the program: traced (shape, dtype), a Variable, or static."""
    if isinstance(x, Variable):
        return ("var", id(x))
    if isinstance(x, TensorSpec):  # get_concrete_function: trace for this shape, run nothing
        return ("dyn", tuple(x.shape), x.dtype.str)
    if isinstance(x, Tensor | np.ndarray | jax.Array):
        return ("dyn", tuple(x.shape), np.dtype(x.dtype).str)
    try:
        hash(x)
        return ("static", type(x).__name__, x)
    except TypeError:
        return ("static", type(x).__name__, id(x))


class _Program:
    """One trace: the jitted step for one input signature and one list of lifted Variables."""

    def __init__(self, variables, jitted, compiled, out_tree, out_static, out_kinds, out_order):
        self.variables = variables
        self.jitted = jitted
        self.compiled = compiled
        self.out_tree = out_tree
        self.out_static = out_static  # output leaves that are not tensors (Python values)
        self.out_kinds = out_kinds
        self.out_order = out_order  # the result's containers, for its dicts' key order


@contextlib.contextmanager
def _fresh_recorders():
    # Tapes outside the function must not see ops on traced values.
    saved = state.recorders, state.paused
    state.recorders, state.paused = [], 0
    try:
        yield
    finally:
        state.recorders, state.paused = saved


def _binding_error(value, spec, args, kwargs, signature):
    return TypeError(
        f"Binding inputs to tf.function failed due to `Can not cast {spec_of(value)!r} to "
        f"{spec!r}`. Received args: {args!r} and kwargs: {kwargs!r} for signature: "
        f"{signature}."
    )


def bind_to_signature(python_function, signature, args, kwargs):
    """`(args, kwargs)` as Tensors matching `signature` (a nest of TensorSpecs per positional
    parameter), or TF's TypeError. Python numbers are converted to the spec's dtype."""
    try:
        names = list(inspect.signature(python_function).parameters)[: len(signature)]
    except (TypeError, ValueError):
        names = []
    positional = list(args)
    rest = dict(kwargs)
    for name in names[len(positional) :]:
        if name in rest:
            positional.append(rest.pop(name))
    shown = "(" + ", ".join(f"{n}: {s!r}" for n, s in zip(names, signature, strict=False)) + ")"
    if len(positional) != len(signature) or rest:
        raise TypeError(
            f"tf.function with an input_signature of {len(signature)} argument(s) was called "
            f"with {len(positional)} positional argument(s) and keyword arguments "
            f"{sorted(rest)}; signature: {shown}."
        )
    bound = []
    for value, spec_nest in zip(positional, signature, strict=True):
        specs, tree = tree_util.tree_flatten(spec_nest, is_leaf=_is_leaf)
        try:
            values = tree.flatten_up_to(value)
        except (ValueError, TypeError):
            raise TypeError(
                f"Binding inputs to tf.function failed: {value!r} does not have the structure "
                f"of {spec_nest!r}."
            ) from None
        tensors = []
        for v, spec in zip(values, specs, strict=True):
            if isinstance(v, Variable):
                t = v._read_value_for_op()
            elif isinstance(v, Tensor):
                t = v
            else:
                t = convert_to_tensor(v, dtype_hint=spec.dtype)
            if not spec.is_compatible_with(t):
                raise _binding_error(v, spec, tuple(args), kwargs, shown)
            tensors.append(t)
        bound.append(tree_util.tree_unflatten(tree, tensors))
    return tuple(bound), {}


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

    def __init__(self, python_function, input_signature=None, **options):
        self.python_function = python_function
        self.input_signature = None if input_signature is None else tuple(input_signature)
        self._options = options
        self._programs: dict = {}
        self._globals: dict[int, Variable] = {}  # Variables discovered while tracing
        self._tracing_count = 0
        self._may_create_variables = True  # until the first trace has finished
        functools.update_wrapper(self, python_function)

    def __get__(self, instance, owner):
        if instance is None:
            return self
        bound = self.__dict__.setdefault("_bound", {})
        key = id(instance)
        if key not in bound:
            bound[key] = Function(
                self.python_function.__get__(instance, owner),
                input_signature=self.input_signature,
                **self._options,
            )
        return bound[key]

    def experimental_get_tracing_count(self) -> int:
        """How many times the Python function was traced (TF's name)."""
        return self._tracing_count

    def __call__(self, *args, **kwargs):
        if state.var_values is not None:  # inside another function's trace: inline
            return self.python_function(*args, **kwargs)
        if self.input_signature is not None:
            args, kwargs = bind_to_signature(
                self.python_function, self.input_signature, args, kwargs
            )
        return self._call_bound(args, kwargs)

    def _call_bound(self, args, kwargs, signature=None):
        flat, in_tree, specs, prog = self._program_for(args, kwargs, signature)
        return self._run(prog, flat, specs)

    def _program_for(self, args, kwargs, signature=None):
        """The program for these arguments, traced on first need. `signature` (the flat
        TensorSpecs the arguments were bound to) lets one trace with symbolic sizes serve every
        size of a `None` dimension; where that trace fails, each size is traced."""
        flat, in_tree = tree_util.tree_flatten((args, kwargs), is_leaf=_is_leaf)
        specs = tuple(_spec(x) for x in flat)
        if signature is None and self.input_signature is not None:
            signature = tree_util.tree_leaves(self.input_signature, is_leaf=_is_leaf)
        general = _general_specs(flat, specs, signature)
        if general is None and self._options.get("reduce_retracing"):
            general = self._relaxed(in_tree, specs, flat)
        if general is not None:
            prog = self._programs.get((in_tree, general))
            if prog is None:
                try:
                    prog = self._trace(flat, in_tree, general)
                except Exception:  # noqa: BLE001 - any failure: trace each size instead
                    prog = _PER_SIZE
                self._programs[(in_tree, general)] = prog
            if prog is not _PER_SIZE:
                return flat, in_tree, general, prog
            if any(isinstance(x, TensorSpec) for x in flat):
                return flat, in_tree, general, None  # traced when called with tensors
        key = (in_tree, specs)
        prog = self._programs.get(key)
        if prog is None:
            prog = self._programs[key] = self._trace(flat, in_tree, specs)
        return flat, in_tree, specs, prog

    def _relaxed(self, in_tree, specs, flat):
        """For `reduce_retracing`: the specs of an earlier trace of the same structure with
        `None` wherever its sizes differ from these (TF's relaxed shapes), or None. Ranks are
        kept: XLA cannot leave a rank open."""
        if (in_tree, specs) in self._programs or any(s[0] == "dyn" and 0 in s[1] for s in specs):
            return None
        candidates = []
        for tree, earlier in self._programs:
            if tree != in_tree or len(earlier) != len(specs):
                continue
            merged = [_merge(a, b) for a, b in zip(earlier, specs, strict=True)]
            if all(m is not None for m in merged):
                general = _general_specs(flat, specs, merged)
                if general is not None:
                    if (in_tree, general) in self._programs:
                        return general  # an earlier relaxed trace covers these sizes
                    candidates.append(general)
        # Otherwise the most general one: fewer traces later.
        return max(candidates, key=_open_sizes, default=None)

    def get_concrete_function(self, *args, **kwargs) -> ConcreteFunction:
        """The function specialised to these arguments: TensorSpecs (or tensors, taken as their
        specs) and Python values. Traced now when every shape is known.

        Example:
          >>> cf = f.get_concrete_function(tf.TensorSpec([None], tf.float32))
          >>> cf(tf.constant([1.0, 2.0]))
        """
        if not args and not kwargs and self.input_signature is not None:
            args = self.input_signature
        return ConcreteFunction(self, args, kwargs)

    def _converted_function(self):
        """The Python function with AutoGraph's control-flow conversion (unless autograph=False)."""
        if not self._options.get("autograph", True):
            return self.python_function
        from ..autograph import convert_for_tf_function

        return convert_for_tf_function(self.python_function)

    # --- tracing ----------------------------------------------------------------------------------
    def _trace(self, flat, in_tree, specs):
        arg_vars = [x for x in flat if isinstance(x, Variable)]
        for _ in range(_MAX_TRACES):
            variables = list({id(v): v for v in [*arg_vars, *self._globals.values()]}.values())
            box: dict = {}
            pure = self._pure(flat, in_tree, specs, variables, box)
            var_vals = [v._value for v in variables]
            dyn_vals = _tracing_values(flat, specs)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                traced = jax.jit(pure).trace(var_vals, dyn_vals)
            created = box["created"]
            if created and not self._may_create_variables:
                raise ValueError(_SINGLETON_VARIABLES)
            marked, forgotten = box["marked"], box["forgotten"]
            # A trace redone only because autograph met a Variable first inside a block is ours,
            # not TF's (TF traces once there): its prints are dropped and it is not counted.
            if created or not forgotten:
                self._tracing_count += 1
            if not created and not forgotten:
                sys.stdout.write(out.getvalue())
                break
            # Retrace with these lifted from the start (this trace's output is dropped):
            # Variables created on the first trace must already exist on the next one, and a
            # Variable first touched inside a traced block (autograph dropped it) must be part
            # of every block's state.
            self._may_create_variables = False
            for v in marked:
                self._globals[id(v)] = v
        else:
            raise RuntimeError(
                f"tf.function traced {self.python_function.__name__!r} {_MAX_TRACES} times and "
                "each trace read Variables the previous ones had not; read the same Variables "
                "on every trace."
            )
        self._may_create_variables = False
        if any(s[0] == "dyn" and None in s[1] for s in specs):
            # Symbolic sizes: one program per concrete size, specialised from this one trace.
            for v in marked:
                self._globals[id(v)] = v
            jitted = jax.jit(
                _lift_marked(traced.jaxpr, len(variables), len(marked), symbolic.specialise)
            )
            variables = [*variables, *marked]
            compiled = None
        elif marked:
            # Variables the trace discovered (globals the function closes over) became
            # constants behind a marker; make them inputs instead, so this one trace serves
            # every later call with the Variables' current values.
            for v in marked:
                self._globals[id(v)] = v
            jitted = jax.jit(_lift_marked(traced.jaxpr, len(variables), len(marked)))
            variables = [*variables, *marked]
            var_vals = [v._value for v in variables]
            compiled = jitted.trace(var_vals, dyn_vals).lower().compile()
        else:
            jitted = jax.jit(pure)
            compiled = traced.lower().compile()
        return _Program(
            variables,
            jitted,
            compiled,
            box["out_tree"],
            box["out_static"],
            box["out_kinds"],
            box["out_order"],
        )

    def _pure(self, flat, in_tree, specs, variables, box):
        fn = self._converted_function()

        def pure(var_vals, dyn_vals):
            lifted = {id(v): val for v, val in zip(variables, var_vals, strict=True)}
            log: list = []
            created: list = []
            forgotten: list = []
            top = _jax.core.unsafe_get_current_trace()
            marked: list = []  # Variables read but not lifted, in the order they were met
            marks: dict = {}

            def lift(v):
                # The value as a marked constant of the top-level program (not of a branch or
                # loop body being traced), which `_lift_marked` turns into an input.
                if id(v) not in marks:
                    with _jax.core.set_current_trace(top):
                        marks[id(v)] = checkpoint_name(v._value, f"{_MARK}{len(marked)}")
                    marked.append(v)
                return marks[id(v)]

            dyn = iter(dyn_vals)
            leaves = [
                Tensor(next(dyn)) if s[0] == "dyn" else x for x, s in zip(flat, specs, strict=True)
            ]
            args, kwargs = tree_util.tree_unflatten(in_tree, leaves)
            with (
                _fresh_recorders(),
                lifted_variables(lifted, log, lift, forgotten),
                created_variables(created),
            ):
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
                marked=marked,
                forgotten=forgotten,
                created=created,
                out_tree=out_tree,
                out_static=static,
                out_kinds=kinds,
                out_order=skeleton(result),
            )
            # A marked Variable autograph forgot has no value here: the trace is redone.
            return values, [lifted.get(id(v), marks.get(id(v))) for v in [*variables, *marked]]

        return pure

    # --- calling ----------------------------------------------------------------------------------
    def _run(self, prog, flat, specs):
        dyn_args = [x for x, s in zip(flat, specs, strict=True) if s[0] == "dyn"]
        dyn_vals = [_value(x) for x in dyn_args]
        var_vals = [v._value for v in prog.variables]
        run = prog.jitted if prog.compiled is None else prog.compiled
        outs, new_vars = run(var_vals, dyn_vals)
        if state.recorders and not state.paused:
            out_tensors = self._record_call(prog, dyn_args, outs)
        else:
            out_tensors = [Tensor(o) for o in outs]
        for v, val in zip(prog.variables, new_vars, strict=True):
            v._value = v._placed(val)
        it_t, it_s = iter(out_tensors), iter(prog.out_static)
        leaves = [next(it_t) if k != "static" else next(it_s) for k in prog.out_kinds]
        return in_order_of(prog.out_order, tree_util.tree_unflatten(prog.out_tree, leaves))

    def _record_call(self, prog, dyn_args, outs):
        """Show the call to active tapes as one op of the Variables' reads and tensor inputs."""
        reads = [v._read_value_for_op() for v in prog.variables]
        inputs = [*reads, *[x if isinstance(x, Tensor) else Tensor(_value(x)) for x in dyn_args]]
        n_vars, jitted = len(reads), prog.jitted

        def call(*vals):
            res, _ = jitted(list(vals[:n_vars]), list(vals[n_vars:]))
            return tuple(res)

        return list(apply(call, inputs, outputs=tuple(outs)))


class ConcreteFunction:
    """A `Function` specialised to one input signature (TF's `ConcreteFunction`): call it with
    tensors matching `structured_input_signature`; Python arguments are fixed."""

    def __init__(self, function: Function, args, kwargs):
        self.function = function
        self._args, self._kwargs = tuple(args), dict(kwargs)

        def as_spec(x):
            return TensorSpec.from_tensor(x) if isinstance(x, Tensor | Variable) else x

        flat, self._tree = tree_util.tree_flatten((self._args, self._kwargs), is_leaf=_is_leaf)
        self._flat = [as_spec(x) for x in flat]
        self._spec_positions = [i for i, x in enumerate(self._flat) if isinstance(x, TensorSpec)]
        self.structured_input_signature = tree_util.tree_unflatten(self._tree, self._flat)
        if all(self._flat[i].shape is not None for i in self._spec_positions):
            # Traced now, as TF does (with symbolic sizes for `None` dimensions).
            args_, kwargs_ = self.structured_input_signature
            function._program_for(args_, kwargs_, signature=self._flat)

    def __call__(self, *args, **kwargs):
        given, _ = tree_util.tree_flatten((args, kwargs), is_leaf=_is_leaf)
        specs = [self._flat[i] for i in self._spec_positions]
        if len(given) != len(specs):
            raise TypeError(
                f"This ConcreteFunction takes {len(specs)} tensor argument(s) "
                f"({specs!r}); got {len(given)}."
            )
        flat = list(self._flat)
        for i, spec, v in zip(self._spec_positions, specs, given, strict=True):
            t = v if isinstance(v, Tensor) else convert_to_tensor(v, dtype_hint=spec.dtype)
            if not spec.is_compatible_with(t):
                raise _binding_error(v, spec, args, kwargs, f"{specs!r}")
            flat[i] = t
        call_args, call_kwargs = tree_util.tree_unflatten(self._tree, flat)
        return self.function._call_bound(call_args, call_kwargs, signature=self._flat)


def _lift_marked(closed, n_vars, n_marked, evaluator=None):
    """`closed` (the trace of `pure`) as a function of `(var_vals, dyn_vals)` whose `var_vals`
    also hold the `n_marked` Variables it read as marked constants (after the first `n_vars`).
    `evaluator(jaxpr, consts)` makes the function that runs the program (symbolic sizes need
    `symbolic.specialise`)."""
    jaxpr = closed.jaxpr
    marks = [None] * n_marked
    eqns = []
    for e in jaxpr.eqns:
        name = e.params.get("name") if e.primitive.name == "name" else None
        if isinstance(name, str) and name.startswith(_MARK):
            marks[int(name[len(_MARK) :])] = e.outvars[0]
        else:
            eqns.append(e)
    invars = [*jaxpr.invars[:n_vars], *marks, *jaxpr.invars[n_vars:]]
    # The old values behind the markers are not kept alive by the program.
    used = {id(v) for e in eqns for v in e.invars} | {id(v) for v in jaxpr.outvars}
    kept = [i for i, c in enumerate(jaxpr.constvars) if id(c) in used]
    body = jaxpr.replace(
        constvars=[jaxpr.constvars[i] for i in kept],
        invars=invars,
        eqns=eqns,
        debug_info=jaxpr.debug_info.with_unknown_names(),
    )
    consts = [closed.consts[i] for i in kept]
    if evaluator is None:
        run = functools.partial(_jax.core.eval_jaxpr, body, consts)
    else:
        run = evaluator(body, consts)

    def program(var_vals, dyn_vals):
        outs = run(*var_vals, *dyn_vals)
        return outs[: len(outs) - len(var_vals)], outs[len(outs) - len(var_vals) :]

    return program


# A signature whose symbolic trace failed: each concrete size is traced on its own.
_PER_SIZE = object()


def _general_specs(flat, specs, signature):
    """`specs` with the sizes a signature leaves open (`None`) as None, or None when no
    argument is bound to such a dimension (or one of those sizes is 0, which the symbolic
    trace assumes away)."""
    if signature is None or len(signature) != len(flat):
        return None
    general, opened = [], False
    for x, s, spec in zip(flat, specs, signature, strict=True):
        dims = getattr(spec, "_shape", None)
        if s[0] != "dyn" or not isinstance(spec, TensorSpec) or dims is None or None not in dims:
            general.append(s)
            continue
        if isinstance(x, TensorSpec):
            if x._shape is None or len(x._shape) != len(dims):
                return None
        elif 0 in tuple(x.shape):
            return None
        general.append(("dyn", dims, s[2]))
        opened = True
    return tuple(general) if opened else None


def _open_sizes(specs) -> int:
    return sum(s[1].count(None) for s in specs if s[0] == "dyn")


def _merge(earlier, spec):
    """The spec that covers both (a TensorSpec with `None` where the sizes differ), the static
    spec where both are the same, or None where no one trace serves both."""
    if earlier == spec:
        return TensorSpec(spec[1], spec[2]) if spec[0] == "dyn" else spec
    if earlier[0] != "dyn" or spec[0] != "dyn" or earlier[2] != spec[2]:
        return None
    if len(earlier[1]) != len(spec[1]):
        return None
    dims = [a if a == b else None for a, b in zip(earlier[1], spec[1], strict=True)]
    return TensorSpec(dims, spec[2])


def _tracing_values(flat, specs):
    """What the trace sees for each tensor argument: its shape and dtype, with a symbolic size
    for each `None` of its spec."""
    dyn = [(x, s) for x, s in zip(flat, specs, strict=True) if s[0] == "dyn"]
    if not any(None in s[1] for _, s in dyn):
        return [_value(x) for x, _ in dyn]
    shapes = symbolic.symbolic_shapes([s[1] for _, s in dyn])
    return [
        jax.ShapeDtypeStruct(shape, np.dtype(s[2])) if None in s[1] else _value(x)
        for (x, s), shape in zip(dyn, shapes, strict=True)
    ]


def _value(x):
    if isinstance(x, TensorSpec):
        return jax.ShapeDtypeStruct(tuple(x.shape), x.dtype)
    return x._value if isinstance(x, Tensor) else jax.numpy.asarray(x)


def function(
    func=None,
    input_signature=None,
    autograph=True,
    jit_compile=None,
    reduce_retracing=False,
    experimental_compile=None,
    experimental_relax_shapes=None,
    experimental_implements=None,
    experimental_autograph_options=None,
    experimental_attributes=None,
    experimental_follow_type_hints=None,
    name=None,
):
    """Compile `func` into one XLA program per input signature (TF's `tf.function`).

    Tensors (and arrays) are traced; Python values are static (a new value retraces);
    Variables it reads or assigns become inputs and outputs, written back after each call.
    With `autograph=True` (the default) `if`/`while`/`for` on tensor values in `func` become
    conditionals and loops of the compiled program (`transforms.autograph`).

    Args:
      func: the Python function (or use `@tf.function(...)` as a decorator factory).
      input_signature: a list of `tf.TensorSpec` (or nests of them), one per positional
        parameter: calls must match (a None dimension matches any size), Python numbers are
        converted to the spec's dtype, and anything else raises TF's TypeError.
      jit_compile, experimental_compile: accepted; every program is XLA-compiled here.
      reduce_retracing, experimental_relax_shapes: a second size of a tensor argument (same
        rank) traces once more with `None` there, which then serves every size, as in TF.
        A `None` dimension is traced once with a symbolic size; each concrete size gets its
        own XLA program from that trace (`transforms/tf/symbolic.py`).
      autograph: convert Python control flow on tensors (True, the default) or not.

    Example:
      >>> @tf.function
      ... def f(x): return x * x
      >>> f(tf.constant(3.0)).numpy()
      9.0
    """
    options = {
        "jit_compile": jit_compile if experimental_compile is None else experimental_compile,
        "reduce_retracing": bool(reduce_retracing or experimental_relax_shapes),
        "autograph": autograph,
    }
    if input_signature is not None:
        input_signature = list(input_signature)
        for spec in tree_util.tree_leaves(input_signature, is_leaf=_is_leaf):
            if not isinstance(spec, TensorSpec):
                raise TypeError(
                    f"input_signature must be a possibly nested sequence of TensorSpec "
                    f"objects, got {spec!r}."
                )
    if func is None:
        return lambda f: Function(f, input_signature=input_signature, **options)
    return Function(func, input_signature=input_signature, **options)
