"""A stage page opens with its key findings; the rest of a long list opens its appendix."""

import nbformat

from retention_lab import report


def test_a_stage_page_shows_at_most_the_key_findings_first_and_the_others_in_its_appendix(
    tmp_path,
):
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("# Stage\n\nWhat the reader looks at.")]
    )
    path = tmp_path / "stage.ipynb"
    nbformat.write(notebook, str(path))
    findings = [f"Finding number {i} <b>bold</b>." for i in range(1, 13)]
    html = report.render_stage(
        path, tmp_path / "stage.html", title="stage", run_name="r", status="succeeded",
        findings=findings,
    ).read_text()  # fmt: skip
    header, appendix = html.split('<details class="rl-appendix"')
    shown = report.MAX_KEY_FINDINGS
    assert shown <= 8
    for i, line in enumerate(findings, start=1):
        escaped = line.replace("<b>", "&lt;b&gt;").replace("</b>", "&lt;/b&gt;")
        assert escaped in (header if i <= shown else appendix), i
        assert html.count(escaped) == 1
    assert "More findings" in appendix


def test_a_short_list_of_findings_leaves_no_appendix_behind(tmp_path):
    path = tmp_path / "stage.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# S")]), path)
    html = report.render_stage(
        path, tmp_path / "stage.html", title="s", run_name="r", status="succeeded",
        findings=["One."],
    ).read_text()  # fmt: skip
    assert "One." in html and '<details class="rl-appendix"' not in html
