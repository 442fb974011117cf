"""Every public function of the stage packages says what it returns, and names a table's columns.

Public means defined without a leading underscore in a module of a stage
package whose name has none either (``survival/regression.py``, not
``survival/_cox.py``), functions and the public methods and properties of
classes alike. A function that returns
a DataFrame (alone, in a tuple or optionally) needs a numpydoc ``Returns``
section that names the columns: at least two column names (``name`` or a
comma-separated list), a list-of-columns constant, or a reference to another
function whose own ``Returns`` section names them.
"""

import importlib
import inspect
import pkgutil
import re

import pytest

from retention_lab.reference import docstring_section, resolve

STAGE_PACKAGES = ["data", "survival", "uplift", "clv", "plan", "monitor"]
REFERENCE = re.compile(r":(?:func|meth|data|attr):`~?([\w.]+)`")
DATAFRAME = re.compile(r"\bDataFrame\b")
QUOTED = re.compile(r"``(\w+)``")
LISTED = re.compile(r"\b([a-z][a-z0-9_]*)\b(?=\s*(?:\([^)]*\))?\s*,)")


def _public_functions():
    for package_name in STAGE_PACKAGES:
        package = importlib.import_module(f"retention_lab.{package_name}")
        for info in pkgutil.iter_modules(package.__path__):
            if info.name.startswith("_"):
                continue
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            for name, obj in vars(module).items():
                if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                    continue
                if inspect.isfunction(obj):
                    yield f"{package_name}.{info.name}.{name}", obj
                elif inspect.isclass(obj):
                    for attr, member in vars(obj).items():
                        if attr.startswith("_"):
                            continue
                        if isinstance(member, property):
                            member = member.fget
                        if inspect.isfunction(member):
                            yield f"{package_name}.{info.name}.{name}.{attr}", member


PUBLIC = dict(_public_functions())


def returns_section(function) -> str | None:
    return docstring_section(function, "Returns")


def _resolve(reference: str, function):
    module = inspect.getmodule(function)
    parts = reference.split(".")
    candidates = [module, importlib.import_module(module.__name__.rpartition(".")[0])]
    for start in candidates:
        obj = start
        try:
            for part in parts:
                obj = getattr(obj, part)
            return obj
        except AttributeError:
            continue
    try:
        return resolve(reference)
    except (ImportError, AttributeError):
        return None


def names_columns(function, depth: int = 0) -> bool:
    """Whether the Returns section names columns (directly, or through a reference)."""
    text = returns_section(function)
    if text is None:
        return False
    body = "\n".join(text.splitlines()[1:])  # the first line is the type
    if len(set(QUOTED.findall(body)) | set(LISTED.findall(body))) >= 2:
        return True
    for reference in REFERENCE.findall(body):
        target = _resolve(reference, function)
        if isinstance(target, list | tuple) and target and all(isinstance(c, str) for c in target):
            return True
        if isinstance(target, property):
            target = target.fget
        if depth < 2 and callable(target) and names_columns(target, depth + 1):
            return True
    return False


def returns_a_dataframe(function) -> bool:
    annotation = inspect.signature(function).return_annotation
    return bool(DATAFRAME.search(str(annotation)))


def test_the_stage_packages_export_functions():
    assert len(PUBLIC) > 200
    assert sum(returns_a_dataframe(f) for f in PUBLIC.values()) > 80
    assert "survival.scores.score_active" in PUBLIC and "data.sources.map_columns" in PUBLIC


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_function_has_a_docstring(name):
    assert (inspect.getdoc(PUBLIC[name]) or "").strip(), f"{name} has no docstring"


@pytest.mark.parametrize(
    "name", sorted(n for n, f in PUBLIC.items() if returns_a_dataframe(f))
)  # fmt: skip
def test_dataframe_returning_function_names_its_columns(name):
    function = PUBLIC[name]
    assert returns_section(function) is not None, f"{name}: no Returns section"
    assert names_columns(function), f"{name}: the Returns section does not name the columns"


def test_the_check_catches_a_returns_section_without_columns():
    def vague():
        """Compute something.

        Returns
        -------
        pandas.DataFrame
            The results.
        """

    def listed():
        """Compute something.

        Returns
        -------
        pandas.DataFrame
            customer_id, value (discounted), p_churn.
        """

    assert not names_columns(vague) and names_columns(listed)


@pytest.fixture(scope="module")
def tables():
    from retention_lab.data import load_tables

    from .conftest import make_config

    return load_tables(make_config().data, random_state=3)[0]


def _documented_words(function) -> set[str]:
    return set(re.findall(r"\w+", returns_section(function) or ""))


def test_documented_columns_are_the_columns_returned(tables):
    from retention_lab.data import derive_tenure
    from retention_lab.data.sources import customers_from_transactions
    from retention_lab.survival import (
        hazard_table,
        km_table,
        median_tenure,
        retention_at,
        rmst_table,
    )

    customers = tables.customers
    observed = customers.drop(columns=["churned", "tenure_days", "tenure_months"])
    calls = [
        (km_table, km_table(customers, by="segment")),
        (median_tenure, median_tenure(customers, by="segment")),
        (retention_at, retention_at(customers, horizons=[6, 12], by="segment")),
        (hazard_table, hazard_table(customers)),
        (rmst_table, rmst_table(customers, by="segment", tau_months=12)),
        (derive_tenure, derive_tenure(observed, tables.as_of)),
        (customers_from_transactions, customers_from_transactions(tables.transactions)),
    ]
    for function, result in calls:
        undocumented = set(result.columns) - _documented_words(function)
        if function is derive_tenure:  # documents what it adds to the customers
            undocumented -= set(observed.columns)
        assert not undocumented, f"{function.__name__} returns undocumented {undocumented}"
