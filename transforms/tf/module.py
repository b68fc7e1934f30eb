"""`tf.Module` and `tf.name_scope`: containers that find their Variables and submodules.

A Module walks its attributes (sorted by name; lists, tuples and dicts inside them) for
Variables and nested Modules, as TF does: its own first, then each submodule's, each object
once. Keras layers count as Modules (`tf.keras` registers them): their variables are Keras's
own list and their submodules their sublayers.
"""

from __future__ import annotations

import abc
import functools
import re
import threading


class _Scopes(threading.local):
    def __init__(self):
        self.stack: list[str] = []


_scopes = _Scopes()


def current_name_scope() -> str:
    """The active name scope ("" outside any), e.g. "model/dense/"."""
    return "".join(_scopes.stack)


class name_scope:  # noqa: N801  (TF's name)
    """A context that prefixes the names of Variables created inside (TF's `tf.name_scope`).

    Example:
      >>> with tf.name_scope("block"):
      ...     v = tf.Variable(1.0, name="w")
      >>> v.name
      'block/w:0'
    """

    def __init__(self, name):
        if not isinstance(name, str):
            raise ValueError(f"name for name_scope must be a string, got {name!r}.")
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def __enter__(self):
        # A name ending in "/" is absolute (TF re-enters a captured scope that way).
        if self._name.endswith("/"):
            self._saved = _scopes.stack
            _scopes.stack = [self._name]
            return self._name
        self._saved = None
        _scopes.stack.append(self._name + "/" if self._name else "")
        return current_name_scope()

    def __exit__(self, *exc):
        if self._saved is not None:
            _scopes.stack = self._saved
        else:
            _scopes.stack.pop()
        return False


def scoped_name(name: str) -> str:
    """`name` under the active name scope (what a new Variable is called)."""
    return current_name_scope() + name


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _camel_to_snake(name: str) -> str:
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z\d])([A-Z])", r"\1_\2", s).lower()


def _is_variable(x) -> bool:
    from .variable import Variable, as_variable  # (variable.py imports this module)

    return isinstance(x, Variable) or as_variable(x) is not x


class Module(metaclass=abc.ABCMeta):  # noqa: B024  (ABCMeta so Keras layers can register)
    """Base class for objects that hold Variables and other Modules (TF's `tf.Module`).

    Example:
      >>> class Dense(tf.Module):
      ...     def __init__(self, n_in, n_out, name=None):
      ...         super().__init__(name=name)
      ...         with self.name_scope:
      ...             self.w = tf.Variable(tf.ones([n_in, n_out]), name="w")
      >>> [v.name for v in Dense(2, 3, name="dense").variables]
      ['dense/w:0']
    """

    def __init__(self, name=None):
        if name is None:
            name = _camel_to_snake(type(self).__name__)
        elif not _IDENTIFIER.match(name):
            raise ValueError(
                f"'{name}' is not a valid module name. Module names must be valid Python "
                "identifiers (e.g. a valid class name)."
            )
        self._name = name
        self._scope_name = current_name_scope() + name + "/"

    @property
    def name(self) -> str:
        """The module's name (its class name in snake_case by default)."""
        return self._name

    @property
    def name_scope(self) -> name_scope:
        """The scope Variables made for this module are created in (`with self.name_scope:`)."""
        return name_scope(self._scope_name)

    @property
    def variables(self) -> tuple:
        """Every Variable of this module and its submodules, each once."""
        return tuple(_flatten(self, _is_variable))

    @property
    def trainable_variables(self) -> tuple:
        """The trainable ones of `variables`."""
        return tuple(_flatten(self, lambda x: _is_variable(x) and x.trainable))

    @property
    def non_trainable_variables(self) -> tuple:
        return tuple(_flatten(self, lambda x: _is_variable(x) and not x.trainable))

    @property
    def submodules(self) -> tuple:
        """Every Module reachable from this one's attributes (not itself), each once."""
        return tuple(_flatten(self, lambda x: isinstance(x, Module)))

    @classmethod
    def with_name_scope(cls, method):
        """Decorate a method to run inside the module's name scope."""

        @functools.wraps(method)
        def scoped(self, *args, **kwargs):
            with self.name_scope:
                return method(self, *args, **kwargs)

        return scoped


def _leaves(value):
    """Leaves of an attribute, in TF's order: lists and tuples in order, dicts by sorted key."""
    if isinstance(value, dict):
        for k in sorted(value, key=str):
            yield from _leaves(value[k])
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def _children(module):
    """A module's attribute leaves; a Keras layer's are its variables and sublayers."""
    own = getattr(type(module), "_transforms_module_children", None)
    if own is not None:
        return own(module)
    attrs = vars(module)
    return [leaf for key in sorted(attrs) for leaf in _leaves(attrs[key])]


def _flatten(module, predicate, seen=None, stack=None):
    seen = set() if seen is None else seen
    stack = [] if stack is None else stack
    submodules = []
    for leaf in _children(module):
        if id(leaf) in seen:
            continue
        seen.add(id(leaf))
        if predicate(leaf):
            yield leaf
        if isinstance(leaf, Module) and id(leaf) not in stack:
            submodules.append(leaf)
    stack.append(id(module))
    for sub in submodules:
        yield from _flatten(sub, predicate, seen, stack)
    stack.pop()
