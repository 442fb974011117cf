"""HTML rendering: stage reports, the run index and the index of all runs.

Only this module renders HTML. A stage report is the executed notebook
rendered by nbconvert with code, prompts and the parameter cells removed,
opened by a header with the stage's status and its key findings (read from the
stage's ``results.json``), so a reviewer reads the conclusions first. Every
page of a run closes with a one-line footer of its provenance.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import os
import re
import threading
from datetime import datetime
from pathlib import Path

import nbformat
from bs4 import BeautifulSoup
from jinja2 import Environment, PackageLoader
from markupsafe import Markup
from nbconvert import HTMLExporter
from nbconvert.preprocessors import Preprocessor, TagRemovePreprocessor

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


DIAGNOSTICS_TAG = "diagnostics"
MAX_KEY_FINDINGS = 8  # findings that open a stage page; the others open its appendix
HIDDEN_TAGS = {"parameters", "injected-parameters"}
TABLES_SUBDIR = "report-tables"
_TEMPLATES = Path(__file__).parent / "templates"
FALLBACK_ALT = "Figure of the {title} report"
TITLE_RESOURCE = "retention_lab_title"  # the page's title, passed to the exporter per page


class _ReaderPreprocessor(Preprocessor):
    """Keep what a reader needs: no warnings, no raw Python reprs, no empty outputs.

    Dropped: stderr streams (warnings are a log, not a finding), outputs whose
    only form is ``text/plain`` (the repr of a Python object), empty streams,
    and code cells left without outputs. Every image gets alt text: the
    figure's own (``stage.open_stage`` records the titles), the cell's
    ``caption`` metadata, or the heading of the text just above.
    """

    def preprocess(self, nb, resources):
        title = resources.get(TITLE_RESOURCE, "")
        cells, context = [], ""
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                text = cell.source.strip().lstrip("#").strip()
                context = text.split("\n", 1)[0].split(". ", 1)[0][:160] if text else context
                cells.append(cell)
                continue
            if cell.cell_type != "code":
                cells.append(cell)
                continue
            cell.outputs = [o for o in cell.outputs if self._shown(o)]
            caption = cell.metadata.get("caption") or context or FALLBACK_ALT.format(title=title)
            for output in cell.outputs:
                for mime in ("image/png", "image/jpeg", "image/svg+xml"):
                    if mime in output.get("data", {}):
                        meta = output.setdefault("metadata", {}).setdefault(mime, {})
                        meta.setdefault("alt", caption)
            if cell.outputs:
                cells.append(cell)
        nb.cells = [c for i, c in enumerate(cells) if not _empty_section(c, cells[i + 1 :])]
        return nb, resources

    @staticmethod
    def _shown(output) -> bool:
        if output.output_type == "stream":
            return output.name == "stdout" and bool(output.text.strip())
        if output.output_type in ("execute_result", "display_data"):
            data = output.get("data", {})
            return bool(set(data) - {"text/plain"}) and any(
                str(v).strip() for k, v in data.items() if k != "text/plain"
            )
        return True  # errors stay: a failed stage shows where it failed


def _heading_level(cell) -> int:
    """The level of a markdown cell that is only a heading (``## Plan``), else 0."""
    text = cell.source.strip() if cell.cell_type == "markdown" else ""
    if not text.startswith("#") or "\n" in text:
        return 0
    return len(text) - len(text.lstrip("#"))


def _empty_section(cell, following) -> bool:
    """A heading with nothing under it before the next heading of its level or higher."""
    level = _heading_level(cell)
    if not level:
        return False
    for nxt in following:
        other = _heading_level(nxt)
        return bool(other) and other <= level
    return True


_EXPORTERS = threading.local()


def _exporter() -> HTMLExporter:
    """The stage pages' exporter, made once per thread of the runner.

    nbconvert compiles its templates anew for each exporter (about 0.4 s a
    page), and the runner renders two stages at once, each in its own thread.
    """
    if getattr(_EXPORTERS, "html", None) is None:
        _EXPORTERS.html = _new_exporter()
    return _EXPORTERS.html


def _new_exporter() -> HTMLExporter:
    exporter = HTMLExporter(
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        template_name="lab",
        template_file=str(_TEMPLATES / "stage_notebook.html.j2"),
    )
    exporter.register_preprocessor(
        TagRemovePreprocessor(remove_cell_tags=HIDDEN_TAGS, enabled=True), enabled=True
    )
    exporter.register_preprocessor(_ReaderPreprocessor(enabled=True), enabled=True)
    return exporter


def _split_diagnostics(notebook) -> tuple:
    """The notebook without its ``diagnostics`` cells, and a notebook of only those cells."""
    main, appendix = nbformat.from_dict(notebook), nbformat.from_dict(notebook)
    tagged = [DIAGNOSTICS_TAG in c.metadata.get("tags", []) for c in notebook.cells]
    main.cells = [c for c, t in zip(notebook.cells, tagged, strict=True) if not t]
    appendix.cells = [c for c, t in zip(notebook.cells, tagged, strict=True) if t]
    return main, appendix


def _main_content(page: str) -> str:
    start, end = page.find("<main>"), page.rfind("</main>")
    return page[start + len("<main>") : end] if start >= 0 and end > start else ""


_TABLE = re.compile(r"<table\b.*?</table>", re.DOTALL | re.IGNORECASE)


def compact_tables(
    html: str, out_dir: Path, *, prefix: str, max_rows: int, max_columns: int, link_base: str = ""
) -> str:
    """Cap every table at ``max_rows`` rows and ``max_columns`` columns.

    A table that is cut is written whole as ``<out_dir>/<prefix>-N.csv``
    (the values as shown) and linked under the table. Every table sits in a
    box that scrolls sideways rather than widening the page. Only the tables
    are parsed, not the page around them (its figures are megabytes of base64);
    the notebook's tables (pandas, Styler) hold no tables inside them.
    """
    numbers = itertools.count(1)

    def compact(match: re.Match) -> str:
        name = f"{prefix}-{next(numbers)}.csv"
        return _compact_table(match.group(0), out_dir, name, max_rows, max_columns, link_base)

    return _TABLE.sub(compact, html)


def _compact_table(
    html: str, out_dir: Path, name: str, max_rows: int, max_columns: int, link_base: str
) -> str:
    """One table in its scrolling box, cut and linked to its CSV if it is too long or wide."""
    soup = BeautifulSoup(html, "html.parser")
    table = soup.find("table")
    rows = table.find_all("tr")
    body = [r for r in rows if r.find("td")]
    widths = [len(r.find_all(["td", "th"])) for r in rows]
    too_long, too_wide = len(body) > max_rows, max(widths, default=0) > max_columns
    wrapper = soup.new_tag("div", attrs={"class": "rl-table"})
    table.wrap(wrapper)
    if not (too_long or too_wide):
        return str(soup)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / name, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        for row in rows:
            writer.writerow([c.get_text(" ", strip=True) for c in row.find_all(["td", "th"])])
    for row in body[max_rows:]:
        row.decompose()
    for row in table.find_all("tr"):
        for cell in row.find_all(["td", "th"])[max_columns:]:
            cell.decompose()
    shown = f"{min(len(body), max_rows):,} of {len(body):,} rows"
    if too_wide:
        shown += f", {max_columns} of {max(widths)} columns"
    note = soup.new_tag("p", attrs={"class": "rl-table-note"})
    note.append(f"Showing {shown}. ")
    link = soup.new_tag("a", href=f"{link_base}{name}", download=name)
    link.append("Download the whole table (CSV)")
    note.append(link)
    wrapper.insert_after(note)
    return str(soup)


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
    mlflow_url: str | None = None,
    max_table_rows: int = 12,
    max_table_columns: int = 8,
) -> Path:
    """Render an executed stage notebook to HTML with code hidden and findings first.

    The first ``MAX_KEY_FINDINGS`` findings (a stage lists them most important
    first) open the page; the others open the collapsed appendix at the end,
    with the cells tagged ``diagnostics``. Long or
    wide tables are cut to ``max_table_rows`` x ``max_table_columns`` with the
    whole table as a CSV next to the page. ``footer`` is the run's provenance
    line (``provenance.footer``); ``mlflow_url`` links the stage's MLflow run.
    """
    html_path = Path(html_path)
    notebook = nbformat.read(str(notebook_path), as_version=4)
    main, appendix = _split_diagnostics(notebook)
    body, _ = _exporter().from_notebook_node(main, resources={TITLE_RESOURCE: title})
    body = _REMOTE_SCRIPT.sub("", body)  # reports must open offline: no CDN scripts
    tables_dir = html_path.parent / TABLES_SUBDIR
    limits = {"max_rows": max_table_rows, "max_columns": max_table_columns}
    link_base = f"{TABLES_SUBDIR}/"
    findings = list(findings or [])
    key, more = findings[:MAX_KEY_FINDINGS], findings[MAX_KEY_FINDINGS:]
    inner = ""
    if appendix.cells:
        appendix_page, _ = _exporter().from_notebook_node(
            appendix, resources={TITLE_RESOURCE: title}
        )
        inner = compact_tables(
            _main_content(appendix_page), tables_dir, prefix="diagnostics",
            link_base=link_base, **limits,
        )  # fmt: skip
    appendix_html = ""
    if inner.strip() or more:
        appendix_html = _ENV.get_template("appendix.html.j2").render(
            body=Markup(inner), findings=more
        )
    start, end = body.find("<main>"), body.rfind("</main>")
    if start >= 0 and end > start:
        inner = compact_tables(
            body[start + len("<main>") : end], tables_dir, prefix="table",
            link_base=link_base, **limits,
        )  # fmt: skip
        body = body[: start + len("<main>")] + inner + appendix_html + body[end:]
    header = _ENV.get_template("stage_header.html.j2").render(
        title=title,
        run_name=run_name,
        status=status,
        colour=STATUS_COLOURS.get(status, "#57606a"),
        findings=key,
        error=error,
        mlflow_url=mlflow_url,
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
    """Write ``index.html`` of one run: the executive summary, then stages, findings and links."""
    from retention_lab.config import load_config
    from retention_lab.run_summary import summarise

    run = read_run_record(run_dir)
    config_file = Path(run_dir) / "config.yaml"
    settings = load_config(config_file).report if config_file.is_file() else None
    finished = run.get("status") in ("succeeded", "failed")
    summary = summarise(run_dir, **settings.wording()) if settings and finished else []
    mlflow_url = (
        run_url(settings.mlflow_ui_url, run.get("experiment_id"), run.get("mlflow_run_id"))
        if settings
        else None
    )
    body = _ENV.get_template("run_index.html.j2").render(
        run=run, colours=STATUS_COLOURS, summary=summary, mlflow_url=mlflow_url
    )
    page = _ENV.get_template("page.html.j2").render(
        title=f"Run {run['name']}",
        body=Markup(body),
        footer=provenance_footer(run.get("provenance")),
    )
    return _write(Path(run_dir) / "index.html", page)


# MLflow 3's UI shows the GenAI pages unless asked for the model-training view (its sidebar
# switch, remembered by the browser); links from the reports ask for it
MLFLOW_VIEW = "workflowType=machine_learning"


def run_url(ui_url: str, experiment_id: str | None, run_id: str | None) -> str | None:
    """The address of an MLflow run in the MLflow UI, or ``None`` without ids."""
    if not (experiment_id and run_id):
        return None
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?{MLFLOW_VIEW}"


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
