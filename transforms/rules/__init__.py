"""Differentiation rules, one module per primitive family. Importing this package registers them.

Every module in this package is imported, so a new family is a new file: nothing to list here.
"""

import importlib
import pkgutil

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")
