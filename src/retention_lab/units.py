"""Constants every stage shares, defined once.

- ``Z95``: the 97.5 % quantile of the standard normal, for 95 % intervals
  (``scipy.stats.norm.ppf(0.975)``);
- ``DAYS_PER_MONTH``: the mean length of a month in days (365.25 / 12), used
  wherever days and months are converted;
- ``horizon_weeks`` and ``horizon_days_of``: an outcome horizon given in months
  as whole weeks (the simulator's weekly clock), so that a retention case's
  outcome is judged at the same date by the simulator, the uplift stage and the plan;
- ``TENURE_UNIT_DAYS`` and ``TenureUnit``: the units a tenure can be declared in
  (``data.tenure_unit``), and the conversion of a tenure in months to the declared unit.
"""

from __future__ import annotations

from dataclasses import dataclass

Z95 = 1.959963984540054
DAYS_PER_MONTH = 365.25 / 12
TENURE_UNIT_DAYS = {"days": 1.0, "weeks": 7.0, "months": DAYS_PER_MONTH, "years": 365.25}


@dataclass(frozen=True)
class TenureUnit:
    """The unit tenure is reported in: the one the user declared (``data.tenure_unit``).

    The stages compute in months (``tenure_months``); a stage converts to this
    unit only where it shows or records a tenure (tables of the report, figures,
    findings, ``results.json``). Dated customers are reported in months.

    Parameters
    ----------
    name : {"days", "weeks", "months", "years"}
        The plural word of the unit, as ``data.tenure_unit`` spells it.
    """

    name: str = "months"

    def __post_init__(self) -> None:
        if self.name not in TENURE_UNIT_DAYS:
            raise ValueError(
                f"tenure unit {self.name!r} is not one of {', '.join(TENURE_UNIT_DAYS)}"
            )

    @property
    def days(self) -> float:
        """Days in one unit."""
        return TENURE_UNIT_DAYS[self.name]

    @property
    def singular(self) -> str:
        """The word for one unit ("day")."""
        return self.name[:-1]

    @property
    def letter(self) -> str:
        """The unit's letter in metric names (``retention_12m``, ``retention_365d``)."""
        return self.name[0]

    @property
    def per_month(self) -> float:
        """Units in one month (1 for months, 30.4375 for days)."""
        return DAYS_PER_MONTH / self.days

    def from_months(self, months):
        """A tenure (number, array or Series) given in months, in this unit."""
        return months * self.per_month

    def to_months(self, value):
        """A tenure given in this unit, in months."""
        return value / self.per_month

    def table(self, frame, *, tenures=(), rates=()):
        """``frame`` with its tenures in this unit, and columns ``*_months`` renamed ``*_<unit>``.

        ``tenures`` are columns holding tenures in months (multiplied by
        :attr:`per_month`); ``rates`` are rates per customer-month (divided by it).
        """
        out = frame.assign(
            **{c: frame[c] * self.per_month for c in tenures},
            **{c: frame[c] / self.per_month for c in rates},
        )
        return out.rename(
            columns={
                c: f"{c[: -len('_months')]}_{self.name}"
                for c in out.columns
                if c.endswith("_months")
            }
        )


def horizon_weeks(months: float) -> int:
    """Weeks of an outcome horizon given in months: ``round(months * 30.4375 / 7)``."""
    return int(round(months * DAYS_PER_MONTH / 7))


def horizon_days_of(months: float) -> int:
    """Days of an outcome horizon given in months: whole weeks (182 days for 6 months)."""
    return 7 * horizon_weeks(months)


def tenure_unit(unit: TenureUnit | str) -> TenureUnit:
    """``unit`` as a :class:`TenureUnit` (given as one, or by name as in ``data.tenure_unit``)."""
    return unit if isinstance(unit, TenureUnit) else TenureUnit(unit)
