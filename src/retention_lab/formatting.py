"""House style of numbers in reports: money, rates, differences of rates, counts.

One way of writing each kind of number, used by the run summary, the tables
(``viz.show_table``) and the report text: money carries its currency and
thousands separators, rates are percentages, differences of rates are
percentage points, and an estimate with an interval shows the interval.
"""

from __future__ import annotations

import math

MISSING = "—"
# the unit monitored money quantities are stored with (run histories keep it whatever the
# run's currency); a report shows the run's currency instead (``unit_text``)
MONEY_UNIT = "EUR"


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(float(value))


def number(value: float | None) -> str:
    """Three significant digits, thousands separators, no exponent above 0.001."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    value = float(value)
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 0.001 or value == 0:
        return f"{value:.3g}"
    return f"{value:.2e}"


def unit_text(unit: str, currency: str) -> str:
    """A stored unit as a reader sees it: the run's currency for money, else as stored."""
    return currency if unit == MONEY_UNIT else unit


def count(value: float | None) -> str:
    """A whole number with thousands separators (``12,345``)."""
    return f"{round(float(value)):,}" if _finite(value) else MISSING


def money(
    value: float | None, currency: str, *, interval: tuple[float, float] | None = None
) -> str:
    """``USD 12,345`` (``−USD 1,200`` when negative), with ``(95% CI a to b)`` when given."""
    if not _finite(value):
        return MISSING
    value = float(value)
    text = f"{'−' if value < 0 else ''}{currency} {abs(value):,.0f}"
    if interval is not None and all(_finite(v) for v in interval):
        low, high = (money(v, currency) for v in interval)
        text += f" (95% CI {low} to {high})"
    return text


def percent(share: float | None, *, interval: tuple[float, float] | None = None) -> str:
    """A share (0.123) as ``12.3%``, with ``(95% CI a to b)`` when given."""
    if not _finite(share):
        return MISSING
    text = f"{float(share):.1%}"
    if interval is not None and all(_finite(v) for v in interval):
        text += f" (95% CI {float(interval[0]):.1%} to {float(interval[1]):.1%})"
    return text


def pp(difference: float | None, *, interval: tuple[float, float] | None = None) -> str:
    """A difference of two shares (0.021) as ``+2.1 pp``, with its interval when given."""
    if not _finite(difference):
        return MISSING

    def one(v: float) -> str:
        return f"{100 * float(v):+.1f} pp".replace("-", "−")

    text = one(difference)
    if interval is not None and all(_finite(v) for v in interval):
        text += f" (95% CI {one(interval[0])} to {one(interval[1])})"
    return text
