"""The documentation site: a configuration reference that lists every field, a strict build."""

import os
import subprocess
import sys
import typing
from pathlib import Path
from typing import Literal

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field

from retention_lab.config import PROJ_ROOT, RunConfig
from retention_lab.reference import reference_markdown, section_table

MKDOCS = str(Path(sys.executable).parent / "mkdocs")


def every_field(model: type[BaseModel], prefix: str = "") -> set[tuple[str, str]]:
    """(section, key) of every field of ``model`` and the models it nests."""
    found = set()
    for name, info in model.model_fields.items():
        found.add((prefix.rstrip("."), name))
        for nested in (info.annotation, *typing.get_args(info.annotation)):
            if isinstance(nested, type) and issubclass(nested, BaseModel):
                found |= every_field(nested, f"{prefix}{name}.")
    return found


def documented(markdown: str) -> set[tuple[str, str]]:
    """(section, key) of every row of the reference's tables."""
    rows, section = set(), None
    for line in markdown.splitlines():
        if line.startswith("## "):
            title = line[3:].strip()
            section = "" if title == "Top level" else title.strip("`")
        elif line.startswith("| `"):
            rows.add((section, line.split("`")[1]))
    return rows


def test_configuration_reference_lists_every_field_of_the_configuration_models():
    expected = every_field(RunConfig)
    assert len(expected) > 130
    assert ("data.customers", "date_format") in expected
    assert ("plan", "min_probability") in expected
    assert documented(reference_markdown()) == expected


def test_configuration_reference_gives_type_default_allowed_values_and_description():
    survival = section_table("clv")
    row = next(line for line in survival.splitlines() if line.startswith("| `survival_model`"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells == [
        "`survival_model`",
        "text",
        '`"cox"`',
        "one of `cox`, `weibull_aft`",
        "Model of tenure behind the contractual value when fitted here (cox: Cox model with a "
        "baseline per stratum; weibull_aft: Weibull AFT)",
    ]
    discount = next(line for line in survival.splitlines() if "`discount_rate`" in line)
    assert "≥ 0; < 1" in discount and "`0.1`" in discount
    top = section_table("")
    assert "| `name` | str | required |" in top


def test_configuration_reference_follows_a_new_field_of_any_model():
    class Inner(BaseModel):
        model_config = ConfigDict(extra="forbid")
        mode: Literal["a", "b"] = Field("a", description="A mode")

    class Outer(BaseModel):
        threshold: float | None = Field(None, gt=0, description="A threshold")
        inner: Inner = Field(default_factory=Inner, description="Nested")
        tags: list[Literal["x", "y"]] = Field(["x"], description="Tags")

    markdown = reference_markdown(Outer)
    assert documented(markdown) == {("", "threshold"), ("", "inner"), ("", "tags"),
                                    ("inner", "mode")}  # fmt: skip
    assert "| `threshold` | float or null | `null` | > 0 | A threshold |" in markdown
    assert "| `tags` | list[text] | `[\"x\"]` | each of `x`, `y` | Tags |" in markdown
    assert "| `mode` | text | `\"a\"` | one of `a`, `b` | A mode |" in markdown


def _site_config(tmp_path: Path, **overrides) -> Path:
    config = yaml.safe_load((PROJ_ROOT / "mkdocs.yml").read_text())
    config.update(
        docs_dir=str(PROJ_ROOT / "docs"),
        site_dir=str(tmp_path / "site"),
        hooks=[str(PROJ_ROOT / "docs" / "hooks.py")],
    )
    config.update(overrides)
    path = tmp_path / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _build(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MKDOCS, "build", "--strict", "-f", str(config)],
        cwd=PROJ_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


@pytest.mark.slow
def test_docs_build_strict_with_every_page_and_configuration_field(tmp_path):
    result = _build(_site_config(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    site = tmp_path / "site"
    for page in ["getting-started", "tutorial", "architecture", "configuration",
                 *(f"stages/{s}" for s in ("data", "survival", "uplift", "clv", "plan",
                                           "monitoring")),
                 *(f"api/{m}" for m in ("workspace", "survival", "uplift", "clv", "plan",
                                        "monitor"))]:  # fmt: skip
        assert (site / page / "index.html").is_file(), page
    reference = (site / "configuration" / "index.html").read_text()
    for section, key in every_field(RunConfig):
        assert f"<code>{key}</code>" in reference, (section, key)
    survival = (site / "stages" / "survival" / "index.html").read_text()
    assert "p_churn_horizon" in survival and "score_horizon_months" in survival
    assert "<!--" not in (site / "stages" / "plan" / "index.html").read_text().split("<body")[1]
    tutorial = (site / "tutorial" / "index.html").read_text()
    assert tutorial.count("<img") >= 2 and "Workspace('tutorial', from configuration" in tutorial
    assert "/work/" not in tutorial and str(PROJ_ROOT) not in tutorial
    api = (site / "api" / "survival" / "index.html").read_text()
    assert 'id="retention_lab.survival.score_active"' in api


@pytest.mark.slow
def test_a_broken_cross_reference_fails_the_build(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text(
        "# Broken\n\nSee [the opener][retention_lab.workspace.open] and "
        "[a function that does not exist][retention_lab.workspace.no_such_function].\n"
    )
    config = _site_config(tmp_path, docs_dir=str(docs), nav=["index.md"])
    config_data = yaml.safe_load(config.read_text())
    config_data["plugins"] = [p for p in config_data["plugins"] if "mkdocs-jupyter" not in p]
    config.write_text(yaml.safe_dump(config_data))
    result = _build(config)
    assert result.returncode != 0
    assert "retention_lab.workspace.no_such_function" in result.stderr
