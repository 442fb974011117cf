"""The tutorial notebook is stripped, thin, and runs from its CSV export to a plan."""

import ast
import shutil

import nbformat
import papermill
import pytest

from retention_lab.config import KERNEL_NAME, NOTEBOOKS_DIR
from retention_lab.runner import ensure_kernel

TUTORIAL = NOTEBOOKS_DIR / "tutorials" / "first_analysis.ipynb"
TUTORIAL_CONFIG = NOTEBOOKS_DIR / "tutorials" / "crm_export.yaml"


def test_tutorial_is_stripped_prose_led_and_thin():
    notebook = nbformat.read(TUTORIAL, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    prose = [c for c in notebook.cells if c.cell_type == "markdown"]
    assert notebook.cells[0].cell_type == "markdown" and notebook.cells[0].source.startswith("# ")
    assert 15 <= len(code) + len(prose) <= 35 and len(prose) >= len(code) - 2
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, "outputs must be stripped"
        for node in ast.walk(ast.parse(cell.source)):
            assert not isinstance(node, ast.FunctionDef | ast.ClassDef | ast.For | ast.While)


@pytest.mark.slow
def test_tutorial_runs_from_a_csv_export_to_a_budgeted_plan(tmp_path):
    shutil.copy(TUTORIAL_CONFIG, tmp_path)
    ensure_kernel(KERNEL_NAME)
    output = tmp_path / "executed.ipynb"
    papermill.execute_notebook(
        str(TUTORIAL),
        str(output),
        parameters={"fast": True, "n_customers": 2500, "seed": 11},
        kernel_name=KERNEL_NAME,
        cwd=str(tmp_path),
        progress_bar=False,
    )
    assert {p.name for p in (tmp_path / "crm_export").iterdir()} == {
        "customers.csv",
        "problems.csv",
        "interventions.csv",
    }
    assert "Customer ID" in (tmp_path / "crm_export" / "customers.csv").read_text().splitlines()[0]
    executed = nbformat.read(output, as_version=4)
    text = {}
    for cell in executed.cells:
        if cell.cell_type == "code":
            text[cell.source] = "\n".join(
                o.get("data", {}).get("text/plain", "") or o.get("text", "") for o in cell.outputs
            )
    opened = next(out for src, out in text.items() if src.startswith("data = rl.open("))
    assert "customers=2,500" in opened and "as_of=2023-01-01" in opened
    effects = next(out for src, out in text.items() if src == "uplift.ate_table()")
    assert "aipw" in effects and "difference_in_means" in effects
    findings = next(out for src, out in text.items() if src.endswith("rl.plan.findings(plan)"))
    assert "active customers have an open problem" in findings
    assert any(o.output_type == "display_data" and "image/png" in o.data
               for c in executed.cells if c.cell_type == "code" for o in c.outputs)  # fmt: skip
