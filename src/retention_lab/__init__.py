"""retention_lab: survival, uplift, lifetime value and retention planning in one workbench.

``import retention_lab as rl`` gives the stage modules as attributes
(``rl.data``, ``rl.stage``, ``rl.viz``, ...), loaded on first use so that
importing the package stays cheap, and ``rl.open(config_or_run_folder)``, the
one call from a configuration file or a finished run to validated data
(:func:`retention_lab.workspace.open`).
"""

from importlib import import_module

__version__ = "0.1.0"

_SUBMODULES = {
    "clv",
    "config",
    "data",
    "errors",
    "monitor",
    "plan",
    "report",
    "runner",
    "scoring",
    "stage",
    "survival",
    "tracking",
    "uplift",
    "viz",
    "workspace",
}


def __getattr__(name: str):
    if name == "open":
        return import_module("retention_lab.workspace").open
    if name in _SUBMODULES:
        return import_module(f"retention_lab.{name}")
    raise AttributeError(f"module 'retention_lab' has no attribute {name!r}")
