"""Filter push-down: the part of a SCIM filter that Table Storage can answer.

A filter no unique index answers is a scan; push-down narrows that scan on
the server with the resource row's *columns* — copies of a few attributes,
normalised the way SCIM compares them (RFC 7643 §2.2 ``caseExact``). The
storage module turns a :data:`Condition` into an OData filter with
``parameters=`` (never string formatting: no injection, azure-notes §5.2).

Push-down only ever **widens** nothing and **narrows** safely: the whole
filter is still evaluated in Python on what comes back, so a term that cannot
be pushed is simply left out of the storage query (an ``and`` keeps its
pushable side; an ``or`` is pushed only if both sides are; ``not``, ``ne``,
``pr`` and value paths are never pushed, since storage and SCIM disagree on
unassigned attributes there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from scim2_models import Resource
from scim2_models.path import CompareOperator, Comparison, FilterNode, LogicalExpr, LogicalOperator

from scim.resources import case_exact_key, case_insensitive_key

__all__ = ["AllOf", "AnyOf", "ColumnTest", "Condition", "columns_of", "pushdown"]

Op = Literal["eq", "gt", "ge", "lt", "le"]


@dataclass(frozen=True)
class ColumnTest:
    """``column op value`` on a resource row."""

    column: str
    op: Op
    value: str | bool | datetime


@dataclass(frozen=True)
class AllOf:
    """Every condition holds."""

    terms: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    """At least one condition holds."""

    terms: tuple[Condition, ...]


Condition = ColumnTest | AllOf | AnyOf


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


@dataclass(frozen=True)
class _Column:
    name: str
    read: Callable[[Resource[Any]], Any]
    normalise: Callable[[Any], Any]


def _meta(field: str) -> Callable[[Resource[Any]], Any]:
    return lambda resource: getattr(resource.meta, field, None) if resource.meta else None


def _text(normalise: Callable[[str], str]) -> Callable[[Any], Any]:
    return lambda value: normalise(value) if isinstance(value, str) else None


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


_COLUMNS: dict[str, _Column] = {
    "username": _Column("c_un", lambda r: getattr(r, "user_name", None), _text(case_insensitive_key)),
    "displayname": _Column("c_dn", lambda r: getattr(r, "display_name", None), _text(case_insensitive_key)),
    "externalid": _Column("c_ext", lambda r: getattr(r, "external_id", None), _text(case_exact_key)),
    "active": _Column("c_act", lambda r: getattr(r, "active", None), _flag),
    "meta.lastmodified": _Column("c_lm", _meta("last_modified"), _as_datetime),
    "meta.created": _Column("c_cr", _meta("created"), _as_datetime),
}
"""SCIM attribute (lower-case path) → the row column holding its comparison form."""


def columns_of(resource: Resource[Any]) -> dict[str, Any]:
    """The column values to store on a resource's row."""
    columns = {}
    for column in _COLUMNS.values():
        value = column.normalise(column.read(resource))
        if value is not None:
            columns[column.name] = value
    return columns


def _comparison(node: Comparison, schema: str) -> Condition | None:
    path = node.attr_path
    if path.uri and path.uri.lower() != schema.lower():
        return None
    name = path.attr.lower() + (f".{path.sub_attr.lower()}" if path.sub_attr else "")
    column = _COLUMNS.get(name)
    if column is None or node.op.value not in ("eq", "gt", "ge", "lt", "le", "sw"):
        return None
    value = column.normalise(node.value)
    if value is None or (isinstance(value, bool) and node.op != CompareOperator.eq):
        return None
    if node.op == CompareOperator.sw:
        if not isinstance(value, str) or not value:
            return None
        upper = value[:-1] + chr(ord(value[-1]) + 1)
        return AllOf((ColumnTest(column.name, "ge", value), ColumnTest(column.name, "lt", upper)))
    op: Op = node.op.value  # type: ignore[assignment]
    return ColumnTest(column.name, op, value)


def pushdown(node: FilterNode, schema: str) -> Condition | None:
    """The storage condition implied by a filter, or None when nothing can be pushed.

    Args:
        node: The parsed filter (scim2-models AST).
        schema: The core schema URN of the resource type (for URN-qualified paths).
    """
    if isinstance(node, Comparison):
        return _comparison(node, schema)
    if isinstance(node, LogicalExpr):
        terms = [pushdown(term, schema) for term in node.terms]
        if node.op == LogicalOperator.and_:
            kept = tuple(t for t in terms if t is not None)
            return (kept[0] if len(kept) == 1 else AllOf(kept)) if kept else None
        if all(t is not None for t in terms):
            return AnyOf(tuple(t for t in terms if t is not None))
    return None
