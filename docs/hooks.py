"""MkDocs hooks: pages generated from the code, so the site cannot drift from it.

- ``<!-- config-reference -->`` becomes the whole configuration reference and
  ``<!-- config-reference: survival -->`` one section's table
  (:mod:`retention_lab.config_reference`, from the pydantic models);
- ``<!-- returns: retention_lab.survival.score_active -->`` becomes the
  ``Returns`` section of that function's docstring (the columns of a table);
- ``<!-- columns: retention_lab.plan.ACTION_COLUMNS -->`` lists a constant's
  column names.
"""

from __future__ import annotations

import importlib
import inspect
import re

from retention_lab import config_reference

PLACEHOLDER = re.compile(r"<!-- (config-reference|returns|columns)(?::\s*([\w.]*))? -->")
SECTION = re.compile(r"^(\w[\w ]*)\n-+\n", re.M)
RST_LITERAL = re.compile(r"(?::\w+:)?``?([^`]+)``?")


def _markdown(text: str) -> str:
    """Docstring markup (``x``, :func:`x`) as Markdown code."""
    return RST_LITERAL.sub(lambda m: f"`{m.group(1).lstrip('~')}`", text)


def _resolve(dotted: str):
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for name in parts[split:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


def returns_section(dotted: str) -> str:
    """The text of the ``Returns`` section of an object's docstring."""
    obj = _resolve(dotted)
    obj = obj.fget if isinstance(obj, property) else obj
    doc = inspect.getdoc(obj) or ""
    headers = list(SECTION.finditer(doc))
    for index, header in enumerate(headers):
        if header.group(1) == "Returns":
            end = headers[index + 1].start() if index + 1 < len(headers) else len(doc)
            body = doc[header.end() : end].strip("\n")
            lines = body.splitlines()
            kind, text = lines[0].strip(), " ".join(line.strip() for line in lines[1:])
            return f"*{kind}* (from `{dotted}`): {_markdown(text)}"
    raise ValueError(f"{dotted} has no Returns section in its docstring")


def _replace(match: re.Match) -> str:
    kind, argument = match.group(1), match.group(2)
    if kind == "config-reference":
        if argument is None:
            return config_reference.reference_markdown()
        return config_reference.section_table(argument)
    if kind == "returns":
        return returns_section(argument)
    return ", ".join(f"`{name}`" for name in _resolve(argument))


def on_page_markdown(markdown: str, **kwargs) -> str:
    """Expand the placeholders of a page."""
    return PLACEHOLDER.sub(_replace, markdown)
