"""Azure Table Storage implementation of :class:`scim.repository.Repository`.

The only module that imports ``azure.data.tables`` / ``azure.core``, and the
only place where their errors are translated into ``scim.errors``.

Layout (one table; DESIGN §5, azure-notes §5.8)::

    PartitionKey            RowKey                      content
    <tenant>|<Type>         res:<id>                    SCIM JSON in d0..dN (≤ 32,000 chars each)
    <tenant>|<Type>         idx:<attribute>:<key>       {"id": <id>}  — unique index row

A resource and its index rows share a partition, so create, rename and delete
are one entity-group transaction: a duplicate fails at the index row and
leaves nothing half-written. Writes are conditional on the resource row's
ETag (``If-Match``), so concurrent writers never lose an update.

Round trips: get 1; lookup 2 (index row, then resource row); create 1;
replace 1; delete 1. A table that does not exist yet is created on the first
write that needs it (no network at import or start-up, DESIGN §2).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, NoReturn

from azure.core import MatchConditions
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.policies import HTTPPolicy, SansIOHTTPPolicy
from azure.data.tables import TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient

from scim.errors import (
    InternalError,
    NotFoundError,
    PayloadTooLargeError,
    PreconditionFailedError,
    ServiceUnavailableError,
    UniquenessError,
)
from scim.repository import StoredResource

__all__ = ["TableRepository", "connect", "row_key_component"]

log = logging.getLogger(__name__)

CHUNK_CHARS = 32_000
"""Characters per document property: a string property holds 64 KiB of UTF-16."""

MAX_CHUNKS = 15
"""Document properties per row: 15 × 32,000 UTF-16 chars stays under the 1 MiB entity limit."""

_RESOURCE = "res:"
_RESOURCE_END = "res;"  # the character after ':' bounds the RowKey range of resource rows
_MAX_KEY_COMPONENT = 200
"""Bytes of escaped key text kept readable; longer keys are hashed (Cosmos DB caps RowKey at 255 B)."""

# Retries fit for an HTTP function Entra waits on (azure-notes §5.6): give up in
# seconds and let Entra retry the operation, rather than hang for minutes.
_CLIENT_OPTIONS: dict[str, Any] = {
    "retry_total": 3,
    "retry_backoff_factor": 0.4,
    "retry_backoff_max": 4,
    "connection_timeout": 3,
    "read_timeout": 10,
}


def connect(
    connection_string: str,
    table_name: str,
    *,
    per_retry_policies: Sequence[HTTPPolicy[Any, Any] | SansIOHTTPPolicy[Any, Any]] = (),
) -> TableClient:
    """Build the long-lived async table client (one per worker process).

    ``per_retry_policies`` lets tests count every HTTP request sent to storage.
    """
    # The SDK logs every request and response header at INFO: too noisy for a
    # hot path and for Application Insights costs. Warnings and errors remain.
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
    return TableClient.from_connection_string(
        connection_string,
        table_name,
        per_retry_policies=list(per_retry_policies),
        **_CLIENT_OPTIONS,
    )


def row_key_component(text: str) -> str:
    r"""Escape ``text`` for use inside a RowKey.

    Table keys forbid ``/ \\ # ?`` and control characters; ``%`` is escaped so
    the mapping stays injective. Keys longer than 200 bytes are replaced by
    their SHA-256, keeping every RowKey within Cosmos DB for Table's 255 bytes.
    """
    escaped = "".join(
        f"%{ord(ch):02X}" if ch in "%/\\#?" or ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F else ch
        for ch in text
    )
    if len(escaped.encode("utf-8")) > _MAX_KEY_COMPONENT:
        return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
    return escaped


def _index_row_key(attribute: str, key: str) -> str:
    return f"idx:{attribute}:{row_key_component(key)}"


def _split(document: dict[str, Any]) -> dict[str, str]:
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    chunks = [text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)] or [""]
    if len(chunks) > MAX_CHUNKS:
        raise PayloadTooLargeError(
            f"The resource is too large to store ({len(text):,} characters of JSON; "
            f"the limit is {CHUNK_CHARS * MAX_CHUNKS:,})."
        )
    return {f"d{i}": chunk for i, chunk in enumerate(chunks)}


def _join(entity: Mapping[str, Any]) -> dict[str, Any]:
    parts = []
    for i in range(MAX_CHUNKS):
        part = entity.get(f"d{i}")
        if part is None:
            break
        parts.append(part)
    document: dict[str, Any] = json.loads("".join(parts))
    return document


def _error_code(error: HttpResponseError) -> str:
    code = getattr(error, "error_code", None)
    if code:
        return str(getattr(code, "value", code))
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None) or {}
    return str(headers.get("x-ms-error-code", ""))


def _is_table_missing(error: HttpResponseError) -> bool:
    return _error_code(error) == "TableNotFound"


def _unavailable(error: Exception) -> NoReturn:
    log.warning("Table Storage unavailable: %s", type(error).__name__)
    raise ServiceUnavailableError() from error


def _translate(error: Exception) -> NoReturn:
    """Map an azure-core error to the SCIM error tree (the only such mapping)."""
    if isinstance(error, ResourceModifiedError):
        raise PreconditionFailedError() from error
    if isinstance(error, ResourceNotFoundError):
        raise NotFoundError() from error
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        _unavailable(error)
    if isinstance(error, ClientAuthenticationError):
        log.error("Table Storage rejected the credentials: check the connection string or role")
        raise ServiceUnavailableError("The directory storage rejected the service's credentials.") from error
    if isinstance(error, HttpResponseError):
        status = error.status_code or 0
        if status == 412:
            raise PreconditionFailedError() from error
        if status in (408, 429, 500, 502, 503, 504):
            _unavailable(error)
        log.error("Unexpected Table Storage error %s %s", status, _error_code(error))
    raise InternalError() from error


class TableRepository:
    """Resources of every type and tenant in one Azure table (see module docstring)."""

    def __init__(self, client: TableClient, *, tenant: str = "default") -> None:
        self._client = client
        self._tenant = tenant

    async def close(self) -> None:
        """Close the underlying HTTP session."""
        await self._client.close()

    def _partition(self, kind: str) -> str:
        return f"{self._tenant}|{kind}"

    async def _submit(self, operations: list[tuple[Any, ...]]) -> list[Mapping[str, Any]]:
        """Submit one transaction, creating the table once if it does not exist.

        Raises:
            TableTransactionError: An operation of the transaction failed; the
                caller knows which row is which and translates it.
        """
        for attempt in (1, 2):
            try:
                return list(await self._client.submit_transaction(operations))
            except HttpResponseError as error:
                if attempt == 1 and _is_table_missing(error):
                    await self._create_table()
                    continue
                if isinstance(error, TableTransactionError):
                    raise
                _translate(error)
            except (ServiceRequestError, ServiceResponseError) as error:
                _unavailable(error)
        raise InternalError()  # pragma: no cover - the loop always returns or raises

    async def _create_table(self) -> None:
        log.info("Creating table %s", self._client.table_name)
        try:
            await self._client.create_table()
        except ResourceExistsError:
            pass  # another worker won the race
        except Exception as error:  # noqa: BLE001 - translated below
            _translate(error)

    async def create(
        self, kind: str, resource_id: str, document: dict[str, Any], unique: Mapping[str, str]
    ) -> str:
        """Insert the resource row and its index rows in one transaction."""
        partition = self._partition(kind)
        operations: list[tuple[Any, ...]] = [
            ("create", {"PartitionKey": partition, "RowKey": _RESOURCE + resource_id, **_split(document)})
        ]
        names = list(unique)
        for name in names:
            row = {"PartitionKey": partition, "RowKey": _index_row_key(name, unique[name]), "id": resource_id}
            operations.append(("create", row))
        try:
            results = await self._submit(operations)
        except TableTransactionError as error:
            self._raise_transaction_error(error, names, offset=1)
        return str(results[0]["etag"])

    def _raise_transaction_error(
        self, error: TableTransactionError, index_names: Sequence[str | None], offset: int
    ) -> NoReturn:
        """Name the unique attribute whose index row collided, or translate."""
        position = (getattr(error, "index", None) or 0) - offset
        code = str(getattr(error, "error_code", "") or "")
        if error.status_code == 409 and 0 <= position < len(index_names) and index_names[position]:
            raise UniquenessError(
                f"{index_names[position]} is already used by another resource; "
                f"{index_names[position]} must be unique."
            ) from error
        if "EntityAlreadyExists" in code and position < 0:
            raise UniquenessError("A resource with this id already exists.") from error
        if error.status_code == 412 or "UpdateConditionNotSatisfied" in code:
            raise PreconditionFailedError() from error
        if error.status_code == 404 or "ResourceNotFound" in code:
            raise NotFoundError() from error
        _translate(error)

    async def get(self, kind: str, resource_id: str) -> StoredResource:
        """One point read of the resource row."""
        try:
            entity = await self._client.get_entity(self._partition(kind), _RESOURCE + resource_id)
        except ResourceNotFoundError as error:
            raise NotFoundError(f"{kind} {resource_id} not found.") from error
        except Exception as error:  # noqa: BLE001 - translated below
            _translate(error)
        return StoredResource(resource_id, _join(entity), str(entity.metadata["etag"]))

    async def lookup(self, kind: str, attribute: str, key: str) -> StoredResource | None:
        """Index row, then resource row: two point reads."""
        try:
            index = await self._client.get_entity(
                self._partition(kind), _index_row_key(attribute, key), select=["id"]
            )
        except ResourceNotFoundError:
            return None
        except Exception as error:  # noqa: BLE001 - translated below
            _translate(error)
        try:
            return await self.get(kind, str(index["id"]))
        except NotFoundError:
            return None  # deleted between the two reads

    async def replace(
        self,
        kind: str,
        current: StoredResource,
        document: dict[str, Any],
        *,
        old_unique: Mapping[str, str],
        new_unique: Mapping[str, str],
    ) -> str:
        """Conditional replace of the resource row plus index-row moves, atomically."""
        partition = self._partition(kind)
        row = {"PartitionKey": partition, "RowKey": _RESOURCE + current.id, **_split(document)}
        conditional = {
            "mode": UpdateMode.REPLACE,
            "etag": current.etag,
            "match_condition": MatchConditions.IfNotModified,
        }
        operations: list[tuple[Any, ...]] = [("update", row, conditional)]
        names: list[str | None] = []
        for name in sorted(set(old_unique) | set(new_unique)):
            old, new = old_unique.get(name), new_unique.get(name)
            if old == new:
                continue
            if old is not None:
                operations.append(
                    ("delete", {"PartitionKey": partition, "RowKey": _index_row_key(name, old)})
                )
                names.append(None)
            if new is not None:
                index_row = {"PartitionKey": partition, "RowKey": _index_row_key(name, new), "id": current.id}
                operations.append(("create", index_row))
                names.append(name)
        try:
            results = await self._submit(operations)
        except TableTransactionError as error:
            self._raise_transaction_error(error, names, offset=1)
        return str(results[0]["etag"])

    async def delete(self, kind: str, current: StoredResource, unique: Mapping[str, str]) -> None:
        """Conditional delete of the resource row with its index rows, atomically."""
        partition = self._partition(kind)
        conditional = {"etag": current.etag, "match_condition": MatchConditions.IfNotModified}
        operations: list[tuple[Any, ...]] = [
            ("delete", {"PartitionKey": partition, "RowKey": _RESOURCE + current.id}, conditional)
        ]
        for name, key in unique.items():
            operations.append(("delete", {"PartitionKey": partition, "RowKey": _index_row_key(name, key)}))
        try:
            await self._submit(operations)
        except TableTransactionError as error:
            self._raise_transaction_error(error, [], offset=1)

    async def scan(self, kind: str) -> AsyncIterator[StoredResource]:
        """Resource rows of one partition, page by page (1 round trip per 1,000)."""
        entities = self._client.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": self._partition(kind), "lo": _RESOURCE, "hi": _RESOURCE_END},
        )
        try:
            async for entity in entities:
                resource_id = str(entity["RowKey"])[len(_RESOURCE) :]
                yield StoredResource(resource_id, _join(entity), str(entity.metadata["etag"]))
        except ResourceNotFoundError:
            return  # no table yet: nothing stored
        except Exception as error:  # noqa: BLE001 - translated below
            _translate(error)

    async def count(self, kind: str) -> int:
        """Count resource rows, reading keys only."""
        entities = self._client.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": self._partition(kind), "lo": _RESOURCE, "hi": _RESOURCE_END},
            select=["RowKey"],
        )
        total = 0
        try:
            async for _ in entities:
                total += 1
        except ResourceNotFoundError:
            return 0
        except Exception as error:  # noqa: BLE001 - translated below
            _translate(error)
        return total
