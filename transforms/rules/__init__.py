"""Differentiation rules, one module per primitive family. Importing registers them."""

from . import calls, elementwise, structural  # noqa: F401
