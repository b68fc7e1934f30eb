"""MkDocs hooks: generated pages, so the site can never drift from the code.

* `docs/coverage.md` gets the primitive coverage table (`transforms.coverage`) in place of its
  `<!-- coverage-table -->` marker, computed from the rule registries at build time.
* `docs/tf-names.md` gets the table of `tf.*` names `transforms.tf` provides
  (`transforms.tf.catalog`) in place of its `<!-- tf-names-table -->` marker.
* Every `notebooks/*.ipynb` becomes `tutorials/<name>.md` (nbconvert's Markdown exporter), with
  its plots as image files. Notebooks are committed without outputs; set
  `TRANSFORMS_DOCS_EXECUTE=1` to run them during the build so pages show outputs and plots
  (the test suite runs them separately, in tests/test_notebooks.py).

Works offline from the `test` extra: nbconvert, nbformat and nbclient come with nbmake.
"""

from __future__ import annotations

import os
import pathlib
import posixpath
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
TUTORIALS = "tutorials"
COVERAGE_MARKER = "<!-- coverage-table -->"
TF_NAMES_MARKER = "<!-- tf-names-table -->"

# The docs describe this checkout, whatever `transforms` the environment has installed.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def notebook_to_markdown(path: pathlib.Path, execute: bool) -> tuple[str, dict[str, bytes]]:
    """`(markdown, {image file name: bytes})` for one notebook, run first if `execute`."""
    import nbformat
    from nbconvert import MarkdownExporter

    nb = nbformat.read(path, as_version=4)
    if execute:
        from nbclient import NotebookClient

        env_path = os.environ.get("PYTHONPATH", "")
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), env_path])
        try:
            NotebookClient(
                nb,
                timeout=600,
                kernel_name="python3",
                resources={"metadata": {"path": str(path.parent)}},
            ).execute()
        finally:
            os.environ["PYTHONPATH"] = env_path
    exporter = MarkdownExporter()
    body, resources = exporter.from_notebook_node(
        nb, resources={"output_files_dir": f"{path.stem}_files", "unique_key": path.stem}
    )
    source = f"`notebooks/{path.name}`"
    header = (
        f'!!! note "Run it yourself"\n    This page is generated from {source}; '
        'run it with `jupyter lab notebooks/` after `pip install -e ".[test]"`.\n\n'
    )
    return header + body, dict(resources.get("outputs", {}))


def on_files(files, config):
    from mkdocs.structure.files import File

    execute = os.environ.get("TRANSFORMS_DOCS_EXECUTE", "0") == "1"
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
