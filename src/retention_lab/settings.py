"""The base of every settings model: each stage's settings and the run's other sections.

A settings model is a pydantic model that refuses unknown keys and writes each
default once. Each stage package owns its model (``survival.SurvivalSettings``,
``uplift.UpliftSettings``, ``clv.ClvSettings``, ``plan.PlanSettings``,
``monitor.MonitorSettings``, ``data.DataSettings``); ``config.py`` composes
them into the run configuration. ``FAST`` declares what a smoke run
(``retention-lab run --fast``) shrinks, and ``fast()`` returns that variant.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict


class Settings(BaseModel):
    """Settings with no unknown keys and a smoke-run variant (``fast()``)."""

    model_config = ConfigDict(extra="forbid")
    # what a smoke run (``retention-lab run --fast``) shrinks: field -> its value there
    FAST: ClassVar[dict[str, Any]] = {}

    def fast(self) -> Self:
        """These settings as a smoke run uses them: ``FAST`` over the configured values."""
        return self.model_copy(update=self.FAST)
