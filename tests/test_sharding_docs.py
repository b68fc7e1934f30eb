"""docs/sharding.md runs: its Python blocks are executed in order, in one namespace.

The page's own asserts check the derivatives against JAX and the compiled program for an
all-reduce; this test fails if any block raises.
"""

from __future__ import annotations

import pathlib
import re

import jax

PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "sharding.md"


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_sharding_page_runs():
    assert jax.device_count() == 8, "tests/conftest.py must simulate 8 CPU devices"
    blocks = _python_blocks(PAGE.read_text())
    assert len(blocks) >= 6
    namespace: dict = {"__name__": "sharding_docs"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"{PAGE.name}[block {i}]", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"docs/sharding.md block {i} failed:\n{block}") from e
