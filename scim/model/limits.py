"""Input limits: hostile or runaway input gets a clear SCIM error, never a storage error.

Entra's requests are far below every limit here; they bound what a buggy or
hostile client can make the service (and Table Storage) do per request.
The body size itself is checked first, in ``scim.web.api`` (``SCIM_MAX_BODY_BYTES``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from scim2_models import Resource

from scim.model.errors import InvalidFilterError, InvalidValueError, PayloadTooLargeError

if TYPE_CHECKING:
    from scim.model.resources import ResourceKind

__all__ = [
    "CPU_WORKERS",
    "MAX_BULK_WORK",
    "MAX_FILTER_CHARS",
    "MAX_FILTER_NESTING",
    "MAX_INDEXED_CHARS",
    "MAX_MEMBERS_PER_PATCH",
    "MAX_MULTI_VALUES",
    "MAX_PATCH_OPERATIONS",
    "MAX_PATCH_WORK",
    "check_filter",
    "check_indexed_values",
    "check_member_count",
    "check_multi_valued",
    "check_patch_size",
    "check_patch_values",
    "check_patch_work",
    "patch_work",
    "shared_work_budget",
]

MAX_FILTER_CHARS = 4096
"""Characters in a filter (the Functions host caps URLs at 4 KB anyway)."""

MAX_FILTER_NESTING = 16
"""Depth of ``(`` and ``[`` nesting in a filter: bounds the parser's recursion."""

MAX_PATCH_OPERATIONS = 1000
"""Operations in one PatchOp (RFC 7644 §3.5.2 sets none; Entra sends a handful)."""

MAX_MEMBERS_PER_PATCH = 10_000
"""Member values in one PATCH, POST or PUT of a group."""

MAX_MULTI_VALUES = 1_000
"""Values in one multi-valued attribute (RFC 7643 §2.4): core, enterprise and declared
extension attributes, and multi-valued sub-attributes of complex ones. Entra sends a
handful per attribute (e-mails, phone numbers, addresses, app roles). Group ``members``
are edges, not values, and are bounded by :data:`MAX_MEMBERS_PER_PATCH` instead."""

MAX_PATCH_WORK = 10_000
"""Attribute values one PatchOp may touch, counted before it is applied (:func:`patch_work`):
each operation costs 1, plus the values of the multi-valued attribute it targets (times the
comparisons of its value filter, which is evaluated on each of them), plus the values it carries.
Applying costs ~0.1 ms of CPU per value touched, so the limit keeps the worst PatchOp near a
second (``bench/hostile.py``); an Entra PATCH costs tens."""

MAX_BULK_WORK = 2 * MAX_PATCH_WORK
"""Attribute values all the PatchOps of one ``/Bulk`` request may touch together: without it,
100 operations each at :data:`MAX_PATCH_WORK` would cost about 100 s of CPU for one request."""

_SHARED_BUDGET: ContextVar[list[int] | None] = ContextVar("scim_shared_work_budget", default=None)
"""What remains of the work budget shared by the operations of one request (``/Bulk``)."""

CPU_WORKERS = 4
"""Threads of the pool that validates bodies, applies PATCHes and evaluates filters off the
event loop (``scim.service.operations.off_loop``): CPU-heavy work never stalls the other requests."""

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


_SCAN_DEPTH = 4
"""Levels of a body :func:`check_multi_valued` looks into: resource, extension, complex
attribute, sub-attribute. Anything deeper is not a SCIM attribute, and validation refuses it."""


def check_multi_valued(document: Mapping[str, Any], *, exempt: Iterable[str] = ()) -> None:
    """Refuse a multi-valued attribute with more than :data:`MAX_MULTI_VALUES` values.

    ``document`` is a resource as JSON (a POST/PUT body, or the result of a
    PATCH): top-level attributes, extension objects (URN keys), and the
    sub-attributes of complex values are checked. ``exempt`` names (lower-case)
    top-level attributes bounded elsewhere (a group's ``members``).

    Raises:
        InvalidValueError: An attribute holds too many values (the detail names it).
    """
    skipped = {name.lower() for name in exempt}
    stack: list[tuple[str, Mapping[str, Any], int]] = [("", document, 0)]
    while stack:
        prefix, mapping, depth = stack.pop()
        for key, value in mapping.items():
            name = f"{prefix}{key}"
            if depth == 0 and str(key).lower() in skipped:
                continue
            if isinstance(value, list):
                if len(value) > MAX_MULTI_VALUES:
                    raise InvalidValueError(
                        f"{name} has {len(value):,} values; the limit is {MAX_MULTI_VALUES:,} "
                        "per multi-valued attribute."
                    )
                if depth + 1 < _SCAN_DEPTH:
                    stack.extend((f"{name}.", item, depth + 1) for item in value if isinstance(item, dict))
            elif isinstance(value, dict) and depth + 1 < _SCAN_DEPTH:
                separator = ":" if depth == 0 and str(key).lower().startswith("urn:") else "."
                stack.append((f"{name}{separator}", value, depth + 1))


def _operations(body: Any) -> list[Any]:
    if not isinstance(body, dict):
        return []
    for key, operations in body.items():
        if key.lower() == "operations" and isinstance(operations, list):
            return operations
    return []


def check_patch_values(body: Any, *, exempt: Iterable[str] = ()) -> None:
    """Refuse a PatchOp whose values hold more than :data:`MAX_MULTI_VALUES` values of one attribute.

    Checked on the raw body, before the values are validated (which costs in
    proportion to them).

    Raises:
        InvalidValueError: An operation carries too many values (the detail names its path).
    """
    for operation in _operations(body):
        if not isinstance(operation, dict):
            continue
        path = next((v for k, v in operation.items() if k.lower() == "path"), None)
        value = next((v for k, v in operation.items() if k.lower() == "value"), None)
        if isinstance(value, list) and len(value) > MAX_MULTI_VALUES:
            if isinstance(path, str) and _target(path, ()) in {e.lower() for e in exempt}:
                continue
            raise InvalidValueError(
                f"The operation on {path!r} carries {len(value):,} values; the limit is "
                f"{MAX_MULTI_VALUES:,} per multi-valued attribute."
            )
        if isinstance(value, dict):
            if isinstance(path, str) and path.strip():
                check_multi_valued({path.strip(): value}, exempt=exempt)
            else:
                check_multi_valued(value, exempt=exempt)


_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_COMPARISON = re.compile(r"\b(?:eq|ne|co|sw|ew|gt|ge|lt|le|pr)\b", re.IGNORECASE)


def _target(path: str, schemas: Iterable[str]) -> str:
    """The attribute (lower-case; ``urn:…:name`` for an extension's) a PATCH path or value key names.

    ``schemas`` lists the resource's schema URNs, core first: a path qualified
    with the core URN names a core attribute (RFC 7644 §3.10).
    """
    text, prefix = path.strip(), ""
    urns = list(schemas)
    for urn in sorted(urns, key=len, reverse=True):
        if text.lower().startswith(urn.lower() + ":"):
            text = text[len(urn) + 1 :]
            prefix = "" if urn == urns[0] else urn.lower() + ":"
            break
    return prefix + re.split(r"[\[.]", text, maxsplit=1)[0].strip().lower()


def _sizes(document: Mapping[str, Any]) -> dict[str, int]:
    """The number of values of each multi-valued attribute of a resource document."""
    sizes: dict[str, int] = {}
    for key, value in document.items():
        if isinstance(value, list):
            sizes[key.lower()] = len(value)
        elif isinstance(value, dict) and key.lower().startswith("urn:"):
            for name, item in value.items():
                if isinstance(item, list):
                    sizes[f"{key.lower()}:{name.lower()}"] = len(item)
    return sizes


def _comparisons(path: str) -> int:
    """The comparisons of a path's value filter (each is evaluated on every value), at least 1."""
    selector = path.partition("[")[2]
    return max(1, len(_COMPARISON.findall(_QUOTED.sub('""', selector))))


def _carried(value: Any) -> int:
    if value is None:
        return 0
    return len(value) if isinstance(value, list) else 1


def _targets(path: Any, value: Any, urns: list[str]) -> list[tuple[str, Any]]:
    """The (path, value) pairs an operation writes: its path, or each key of a path-less value."""
    if isinstance(path, str) and path.strip():
        return [(path, value)]
    if not isinstance(value, dict):
        return [("", value)]
    extensions = {urn.lower() for urn in urns}
    targets: list[tuple[str, Any]] = []
    for key, item in value.items():
        if str(key).lower() in extensions and isinstance(item, dict):
            targets += [(f"{key}:{name}", sub) for name, sub in item.items()]
        else:
            targets.append((str(key), item))
    return targets or [("", None)]


def patch_work(body: Any, document: Mapping[str, Any], schemas: Iterable[str]) -> int:
    """The work a PatchOp would do on ``document``: the sum of :data:`MAX_PATCH_WORK`'s costs.

    An upper bound, computed before anything is applied: each operation is
    charged the values its target attribute may hold by then (the values
    earlier operations may have added included, since a value-filtered
    ``add``/``replace`` that matches nothing creates an element — Entra's
    form, ``scim.model.resources.ENTRA_POLICY``).
    """
    urns = list(schemas)
    projected = _sizes(document)
    work = 0
    for operation in _operations(body):
        if not isinstance(operation, dict):
            work += 1
            continue
        op = str(next((v for k, v in operation.items() if k.lower() == "op"), "")).lower()
        path = next((v for k, v in operation.items() if k.lower() == "path"), None)
        value = next((v for k, v in operation.items() if k.lower() == "value"), None)
        for target_path, target_value in _targets(path, value, urns):
            target = _target(target_path, urns)
            carried = 0 if op == "remove" else _carried(target_value)
            filtered = "[" in target_path
            work += 1 + projected.get(target, 0) * (_comparisons(target_path) if filtered else 1) + carried
            if op == "replace" and not filtered:  # the values become those carried (a bound either way)
                projected[target] = max(projected.get(target, 0), carried)
            elif op in ("add", "replace"):
                projected[target] = projected.get(target, 0) + (1 if filtered else carried)
    return work


def check_patch_work(body: Any, document: Mapping[str, Any], schemas: Iterable[str]) -> None:
    """Refuse a PatchOp whose :func:`patch_work` on ``document`` exceeds :data:`MAX_PATCH_WORK`.

    Raises:
        PayloadTooLargeError: Too much work; nothing was applied.
    """
    work = patch_work(body, document, schemas)
    shared = _SHARED_BUDGET.get()
    if shared is not None:
        if work > shared[0]:
            raise PayloadTooLargeError(
                f"The bulk request's PatchOps would touch more than {MAX_BULK_WORK:,} attribute values "
                "together (each operation counts the values of the attribute it targets). Send fewer "
                "operations per bulk request."
            )
        shared[0] -= work
    if work > MAX_PATCH_WORK:
        raise PayloadTooLargeError(
            f"The PatchOp would touch about {work:,} attribute values (each operation counts the "
            f"values of the attribute it targets); the limit is {MAX_PATCH_WORK:,}. Send fewer "
            "operations per request, or replace the attribute whole."
        )


@contextmanager
def shared_work_budget(total: int = MAX_BULK_WORK) -> Iterator[None]:
    """Within this block, every :func:`check_patch_work` also draws on one shared ``total``.

    The budget travels with the context (``scim.service.operations.off_loop`` copies it
    to its threads), so the operations of one ``/Bulk`` request draw on it
    together; an operation past it fails with 413 and nothing of it is applied.
    """
    token = _SHARED_BUDGET.set([total])
    try:
        yield
    finally:
        _SHARED_BUDGET.reset(token)
