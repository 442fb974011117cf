"""HTML rendering: stage reports, the run index and the index of all runs.

Only this module renders HTML. A stage report is the executed notebook
rendered by nbconvert with code, prompts and the parameter cells removed,
opened by a header with the stage's status and its key findings (read from the
stage's ``results.json``), so a reviewer reads the conclusions first. Every
page of a run closes with a one-line footer of its provenance.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from datetime import datetime
from pathlib import Path

import nbformat
from jinja2 import Environment, PackageLoader
from markupsafe import Markup
from nbconvert import HTMLExporter
from nbconvert.preprocessors import TagRemovePreprocessor

from retention_lab.errors import OutputError
from retention_lab.provenance import footer as provenance_footer

RUN_FILE = "run.json"
STATUS_COLOURS = {
    "succeeded": "#1a7f37",
    "failed": "#cf222e",
    "running": "#9a6700",
    "killed": "#cf222e",
    "skipped": "#57606a",
    "not run": "#57606a",
}

_ENV = Environment(loader=PackageLoader("retention_lab", "templates"), autoescape=True)
_REMOTE_SCRIPT = re.compile(r'<script[^>]*src="https?://[^"]*"[^>]*>\s*</script>\s*')


def render_stage(
    notebook_path: str | Path,
    html_path: str | Path,
    *,
    title: str,
    run_name: str,
    status: str,
    findings: list[str] | None = None,
    error: str | None = None,
    footer: str = "",
) -> Path:
    """Render an executed stage notebook to HTML with code hidden and findings first.

    ``footer`` is the run's provenance line (``provenance.footer``).
    """
    notebook = nbformat.read(str(notebook_path), as_version=4)
    exporter = HTMLExporter(
        exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True
    )
    exporter.register_preprocessor(
        TagRemovePreprocessor(remove_cell_tags={"parameters", "injected-parameters"}, enabled=True),
        enabled=True,
    )
    body, _ = exporter.from_notebook_node(notebook)
    body = _REMOTE_SCRIPT.sub("", body)  # reports must open offline: no CDN scripts
    header = _ENV.get_template("stage_header.html.j2").render(
        title=title,
        run_name=run_name,
        status=status,
        colour=STATUS_COLOURS.get(status, "#57606a"),
        findings=findings or [],
        error=error,
    )
    marker = "<body"
    at = body.find(">", body.find(marker)) + 1
    page = body[:at] + header + body[at:] if at > 0 else header + body
    end = page.rfind("</body>")
    closing = _ENV.get_template("footer.html.j2").render(footer=footer)
    page = page[:end] + closing + page[end:] if end >= 0 else page + closing
    return _write(Path(html_path), page)


def render_skipped(
    html_path: str | Path, *, title: str, run_name: str, reason: str, footer: str = ""
) -> Path:
    """A short page for a stage the dataset cannot support, saying what is missing."""
    header = _ENV.get_template("stage_header.html.j2").render(
        title=title,
        run_name=run_name,
        status="skipped",
        colour=STATUS_COLOURS["skipped"],
        findings=[reason],
        error=None,
    )
    page = _ENV.get_template("page.html.j2").render(title=title, body=Markup(header), footer=footer)
    return _write(Path(html_path), page)


def _write(path: Path, text: str) -> Path:
    """Write a file whole or not at all (a reader never sees half of it)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise OutputError(path=str(path), reason=error.strerror or str(error)) from None
    return path


def write_run_record(run_dir: str | Path, record: dict) -> None:
    """Store the run's status record (``run.json``, written atomically), read by the indexes."""
    _write(Path(run_dir, RUN_FILE), json.dumps(record, indent=2, default=str))


def read_run_record(run_dir: str | Path) -> dict | None:
    """The run's status record, or ``None`` if the folder is not a run or the record is unreadable.

    A record must be a JSON object with ``name``, ``status`` and a list of
    ``stages``; anything else (a half-written or hand-edited file) is ignored.
    """
    path = Path(run_dir, RUN_FILE)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("stages", []), list):
        return None
    if not all(isinstance(record.get(key), str) for key in ("name", "status")):
        return None
    record["stages"] = [s for s in record.get("stages", []) if isinstance(s, dict)]
    return record


def render_run_index(run_dir: str | Path) -> Path:
    """Write ``index.html`` of one run: status, stages, findings and links."""
    run = read_run_record(run_dir)
    body = _ENV.get_template("run_index.html.j2").render(run=run, colours=STATUS_COLOURS)
    page = _ENV.get_template("page.html.j2").render(
        title=f"Run {run['name']}",
        body=Markup(body),
        footer=provenance_footer(run.get("provenance")),
    )
    return _write(Path(run_dir) / "index.html", page)


def render_reports_index(reports_dir: str | Path) -> Path:
    """Write ``reports/index.html`` listing every run (newest first) with status and links."""
    reports_dir = Path(reports_dir)
    runs = []
    for folder in reports_dir.iterdir() if reports_dir.is_dir() else []:
        record = read_run_record(folder) if folder.is_dir() else None
        if record is not None:
            runs.append({**record, "folder": folder.name})
    runs.sort(key=lambda r: (str(r.get("started_at", "")), r["folder"]), reverse=True)
    body = _ENV.get_template("reports_index.html.j2").render(runs=runs, colours=STATUS_COLOURS)
    title = "retention_lab reports"
    page = _ENV.get_template("page.html.j2").render(title=title, body=Markup(body))
    return _write(reports_dir / "index.html", page)


def timestamp() -> str:
    """Local time as used in run records, to the second."""
    return datetime.now().astimezone().isoformat(timespec="seconds")
