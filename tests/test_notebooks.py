"""Every stage notebook is thin, parameterised, stripped, and runs in the smoke pipeline."""

import ast

import nbformat
import pytest
from papermill import inspect_notebook

from retention_lab.config import NOTEBOOKS_DIR, load_config
from retention_lab.runner import STAGE_PARAMETERS

from .conftest import SMOKE_CONFIG

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
FORBIDDEN = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.For,
    ast.While,
    ast.If,
    ast.Lambda,
)


def test_there_are_stage_notebooks():
    assert [p.name for p in NOTEBOOKS][:1] == ["00_data.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_one_tagged_parameters_cell_with_literal_runner_parameters(path):
    notebook = nbformat.read(path, as_version=4)
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    tree = ast.parse(tagged[0].source)
    for node in tree.body:
        assert isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant), (
            f"parameters must be literals: {ast.unparse(node)}"
        )
    assert set(STAGE_PARAMETERS) <= set(inspect_notebook(str(path)))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_thin_and_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    assert notebook.cells[0].cell_type == "markdown" and notebook.cells[0].source.startswith("# ")
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        assert cell.outputs == [] and cell.execution_count is None, "outputs must be stripped"
        for node in ast.walk(ast.parse(cell.source)):
            assert not isinstance(node, FORBIDDEN), (
                f"{path.name}: logic belongs in src/retention_lab, not in a notebook: "
                f"{type(node).__name__} in\n{cell.source}"
            )
        calls = {n.func.id for n in ast.walk(ast.parse(cell.source)) if isinstance(n, ast.Call)
                 and isinstance(n.func, ast.Name)}  # fmt: skip
        assert not calls & {"open", "Path"}, "no paths built by hand"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_finishes_its_stage(path):
    source = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
    stage = path.stem.split("_", 1)[1]
    assert f'open_stage(\n    "{stage}"' in source or f'open_stage("{stage}"' in source
    assert "stage.finish(" in source


def test_smoke_config_runs_every_notebook():
    stages = load_config(SMOKE_CONFIG).stages
    assert sorted(stages) == sorted(p.stem.split("_", 1)[1] for p in NOTEBOOKS)
