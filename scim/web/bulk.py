"""Bulk operations (RFC 7644 §3.7), independent of any transport.

:func:`process_bulk` validates a BulkRequest (§3.7.1), runs each operation
through a caller-supplied :data:`Dispatch` — so ``scim.web.api`` decides how a
sub-request is served — and builds the BulkResponse (§3.7.3). ``bulkId:<id>``
references in ``data`` or ``path`` are replaced by the ``id`` the referenced
POST created, in whatever order the operations arrive (§3.7.2). Structural
errors and limits (§3.7.4) raise :class:`scim.model.errors.ScimError`; failures of
single operations become entries of the response.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scim.model.errors import (
    ConflictError,
    InvalidSyntaxError,
    InvalidValueError,
    PayloadTooLargeError,
    ScimError,
)
from scim.model.limits import shared_work_budget

__all__ = ["BulkLimits", "Dispatch", "SubResponse", "process_bulk"]

_BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
_BULK_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
_ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
_METHODS = ("POST", "PUT", "PATCH", "DELETE")
_COLLECTIONS = {"users": "/Users", "groups": "/Groups"}
_PREFIX = "bulkId:"


@dataclass(frozen=True)
class BulkLimits:
    """``maxOperations`` and ``maxPayloadSize`` (bytes) of §3.7.4 and RFC 7643 §5."""

    max_operations: int = 100
    max_payload_size: int = 1_048_576


@dataclass(frozen=True)
class SubResponse:
    """What one dispatched sub-request answered: status, decoded JSON body (or None), headers."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


Dispatch = Callable[[str, str, Any, Mapping[str, str]], Awaitable[SubResponse]]
"""``dispatch(method, path, data, headers)`` serves one sub-request; ``path`` is relative to the base."""


@dataclass(frozen=True)
class _Operation:
    """One validated BulkRequest operation (§3.7); ``references`` are the bulkIds it needs."""

    index: int
    method: str
    collection: str
    resource_id: str | None
    bulk_id: str | None
    version: str | None
    data: Any
    references: frozenset[str]


async def process_bulk(
    body: Any, raw_size: int, dispatch: Dispatch, limits: BulkLimits
) -> tuple[int, dict[str, Any]]:
    """Run a BulkRequest and return ``(HTTP status, BulkResponse JSON)`` (§3.7.3).

    Raises :class:`InvalidSyntaxError`/:class:`InvalidValueError` for a malformed
    request and :class:`PayloadTooLargeError` beyond ``limits`` (§3.7.4). The
    response lists processed operations in request order; those skipped after
    ``failOnErrors`` errors are omitted.
    """
    operations, fail_on_errors = _parse_request(body, raw_size, limits)
    with shared_work_budget():  # the PatchOps of one request share one work budget
        entries = await _Run(operations, dispatch, fail_on_errors).run()
    return 200, {"schemas": [_BULK_RESPONSE], "Operations": entries}


def _field(document: Mapping[str, Any], name: str) -> Any:
    """An attribute by case-insensitive name (RFC 7643 §2.1)."""
    for key, value in document.items():
        if key.lower() == name.lower():
            return value
    return None


def _parse_request(body: Any, raw_size: int, limits: BulkLimits) -> tuple[list[_Operation], int | None]:
    """Validate the BulkRequest envelope and its limits (§3.7, §3.7.4)."""
    if raw_size > limits.max_payload_size:
        raise PayloadTooLargeError(
            f"The bulk request is {raw_size:,} bytes; maxPayloadSize is {limits.max_payload_size:,} bytes."
        )
    if not isinstance(body, dict):
        raise InvalidSyntaxError("A BulkRequest must be a JSON object.")
    schemas = _field(body, "schemas")
    if not isinstance(schemas, list) or _BULK_REQUEST.lower() not in {str(s).lower() for s in schemas}:
        raise InvalidSyntaxError(f"A BulkRequest must list {_BULK_REQUEST!r} in schemas.")
    raw_operations = _field(body, "Operations")
    if not isinstance(raw_operations, list) or not raw_operations:
        raise InvalidSyntaxError("A BulkRequest needs Operations, a non-empty list.")
    if len(raw_operations) > limits.max_operations:
        raise PayloadTooLargeError(
            f"The bulk request has {len(raw_operations)} operations; "
            f"maxOperations is {limits.max_operations}."
        )
    operations = [_parse_operation(index, raw) for index, raw in enumerate(raw_operations)]
    bulk_ids = [op.bulk_id for op in operations if op.bulk_id is not None]
    duplicates = sorted({b for b in bulk_ids if bulk_ids.count(b) > 1})
    if duplicates:
        raise InvalidValueError(f"bulkId {duplicates[0]!r} is used by more than one operation.")
    fail_on_errors = _field(body, "failOnErrors")
    if fail_on_errors is not None and (
        isinstance(fail_on_errors, bool) or not isinstance(fail_on_errors, int) or fail_on_errors < 1
    ):
        raise InvalidValueError(f"failOnErrors must be an integer of at least 1, got {fail_on_errors!r}.")
    return operations, fail_on_errors


def _parse_operation(index: int, raw: Any) -> _Operation:
    """Validate one operation's ``method``, ``path``, ``bulkId``, ``version`` and ``data`` (§3.7)."""
    where = f"Operations[{index}]"
    if not isinstance(raw, dict):
        raise InvalidSyntaxError(f"{where} must be a JSON object.")
    method = _field(raw, "method")
    if not isinstance(method, str) or method.upper() not in _METHODS:
        raise InvalidValueError(f"{where}.method must be POST, PUT, PATCH or DELETE, got {method!r}.")
    method = method.upper()
    path = _field(raw, "path")
    collection, resource_id = _split_path(where, path)
    if method == "POST" and resource_id is not None:
        raise InvalidValueError(f"{where}: POST must target /Users or /Groups, not {path!r}.")
    if method != "POST" and resource_id is None:
        raise InvalidValueError(f"{where}: {method} must target /Users/<id> or /Groups/<id>, not {path!r}.")
    bulk_id, version = _optional_text(raw, "bulkId", where), _optional_text(raw, "version", where)
    if method == "POST" and bulk_id is None:
        raise InvalidValueError(f"{where}: a POST needs a bulkId (RFC 7644 §3.7).")
    data = None if method == "DELETE" else _field(raw, "data")
    if method != "DELETE" and not isinstance(data, dict):
        raise InvalidValueError(f"{where}: a {method} needs data, a JSON object.")
    references = set(_references(data))
    if resource_id is not None and resource_id.startswith(_PREFIX):
        references.add(resource_id.removeprefix(_PREFIX))
    return _Operation(index, method, collection, resource_id, bulk_id, version, data, frozenset(references))


def _split_path(where: str, path: Any) -> tuple[str, str | None]:
    """``/Users`` or ``/Groups`` (canonical case) and the ``<id>`` after it, if any."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidValueError(f"{where}.path must be a string starting with '/', got {path!r}.")
    parts = path[1:].split("/")
    if parts[0].lower() not in _COLLECTIONS or len(parts) > 2 or (len(parts) == 2 and not parts[1]):
        raise InvalidValueError(f"{where}.path must be /Users, /Groups, /Users/<id> or /Groups/<id>.")
    return _COLLECTIONS[parts[0].lower()], parts[1] if len(parts) == 2 else None


def _optional_text(raw: Mapping[str, Any], name: str, where: str) -> str | None:
    value = _field(raw, name)
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidValueError(f"{where}.{name} must be a non-empty string, got {value!r}.")
    return value


def _references(value: Any) -> set[str]:
    """Every ``bulkId:<id>`` string value at any depth of ``value`` (§3.7.2)."""
    if isinstance(value, str):
        return {value.removeprefix(_PREFIX)} if value.startswith(_PREFIX) else set()
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return set().union(*(_references(item) for item in value))
    return set()


def _substitute(value: Any, created: Mapping[str, str]) -> Any:
    """A copy of ``value`` with each ``bulkId:<id>`` replaced by the created ``id`` (§3.7.2)."""
    if isinstance(value, str) and value.startswith(_PREFIX):
        return created[value.removeprefix(_PREFIX)]
    if isinstance(value, dict):
        return {key: _substitute(item, created) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, created) for item in value]
    return value


class _Run:
    """One BulkRequest being processed in dependency order (§3.7.2, §3.7.3)."""

    def __init__(self, operations: list[_Operation], dispatch: Dispatch, fail_on_errors: int | None) -> None:
        self._operations = operations
        self._dispatch = dispatch
        self._fail_on_errors = fail_on_errors
        self._declared = {op.bulk_id for op in operations if op.method == "POST"}
        self._created: dict[str, str] = {}
        self._failed: set[str] = set()
        self._entries: dict[int, dict[str, Any]] = {}
        self._errors = 0

    def _stopped(self) -> bool:
        return self._fail_on_errors is not None and self._errors >= self._fail_on_errors

    async def run(self) -> list[dict[str, Any]]:
        """Answer every operation whose references resolve, pass after pass, in request order."""
        pending = list(self._operations)
        while pending and not self._stopped():
            waiting: list[_Operation] = []
            for op in pending:
                if self._stopped():
                    break
                if not await self._step(op):
                    waiting.append(op)
            if waiting and len(waiting) == len(pending):
                # No progress: the waiting operations form bulkId cycles or depend on one.
                self._fail_cycles(waiting)
                waiting = [op for op in waiting if op.index not in self._entries]
            pending = waiting
        return [self._entries[index] for index in sorted(self._entries)]

    def _fail_cycles(self, waiting: list[_Operation]) -> None:
        """Answer the POSTs of each bulkId cycle with 409; their dependents then fail too (§3.7.2)."""
        for op in _cycle_members(waiting) or waiting:  # the fallback only guarantees termination
            if not self._stopped():
                needs = ", ".join(f"bulkId:{ref}" for ref in sorted(op.references))
                detail = f"circular bulkId reference: this operation needs {needs}, which needs it in turn."
                self._record(op, _failure(ConflictError(detail)))

    async def _step(self, op: _Operation) -> bool:
        """Answer ``op`` if its references are settled; False if it must wait."""
        unknown = sorted(op.references - self._declared)
        failed = sorted(op.references & self._failed)
        if unknown:
            response = _failure(InvalidValueError(f"bulkId:{unknown[0]} is not the bulkId of any POST."))
        elif failed:
            response = _failure(ConflictError(f"bulkId:{failed[0]} could not be resolved: its POST failed."))
        elif op.references <= self._created.keys():
            response = await self._send(op)
        else:
            return False
        self._record(op, response)
        return True

    async def _send(self, op: _Operation) -> SubResponse:
        """Dispatch ``op`` with its bulkIds resolved and ``version`` as ``If-Match`` (§3.7, §3.14)."""
        path = op.collection
        if op.resource_id is not None:
            path += "/" + str(_substitute(op.resource_id, self._created))
        headers = {"If-Match": op.version} if op.version else {}
        try:
            return await self._dispatch(op.method, path, _substitute(op.data, self._created), headers)
        except ScimError as error:
            return _failure(error)

    def _record(self, op: _Operation, response: SubResponse) -> None:
        self._entries[op.index] = _entry(op, response)
        if response.status >= 400:
            self._errors += 1
        if op.method == "POST" and op.bulk_id is not None:
            created = _created_id(response)
            if created is None:
                self._failed.add(op.bulk_id)
            else:
                self._created[op.bulk_id] = created


def _cycle_members(waiting: list[_Operation]) -> list[_Operation]:
    """The waiting POSTs whose bulkId depends, through other waiting POSTs, on itself."""
    by_bulk_id = {op.bulk_id: op for op in waiting if op.method == "POST"}

    def reaches(start: _Operation, target: str) -> bool:
        seen: set[str] = set()
        stack = list(start.references)
        while stack:
            bulk_id = stack.pop()
            if bulk_id == target:
                return True
            if bulk_id not in seen and bulk_id in by_bulk_id:
                seen.add(bulk_id)
                stack.extend(by_bulk_id[bulk_id].references)
        return False

    return [op for op in by_bulk_id.values() if op.bulk_id is not None and reaches(op, op.bulk_id)]


def _failure(error: ScimError) -> SubResponse:
    return SubResponse(error.status, error.to_body(), error.headers)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((value for key, value in headers.items() if key.lower() == name.lower()), None)


def _created_id(response: SubResponse) -> str | None:
    """The ``id`` a POST created: from its body, else the last segment of ``Location``."""
    if response.status >= 400:
        return None
    if isinstance(response.body, dict) and isinstance(response.body.get("id"), str):
        return str(response.body["id"])
    location = _header(response.headers, "Location") or ""
    return location.rstrip("/").rpartition("/")[2] or None


def _entry(op: _Operation, response: SubResponse) -> dict[str, Any]:
    """One BulkResponse operation (§3.7.3): status as a string, ``response`` for errors."""
    entry: dict[str, Any] = {"method": op.method}
    if op.bulk_id is not None:
        entry["bulkId"] = op.bulk_id
    version = _header(response.headers, "ETag")
    if version:
        entry["version"] = version
    meta = response.body.get("meta") if isinstance(response.body, dict) else None
    location = _header(response.headers, "Location") or (
        meta.get("location") if isinstance(meta, dict) else None
    )
    if location:
        entry["location"] = location
    entry["status"] = str(response.status)
    if response.status >= 400:
        entry["response"] = response.body or {"schemas": [_ERROR], "status": entry["status"]}
    return entry
