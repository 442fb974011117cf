"""One call from a configuration or a finished run to data: ``rl.open``.

An analyst in a notebook writes ``data = rl.open("configs/my_crm.yaml")`` and
has the validated tables, the snapshot date and every stage's settings; or
``rl.open("reports/20261129-060000-my-crm")`` and has what that run analysed,
plus the tables its stages wrote (``data.output("survival", "scores")``). The
stage notebooks open their own run folder the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from retention_lab.config import RunConfig, load_config, resolve_path, with_as_of
from retention_lab.data.loaders import Tables, load_tables, read_tables
from retention_lab.errors import ConfigError
from retention_lab.stage import (
    RUN_CONFIG_FILE,
    TABLES_DIR,
    read_output,
    read_truth,
    stage_outputs,
    store_tables,
)

if TYPE_CHECKING:
    from retention_lab.data.simulate import GroundTruth


@dataclass(frozen=True)
class Workspace:
    """A dataset ready for analysis.

    Attributes
    ----------
    tables : Tables
        The validated canonical tables (``customers`` with ``tenure_months`` and
        ``churned`` derived at ``as_of``; ``problems``, ``interventions`` and
        ``transactions`` when the source has them, else ``None``).
    settings : RunConfig
        The run configuration: ``settings.survival``, ``settings.uplift``,
        ``settings.clv``, ``settings.plan`` and ``settings.monitor`` hold each
        stage's settings, ``settings.seed`` the run's seed.
    truth : GroundTruth or None
        The simulator's ground truth when the data are simulated, else ``None``.
    run_dir : pathlib.Path or None
        The run folder the data were read from; ``None`` when opened from a
        configuration file.
    """

    tables: Tables
    settings: RunConfig
    truth: GroundTruth | None = None
    run_dir: Path | None = None

    @property
    def as_of(self) -> date:
        """The snapshot date that closes the observation window."""
        return self.tables.as_of

    def outputs(self) -> dict[str, list[str]]:
        """The tables each stage of the run folder wrote, by stage (empty without a run folder).

        Returns
        -------
        dict of str to list of str
            Stage name to the names :meth:`output` accepts, e.g.
            ``{"survival": ["hazard_ratios", "scores", "threats"]}``.
        """
        return stage_outputs(self.run_dir) if self.run_dir else {}

    def output(self, stage: str, name: str) -> pd.DataFrame:
        """A table a stage of the run wrote, such as ``output("clv", "values")``.

        Returns
        -------
        pandas.DataFrame
            The stored table as the stage wrote it; its columns are listed under
            the stage's page of the documentation (*Outputs*).

        Raises
        ------
        MissingStageOutput
            When the stage did not run in this run folder, or the workspace was
            opened from a configuration file (no run folder).
        """
        return read_output(self.run_dir or Path("<no run folder>"), stage, name, reader="rl.open")

    def __repr__(self) -> str:
        where = f"run_dir={self.run_dir.name!r}" if self.run_dir else "from configuration"
        truth = ", with ground truth" if self.truth is not None else ""
        return f"Workspace({self.settings.name!r}, {where}, {self.tables!r}{truth})"


def open(source: str | Path, *, as_of: str | date | None = None) -> Workspace:  # noqa: A001
    """Open a configuration file or a run folder: validated tables, ``as_of`` and settings.

    Parameters
    ----------
    source
        A YAML run configuration (its data source is loaded and validated; nothing
        is written) or a run folder (``reports/<timestamp>-<name>``, or the
        scratch folder of an interactive stage notebook), whose stored tables
        are read back. A relative path is taken from the working directory when
        it exists there, else from the project root (as the notebooks'
        ``config_file`` parameter).
    as_of
        Observe a configuration's data at another snapshot date (as
        ``retention-lab run --as-of``); a run folder's date is fixed.

    Returns
    -------
    Workspace
        ``tables``, ``as_of``, ``settings`` (the validated ``RunConfig``),
        ``truth`` (simulated data only) and, for a run folder, ``run_dir`` and
        the stage outputs (``output(stage, name)``).

    Raises
    ------
    ConfigError
        When the path is neither a configuration file nor a run folder, or the
        configuration is invalid.
    DataError
        When the data break the canonical schemas; the message names the file,
        the column and the rows.
    """
    path = resolve_path(source)
    if path.is_dir():
        if as_of is not None:
            raise ConfigError(
                file=str(path),
                problems=[
                    (
                        "as_of",
                        "a run folder's data are fixed at its snapshot date; "
                        "open its configuration to observe another date",
                    )
                ],
            )
        return _open_run_folder(path)
    settings = load_config(path)
    if as_of is not None:
        settings = with_as_of(settings, str(as_of), file=str(path))
    tables, truth = load_tables(settings.data, random_state=settings.seed)
    return Workspace(tables=tables, settings=settings, truth=truth)


def _open_run_folder(run_dir: Path) -> Workspace:
    config_file = run_dir / RUN_CONFIG_FILE
    if not config_file.is_file():
        raise ConfigError(
            file=str(run_dir),
            problems=[
                (
                    "",
                    f"not a run folder: it has no {RUN_CONFIG_FILE} "
                    "(pass a configuration file or a folder under reports/)",
                )
            ],
        )
    settings = load_config(config_file)
    store_tables(run_dir, settings)  # a run stores them first; a scratch folder may not
    return Workspace(
        tables=read_tables(run_dir / TABLES_DIR),
        settings=settings,
        truth=read_truth(run_dir),
        run_dir=run_dir,
    )
