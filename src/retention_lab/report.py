"""HTML rendering: stage reports, the run index and the index of all runs.

Only this module renders HTML. A stage report is the executed notebook
rendered by nbconvert with code, prompts and the parameter cells removed,
opened by a header with the stage's status and its key findings (read from the
stage's ``results.json``), so a reviewer reads the conclusions first.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import nbformat
from jinja2 import Environment
from markupsafe import Markup
from nbconvert import HTMLExporter
from nbconvert.preprocessors import TagRemovePreprocessor

RUN_FILE = "run.json"
STATUS_COLOURS = {"succeeded": "#1a7f37", "failed": "#cf222e", "running": "#9a6700",
                  "skipped": "#57606a", "not run": "#57606a"}

_ENV = Environment(autoescape=True)

_HEADER = _ENV.from_string("""
<div class="rl-header" style="font-family: system-ui, sans-serif; max-width: 1100px; margin: 1.5em auto; padding: 1em 1.5em; border: 1px solid #d0d7de; border-radius: 8px;">
  <p style="margin:0"><a href="index.html">&larr; run {{ run_name }}</a></p>
  <h1 style="margin: .3em 0">{{ title }}</h1>
  <p>Status: <strong style="color: {{ colour }}">{{ status }}</strong>{% if error %} &mdash; {{ error }}{% endif %}</p>
  {% if findings %}<h2>Key findings</h2>
  <ul class="rl-findings">{% for line in findings %}<li>{{ line }}</li>{% endfor %}</ul>{% endif %}
</div>
""")

_PAGE = _ENV.from_string("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #1f2328; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: .35em .6em; border-bottom: 1px solid #d0d7de; vertical-align: top; }
th { background: #f6f8fa; } .status { font-weight: bold; } ul { margin: .2em 0; padding-left: 1.2em; }
</style></head><body>
{{ body }}
</body></html>
""")

_RUN_BODY = _ENV.from_string("""
<p><a href="../index.html">&larr; all runs</a></p>
<h1>Run {{ run.name }}</h1>
<p>{{ run.description }}</p>
<p>Status: <span class="status" style="color: {{ colours[run.status] }}">{{ run.status }}</span>
 &middot; started {{ run.started_at }} &middot; finished {{ run.finished_at or "—" }}
 &middot; configuration <a href="config.yaml">config.yaml</a>
 {% if run.mlflow_run_id %}&middot; MLflow run <code>{{ run.mlflow_run_id }}</code> (experiment {{ run.experiment }}){% endif %}</p>
<table><tr><th>Stage</th><th>Status</th><th>Time</th><th>Key findings</th><th>Files</th></tr>
{% for s in run.stages %}<tr>
<td>{% if s.html %}<a href="{{ s.html }}">{{ s.stage }}</a>{% else %}{{ s.stage }}{% endif %}</td>
<td class="status" style="color: {{ colours[s.status] }}">{{ s.status }}</td>
<td>{{ "%.1f s"|format(s.seconds) if s.seconds is not none else "—" }}</td>
<td>{% if s.error %}<p>{{ s.error }}</p>{% endif %}<ul>{% for line in s.findings %}<li>{{ line }}</li>{% endfor %}</ul></td>
<td>{% if s.notebook %}<a href="{{ s.notebook }}">notebook</a>{% endif %}</td>
</tr>{% endfor %}</table>
""")

_INDEX_BODY = _ENV.from_string("""
<h1>retention_lab reports</h1>
<p>{{ runs|length }} run{{ "" if runs|length == 1 else "s" }}, newest first. Each run has one report per stage.</p>
<table><tr><th>Date</th><th>Run</th><th>Configuration</th><th>Status</th><th>Stages</th></tr>
{% for r in runs %}<tr>
<td>{{ r.started_at }}</td><td><a href="{{ r.folder }}/index.html">{{ r.folder }}</a></td>
<td>{{ r.name }}{% if r.description %}<br><small>{{ r.description }}</small>{% endif %}</td>
<td class="status" style="color: {{ colours.get(r.status, '#57606a') }}">{{ r.status }}</td>
<td>{% for s in r.stages %}{% if s.html %}<a href="{{ r.folder }}/{{ s.html }}">{{ s.stage }}</a>{% else %}{{ s.stage }}{% endif %} <small>({{ s.status }})</small>{% if not loop.last %}, {% endif %}{% endfor %}</td>
</tr>{% endfor %}</table>
""")


def render_stage(
    notebook_path: str | Path,
    html_path: str | Path,
    *,
    title: str,
    run_name: str,
    status: str,
    findings: list[str] | None = None,
    error: str | None = None,
) -> Path:
    """Render an executed stage notebook to HTML with code hidden and findings first."""
    notebook = nbformat.read(str(notebook_path), as_version=4)
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    exporter.register_preprocessor(
        TagRemovePreprocessor(remove_cell_tags={"parameters", "injected-parameters"},
                              enabled=True), enabled=True)
    body, _ = exporter.from_notebook_node(notebook)
    header = _HEADER.render(title=title, run_name=run_name, status=status,
                            colour=STATUS_COLOURS.get(status, "#57606a"),
                            findings=findings or [], error=error)
    marker = "<body"
    at = body.find(">", body.find(marker)) + 1
    page = body[:at] + header + body[at:] if at > 0 else header + body
    html_path = Path(html_path)
    html_path.write_text(page, encoding="utf-8")
    return html_path


def write_run_record(run_dir: str | Path, record: dict) -> None:
    """Store the run's status record (``run.json``), read by the indexes."""
    Path(run_dir, RUN_FILE).write_text(json.dumps(record, indent=2, default=str))


def read_run_record(run_dir: str | Path) -> dict | None:
    """The run's status record, or ``None`` if the folder is not a run."""
    path = Path(run_dir, RUN_FILE)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def render_run_index(run_dir: str | Path) -> Path:
    """Write ``index.html`` of one run: status, stages, findings and links."""
    run = read_run_record(run_dir)
    body = _RUN_BODY.render(run=run, colours=STATUS_COLOURS)
    path = Path(run_dir) / "index.html"
    path.write_text(_PAGE.render(title=f"Run {run['name']}", body=Markup(body)),
                    encoding="utf-8")
    return path


def render_reports_index(reports_dir: str | Path) -> Path:
    """Write ``reports/index.html`` listing every run (newest first) with status and links."""
    reports_dir = Path(reports_dir)
    runs = []
    for folder in reports_dir.iterdir() if reports_dir.is_dir() else []:
        record = read_run_record(folder) if folder.is_dir() else None
        if record is not None:
            runs.append({**record, "folder": folder.name})
    runs.sort(key=lambda r: (str(r.get("started_at", "")), r["folder"]), reverse=True)
    body = _INDEX_BODY.render(runs=runs, colours=STATUS_COLOURS)
    path = reports_dir / "index.html"
    path.write_text(_PAGE.render(title="retention_lab reports", body=Markup(body)), encoding="utf-8")
    return path


def timestamp() -> str:
    """Local time as used in run records, to the second."""
    return datetime.now().astimezone().isoformat(timespec="seconds")
