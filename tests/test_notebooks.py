"""Every tutorial notebook runs top to bottom, and its results are checked here, not in its cells.

Each notebook is executed in a fresh kernel (nbclient) with this checkout first on the path and
matplotlib's inline backend (headless; each `plt.show()` becomes a PNG output, and so a figure in
the rendered docs). After its last cell, the kernel runs that notebook's checks from
`tests/notebook_checks.py` against the notebook's own variables: values against closed forms,
finite differences and JAX's autodiff as the oracle. The notebooks keep only the compact checks
that teach something.

Each executed notebook is kept in build/notebooks/, where the docs build finds it (docs/hooks.py:
a page shows the outputs of the last test run of exactly that notebook). Notebooks are committed
without outputs, which a test keeps true; others keep them readable
(each says what you will learn and what to try next, and has its math and a figure) and free
of boilerplate a reader would not type.
"""

from __future__ import annotations

import os
import pathlib
import re
import resource
import time

import nbformat
import pytest
from nbclient import NotebookClient
from notebook_checks import CHECKS

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
EXECUTED = ROOT / "build" / "notebooks"  # read by docs/hooks.py


def _code(nb) -> str:
    return "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")


def _markdown(nb) -> str:
    return "\n".join(cell.source for cell in nb.cells if cell.cell_type == "markdown")


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 12, NOTEBOOKS


def test_every_notebook_has_checks():
    stems = {p.stem for p in NOTEBOOKS}
    assert stems == set(CHECKS), (stems ^ set(CHECKS), "add or rename its checks")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("MPLBACKEND", INLINE_BACKEND)
    nb = nbformat.read(path, as_version=4)
    shown = len(re.findall(r"^plt\.show\(\)", _code(nb), flags=re.M))
    nb.cells.append(nbformat.v4.new_code_cell(CHECKS[path.stem]))
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    start, cpu_start = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    client.execute()  # raises CellExecutionError, with the failing cell, on any error
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = cpu.ru_utime + cpu.ru_stime - cpu_start.ru_utime - cpu_start.ru_stime
    print(f"{path.stem}: {time.perf_counter() - start:.1f} s wall, {cpu_seconds:.1f} s CPU")
    # Keep the executed notebook (without the checks cell): the docs build shows its outputs.
    nb.cells.pop()
    EXECUTED.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, EXECUTED / path.name)
    # Every figure a notebook shows must reach its outputs (and so the rendered docs).
    images = sum(
        "image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", [])
    )
    assert images == shown, f"{path.name}: {shown} figures shown, {images} images produced"
    errors = [
        out
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if out.get("name") == "stderr" and "Traceback" in out.get("text", "")
    ]
    assert not errors, errors


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_reads_like_a_tutorial(path):
    nb = nbformat.read(path, as_version=4)
    text, code = _markdown(nb), _code(nb)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert "## What you will learn" in text, path.name
    assert "## What to try next" in text, path.name
    assert "$$" in text or "\\begin" in text, f"{path.name}: show the math"
    assert re.search(r"^plt\.show\(\)", code, flags=re.M), f"{path.name}: show a figure"
    # Boilerplate no reader would type: headless plotting is the test runner's business.
    for banned in ("matplotlib.use(", "set_matplotlib_formats", "notebook ran in", "_t0"):
        assert banned not in code, f"{path.name}: remove {banned!r}"
    # Heavy checking lives in tests/notebook_checks.py; a notebook keeps a few that teach.
    asserts = len(re.findall(r"^\s*assert ", code, flags=re.M))
    assert asserts <= 3, f"{path.name}: {asserts} asserts; move them to notebook_checks.py"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, (
                f"{path.name}: clear the outputs before committing "
                "(jupyter nbconvert --clear-output --inplace notebooks/*.ipynb)"
            )
