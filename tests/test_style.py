"""The code base, notebooks included, passes the project's ruff rules (pyproject.toml)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    ruff = Path(sys.executable).parent / "ruff"
    result = subprocess.run(
        [str(ruff), "check", "src", "tests", "benchmarks", "notebooks", "docs/hooks.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:]


MAX_FUNCTION_LINES = 80


def test_no_function_in_the_library_is_longer_than_80_lines():
    """Long functions are split into named steps (a longer one must say why in its docstring)."""
    import ast

    too_long = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            lines = node.end_lineno - node.lineno + 1
            reason = "Longer than 80 lines because" in (ast.get_docstring(node) or "")
            if lines > MAX_FUNCTION_LINES and not reason:
                too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines})")
    assert too_long == []
