"""Placeholder replaced below."""


def function(func=None, **kwargs):
    if func is None:
        return lambda f: f
    return func
