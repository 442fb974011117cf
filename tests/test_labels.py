"""Model terms, group keys and code names in the words a manager reads."""

import pytest

from retention_lab.labels import label


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("segment[vip]", "Segment: VIP"),
        ("plan[T.premium]", "Plan: premium"),
        ("problem[network, treated]", "Problem: network (treated)"),
        ("channel[telesales]", "Channel: telesales"),
        ("segment=vip|problem_type=price", "Segment: VIP, Problem type: price"),
        ("competitor_offer", "competitor offer"),
        ("data_usage_gb", "data usage (GB)"),
        ("all", "all"),
    ],
)
def test_terms_group_keys_and_code_names_read_as_words(name, words):
    assert label(name) == words


def test_the_configurations_labels_come_first_for_the_term_its_covariate_or_its_level():
    labels = {"segment[vip]": "VIP customers", "plan": "Tariff", "premium": "Premium+"}
    assert label("segment[vip]", labels) == "VIP customers"
    assert label("plan[T.premium]", labels) == "Tariff: Premium+"
    assert label("segment=vip", {"vip": "Very important"}) == "Segment: Very important"
