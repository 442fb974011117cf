"""Constants every stage shares, defined once.

- ``Z95``: the 97.5 % quantile of the standard normal, for 95 % intervals
  (``scipy.stats.norm.ppf(0.975)``);
- ``DAYS_PER_MONTH``: the mean length of a month in days (365.25 / 12), used
  wherever days and months are converted.
"""

Z95 = 1.959963984540054
DAYS_PER_MONTH = 365.25 / 12
