"""Packages whose members load on first use, so that importing a stage's settings stays cheap.

``config.py`` composes every stage's settings model, so importing it imports
each stage package. A stage package therefore imports its settings model
alone at once and its other members (and with them lifelines, scikit-learn,
causalml, pymc) on first use. It declares those members as imports under
``if TYPE_CHECKING:``, which type checkers and the API documentation read,
and :func:`attach` reads the same imports to load each member from its
module: the list is written once.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path


def declared_members(init_file: str | Path) -> dict[str, tuple[str, str]]:
    """The names a package imports under ``if TYPE_CHECKING:``: name -> (module, name there)."""
    members: dict[str, tuple[str, str]] = {}
    for node in ast.parse(Path(init_file).read_text()).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom) and statement.module:
                    for alias in statement.names:
                        members[alias.asname or alias.name] = (statement.module, alias.name)
    return members


def attach(package: str, init_file: str) -> tuple[Callable[[str], object], Callable[[], list]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, loading its declared members on use.

    A name that is not a declared member but one of the package's modules
    (``rl.uplift.plots``) is imported as that module.
    """
    members = declared_members(init_file)

    def __getattr__(name: str) -> object:
        if name in members:
            module, original = members[name]
            value = getattr(importlib.import_module(module), original)
        elif not name.startswith("__") and importlib.util.find_spec(f"{package}.{name}"):
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list:
        return sorted(set(vars(sys.modules[package])) | set(members))

    return __getattr__, __dir__
