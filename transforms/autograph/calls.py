"""Recursive conversion: the functions a converted function calls are converted too.

TensorFlow's AutoGraph converts the user's functions that a converted function calls, so an
`if` on a tensor inside a helper works as one in the decorated function does. The converter
turns each call `f(...)` into `ag__.callee(f, convert_print)(...)`: the callee decides per call
whether `f` is user code (converted once, cached with the function) or a library's or Python's
own (called as it is: its control flow is its authors' business, and converting it would only
cost time). A function that cannot be converted (a lambda, no source, a generator) runs as it
is, as TF runs what AutoGraph cannot transform.
"""

from __future__ import annotations

import functools
import os
import sys
import sysconfig
import types
import weakref

# Installed packages and the standard library are not user code; neither is this package.
_NOT_USER_DIRS = tuple(
    {
        os.path.normcase(os.path.realpath(p)) + os.sep
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        if (p := sysconfig.get_paths().get(key))
    }
    | {
        os.path.normcase(os.path.realpath(os.path.dirname(os.path.dirname(__file__)))) + os.sep,
        os.path.normcase(os.path.realpath(sys.prefix)) + os.sep,
    }
)

_unconvertible: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _is_user_code(fn: types.FunctionType) -> bool:
    return _is_user_file(fn.__code__.co_filename)


@functools.lru_cache(maxsize=4096)
def _is_user_file(filename: str) -> bool:
    # Cached: every call in converted code asks, and realpath touches the file system.
    if filename.startswith("<"):  # exec'd or interactive: no source file to convert from
        return not filename.startswith("<frozen")
    path = os.path.normcase(os.path.realpath(filename))
    return not path.startswith(_NOT_USER_DIRS)


def callee(fn, convert_print: bool):
    """What a converted function calls for `fn`: its converted form when it is user code."""
    if isinstance(fn, types.MethodType):
        func = fn.__func__
        if type(func) is not types.FunctionType:
            return fn
        new = _converted(func, convert_print)
        return fn if new is func else types.MethodType(new, fn.__self__)
    if isinstance(fn, functools.partial):
        new = callee(fn.func, convert_print)
        return fn if new is fn.func else functools.partial(new, *fn.args, **fn.keywords)
    if type(fn) is not types.FunctionType:  # builtins, classes, callable objects (Keras layers)
        return fn
    return _converted(fn, convert_print)


def _converted(fn: types.FunctionType, convert_print: bool):
    if getattr(fn, "__autograph_converted__", False) or not _is_user_code(fn):
        return fn
    try:
        if convert_print in _unconvertible.get(fn, ()):
            return fn
    except TypeError:
        return fn
    from .converter import ConversionError, convert

    try:
        return convert(fn, convert_print=convert_print)
    except ConversionError:
        _unconvertible.setdefault(fn, set()).add(convert_print)
        return fn
