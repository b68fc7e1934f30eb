"""The documentation site builds (`mkdocs build --strict`) and its examples run.

* The build uses `docs/hooks.py`: the coverage table is generated from the rule registries and
  the notebooks are converted to pages. Notebooks are not executed here (tests/test_notebooks.py
  runs them); one small notebook is converted with execution to check that plots reach the site.
* Every ```python block of a docs page runs, in order, in one namespace per page (blocks fenced
  ```py are illustrations, not run).
"""

from __future__ import annotations

import linecache
import os
import pathlib
import re
import subprocess
import sys

import nbformat
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))


def _mkdocs_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["TRANSFORMS_DOCS_EXECUTE"] = "0"
    return env


def test_mkdocs_build_strict(tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=_mkdocs_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    coverage = (site / "coverage" / "index.html").read_text()
    assert "<table>" in coverage and "<code>dot_general</code>" in coverage
    assert "coverage-table" not in coverage  # the marker was replaced
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        page = site / "tutorials" / nb.stem / "index.html"
        assert page.exists(), f"{nb.name} was not rendered"
        # Display formulas are typeset as display math, not inline math between stray `$`s.
        html = page.read_text()
        assert not re.search(r'\$<span class="arithmatex">|</span>\$', html), nb.name
        if "$$" in nb.read_text():
            assert '<div class="arithmatex">' in html, nb.name
    api = (site / "api" / "index.html").read_text()
    assert "value_and_grad" in api and "Example" in api  # docstrings made it in
    assert 'class="mermaid"' in (site / "concepts" / "index.html").read_text()
    # Formulas typeset without network access: MathJax is served by the site, from no CDN.
    mathjax = site / "javascripts" / "mathjax" / "tex-svg.js"
    assert mathjax.stat().st_size > 1_000_000 and b"MathJax" in mathjax.read_bytes()
    tutorial = (site / "tutorials" / "02_higher_order" / "index.html").read_text()
    assert "javascripts/mathjax/tex-svg.js" in tutorial and 'class="arithmatex"' in tutorial
    for page in site.rglob("*.html"):
        scripts = re.findall(r'<script[^>]*src="([^"]+)"', page.read_text())
        remote = [src for src in scripts if src.startswith(("http:", "https:", "//"))]
        assert not remote, (page, remote)
    home = (site / "index.html").read_text()
    assert "Why transforms" in home and "higher-order-tanh.png" in home
    assert (site / "higher-order-tanh.png").exists()


def test_every_notebook_is_in_the_nav():
    with open(ROOT / "mkdocs.yml") as f:
        text = f.read()
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert f"tutorials/{nb.stem}.md" in text, f"add {nb.name} to the nav in mkdocs.yml"
    # the nav is valid YAML apart from the python tag mkdocs understands
    yaml.safe_load(text.replace("!!python/name:", ""))


def _python_blocks(page: pathlib.Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M)


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_page_examples_run(page):
    blocks = _python_blocks(page)
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for i, block in enumerate(blocks):
        filename = f"{page.name}[block {i}]"
        # Source for inspect (as IPython keeps for cells): transforms.autograph reads it.
        linecache.cache[filename] = (len(block), None, block.splitlines(True), filename)
        try:
            exec(compile(block, filename, "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"{page.name}, python block {i} failed:\n{block}") from e


def test_hook_renders_an_executed_notebook_with_its_plot(tmp_path):
    sys.path.insert(0, str(DOCS))
    try:
        import hooks
    finally:
        sys.path.remove(str(DOCS))
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A plot\n\n$x^2$"),
        nbformat.v4.new_code_cell(
            # the notebooks' pattern: no backend set up in the notebook, plt.show()
            "import matplotlib.pyplot as plt\n"
            "import jax.numpy as jnp\nimport transforms as T\n"
            "print('slope', float(T.grad(lambda x: x * x)(3.0)))\n"
            "fig, ax = plt.subplots()\nax.plot([0, 1], [0, 1])\nplt.show()"
        ),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    markdown, images = hooks.notebook_to_markdown(path, execute=True)
    assert "slope 6.0" in markdown
    assert len(images) == 1
    ((name, data),) = images.items()
    assert data.startswith(b"\x89PNG") and name in markdown


def test_output_blocks_have_no_stray_blank_lines():
    # A loop's prints often arrive as several stream outputs; unmerged, each becomes its own
    # indented block and the page shows blank lines between them.
    sys.path.insert(0, str(DOCS))
    try:
        import hooks
    finally:
        sys.path.remove(str(DOCS))
    from nbconvert import MarkdownExporter

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("for i in range(3): print(i)")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="0\n"),
        nbformat.v4.new_output("stream", name="stdout", text="1\n"),
        nbformat.v4.new_output("stream", name="stdout", text="2\n\n"),
    ]
    nb.cells = [cell]
    hooks.tidy_outputs(nb)
    assert [o["text"] for o in nb.cells[0].outputs] == ["0\n1\n2\n"]
    body, _ = MarkdownExporter().from_notebook_node(nb)
    assert "    0\n    1\n    2\n" in body, body


def test_no_indented_blank_line_before_a_figure(tmp_path):
    sys.path.insert(0, str(DOCS))
    try:
        import hooks
    finally:
        sys.path.remove(str(DOCS))
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(1); plt.show()")
    png = (  # a 1x1 PNG
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5E"
        "rkJggg=="
    )
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="1\n"),
        nbformat.v4.new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"}),
    ]
    nb.cells = [cell]
    path = tmp_path / "fig.ipynb"
    nbformat.write(nb, path)
    markdown, images = hooks.notebook_to_markdown(path, execute=False)
    assert len(images) == 1
    assert not re.search(r"\n[ \t]+\n!\[", markdown), markdown
    assert "    1\n" in markdown


def test_pages_use_the_tests_executed_notebook_when_it_matches(tmp_path):
    sys.path.insert(0, str(DOCS))
    try:
        import hooks
    finally:
        sys.path.remove(str(DOCS))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# T"), nbformat.v4.new_code_cell("print(6)")]
    path = tmp_path / "t.ipynb"
    nbformat.write(nb, path)
    executed_dir = tmp_path / "executed"
    executed_dir.mkdir()
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="6\n")]
    nbformat.write(nb, executed_dir / "t.ipynb")
    assert hooks.executed_copy(path, executed_dir).cells[1].outputs[0]["text"] == "6\n"
    nb.cells[1].source = "print(7)"  # the committed notebook changed since the tests ran
    nbformat.write(nb, path)
    assert hooks.executed_copy(path, executed_dir) is None


def test_display_math_becomes_its_own_paragraph():
    sys.path.insert(0, str(DOCS))
    try:
        import hooks
    finally:
        sys.path.remove(str(DOCS))
    source = "The rule gives\n$$f'(x) = 2x,\n\\quad g = 1.$$\nwhere $x$ is real.\n"
    assert hooks.isolate_display_math(source) == (
        "The rule gives\n\n$$f'(x) = 2x,\n\\quad g = 1.$$\n\nwhere $x$ is real.\n"
    )
    in_list = "- a formula:\n  $$x^2$$\n  and more\n"
    assert hooks.isolate_display_math(in_list) == "- a formula:\n\n  $$x^2$$\n\n  and more\n"
    assert hooks.isolate_display_math("no math, $x$ only") == "no math, $x$ only"
