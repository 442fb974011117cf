"""Names from the models and the data in words a manager reads.

Model terms (``segment[vip]``, ``plan[T.premium]``, ``problem[network, treated]``),
group keys (``segment=vip|problem_type=network``) and code names
(``competitor_offer``) become ``Segment: VIP``, ``Plan: premium``, ``Problem:
network (treated)``, ``Segment: VIP, Problem type: network`` and ``competitor
offer``. A configuration's ``report.labels`` maps any whole name, covariate or
level to the words of its choice; the reports' sentences and tables use
``label`` and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# names whose plain reading is not "underscores to spaces"
DEFAULT_LABELS = {
    "vip": "VIP",
    "data_usage_gb": "data usage (GB)",
    "tenure_months": "tenure (months)",
    "problem_type": "problem type",
    "churn_reason": "churn reason",
}
_TERM = re.compile(r"^(?P<covariate>[^\[\]]+)\[(?:T\.)?(?P<level>[^\[\]]*)\]$")
_TREATED = ", treated"


def _words(name: str, labels: Mapping[str, str]) -> str:
    name = str(name)
    for key in (name, name.lower()):
        if key in labels:
            return labels[key]
        if key in DEFAULT_LABELS:
            return DEFAULT_LABELS[key]
    return name.replace("_", " ")


def capitalised(text: str) -> str:
    """``text`` with its first letter upper case, the rest as written (unlike ``capitalize``)."""
    return text[:1].upper() + text[1:]


def label(name: object, labels: Mapping[str, str] | None = None) -> str:
    """``name`` (a model term, a group key or a code name) in words.

    ``labels`` (the configuration's ``report.labels``) is looked up first for the
    whole name, then for its covariate and its level.
    """
    labels = labels or {}
    name = str(name)
    if name in labels:
        return labels[name]
    if "=" in name:  # a group key of the monitor: covariate=level|covariate=level
        parts = [part.split("=", 1) for part in name.split("|")]
        return ", ".join(
            f"{capitalised(_words(key, labels))}: {_words(value, labels)}" for key, value in parts
        )
    match = _TERM.match(name)
    if match is None:
        return _words(name, labels)
    level, treated = match["level"], match["level"].endswith(_TREATED)
    if treated:
        level = level[: -len(_TREATED)]
    text = f"{capitalised(_words(match['covariate'], labels))}: {_words(level, labels)}"
    return text + (" (treated)" if treated else "")
