"""What the documentation site generates from the code, so that it cannot drift from it.

- The configuration reference: every field of ``RunConfig`` and the models it
  nests (data sources, the simulator, each stage's settings) becomes a row
  with its key path, type, default, allowed values and description.
- The ``Returns`` section of a docstring (the columns of a returned table),
  which the stage pages quote.

``docs/hooks.py`` puts both into the pages when the site is built.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import json
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from retention_lab.config import RunConfig

NUMPYDOC_SECTION = re.compile(r"^(\w[\w ]*)\n-+\n", re.M)
_BOUNDS = ((at.Ge, "ge", "≥"), (at.Gt, "gt", ">"), (at.Le, "le", "≤"), (at.Lt, "lt", "<"))


@dataclass(frozen=True)
class FieldDoc:
    """One documented configuration field."""

    path: str
    type: str
    default: str
    allowed: str
    description: str


def _models_in(annotation: object) -> list[type[BaseModel]]:
    candidates = [annotation, *typing.get_args(annotation)]
    return [t for t in candidates if isinstance(t, type) and issubclass(t, BaseModel)]


def _type_name(annotation: object) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return "text" if all(isinstance(a, str) for a in args) else "literal"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is not None:
        inner = ", ".join(_type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    if annotation is typing.Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def _literals(annotation: object) -> list[object]:
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    return [v for arg in typing.get_args(annotation) for v in _literals(arg)]


def _allowed(info: FieldInfo) -> str:
    parts = []
    values = _literals(info.annotation)
    if values:
        each = "each of " if typing.get_origin(info.annotation) is list else "one of "
        parts.append(each + ", ".join(f"`{v}`" for v in values))
    for meta in info.metadata:
        for kind, attr, symbol in _BOUNDS:
            if isinstance(meta, kind):
                parts.append(f"{symbol} {getattr(meta, attr)}")
        if isinstance(meta, at.MinLen):
            parts.append(f"at least {meta.min_length} item(s)")
        if getattr(meta, "pattern", None):
            parts.append(f"matches `{meta.pattern}`")
    return "; ".join(parts)


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = info.default_factory()
        if isinstance(value, BaseModel):
            return "the section below"
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, BaseModel):
        return "the section below"
    return f"`{json.dumps(value, default=str)}`"


def fields(model: type[BaseModel] = RunConfig, prefix: str = "") -> Iterator[FieldDoc]:
    """Every field of ``model`` and of the models it nests, depth first, with its key path."""
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        yield FieldDoc(
            path=path,
            type=_type_name(info.annotation),
            default=_default(info),
            allowed=_allowed(info),
            description=info.description or "",
        )
        for nested in _models_in(info.annotation):
            yield from fields(nested, prefix=f"{path}.")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def sections(model: type[BaseModel] = RunConfig) -> dict[str, list[FieldDoc]]:
    """The fields grouped by the section (key path of their parent) they are written in."""
    grouped: dict[str, list[FieldDoc]] = {}
    for doc in fields(model):
        parent = doc.path.rpartition(".")[0]
        grouped.setdefault(parent, []).append(doc)
    return grouped


def section_table(section: str, model: type[BaseModel] = RunConfig) -> str:
    """The Markdown table of one section (``""`` for the top level, ``"survival"``, ...)."""
    rows = [
        "| key | type | default | allowed values | description |",
        "|---|---|---|---|---|",
    ]
    for doc in sections(model)[section]:
        key = doc.path.rpartition(".")[2]
        rows.append(
            f"| `{key}` | {_cell(doc.type)} | {_cell(doc.default)} | {_cell(doc.allowed)} "
            f"| {_cell(doc.description)} |"
        )
    return "\n".join(rows)


def reference_markdown(model: type[BaseModel] = RunConfig) -> str:
    """The whole configuration reference: one heading and table per section."""
    parts = []
    for section in sections(model):
        title = f"`{section}`" if section else "Top level"
        parts += [f"## {title}", "", section_table(section, model), ""]
    return "\n".join(parts)


def resolve(dotted: str) -> object:
    """The object a dotted path names: a module, or an attribute of one (nested allowed)."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for name in parts[split:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(f"no module in {dotted!r}")


def docstring_section(obj: object, title: str = "Returns") -> str | None:
    """The body of a numpydoc section of ``obj``'s docstring (a property's getter's), or None."""
    obj = obj.fget if isinstance(obj, property) else obj
    doc = inspect.getdoc(obj) or ""
    headers = list(NUMPYDOC_SECTION.finditer(doc))
    for index, header in enumerate(headers):
        if header.group(1) == title:
            end = headers[index + 1].start() if index + 1 < len(headers) else len(doc)
            return doc[header.end() : end].strip("\n")
    return None
