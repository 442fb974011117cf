"""House style of numbers: money with currency, rates in %, differences in pp."""

import math

from retention_lab import formatting as fmt


def test_money_has_currency_separators_sign_and_interval():
    assert fmt.money(1234567.4, "EUR") == "EUR 1,234,567"
    assert fmt.money(-1948.6, "USD") == "−USD 1,949"
    assert fmt.money(10, "USD", interval=(-5, 25)) == "USD 10 (95% CI −USD 5 to USD 25)"
    assert fmt.money(math.nan, "USD") == fmt.MISSING


def test_rates_are_percent_and_differences_percentage_points():
    assert fmt.percent(0.2421) == "24.2%"
    assert fmt.percent(0.5, interval=(0.4, 0.61)) == "50.0% (95% CI 40.0% to 61.0%)"
    assert fmt.pp(0.075, interval=(-0.06, 0.21)) == "+7.5 pp (95% CI −6.0 pp to +21.0 pp)"
    assert fmt.pp(None) == fmt.MISSING


def test_numbers_and_counts_have_no_exponent_or_repr():
    assert fmt.count(12345.4) == "12,345"
    assert fmt.number(57_000_000_000.0) == "57,000,000,000"
    assert fmt.number(0.0123) == "0.0123"
    assert fmt.number(math.inf) == "∞"
