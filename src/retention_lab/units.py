"""Constants every stage shares, defined once.

- ``Z95``: the 97.5 % quantile of the standard normal, for 95 % intervals
  (``scipy.stats.norm.ppf(0.975)``);
- ``DAYS_PER_MONTH``: the mean length of a month in days (365.25 / 12), used
  wherever days and months are converted;
- ``horizon_weeks`` and ``horizon_days_of``: an outcome horizon given in months
  as whole weeks (the simulator's weekly clock), so that a retention case's
  outcome is judged at the same date by the simulator, the uplift stage and the plan.
"""

Z95 = 1.959963984540054
DAYS_PER_MONTH = 365.25 / 12


def horizon_weeks(months: float) -> int:
    """Weeks of an outcome horizon given in months: ``round(months * 30.4375 / 7)``."""
    return int(round(months * DAYS_PER_MONTH / 7))


def horizon_days_of(months: float) -> int:
    """Days of an outcome horizon given in months: whole weeks (182 days for 6 months)."""
    return 7 * horizon_weeks(months)
