"""Progress of long steps inside a stage: which step, and how far.

Library code reports with ``step("fitting the t-learner", 2, 4)`` or iterates
with ``each(items, "bootstrap")``; the lines go to the logger
``retention_lab.progress`` and cost nothing when nobody listens. In a pipeline
run the stage kernel writes them to ``<stage>/progress.log``
(``StageContext.record_progress``) and the runner forwards each new line,
prefixed with the stage's name, to the terminal and to the run's ``run.log``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from math import ceil
from pathlib import Path
from typing import TypeVar

LOGGER = "retention_lab.progress"
PROGRESS_FILE = "progress.log"  # in the stage's folder of a run
REPORTS_PER_LOOP = 5  # ``each`` reports the first item and about every fifth of a loop

_log = logging.getLogger(LOGGER)
T = TypeVar("T")


def step(what: str, i: int | None = None, n: int | None = None) -> None:
    """Report that ``what`` is under way: its ``i``-th part of ``n`` when given."""
    if n:
        _log.info("%s (%d/%d)", what, i, n)
    else:
        _log.info("%s", what)


def each(items: Sequence[T], what: str) -> Iterator[T]:
    """Yield ``items``, reporting ``what (i/n)`` at the first and about every fifth of them."""
    n = len(items)
    every = max(1, ceil(n / REPORTS_PER_LOOP))
    for i, item in enumerate(items, start=1):
        if i == 1 or i % every == 0:
            step(what, i, n)
        yield item


@dataclass
class ProgressTail:
    """The new complete lines of each stage's progress file in a run folder, read as it grows."""

    run_dir: Path
    offsets: dict[str, int] = field(default_factory=dict)

    def new_lines(self, stage: str) -> list[str]:
        """The lines ``stage`` wrote since the last call (a line still being written waits)."""
        path = Path(self.run_dir) / stage / PROGRESS_FILE
        if not path.is_file():
            return []
        with open(path, "rb") as handle:
            handle.seek(self.offsets.get(stage, 0))
            data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]
        self.offsets[stage] = self.offsets.get(stage, 0) + len(complete)
        return complete.decode("utf-8", errors="replace").splitlines()
