"""Placeholder replaced below."""

from types import SimpleNamespace

optimizers = SimpleNamespace()
