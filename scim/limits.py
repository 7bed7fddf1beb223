"""Input limits: hostile or runaway input gets a clear SCIM error, never a storage error.

Entra's requests are far below every limit here; they bound what a buggy or
hostile client can make the service (and Table Storage) do per request.
The body size itself is checked first, in ``scim.api`` (``SCIM_MAX_BODY_BYTES``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scim2_models import Resource

from scim.errors import InvalidFilterError, InvalidValueError, PayloadTooLargeError

if TYPE_CHECKING:
    from scim.resources import ResourceKind

__all__ = [
    "MAX_FILTER_CHARS",
    "MAX_FILTER_NESTING",
    "MAX_INDEXED_CHARS",
    "MAX_MEMBERS_PER_PATCH",
    "MAX_PATCH_OPERATIONS",
    "check_filter",
    "check_indexed_values",
    "check_member_count",
    "check_patch_size",
]

MAX_FILTER_CHARS = 4096
"""Characters in a filter (the Functions host caps URLs at 4 KB anyway)."""

MAX_FILTER_NESTING = 16
"""Depth of ``(`` and ``[`` nesting in a filter: bounds the parser's recursion."""

MAX_PATCH_OPERATIONS = 1000
"""Operations in one PatchOp (RFC 7644 §3.5.2 sets none; Entra sends a handful)."""

MAX_MEMBERS_PER_PATCH = 10_000
"""Member values in one PATCH, POST or PUT of a group."""

MAX_INDEXED_CHARS = 1024
"""Characters of values kept in index rows and filter columns (``userName``,
``displayName``, ``externalId``, member ``display``): Entra's are ≤ 256, and a
Table Storage property holds at most 32,768."""


def check_filter(text: str) -> None:
    """Refuse filters too long or too deeply nested to parse safely.

    Raises:
        InvalidFilterError: Past :data:`MAX_FILTER_CHARS` or :data:`MAX_FILTER_NESTING`.
    """
    if len(text) > MAX_FILTER_CHARS:
        raise InvalidFilterError(f"The filter is longer than {MAX_FILTER_CHARS:,} characters.")
    depth = deepest = 0
    quoted = escaped = False
    for char in text:
        if quoted:
            escaped, quoted = (False, True) if escaped else (char == "\\", char != '"')
            continue
        if char == '"':
            quoted = True
        elif char in "([":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]":
            depth -= 1
    if deepest > MAX_FILTER_NESTING:
        raise InvalidFilterError(f"The filter nests deeper than {MAX_FILTER_NESTING} levels.")


def check_patch_size(body: Any) -> None:
    """Refuse a PatchOp with more than :data:`MAX_PATCH_OPERATIONS` operations.

    Raises:
        PayloadTooLargeError: Too many operations.
    """
    if not isinstance(body, dict):
        return
    for key, operations in body.items():
        if (
            key.lower() == "operations"
            and isinstance(operations, list)
            and len(operations) > MAX_PATCH_OPERATIONS
        ):
            raise PayloadTooLargeError(
                f"The PatchOp has {len(operations):,} operations; the limit is {MAX_PATCH_OPERATIONS:,}."
            )


def check_member_count(count: int) -> None:
    """Refuse more than :data:`MAX_MEMBERS_PER_PATCH` member values in one request.

    Raises:
        PayloadTooLargeError: Too many members.
    """
    if count > MAX_MEMBERS_PER_PATCH:
        raise PayloadTooLargeError(
            f"The request names {count:,} members; the limit is {MAX_MEMBERS_PER_PATCH:,} per request."
        )


def check_indexed_values(resource: Resource[Any], kind: ResourceKind) -> None:
    """Refuse values of indexed attributes (core and declared) too long to index.

    Raises:
        InvalidValueError: A value is longer than :data:`MAX_INDEXED_CHARS`.
    """
    for name, field in (
        ("userName", "user_name"),
        ("displayName", "display_name"),
        ("externalId", "external_id"),
    ):
        value = getattr(resource, field, None)
        if isinstance(value, str) and len(value) > MAX_INDEXED_CHARS:
            raise InvalidValueError(f"{name} is longer than {MAX_INDEXED_CHARS:,} characters.")
    declared = [attribute for attribute in kind.indexed if attribute.schema is not None]
    if not declared:
        return
    document = resource.model_dump(mode="json", by_alias=True, exclude_none=True)
    for attribute in declared:
        value = attribute.value_of(document)
        if value is not None and len(value) > MAX_INDEXED_CHARS:
            raise InvalidValueError(f"{attribute.name} is longer than {MAX_INDEXED_CHARS:,} characters.")
