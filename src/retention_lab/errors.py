"""Project exceptions and warnings.

User errors (bad data, bad configuration, a missing upstream output) are
``RetentionLabError`` subclasses that carry the facts as fields and build their
message from them; the CLI prints the message without a traceback and exits
with status 2. Bugs stay plain Python exceptions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

MAX_ROWS_SHOWN = 5


def _format_rows(rows: Sequence[object]) -> str:
    shown = ", ".join(str(r) for r in list(rows)[:MAX_ROWS_SHOWN])
    more = len(rows) - MAX_ROWS_SHOWN
    return f"{shown}, ... and {more} more" if more > 0 else shown


class RetentionLabError(Exception):
    """Base class of every error a user can cause and fix."""


@dataclass
class DataProblem:
    """One validation failure: where it is and what was expected."""

    file: str
    column: str | None
    expected: str
    rows: Sequence[object] = field(default_factory=list)

    def __str__(self) -> str:
        where = f"{self.file}: column '{self.column}'" if self.column else f"{self.file}"
        if self.rows:
            n = len(self.rows)
            noun = "row breaks" if n == 1 else "rows break"
            return f"{where}: {n} {noun} {self.expected} ({_format_rows(self.rows)})"
        return f"{where}: {self.expected}"


class DataError(RetentionLabError):
    """Input data that cannot be used; lists every problem found.

    Build it from one problem (``DataError(file=..., column=..., rows=..., expected=...)``)
    or from several (``DataError(problems=[...])``).
    """

    def __init__(
        self,
        *,
        file: str | None = None,
        column: str | None = None,
        expected: str | None = None,
        rows: Sequence[object] = (),
        problems: Sequence[DataProblem] | None = None,
    ):
        if problems is None:
            if file is None or expected is None:
                raise TypeError("DataError needs either problems or file and expected")
            problems = [DataProblem(file=file, column=column, expected=expected, rows=list(rows))]
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return str(self.problems[0])
        lines = [f"{len(self.problems)} problems in the input data:"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class ConfigError(RetentionLabError):
    """A run configuration that cannot be used, with the file and key path at fault."""

    def __init__(self, *, file: str, problems: Sequence[tuple[str, str]]):
        self.file = file
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        if len(self.problems) == 1:
            key, msg = self.problems[0]
            return f"{self.file}: {key}: {msg}" if key else f"{self.file}: {msg}"
        lines = [f"{self.file}: {len(self.problems)} problems in the configuration:"]
        lines += [f"  - {key}: {msg}" if key else f"  - {msg}" for key, msg in self.problems]
        return "\n".join(lines)


class MissingStageOutput(RetentionLabError):
    """A stage needs a file an earlier stage writes, and it is not there."""

    def __init__(self, *, stage: str, needs: str, path: str, holds: str = ""):
        self.stage, self.needs, self.path = stage, needs, path
        what = f" ({holds})" if holds else ""
        super().__init__(
            f"{path} is missing{what}: run the '{needs}' stage before '{stage}' "
            f"(add it to 'stages' in the configuration)"
        )


class OutputContractError(RetentionLabError):
    """A stage saved (or asked for) a table that breaks the declared contract between stages."""

    def __init__(self, *, stage: str, table: str, problems: Sequence[DataProblem | str]):
        self.stage, self.table, self.problems = stage, table, list(problems)
        listed = "; ".join(str(p) for p in self.problems)
        super().__init__(f"stage '{stage}', table '{table}' breaks its declared contract: {listed}")


class NotARun(RetentionLabError):
    """A folder given as a run folder that lacks what a run leaves behind."""

    def __init__(self, *, folder: str, missing: str):
        self.folder, self.missing = folder, missing
        super().__init__(f"{folder}: not a run folder ({missing} is missing)")


class TrackingError(RetentionLabError):
    """The MLflow tracking store cannot be opened."""

    def __init__(self, *, uri: str, reason: str):
        self.uri, self.reason = uri, reason
        super().__init__(
            f"MLflow tracking store {uri}: cannot be opened ({reason}); check "
            "tracking.tracking_uri in the configuration or MLFLOW_TRACKING_URI"
        )


class OutputError(RetentionLabError):
    """A file or folder the workbench must write cannot be written."""

    def __init__(self, *, path: str, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"{path}: cannot be written ({reason})")


def user_error_names() -> set[str]:
    """Class names of every ``RetentionLabError`` (a stage failing with one is a user error)."""
    found, pending = set(), [RetentionLabError]
    while pending:
        cls = pending.pop()
        found.add(cls.__name__)
        pending += cls.__subclasses__()
    return found


class RetentionLabWarning(UserWarning):
    """Base class of the project's warnings."""


class StatisticalWarning(RetentionLabWarning):
    """An estimate that exists but should be read with care; the message says what to do."""
