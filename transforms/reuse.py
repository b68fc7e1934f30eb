"""Reusing a traced program across eager calls, when nothing it was traced from has changed.

JAX's eager gradient retraces the user's function on every call, and for a long program that is
most of the call (a 1,000-op chain: tracing is ~90% of our eager gradient). PyTorch has no trace
to redo. We skip the trace only when we can show it would give the same program:

- the function is plain Python whose bytecode we read: every global, closure cell and module
  attribute it loads, directly or through the Python functions it calls, is snapshotted, and
  a later call reuses the trace only if every one is the same object (or an equal immutable
  value) again;
- everything it can call is either such a function or known to be pure (JAX and NumPy
  functions, an allowlist of builtins, `math`, `operator`);
- it writes nothing outside itself (no global or nonlocal stores, no attribute or item stores,
  no imports, no `with`, no generators), so running it again would have no other effect;
- the arguments are arrays in plain containers, and JAX's tracing configuration (x64,
  promotion modes, the mesh, ...) is the same.

Anything else (objects with methods, `print`, NumPy's global random state, custom pytree
nodes, a function seen branching on a value) is simply traced again, as JAX does.
"""

from __future__ import annotations

import builtins
import collections
import dis
import functools
import math
import operator
import os
import types
import weakref

import jax
import numpy as np
from jax import tree_util

from ._jax import config as _config
from ._jax import core as _core
from .tracing import mesh_context


class NotProvable(Exception):
    """The function reads or calls something whose sameness we cannot check."""


# Builtins that compute, never act on the world; `print`, `open`, `input`, `setattr`,
# `globals`, `exec`, `id`, `hash` and the rest make a function ineligible.
_PURE_BUILTINS = frozenset(
    getattr(builtins, name)
    for name in (
        "abs all any bool complex dict divmod enumerate filter float frozenset int isinstance "
        "issubclass iter len list map max min next pow range reversed round slice sorted str "
        "sum tuple zip callable"
    ).split()
)
_PURE_MODULES = (math, operator)
_NUMPY_IMPURE = frozenset(
    "save savez savez_compressed savetxt load loadtxt genfromtxt fromfile memmap seterr "
    "set_printoptions setbufsize seterrcall".split()
)

# Opcodes by which a function acts on state outside its own frame (or that we do not follow).
_WRITES = frozenset(
    {
        "STORE_GLOBAL",
        "DELETE_GLOBAL",
        "STORE_ATTR",
        "DELETE_ATTR",
        "STORE_SUBSCR",
        "DELETE_SUBSCR",
        "IMPORT_NAME",
        "IMPORT_FROM",
        "IMPORT_STAR",
        "LOAD_NAME",
        "STORE_NAME",
        "BEFORE_WITH",
        "SETUP_WITH",
        "BEFORE_ASYNC_WITH",
        "YIELD_VALUE",
        "RETURN_GENERATOR",
        "GET_AWAITABLE",
        "LOAD_BUILD_CLASS",
        "LOAD_CLASSDEREF",
    }
)
_ATTR_OPS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
_MAX_NODES = 400  # values checked per call; past it, not worth it (and not provable cheaply)


@functools.lru_cache(maxsize=1024)
def _reads(code: types.CodeType) -> tuple:
    """What `code` (and code nested in it) loads from outside: ('global'|'free', name, attrs).

    Raises NotProvable if it writes outside its frame.
    """
    reads = []
    free = set(code.co_freevars)
    instrs = list(dis.get_instructions(code))
    for i, ins in enumerate(instrs):
        op = ins.opname
        if op in _WRITES:
            raise NotProvable(op)
        if op in ("STORE_DEREF", "DELETE_DEREF") and ins.argval in free:
            raise NotProvable("nonlocal write")
        if op == "LOAD_GLOBAL" or (op in ("LOAD_DEREF", "LOAD_CLOSURE") and ins.argval in free):
            attrs = []
            for nxt in instrs[i + 1 :]:
                if nxt.opname not in _ATTR_OPS:
                    break
                attrs.append(nxt.argval)
            kind = "global" if op == "LOAD_GLOBAL" else "free"
            reads.append((kind, ins.argval, tuple(attrs)))
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            for kind, name, attrs in _reads(const):
                # An inner function's free variable is this function's cell or free variable;
                # only the latter comes from outside.
                if kind == "free" and name not in free:
                    continue
                reads.append((kind, name, attrs))
    return tuple(dict.fromkeys(reads))


class _Same:
    """Compares equal to another `_Same` of the very same object (arrays, functions, modules)."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __eq__(self, other):
        return type(other) is _Same and other.obj is self.obj

    def __hash__(self):
        return id(self.obj)


def _is_library(obj) -> bool:
    module = getattr(obj, "__module__", None) or type(obj).__module__ or ""
    root = module.split(".")[0]
    if root in ("jax", "jaxlib"):
        return True
    if root == "numpy":
        return not module.startswith("numpy.random") and (
            getattr(obj, "__name__", "") not in _NUMPY_IMPURE
        )
    return False


class _Snapshot:
    def __init__(self):
        self.parts: list = []
        self.seen: set = set()

    def value(self, v, depth: int = 0):
        """Record `v` so that an unchanged `v` gives an equal snapshot; NotProvable otherwise."""
        if len(self.parts) > _MAX_NODES or depth > 12:
            raise NotProvable("too deep")
        t = type(v)
        if v is None or t in (bool, int, float, complex, str, bytes) or v is Ellipsis:
            self.parts.append((t, v))
            return
        if t in (tuple, frozenset):
            self.parts.append((t, len(v)))
            for x in v:
                self.value(x, depth + 1)
            return
        if isinstance(v, np.generic) or isinstance(v, np.dtype):
            self.parts.append((t, v))
            return
        if isinstance(v, _core.Tracer):
            raise NotProvable("tracer")
        self.parts.append(_Same(v))
        if id(v) in self.seen:
            return
        self.seen.add(id(v))
        if isinstance(v, jax.Array):  # immutable: the same object is the same value
            return
        if isinstance(v, np.ndarray):
            if v.flags.writeable:
                raise NotProvable("mutable NumPy array")
            return
        if isinstance(v, types.ModuleType) or v in _PURE_BUILTINS:
            return
        if isinstance(v, functools.partial | tree_util.Partial):
            self.value(v.func, depth + 1)
            self.value(tuple(v.args), depth + 1)
            self.value(tuple(sorted((v.keywords or {}).items())), depth + 1)
            return
        if isinstance(v, types.FunctionType) and not _is_library(v):
            self.function(v, depth + 1)
            return
        wrapped = getattr(v, "__wrapped__", None)  # jax.jit, our transforms, functools.wraps
        if wrapped is not None:
            self.value(wrapped, depth + 1)
            for attr in ("jvp", "fwd", "bwd"):  # custom_jvp / custom_vjp rules
                if (rule := getattr(v, attr, None)) is not None:
                    self.value(rule, depth + 1)
            return
        if isinstance(v, type) and _is_library(v):  # dtypes such as jnp.float32
            return
        if _is_library(v) or getattr(v, "__module__", None) in (m.__name__ for m in _PURE_MODULES):
            if hasattr(v, "fun") or hasattr(v, "fwd"):  # a custom rule object without wraps
                for attr in ("fun", "jvp", "fwd", "bwd"):
                    if (part := getattr(v, attr, None)) is not None and callable(part):
                        self.value(part, depth + 1)
            return
        raise NotProvable(f"cannot check a {t.__name__}")

    def function(self, f: types.FunctionType, depth: int):
        reads = _reads(f.__code__)
        self.value(f.__defaults__, depth)
        if f.__kwdefaults__:
            self.value(tuple(sorted(f.__kwdefaults__.items())), depth)
        cells = dict(zip(f.__code__.co_freevars, f.__closure__ or (), strict=True))
        g = f.__globals__
        for kind, name, attrs in reads:
            if kind == "global":
                if name in g:
                    v = g[name]
                elif hasattr(builtins, name):
                    v = getattr(builtins, name)
                else:
                    raise NotProvable(f"undefined global {name}")
            else:
                try:
                    v = cells[name].cell_contents
                except ValueError:  # an empty cell: defined later in the enclosing scope
                    raise NotProvable("empty cell") from None
            if isinstance(v, types.ModuleType) and not attrs:
                raise NotProvable("a module used as a value")  # its attributes go unchecked
            self.value(v, depth)
            for attr in attrs:
                if not isinstance(v, types.ModuleType):
                    break  # attributes of anything else are read from an already-checked value
                v = getattr(v, attr, None)
                self.value(v, depth)


def _plain_tree(treedef, memo={}) -> bool:  # noqa: B006 - a cache
    ok = memo.get(treedef)
    if ok is None:
        leaves = [object()] * treedef.num_leaves
        rebuilt = tree_util.tree_unflatten(treedef, leaves)
        ok = _only_builtin_containers(rebuilt)
        if len(memo) < 1024:
            memo[treedef] = ok
    return ok


def _only_builtin_containers(x) -> bool:
    stack = [x]
    while stack:
        v = stack.pop()
        t = type(v)
        if t in (tuple, list):
            stack.extend(v)
        elif t in (dict, collections.OrderedDict):
            stack.extend(v.values())
        elif isinstance(v, tuple) and hasattr(v, "_fields"):  # a namedtuple
            stack.extend(v)
        elif v is not None and t is not object:
            return False
    return True


def key(fun, extra, in_tree, flat) -> tuple | None:
    """The reuse key for tracing `fun(*unflatten(in_tree, flat))`, or None if not provable.

    `extra` is what else the trace depends on (has_aux, the api name).
    """
    if not ENABLED or not _core.trace_ctx.is_top_level():
        return None
    if not _plain_tree(in_tree):
        return None
    avals = []
    for x in flat:
        if isinstance(x, _core.Tracer):
            return None
        avals.append(jax.typeof(x))
    # The argnums wrapper holds the call's arguments; the differentiated ones are `flat`.
    parts = []
    while (part := getattr(fun, "_transforms_partial", None)) is not None:
        fun, argnums, args = part
        parts.append((argnums, args))
    if not _called_before(fun):
        # A fresh closure per call would only fill the cache with dead programs; and a first
        # call (a notebook cell, a test) does not pay for the snapshot.
        return None
    snap = _Snapshot()
    try:
        for argnums, args in parts:
            snap.value(argnums)
            snap.value(tuple(None if i in argnums else a for i, a in enumerate(args)))
        snap.value(fun)
    except (NotProvable, TypeError, ValueError):
        return None
    return (
        tuple(snap.parts),
        extra,
        in_tree,
        tuple(avals),
        _config.trace_context(),
        mesh_context(),
    )


# TRANSFORMS_REUSE_TRACES=0 traces on every call, as JAX does (for debugging a suspected reuse).
ENABLED = os.environ.get("TRANSFORMS_REUSE_TRACES", "1") != "0"
_CACHE: collections.OrderedDict = collections.OrderedDict()
MAX_ENTRIES = 256  # each holds its traced program (and so its constants) alive


_seen: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _called_before(fun) -> bool:
    try:
        if fun in _seen:
            return True
        _seen[fun] = True
    except TypeError:  # not weakly referenceable
        pass
    return False


def lookup(k):
    hit = _CACHE.get(k)
    if hit is not None:
        _CACHE.move_to_end(k)
    return hit


def store(k, value) -> None:
    _CACHE[k] = value
    while len(_CACHE) > MAX_ENTRIES:
        _CACHE.popitem(last=False)


def clear() -> None:
    _CACHE.clear()
    _seen.clear()
