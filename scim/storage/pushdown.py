"""Filter push-down: the part of a SCIM filter that Table Storage can answer.

Storage's own business, behind :meth:`scim.storage.repository.Repository.scan`:
the service hands over the parsed filter and gets back the rows plus the filter
still to evaluate; it never sees a :data:`Condition`. A filter no unique index
answers is a scan; push-down narrows that scan on the server with the resource
row's *columns* — copies of a few attributes, normalised the way SCIM compares
them (RFC 7643 §2.2 ``caseExact``), written by :func:`columns_of` from the stored
document. ``scim.storage.tables`` turns a :data:`Condition` into an OData filter
with ``parameters=`` (never string formatting: no injection, azure-notes §5.2).

Push-down only ever **narrows**, and safely: the whole filter is still evaluated
in Python on what comes back, so a term that cannot be pushed is simply left out
of the storage query (an ``and`` keeps its pushable side; an ``or`` is pushed
only if both sides are; ``not``, ``ne``, ``pr`` and value paths are never pushed,
since storage and SCIM disagree on unassigned attributes there).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from scim2_models.path import (
    CompareOperator,
    Comparison,
    FilterNode,
    LogicalExpr,
    LogicalOperator,
    ScimFilter,
)

from scim.model.resources import case_exact_key, case_insensitive_key

__all__ = [
    "AllOf",
    "AnyOf",
    "ColumnTest",
    "Condition",
    "columns_of",
    "condition_for",
    "prefix_upper_bound",
    "pushdown",
]

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


_STORABLE_TIMES = (datetime(1601, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC))
"""Table Storage's ``Edm.DateTime`` range: outside it a comparison cannot be sent or answers wrongly."""


def _as_datetime(value: Any) -> datetime | None:
    """A timestamp storage can compare with: aware, within :data:`_STORABLE_TIMES`; else None (not pushed).

    ``meta.created``/``lastModified`` are always within that range, but a filter
    bound may not be (``"0001-01-01T00:00:00+05:00"`` is not even representable
    in UTC), and a bound without an offset has no instant: such terms are left
    to the evaluation in Python.
    """
    if not isinstance(value, datetime):
        try:
            value = datetime.fromisoformat(str(value))
        except ValueError:
            return None
    if value.tzinfo is None or value.utcoffset() is None:
        return None
    try:
        instant = value.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
    low, high = _STORABLE_TIMES
    return instant if low <= instant <= high else None


def _is_text(value: str) -> bool:
    """Whether ``value`` is Unicode text (no lone surrogate), which is all storage can be sent."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _next_char(char: str) -> str | None:
    """The least character above ``char`` in both code-point and UTF-16 code-unit order, if any.

    Python compares strings by code point, Table Storage (and Azurite) by
    UTF-16 code unit: the two agree except that astral characters (surrogate
    pairs, D800-DFFF) sort *below* U+E000-U+FFFF in UTF-16. So U+D7FF is
    followed by U+E000 (never a lone surrogate, which cannot be sent), and
    U+FFFF and U+10FFFF have no successor valid in both orders.
    """
    code = ord(char)
    if code == 0xD7FF:
        return "\ue000"
    if code in (0xFFFF, 0x10FFFF):
        return None
    return chr(code + 1)


def prefix_upper_bound(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix`` (RFC 7644 §3.4.2.2 ``sw``), if any.

    The last character is replaced by its successor; one without a successor
    is dropped and the one before it incremented instead. None (only
    ``U+FFFF``/``U+10FFFF`` characters) means no finite bound: only the lower
    bound is pushed and the evaluation in Python does the rest.
    """
    for end in range(len(prefix), 0, -1):
        successor = _next_char(prefix[end - 1])
        if successor is not None:
            return prefix[: end - 1] + successor
    return None


@dataclass(frozen=True)
class _Column:
    name: str
    read: Callable[[Mapping[str, Any]], Any]
    normalise: Callable[[Any], Any]


def _attribute(name: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda document: document.get(name)


def _meta(name: str) -> Callable[[Mapping[str, Any]], Any]:
    def read(document: Mapping[str, Any]) -> Any:
        meta = document.get("meta")
        return meta.get(name) if isinstance(meta, Mapping) else None

    return read


def _text(normalise: Callable[[str], str]) -> Callable[[Any], Any]:
    return lambda value: normalise(value) if isinstance(value, str) else None


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


_COLUMNS: dict[str, _Column] = {
    "username": _Column("c_un", _attribute("userName"), _text(case_insensitive_key)),
    "displayname": _Column("c_dn", _attribute("displayName"), _text(case_insensitive_key)),
    "externalid": _Column("c_ext", _attribute("externalId"), _text(case_exact_key)),
    "active": _Column("c_act", _attribute("active"), _flag),
    "meta.lastmodified": _Column("c_lm", _meta("lastModified"), _as_datetime),
    "meta.created": _Column("c_cr", _meta("created"), _as_datetime),
}
"""SCIM attribute (lower-case path) → the row column holding its comparison form."""


def columns_of(document: Mapping[str, Any]) -> dict[str, Any]:
    """The column values to store on a resource's row, read from its stored document."""
    columns = {}
    for column in _COLUMNS.values():
        value = column.normalise(column.read(document))
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
    if isinstance(value, str) and not _is_text(value):
        return None  # nothing stored holds a lone surrogate; the evaluation answers
    if node.op == CompareOperator.sw:
        if not isinstance(value, str) or not value:
            return None
        lower = ColumnTest(column.name, "ge", value)
        upper = prefix_upper_bound(value)
        return lower if upper is None else AllOf((lower, ColumnTest(column.name, "lt", upper)))
    op: Op = node.op.value  # type: ignore[assignment]
    if isinstance(value, str) and op != "eq":
        return _ordered(column.name, op, value)
    return ColumnTest(column.name, op, value)


def _ordered(column: str, op: Op, value: str) -> Condition | None:
    """A string order comparison, weakened where UTF-16 order (storage) and code-point order differ.

    They differ only between astral characters and U+E000-U+FFFF (see
    :func:`_next_char`): a ``gt``/``ge`` bound is cut before its first
    U+E000-U+FFFF character, an ``lt``/``le`` bound before its first astral one,
    so storage never drops a resource the evaluation in Python would match.
    """
    if op in ("gt", "ge"):
        cut = next((i for i, ch in enumerate(value) if 0xE000 <= ord(ch) <= 0xFFFF), None)
        if cut is None:
            return ColumnTest(column, op, value)
        return ColumnTest(column, "ge", value[:cut]) if cut else None
    cut = next((i for i, ch in enumerate(value) if ord(ch) > 0xFFFF), None)
    if cut is None:
        return ColumnTest(column, op, value)
    upper = prefix_upper_bound(value[:cut])
    return ColumnTest(column, "lt", upper) if upper is not None else None


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


def condition_for(where: ScimFilter[Any]) -> Condition | None:
    """The storage condition implied by a parsed filter bound to its resource type, if any.

    URN-qualified paths are compared with the schema of the type the filter is
    bound to; a filter bound to no single type pushes nothing.
    """
    schema = getattr(where.model, "__schema__", None)
    return pushdown(where.ast, str(schema)) if schema else None
