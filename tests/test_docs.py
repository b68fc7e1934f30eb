"""The documentation site builds (`mkdocs build --strict`) and its examples run.

* The build uses `docs/hooks.py`: the coverage table is generated from the rule registries and
  the notebooks are converted to pages. Notebooks are not executed here (tests/test_notebooks.py
  runs them); one small notebook is converted with execution to check that plots reach the site.
* Every ```python block of a docs page runs, in order, in one namespace per page (blocks fenced
  ```py are illustrations, not run).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import linecache
import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading

import nbformat
import numpy as np
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


# The page the browser check opens; its notebook is executed for the build, so the page has the
# figures it would have after `tests/test_notebooks.py` ran.
EXECUTED_TUTORIAL = "02_higher_order"


def _hooks():
    sys.path.insert(0, str(DOCS))
    try:
        import hooks
    finally:
        sys.path.remove(str(DOCS))
    return hooks


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site as `mkdocs build --strict` writes it, with one tutorial executed."""
    hooks = _hooks()
    executed = tmp_path_factory.mktemp("executed")
    path = ROOT / "notebooks" / f"{EXECUTED_TUTORIAL}.ipynb"
    nb = nbformat.read(path, as_version=4)
    hooks.execute_notebook(nb, path.parent)
    nbformat.write(nb, executed / path.name)
    site = tmp_path_factory.mktemp("site")
    env = _mkdocs_env()
    env["TRANSFORMS_DOCS_EXECUTED"] = str(executed)
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    return site


def test_mkdocs_build_strict(site):
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

    # The executed tutorial's page shows its outputs and figures, and the table of contents
    # keeps a heading's math as math (material's typeset plugin), not as raw TeX.
    files = sorted((site / "tutorials" / f"{EXECUTED_TUTORIAL}_files").glob("*.png"))
    assert files, "the executed tutorial has no figures"
    for png in files:
        assert f"{EXECUTED_TUTORIAL}_files/{png.name}" in tutorial
    assert not re.search(r'md-ellipsis">\s*[^<]*\\\(', tutorial)


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _browser():
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@contextlib.contextmanager
def _serving(root):
    """An HTTP server for `root` on a free port of 127.0.0.1; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _headless(browser, profile, *args):
    # Every host but the local server is unresolvable: the page must render with no network.
    cmd = [
        browser,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--hide-scrollbars",
        "--virtual-time-budget=15000",  # MathJax typesets before the page is captured
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _grey_on_white(path):
    from PIL import Image

    rgba = np.asarray(Image.open(path).convert("RGBA"), np.float64) / 255
    rgb = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
    return rgb.mean(axis=-1)


def _best_match(page, figure):
    """Where `figure` sits in `page` (least squared difference, by FFT), and the mean absolute
    difference of the pixels there."""
    from scipy.signal import fftconvolve

    h, w = figure.shape
    window_sq = fftconvolve(page**2, np.ones_like(figure), mode="valid")
    corr = fftconvolve(page, figure[::-1, ::-1], mode="valid")
    ssd = window_sq - 2 * corr + (figure**2).sum()
    y, x = np.unravel_index(np.argmin(ssd), ssd.shape)
    return (y, x), float(np.abs(page[y : y + h, x : x + w] - figure).mean())


@pytest.mark.skipif(_browser() is None, reason="needs a headless Chromium or Chrome")
def test_a_browser_shows_the_tutorial_figures_and_typeset_math(site, tmp_path):
    page = f"tutorials/{EXECUTED_TUTORIAL}/"
    with _serving(site) as base:
        dom = _headless(_browser(), tmp_path / "profile", "--dump-dom", f"{base}/{page}")
        shot = tmp_path / "page.png"
        _headless(
            _browser(),
            tmp_path / "profile",
            "--window-size=1440,3200",
            f"--screenshot={shot}",
            f"{base}/{page}",
        )
    # MathJax (served by the site) typeset every formula as SVG: no element still holds TeX.
    formulas = re.findall(r'class="arithmatex">\s*(.{0,40})', dom, re.S)
    assert len(formulas) >= 10
    raw = [f for f in formulas if not f.startswith('<mjx-container class="MathJax')]
    assert not raw, raw
    assert dom.count('jax="SVG"') >= len(formulas)
    # The page's first figure appears in the screenshot pixel for pixel.
    first = sorted((site / "tutorials" / f"{EXECUTED_TUTORIAL}_files").glob("*_0.png"))[0]
    figure = _grey_on_white(first)
    (y, x), difference = _best_match(_grey_on_white(shot), figure)
    assert difference < 0.002, (first.name, (y, x), difference)
    # A page where the image did not load (white there) would differ by far more than that.
    assert (1 - figure).mean() > 10 * 0.002


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
