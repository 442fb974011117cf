"""Each stage package owns its settings model; the run configuration composes them."""

import ast
import importlib
import subprocess
import sys

import pytest

import retention_lab
from retention_lab.config import PROJ_ROOT, RunConfig
from retention_lab.lazy import declared_members
from retention_lab.settings import Settings

# configuration key -> (stage package, its settings model)
SECTIONS = {
    "data": ("data", "DataSettings"),
    "survival": ("survival", "SurvivalSettings"),
    "uplift": ("uplift", "UpliftSettings"),
    "clv": ("clv", "ClvSettings"),
    "plan": ("plan", "PlanSettings"),
    "monitor": ("monitor", "MonitorSettings"),
}
LAZY_PACKAGES = ("survival", "uplift", "clv", "plan", "monitor")
HEAVY = ("lifelines", "sklearn", "causalml", "pymc", "pymc_marketing", "matplotlib", "mlflow")


@pytest.mark.parametrize("key", SECTIONS)
def test_the_configuration_composes_the_settings_model_its_stage_package_exports(key):
    package, name = SECTIONS[key]
    model = getattr(importlib.import_module(f"retention_lab.{package}"), name)
    assert model.__module__ == f"retention_lab.{package}.settings"
    assert issubclass(model, Settings)
    assert RunConfig.model_fields[key].annotation is model
    assert type(RunConfig(name="x").stage_settings(key)) is model


def test_no_stage_package_imports_the_configuration():
    src = PROJ_ROOT / "src" / "retention_lab"
    offenders = []
    for package, _ in SECTIONS.values():
        for path in sorted((src / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [f"{node.module}.{alias.name}" for alias in node.names]
                if any(n == "retention_lab.config" or n.startswith("retention_lab.config.")
                       for n in names):  # fmt: skip
                    offenders.append(f"{path.relative_to(src)}:{node.lineno}")
    assert offenders == []


def test_importing_the_configuration_loads_no_model_library():
    """config.py imports every stage package for its settings; their members load on use."""
    code = (
        "import sys, retention_lab.config\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_a_stage_package_loads_each_declared_member_from_its_module(package):
    module = importlib.import_module(f"retention_lab.{package}")
    members = declared_members(module.__file__)
    assert "analyse" in members and "findings" in members
    assert set(members) | {SECTIONS[package][1]} == set(module.__all__)
    for name, (source, original) in members.items():
        assert getattr(module, name) is getattr(importlib.import_module(source), original)
    assert set(members) <= set(dir(module))
    assert getattr(retention_lab, package).plots.__name__ == f"retention_lab.{package}.plots"
    with pytest.raises(AttributeError, match=f"'retention_lab.{package}' has no attribute 'nope'"):
        module.nope  # noqa: B018


def test_a_settings_model_refuses_unknown_keys_and_its_fast_variant_keeps_the_type():
    survival = importlib.import_module("retention_lab.survival")
    with pytest.raises(ValueError, match="max_cox_customer"):
        survival.SurvivalSettings(max_cox_customer=10)
    fast = survival.SurvivalSettings().fast()
    assert type(fast) is survival.SurvivalSettings


def _repeated_defaults(package: str) -> list[str]:
    """Keyword defaults of a stage's functions written as the same literal as its settings'."""
    defaults = getattr(importlib.import_module(f"retention_lab.{package}"), SECTIONS[package][1])()
    found = []
    for path in sorted((PROJ_ROOT / "src" / "retention_lab" / package).glob("*.py")):
        if path.name == "settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            args = [*node.args.posonlyargs, *node.args.args]
            pairs = [*zip(args[len(args) - len(node.args.defaults) :], node.args.defaults,
                          strict=True),
                     *zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True)]  # fmt: skip
            for arg, default in pairs:
                if default is None or arg.arg not in type(defaults).model_fields:
                    continue
                try:
                    value = ast.literal_eval(default)
                except ValueError:
                    continue  # not a literal: DEFAULTS.<name>, a constant, an expression
                setting = getattr(defaults, arg.arg)
                if isinstance(value, tuple):
                    value = list(value) if isinstance(setting, list) else value
                if value is not None and value == setting:
                    found.append(f"{path.stem}.{node.name}({arg.arg}={value!r})")
    return found


# the uplift stage's functions still repeat these (its package is being reworked for speed)
UPLIFT_PENDING = {
    "cases.case_table(horizon_months=6)",
    "design.fit_propensity(folds=3)",
    "design.fit_propensity(max_iter=100)",
    "design.fit_propensity(trim_bounds=(0.01, 0.99))",
    "effects.outcome_predictions(folds=3)",
    "effects.outcome_predictions(max_iter=100)",
    "evaluation.evaluate(n_bootstrap=200)",
    "hazard.instrument_hazard_ratios(recent_months=6.0)",
}


@pytest.mark.parametrize("package", [key for key in SECTIONS if key == SECTIONS[key][0]])
def test_a_stage_writes_each_default_once_in_its_settings(package):
    """A function's keyword default that is a setting reads it from ``DEFAULTS``."""
    found = set(_repeated_defaults(package))
    assert found - (UPLIFT_PENDING if package == "uplift" else set()) == set()
