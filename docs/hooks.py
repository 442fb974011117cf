"""MkDocs hooks: pages generated from the code, so the site cannot drift from it.

- ``<!-- config-reference -->`` becomes the whole configuration reference and
  ``<!-- config-reference: survival -->`` one section's table
  (:mod:`retention_lab.reference`, from the pydantic models);
- ``<!-- returns: retention_lab.survival.score_active -->`` becomes the
  ``Returns`` section of that function's docstring (the columns of a table);
- ``<!-- columns: retention_lab.plan.ACTION_COLUMNS -->`` lists a constant's
  column names;
- the tutorial page shows the tutorial notebook executed at build time, so its
  outputs are those of the current code (``RETENTION_LAB_DOCS_EXECUTE=0``
  renders it without outputs, for quick previews).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from retention_lab import reference
from retention_lab.config import KERNEL_NAME, NOTEBOOKS_DIR, PROJ_ROOT

log = logging.getLogger("mkdocs.hooks.retention_lab")
TUTORIAL = NOTEBOOKS_DIR / "tutorials" / "first_analysis.ipynb"
TUTORIAL_CONFIG = TUTORIAL.parent / "crm_export.yaml"
TUTORIAL_PAGE = "tutorial.ipynb"
EXECUTED = PROJ_ROOT / ".cache" / "docs" / TUTORIAL_PAGE
WARNING_LINE = re.compile(r"^\S.*?:\d+: (\w+Warning): (.*)$")

PLACEHOLDER = re.compile(r"<!-- (config-reference|returns|columns)(?::\s*([\w.]*))? -->")
RST_LITERAL = re.compile(r"(?::\w+:)?``?([^`]+)``?")


def _markdown(text: str) -> str:
    """Docstring markup (``x``, :func:`x`) as Markdown code."""
    return RST_LITERAL.sub(lambda m: f"`{m.group(1).lstrip('~')}`", text)


def returns_section(dotted: str) -> str:
    """The ``Returns`` section of an object's docstring, as one Markdown sentence."""
    body = reference.docstring_section(reference.resolve(dotted))
    if body is None:
        raise ValueError(f"{dotted} has no Returns section in its docstring")
    kind, *lines = body.splitlines()
    text = " ".join(line.strip() for line in lines)
    return f"*{kind.strip()}* (from `{dotted}`): {_markdown(text)}"


def _replace(match: re.Match) -> str:
    kind, argument = match.group(1), match.group(2)
    if kind == "config-reference":
        if argument is None:
            return reference.reference_markdown()
        return reference.section_table(argument)
    if kind == "returns":
        return returns_section(argument)
    return ", ".join(f"`{name}`" for name in reference.resolve(argument))


def on_page_markdown(markdown: str, **kwargs) -> str:
    """Expand the placeholders of a page."""
    return PLACEHOLDER.sub(_replace, markdown)


def _reviewer_warnings(text: str) -> str:
    """Warnings as ``Category: message`` (no build paths, no echoed source lines)."""
    return "".join(
        f"{m.group(1)}: {m.group(2)}\n" for m in map(WARNING_LINE.match, text.splitlines()) if m
    )


def execute_tutorial(output: Path) -> Path:
    """Run the tutorial with papermill in a scratch folder; return the executed notebook."""
    import nbformat
    import papermill

    from retention_lab.runner import ensure_kernel

    ensure_kernel(KERNEL_NAME)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        shutil.copy(TUTORIAL_CONFIG, work)
        papermill.execute_notebook(
            str(TUTORIAL), str(output), kernel_name=KERNEL_NAME, cwd=work, progress_bar=False
        )
    notebook = nbformat.read(output, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.outputs:
            if out.output_type == "stream" and out.name == "stderr":
                out.text = _reviewer_warnings(out.text)
        cell.outputs = [o for o in cell.outputs if o.get("text", "x")]
    nbformat.write(notebook, output)
    return output


def on_files(files, config):
    """Show the executed tutorial on the tutorial page."""
    page = files.get_file_from_path(TUTORIAL_PAGE)
    if page is None or os.environ.get("RETENTION_LAB_DOCS_EXECUTE", "1") == "0":
        return files
    log.info("executing %s for the tutorial page", TUTORIAL.relative_to(PROJ_ROOT))
    page.abs_src_path = str(execute_tutorial(EXECUTED))
    return files
