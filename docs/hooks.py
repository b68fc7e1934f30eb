"""MkDocs hooks: generated pages, so the site can never drift from the code.

* `docs/coverage.md` gets the primitive coverage table (`transforms.coverage`) in place of its
  `<!-- coverage-table -->` marker, computed from the rule registries at build time.
* `docs/tf-names.md` gets the table of `tf.*` names `transforms.tf` provides
  (`transforms.tf.catalog`) in place of its `<!-- tf-names-table -->` marker.
* Every `notebooks/*.ipynb` becomes `tutorials/<name>.md` (nbconvert's Markdown exporter), with
  its plots as image files. Notebooks are committed without outputs. Pages show outputs and
  plots from the executed copy that `tests/test_notebooks.py` leaves in `build/notebooks/`, when
  its cells are exactly the committed notebook's; `TRANSFORMS_DOCS_EXECUTE=1` runs each notebook
  during the build instead.

* Formulas are typeset by MathJax served from the site itself (no CDN, so pages work offline):
  `javascripts/mathjax/tex-svg.js` is copied from the `django-static-mathjax` package, whose
  `mathjax` module ships MathJax's browser build (SVG output needs no font files).
* Output blocks are tidied before conversion: consecutive stream outputs of a cell are merged and
  their trailing blank lines dropped, so a block never shows stray empty lines.

Works offline from the `test` extra: nbconvert, nbformat and nbclient come with nbmake.
"""

from __future__ import annotations

import os
import pathlib
import posixpath
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
TUTORIALS = "tutorials"
# Executed notebooks written by tests/test_notebooks.py; TRANSFORMS_DOCS_EXECUTED names another
# folder (the docs tests point it at the one notebook they execute).
EXECUTED = ROOT / "build" / "notebooks"
COVERAGE_MARKER = "<!-- coverage-table -->"
MATHJAX_URI = "javascripts/mathjax/tex-svg.js"
# matplotlib's inline backend: headless, and every `plt.show()` becomes a PNG output.
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
TF_NAMES_MARKER = "<!-- tf-names-table -->"

# The docs describe this checkout, whatever `transforms` the environment has installed.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def mathjax_script() -> bytes:
    """MathJax's self-contained TeX-to-SVG browser build, from the installed `mathjax` package."""
    try:
        import mathjax
    except ImportError as e:
        raise RuntimeError(
            "The docs serve MathJax themselves: pip install django-static-mathjax "
            '(part of the "test" extra).'
        ) from e
    return (pathlib.Path(mathjax.__file__).parent / "static/mathjax/es5/tex-svg.js").read_bytes()


DISPLAY_MATH = re.compile(r"(?<!\\)\$\$(.+?)\$\$", re.S)


def isolate_display_math(source: str) -> str:
    """`source` with each `$$...$$` formula in a paragraph of its own.

    Jupyter typesets `$$` formulas that sit inside a paragraph as display math; the site's
    Markdown (pymdownx.arithmatex) does so only for a formula that is its own paragraph, and
    would show the rest as inline math between stray dollar signs. The formula keeps its line's
    indentation, so one inside a list item stays in the item."""

    def block(m):
        line = source[source.rfind("\n", 0, m.start()) + 1 : m.start()]
        indent = line[: len(line) - len(line.lstrip())]
        return f"\n\n{indent}{m.group(0)}\n\n{indent}"

    out = DISPLAY_MATH.sub(block, source)
    out = re.sub(r"\n[ \t]*\n(?:[ \t]*\n)+", "\n\n", out)  # at most one blank line
    out = re.sub(r"\n[ \t]+\n", "\n\n", out)
    return out.strip("\n") + ("\n" if source.endswith("\n") else "")


def tidy_outputs(nb) -> None:
    """Merge each cell's consecutive stream outputs and drop their trailing blank lines."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        merged = []
        for out in cell.get("outputs", []):
            if (
                out.get("output_type") == "stream"
                and merged
                and merged[-1].get("output_type") == "stream"
                and merged[-1].get("name") == out.get("name")
            ):
                merged[-1]["text"] += out["text"]
            else:
                merged.append(out)
        for out in merged:
            if out.get("output_type") == "stream":
                out["text"] = out["text"].rstrip() + "\n"
        cell["outputs"] = [
            o for o in merged if o.get("output_type") != "stream" or o["text"].strip()
        ]


def executed_copy(path: pathlib.Path, executed_dir: pathlib.Path | None = None):
    """The executed notebook the tests left for `path`, if its cells are exactly `path`'s."""
    import nbformat

    if executed_dir is None:
        executed_dir = pathlib.Path(os.environ.get("TRANSFORMS_DOCS_EXECUTED", EXECUTED))
    copy = executed_dir / path.name
    if not copy.exists():
        return None
    source, executed = nbformat.read(path, as_version=4), nbformat.read(copy, as_version=4)
    cells = [(c.cell_type, c.source) for c in source.cells]
    return executed if cells == [(c.cell_type, c.source) for c in executed.cells] else None


def execute_notebook(nb, cwd: pathlib.Path) -> None:
    """Run `nb` in place (in `cwd`), importing this checkout, with plots as inline PNGs."""
    from nbclient import NotebookClient

    env_path = os.environ.get("PYTHONPATH", "")
    env_backend = os.environ.get("MPLBACKEND")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), env_path])
    os.environ["MPLBACKEND"] = INLINE_BACKEND
    try:
        NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
        ).execute()
    finally:
        os.environ["PYTHONPATH"] = env_path
        if env_backend is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = env_backend


def notebook_to_markdown(path: pathlib.Path, execute: bool) -> tuple[str, dict[str, bytes]]:
    """`(markdown, {image file name: bytes})` for one notebook, run first if `execute`.

    Without `execute`, the outputs come from the tests' executed copy when it matches.
    """
    import nbformat
    from nbconvert import MarkdownExporter

    nb = nbformat.read(path, as_version=4)
    if not execute:
        nb = executed_copy(path) or nb
    if execute:
        execute_notebook(nb, path.parent)
    tidy_outputs(nb)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = isolate_display_math(cell.source)
    exporter = MarkdownExporter()
    body, resources = exporter.from_notebook_node(
        nb, resources={"output_files_dir": f"{path.stem}_files", "unique_key": path.stem}
    )
    # nbconvert indents the line before an image as if it were output: drop that blank line.
    body = re.sub(r"\n[ \t]+\n(?=!\[)", "\n\n", body)
    source = f"`notebooks/{path.name}`"
    header = (
        f'!!! note "Run it yourself"\n    This page is generated from {source}; '
        'run it with `jupyter lab notebooks/` after `pip install -e ".[test]"`.\n\n'
    )
    return header + body, dict(resources.get("outputs", {}))


def on_files(files, config):
    from mkdocs.structure.files import File

    execute = os.environ.get("TRANSFORMS_DOCS_EXECUTE", "0") == "1"
    files.append(File.generated(config, MATHJAX_URI, content=mathjax_script()))
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        markdown, images = notebook_to_markdown(path, execute)
        files.append(File.generated(config, f"{TUTORIALS}/{path.stem}.md", content=markdown))
        for name, data in images.items():
            uri = posixpath.join(TUTORIALS, name)
            files.append(File.generated(config, uri, content=data))
    return files


def on_page_markdown(markdown, page, config, files):
    if COVERAGE_MARKER in markdown:
        from transforms.coverage import markdown_table

        markdown = markdown.replace(COVERAGE_MARKER, markdown_table())
    if TF_NAMES_MARKER in markdown:
        from transforms.tf.catalog import markdown_table as tf_names_table

        markdown = markdown.replace(TF_NAMES_MARKER, tf_names_table())
    return markdown
