"""Azure Table Storage implementation of :class:`scim.storage.repository.Repository`.

The only module that imports ``azure.data.tables`` / ``azure.core``, and the
only place where their errors are translated into ``scim.model.errors``.

Layout (one table; DESIGN §5, azure-notes §5.8)::

    PartitionKey     RowKey                   t   content
    <tenant>|User    res:<uid>                r   SCIM JSON in d0..dN (≤ 32,000 chars each)
    <tenant>|User    res:<uid>|g:<gid>        e   reverse edge: the user is in group <gid>; p = pending;
                                                  xa<token>/xr<token> = intents of in-flight operations
    <tenant>|User    idx:<attribute>:<key>    i   {"id": <uid>} — unique index row
    <tenant>|User    idx:<attribute>:<key>|<uid>  i   {"id": <uid>} — index row of a non-unique attribute
    <tenant>|Group   res:<gid>                r   SCIM JSON (without members)
    <tenant>|Group   idx:<attribute>:<key>    i   {"id": <gid>}
    <tenant>|Group   mem:<gid>:<uid>          m   member edge: {"value": <uid>}
    <tenant>|<Type>  out:<id>:<sequence>      o   outbox: a Change (scim.model) in c0..cN, not yet published
    <tenant>|<Type>  aud:<time>:<id>:<seq>    a   audit: the same Change once published (kept for retention)

A resource row lists the keys of its index rows in ``ix``, so a write
removes exactly the rows the previous write made even when the declared
schema changed in between; rows written before ``ix`` existed are the unique
rows of ``userName``/``externalId``/``displayName`` (:data:`LEGACY_INDEXES`).
An ``eq`` lookup reads both forms of a value's rows in one range query.

Every write of a resource row increments its version counter ``v`` (its
``meta.version``) and carries, in the same transaction, the outbox row of the
change: no change commits without its record, and no record without its change.

A resource and its index rows share a partition, so create, rename and delete
are one entity-group transaction: a duplicate fails at the index row and
leaves nothing half-written. Writes are conditional on the resource row's
ETag (``If-Match``), so concurrent writers never lose an update. A user's
reverse edges sort right after its row, so one range query reads both.
Membership spans two partitions; ``scim.service.membership`` orders those writes.

Round trips: get 1; lookup 2 (index row, then resource row); create 1;
replace 1; delete 1 + one per 100 edge rows. A table that does not exist yet
is created on the first write that needs it (no network at import or
start-up, DESIGN §2).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import random
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, NoReturn
from uuid import UUID

from azure.core import MatchConditions
from azure.core.credentials_async import AsyncTokenCredential
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
from azure.data.tables import EdmType, EntityProperty, TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient
from scim2_models.path import ScimFilter

from scim.config import Settings
from scim.model.changes import Change
from scim.model.errors import (
    ConflictError,
    InternalError,
    InvalidValueError,
    NotFoundError,
    PayloadTooLargeError,
    PreconditionFailedError,
    ServiceUnavailableError,
    UniquenessError,
)
from scim.model.resources import IndexEntry, case_exact_key, case_insensitive_key
from scim.storage import transactions
from scim.storage.pushdown import AllOf, ColumnTest, Condition, columns_of, condition_for
from scim.storage.repository import (
    EdgeState,
    EdgeWrite,
    EdgeWrites,
    IndexRow,
    Intent,
    InventoryRow,
    MemberEdgeRow,
    PendingChange,
    ReverseEdge,
    ReverseEdgeRow,
    Scan,
    StoredResource,
)

__all__ = [
    "TableRepository",
    "connect",
    "connect_with_identity",
    "entity_of",
    "exported_row",
    "open_repository",
    "row_key_component",
    "transaction_bytes",
]

log = logging.getLogger(__name__)

MemberRecord = Callable[[int, tuple[str, ...], tuple[str, ...], str], Change]
"""Builds the change record of a member batch from (version, added ids, removed ids, time)."""

CHUNK_CHARS = 32_000
"""UTF-16 code units per document property: a string property holds 64 KiB of UTF-16 (32,768 units,
azure-notes §5.1), so an astral character (a surrogate pair) counts twice."""

MAX_CHUNKS = 15
"""Document properties per row: 15 × 32,000 UTF-16 units (960,000 B) stays under the 1 MiB entity limit."""

_RESOURCE = "res:"
_RESOURCE_END = "res;"  # the character after ':' bounds the RowKey range of resource rows
_EDGE = "|g:"
_MEMBER = "mem:"
_OUTBOX, _OUTBOX_END = "out:", "out;"
_AUDIT = "aud:"
_DIRECTORIES = "~directories"
"""The registry's partition (``scim.storage.directories``): ``~`` sorts above every tenant name."""
BATCH = 100
"""Most operations per entity-group transaction (Table Storage limit)."""
RECORD_CHUNKS = 4
"""Change-record properties kept with the resource: larger records drop the resource's values."""
MEMBER_EDGES_PER_BATCH = BATCH - 2
"""A member batch also carries the group row (its version) and the change record."""
_SETTLE_BYTES = 1_000_000
"""Characters of change records per settle transaction (≤ 4 MiB on the wire even as UTF-16-sized text)."""
MEMBER_WRITE_ATTEMPTS = 32
"""Tries of one member batch against concurrent writers of the same group (each re-reads the group row)."""
_USER, _GROUP = "User", "Group"
LEGACY_INDEXES = frozenset({"userName", "externalId", "displayName"})
"""Attributes whose unique index rows a resource row without ``ix`` has (written before ``ix``)."""
_MAX_KEY_COMPONENT = 200
"""Bytes of escaped key text kept readable; longer keys are hashed (Cosmos DB caps RowKey at 255 B)."""
HASHED_KEY = "%~sha256:"
"""Marks a hashed key: escaping never yields ``%`` followed by a non-hex character (no squatting)."""
LEGACY_HASHED_KEY = "sha256:"
"""How earlier releases marked a hashed key: a short client value could equal it (issue 14, item 4)."""

# Retries fit for an HTTP function Entra waits on (azure-notes §5.6): give up in
# seconds and let Entra retry the operation, rather than hang for minutes.
_CLIENT_OPTIONS: dict[str, Any] = {
    "retry_total": 2,
    "retry_backoff_factor": 0.4,
    "retry_backoff_max": 2,
    "connection_timeout": 3,
    # Table Storage ends a query page after 5 s server-side (with a continuation),
    # so 6 s only cuts requests that are truly stuck.
    "read_timeout": 6,
}


def connect(
    connection_string: str,
    table_name: str,
    *,
    per_retry_policies: Sequence[HTTPPolicy[Any, Any] | SansIOHTTPPolicy[Any, Any]] = (),
    use_env_settings: bool = False,
) -> TableClient:
    """Build the long-lived async table client (one per worker process).

    ``per_retry_policies`` lets tests count every HTTP request sent to storage.
    ``use_env_settings`` makes aiohttp read proxy settings (and ``.netrc``) from
    the environment on every request — about 17% of a request's CPU — so it is
    on only when a proxy variable is set (``Settings.storage_uses_proxy``).
    """
    # The SDK logs every request and response header at INFO: too noisy for a
    # hot path and for Application Insights costs. Warnings and errors remain.
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
    return TableClient.from_connection_string(
        connection_string,
        table_name,
        per_retry_policies=list(per_retry_policies),
        use_env_settings=use_env_settings,
        **_CLIENT_OPTIONS,
    )


def connect_with_identity(
    endpoint: str,
    table_name: str,
    credential: AsyncTokenCredential,
    *,
    per_retry_policies: Sequence[HTTPPolicy[Any, Any] | SansIOHTTPPolicy[Any, Any]] = (),
    use_env_settings: bool = False,
    **transport: Any,
) -> TableClient:
    """Build the table client for identity-based access (no account key anywhere).

    ``endpoint`` is the account's table endpoint (``https://<acct>.table.core.windows.net``);
    ``credential`` is usually ``azure.identity.aio.DefaultAzureCredential`` — a managed
    identity in Azure (``AZURE_CLIENT_ID`` picks a user-assigned one), a service
    principal on-premises. The identity needs *Storage Table Data Contributor*.
    Token credentials require HTTPS (azure-notes §5.7).
    """
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
    return TableClient(
        endpoint=endpoint,
        table_name=table_name,
        credential=credential,
        per_retry_policies=list(per_retry_policies),
        use_env_settings=use_env_settings,
        **_CLIENT_OPTIONS,
        **transport,
    )


def _escaped(text: str) -> str:
    return "".join(
        f"%{ord(ch):02X}" if ch in "%/\\#?" or ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F else ch
        for ch in text
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def row_key_component(text: str) -> str:
    r"""Escape ``text`` for use inside a RowKey: an injective mapping, whatever the client sends.

    Table keys forbid ``/ \\ # ?`` and control characters (azure-notes §5.1),
    so these and ``%`` become ``%XX`` (two upper-case hex digits). Keys longer
    than 200 bytes are replaced by :data:`HASHED_KEY` + their SHA-256, keeping
    every RowKey within Cosmos DB for Table's 255 bytes: after escaping, a
    ``%`` is always followed by a hex digit, so no client value can produce a
    key starting ``%~`` and squat a long value's row.
    """
    escaped = _escaped(text)
    if len(escaped.encode("utf-8")) > _MAX_KEY_COMPONENT:
        return HASHED_KEY + _digest(text)
    return escaped


def _index_row_key(attribute: str, key: str, resource_id: str | None = None) -> str:
    """``idx:<attribute>:<key>``, and ``|<id>`` for a non-unique attribute (several rows per value)."""
    suffix = f"|{resource_id}" if resource_id is not None else ""
    return f"idx:{attribute}:{row_key_component(key)}{suffix}"


def _legacy_index_row_key(attribute: str, key: str, resource_id: str | None = None) -> str | None:
    """The key earlier releases gave a long value's index row (``sha256:<hex>``), or None if not hashed.

    A short value can equal that literal text, so a row in this form is
    trusted only once its resource is known to hold the long value.
    """
    if len(_escaped(key).encode("utf-8")) <= _MAX_KEY_COMPONENT:
        return None
    suffix = f"|{resource_id}" if resource_id is not None else ""
    return f"idx:{attribute}:{LEGACY_HASHED_KEY}{_digest(key)}{suffix}"


def _entry_key(entry: IndexEntry, resource_id: str) -> str:
    return _index_row_key(entry.index, entry.key, None if entry.unique else resource_id)


def _index_rows(entries: Sequence[IndexEntry], resource_id: str) -> dict[str, IndexEntry]:
    return {_entry_key(entry, resource_id): entry for entry in entries}


def _previous_rows(current: StoredResource, entries: Sequence[IndexEntry]) -> list[str]:
    """The index rows the resource's last write made: its ``ix``, or the legacy unique rows."""
    if current.index_rows is not None:
        return list(current.index_rows)
    # Written before ``ix`` existed, hence also before the ``%~`` marker: long values in the legacy form.
    return [
        _legacy_index_row_key(e.index, e.key) or _index_row_key(e.index, e.key)
        for e in entries
        if e.index in LEGACY_INDEXES
    ]


def _utf16_units(text: str) -> int:
    """Length of ``text`` as Table Storage measures strings: UTF-16 code units (azure-notes §5.1)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _holds(document: Mapping[str, Any], entry: IndexEntry) -> bool:
    """Whether a document's value of ``entry``'s attribute has ``entry``'s comparison key.

    ``entry.name`` is ``userName`` or ``urn:…:attribute`` (an extension's);
    names match case-insensitively (RFC 7643 §2.1). Both comparison forms are
    tried (RFC 7643 §2.2 ``caseExact``): either equals the key only if the value is
    the one the key was made from, up to case.
    """
    holder: Any = document
    urn, _, attribute = entry.name.rpartition(":")
    if urn:
        holder = next((v for k, v in document.items() if k.lower() == urn.lower()), None)
    if not isinstance(holder, Mapping):
        return False
    value = next((v for k, v in holder.items() if k.lower() == attribute.lower()), None)
    return isinstance(value, str) and entry.key in (case_exact_key(value), case_insensitive_key(value))


def _chunked(text: str, prefix: str) -> dict[str, str]:
    """``text`` cut into properties of at most :data:`CHUNK_CHARS` UTF-16 units, never inside a character."""
    chunks: list[str] = []
    start = 0
    while start < len(text):
        chunk = text[start : start + CHUNK_CHARS]
        excess = _utf16_units(chunk) - CHUNK_CHARS
        while excess > 0:  # a character is 1 or 2 units: dropping ⌈excess/2⌉ never empties the chunk
            chunk = chunk[: len(chunk) - (excess + 1) // 2]
            excess = _utf16_units(chunk) - CHUNK_CHARS
        chunks.append(chunk)
        start += len(chunk)
    return {f"{prefix}{i}": chunk for i, chunk in enumerate(chunks or [""])}


def _unchunked(entity: Mapping[str, Any], prefix: str) -> str:
    parts = []
    for i in range(MAX_CHUNKS + 1):
        part = entity.get(f"{prefix}{i}")
        if part is None:
            break
        parts.append(part)
    return "".join(parts)


def _split(document: dict[str, Any]) -> dict[str, str]:
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    chunks = _chunked(text, "d")
    if len(chunks) > MAX_CHUNKS:
        raise PayloadTooLargeError(
            f"The resource is too large to store ({_utf16_units(text):,} UTF-16 code units of JSON; "
            f"the limit is about {CHUNK_CHARS * MAX_CHUNKS:,})."
        )
    return chunks


def _join(entity: Mapping[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(_unchunked(entity, "d"))
    return document


def _record(change: Change) -> dict[str, str]:
    """The properties of a change's row; without the resource when it would not fit beside it."""
    text = change.to_json()
    chunks = _chunked(text, "c")
    if len(chunks) > RECORD_CHUNKS:
        chunks = _chunked(change.without_resource().to_json(), "c")
    return chunks


def _outbox_key(change: Change) -> str:
    return f"{_OUTBOX}{change.resource_id}:{change.sequence:012d}"


def _audit_key(change: Change) -> str:
    return f"{_AUDIT}{change.time}:{change.resource_id}:{change.sequence:012d}"


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
        raise ServiceUnavailableError(
            "The directory storage rejected the service's credentials: check the AccountKey of "
            "SCIM_STORAGE_CONNECTION_STRING, or, with SCIM_STORAGE_TABLE_ENDPOINT, the app identity's "
            "'Storage Table Data Contributor' role."
        ) from error
    if isinstance(error, HttpResponseError):
        status = error.status_code or 0
        if status == 412:
            raise PreconditionFailedError() from error
        if status in (408, 429, 500, 502, 503, 504):
            _unavailable(error)
        log.error("Unexpected Table Storage error %s %s", status, _error_code(error))
    raise InternalError() from error


def open_repository(settings: Settings) -> TableRepository:
    """The repository the settings describe: by connection string, else by identity."""
    if settings.storage_connection_string:
        return TableRepository(
            connect(settings.storage_connection_string, settings.table_name), tenant=settings.tenant
        )
    # Imported here: only identity-based deployments pay azure.identity's import time.
    from azure.identity.aio import DefaultAzureCredential

    credential = DefaultAzureCredential()
    client = connect_with_identity(
        settings.storage_table_endpoint,
        settings.table_name,
        credential,
        use_env_settings=settings.storage_uses_proxy,
    )
    return TableRepository(client, tenant=settings.tenant, credential=credential)


class TableRepository:
    """Resources of every type and tenant in one Azure table (see module docstring)."""

    def __init__(
        self, client: TableClient, *, tenant: str = "default", credential: AsyncTokenCredential | None = None
    ) -> None:
        self._client = client
        self._tenant = tenant
        self._credential = credential
        self._owns_client = True

    @property
    def tenant(self) -> str:
        """The tenant segment of every key this repository reads and writes (its directory)."""
        return self._tenant

    def for_tenant(self, tenant: str) -> TableRepository:
        """A repository of another directory of the same table, sharing this one's client.

        Every key it reads or writes carries ``tenant``: nothing it does reaches another
        directory's partitions. Closing it leaves the shared client open (its owner closes it).
        """
        sibling = TableRepository(self._client, tenant=tenant)
        sibling._owns_client = False
        return sibling

    async def close(self) -> None:
        """Close the underlying HTTP session (and the credential's, if it owns one)."""
        if not self._owns_client:
            return
        await self._client.close()
        if self._credential is not None:
            await self._credential.close()

    # -- the registry of directories (scim.storage.directories) ------------------------------------------

    async def read_directories(self) -> list[tuple[str, dict[str, Any], str]]:
        """Every registry row: ``(name, properties, etag)`` (none when the table does not exist)."""
        rows = []
        async for entity in self._query("PartitionKey eq @pk", {"pk": _DIRECTORIES}):
            rows.append((str(entity["RowKey"]), dict(entity), str(entity.metadata["etag"])))
        return rows

    async def read_directory(self, name: str) -> tuple[dict[str, Any], str] | None:
        """One registry row and its ETag, or None."""
        async for entity in self._query(
            "PartitionKey eq @pk and RowKey eq @rk", {"pk": _DIRECTORIES, "rk": name}
        ):
            return dict(entity), str(entity.metadata["etag"])
        return None

    async def write_directory(self, name: str, row: dict[str, Any], etag: str | None) -> str:
        """Create a registry row (``etag`` None) or replace it if unchanged since read; returns its ETag.

        Raises:
            ConflictError: Creating a directory that exists.
            PreconditionFailedError: The row changed since it was read (another command's write).
        """
        entity = {"PartitionKey": _DIRECTORIES, "RowKey": name, **row}
        operation: tuple[Any, ...] = (
            ("create", entity) if etag is None else ("update", entity, _if_match(etag))
        )
        try:
            results = await self._submit([operation])
        except TableTransactionError as error:
            if error.status_code == 409:
                raise ConflictError(f"a directory named {name!r} already exists") from error
            _translate(error)
        return str(results[0]["etag"])

    async def delete_directory(self, name: str, etag: str) -> None:
        """Delete a registry row if unchanged since read."""
        try:
            await self._submit(
                [("delete", {"PartitionKey": _DIRECTORIES, "RowKey": name}, _if_unchanged(etag))]
            )
        except TableTransactionError as error:
            _translate(error)

    async def delete_directory_rows(self, progress: Callable[[int], None] | None = None) -> int:
        """Delete every row of this directory (resources, indexes, edges, outbox, audit); returns how many.

        One transaction per 100 rows of a partition. Rows written meanwhile may remain: disable the
        directory first, so that nothing writes to it.
        """
        deleted = 0
        pending: dict[str, list[str]] = {}
        async for row in self.dump_rows(audit=True):
            keys = pending.setdefault(str(row["PartitionKey"]), [])
            keys.append(str(row["RowKey"]))
            if len(keys) == BATCH:
                deleted += await self._delete_keys(str(row["PartitionKey"]), keys)
                keys.clear()
                if progress is not None:
                    progress(deleted)
        for partition, keys in pending.items():
            if keys:
                deleted += await self._delete_keys(partition, keys)
        if progress is not None:
            progress(deleted)
        return deleted

    async def _delete_keys(self, partition: str, keys: Sequence[str]) -> int:
        operations: list[tuple[Any, ...]] = [
            ("delete", {"PartitionKey": partition, "RowKey": key}) for key in keys
        ]
        _, dropped = await self._submit_dropping_missing(operations)
        return len(keys) - len(dropped)

    async def table_exists(self) -> bool:
        """Whether the table exists: one query that matches no row (404 ``TableNotFound`` when absent).

        Reads treat a missing table as an empty one (the first write creates it),
        so the command line asks first rather than call a mistyped
        ``SCIM_TABLE_NAME`` a clean directory (issue 16).

        Raises:
            ScimError: Storage failed, as :func:`_translate` maps it (unreachable or throttling:
                ``ServiceUnavailableError``; the cause is chained for the command line to explain).
        """
        rows = self._client.query_entities(
            "PartitionKey eq @pk and RowKey eq @rk",
            parameters={"pk": "", "rk": ""},
            select=["RowKey"],
            results_per_page=1,
        )
        try:
            async for _ in rows:
                break
        except ResourceNotFoundError:
            return False
        except Exception as error:  # noqa: BLE001 - translated below
            _translate(error)
        return True

    def _partition(self, kind: str) -> str:
        return f"{self._tenant}|{kind}"

    def _row(self, kind: str, row_key: str, **properties: Any) -> dict[str, Any]:
        return {"PartitionKey": self._partition(kind), "RowKey": row_key, **properties}

    def _outbox_row(self, kind: str, change: Change) -> dict[str, Any]:
        return self._row(kind, _outbox_key(change), t="o", **_record(change))

    # -- transactions ---------------------------------------------------------

    async def _submit(self, operations: list[tuple[Any, ...]]) -> list[Mapping[str, Any]]:
        """Submit one transaction, creating the table once if it does not exist.

        Raises:
            TableTransactionError: An operation of the transaction failed; the
                caller knows which row is which and translates it.
        """
        for attempt in (1, 2):
            try:
                return list(await transactions.submit(self._client, operations))
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

    async def _submit_dropping_missing(
        self,
        operations: list[tuple[Any, ...]],
        *,
        group: int = 1,
        drop: tuple[int, ...] = (404,),
        required: int | None = None,
    ) -> tuple[list[Mapping[str, Any]], list[int]]:
        """Submit, dropping each group of ``group`` operations that fails with a status in ``drop``.

        Idempotent membership writes (removing a non-member, confirming an edge
        of a user deleted meanwhile) must not fail a whole batch. Returns the
        results of the submitted operations and the original indexes of the
        operations that failed (the dropped groups are identified by them).
        The operation at index ``required`` is never dropped: its failure fails
        the whole call (``NotFoundError`` for 404), with nothing written.
        """
        remaining = list(range(0, len(operations), group))
        dropped: list[int] = []
        while remaining:
            batch = [op for start in remaining for op in operations[start : start + group]]
            try:
                return await self._submit(batch), dropped
            except TableTransactionError as error:
                position = getattr(error, "index", None)
                if error.status_code not in drop or position is None or _is_table_missing(error):
                    _translate(error)
                start = remaining.pop(position // group)
                if start + position % group == required:
                    self._raise_transaction_error(error, [], offset=1)
                dropped.append(start + position % group)
        return [], dropped

    async def _create_table(self) -> None:
        log.info("Creating table %s", self._client.table_name)
        try:
            await self._client.create_table()
        except ResourceExistsError:
            pass  # another worker won the race
        except Exception as error:  # noqa: BLE001 - translated below
            _translate(error)

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

    async def _query(
        self, query: str, parameters: dict[str, Any], select: list[str] | None = None
    ) -> AsyncIterator[Any]:
        """Entities of a filter query, page by page; nothing when the table does not exist."""
        entities = self._client.query_entities(query, parameters=parameters, select=select)
        try:
            async for entity in entities:
                yield entity
        except ResourceNotFoundError:
            return
        except Exception as error:  # noqa: BLE001 - translated below
            _translate(error)

    # -- resources ------------------------------------------------------------

    async def _commit(
        self,
        kind: str,
        operations: list[tuple[Any, ...]],
        index_names: Sequence[str | None],
        change: Change | None,
    ) -> str:
        """Submit a resource write (resource row first, index rows next) with its change record last.

        Returns the resource row's new ETag; a collision on an index row names its attribute.
        """
        if change is not None:
            operations.append(("create", self._outbox_row(kind, change)))
        try:
            results = await self._submit(operations)
        except TableTransactionError as error:
            position = getattr(error, "index", None)
            stale = error.status_code == 404 and position and operations[position][0] == "delete"
            if not stale:
                self._raise_transaction_error(error, index_names, offset=1)
            # An index row ``ix`` names is gone (a repair removed it): write without it.
            results, _ = await self._submit_dropping_missing(operations, required=0)
        return str(results[0]["etag"])

    async def create(
        self,
        kind: str,
        resource_id: str,
        document: dict[str, Any],
        index: Sequence[IndexEntry],
        *,
        change: Change | None = None,
    ) -> str:
        """Insert the resource row (columns, version), its index rows and its change record, atomically."""
        version = change.sequence if change is not None else 1
        rows = _index_rows(index, resource_id)
        row = self._row(
            kind, _RESOURCE + resource_id, t="r", v=version, ix=json.dumps(list(rows)),
            **_split(document), **columns_of(document),
        )  # fmt: skip
        operations: list[tuple[Any, ...]] = [("create", row)]
        names: list[str | None] = []
        for row_key, entry in rows.items():
            operations.append(("create", self._row(kind, row_key, t="i", id=resource_id)))
            names.append(entry.name if entry.unique else None)
        await self._refuse_legacy_holders(kind, list(rows.values()), resource_id)
        return await self._commit(kind, operations, names, change)

    async def _refuse_legacy_holders(
        self, kind: str, entries: Sequence[IndexEntry], resource_id: str
    ) -> None:
        """409 when another resource holds a long unique value under its legacy ``sha256:`` row.

        Such rows predate the ``%~`` marker and collide with nothing written
        today, so they are read here (one point read per long unique value, none
        for the usual short ones) until ``check --repair`` has rewritten them.
        The holder must really hold the value: a short value equal to the
        legacy key's text (a squatter) holds nothing. A legacy row never
        appears again, so this check races with nothing that could create one.
        """
        for entry in entries:
            legacy = _legacy_index_row_key(entry.index, entry.key) if entry.unique else None
            if legacy is None:
                continue
            try:
                row = await self._client.get_entity(self._partition(kind), legacy, select=["id"])
            except ResourceNotFoundError:
                continue
            except Exception as error:  # noqa: BLE001 - translated below
                _translate(error)
            holder_id = str(row.get("id", ""))
            if holder_id == resource_id:
                continue
            try:
                holder = await self.get(kind, holder_id)
            except NotFoundError:
                continue
            if _holds(holder.document, entry):
                name = entry.name or entry.index
                raise UniquenessError(f"{name} is already used by another resource; {name} must be unique.")

    async def get(self, kind: str, resource_id: str) -> StoredResource:
        """The resource row and its reverse edges, in one range query."""
        own = _RESOURCE + resource_id
        resource: Any = None
        edges: list[ReverseEdge] = []
        rows = self._query(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey le @hi",
            {"pk": self._partition(kind), "lo": own, "hi": own + "|~"},
        )
        async for entity in rows:
            row_key = str(entity["RowKey"])
            if row_key == own:
                resource = entity
            elif row_key.startswith(own + _EDGE):
                edges.append(_reverse_edge(row_key[len(own + _EDGE) :], entity))
        if resource is None:
            raise NotFoundError(f"{kind} {resource_id} not found.")
        return replace(_stored(resource_id, resource), edges=tuple(edges))

    async def lookup(self, kind: str, attribute: str, key: str) -> list[StoredResource]:
        """The index rows of a value (one range query, both forms), then each resource row.

        Two reads for a value one resource holds. A long value's rows are read
        in both hashed forms, today's and the legacy ``sha256:`` one (rows
        ``check --repair`` has not rewritten yet); a resource found through a
        legacy row may hold a short value equal to that text, so the caller
        must evaluate the value on what it gets (``ResourceService._matches``
        re-evaluates the whole filter on every candidate).
        """
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            return []  # a lone surrogate: no stored value holds one (bodies refuse them), nor can it be sent
        keys = [_index_row_key(attribute, key)]
        legacy = _legacy_index_row_key(attribute, key)
        if legacy is not None:
            keys.append(legacy)
        parameters: dict[str, Any] = {"pk": self._partition(kind)}
        ranges = []
        for i, row_key in enumerate(keys):
            parameters[f"lo{i}"], parameters[f"hi{i}"] = row_key, row_key + "|~"
            ranges.append(f"( RowKey ge @lo{i} and RowKey le @hi{i} )")
        rows = self._query(
            "PartitionKey eq @pk and ( " + " or ".join(ranges) + " )", parameters, select=["RowKey", "id"]
        )
        ids: list[str] = []
        async for row in rows:
            resource_id = str(row.get("id", ""))
            owned = {k for row_key in keys for k in (row_key, f"{row_key}|{resource_id}")}
            if row["RowKey"] in owned and resource_id not in ids:
                ids.append(resource_id)
        found = []
        for resource_id in ids:
            try:
                found.append(await self.get(kind, resource_id))
            except NotFoundError:
                continue  # deleted between the two reads
        return found

    async def replace(
        self,
        kind: str,
        current: StoredResource,
        document: dict[str, Any],
        *,
        old_index: Sequence[IndexEntry],
        new_index: Sequence[IndexEntry],
        change: Change | None = None,
    ) -> str:
        """Conditional replace of the resource row, index-row moves and the change record, atomically."""
        version = change.sequence if change is not None else current.version
        old_rows = _previous_rows(current, old_index)
        new_rows = _index_rows(new_index, current.id)
        row = self._row(
            kind, _RESOURCE + current.id, t="r", v=version, ix=json.dumps(list(new_rows)),
            **_split(document), **columns_of(document),
        )  # fmt: skip
        if current.edges:
            row["g"] = True  # keep the marker a full replace would drop
        operations: list[tuple[Any, ...]] = [("update", row, _if_match(current.etag))]
        names: list[str | None] = []
        for row_key in old_rows:
            if row_key not in new_rows:
                operations.append(("delete", self._row(kind, row_key)))
                names.append(None)
        added = []
        for row_key, entry in new_rows.items():
            if row_key not in old_rows:
                operations.append(("create", self._row(kind, row_key, t="i", id=current.id)))
                names.append(entry.name if entry.unique else None)
                added.append(entry)
        await self._refuse_legacy_holders(kind, added, current.id)
        return await self._commit(kind, operations, names, change)

    async def mark_deleting(self, kind: str, current: StoredResource) -> StoredResource:
        """Flag the resource as being deleted (conditional on its ETag); return the new state.

        While flagged, readers verify every membership edge of the resource
        instead of trusting it (``scim.service.membership``).
        """
        row = self._row(kind, _RESOURCE + current.id, deleting=True)
        try:
            results = await self._submit(
                [("update", row, {**_if_match(current.etag), "mode": UpdateMode.MERGE})]
            )
        except TableTransactionError as error:
            self._raise_transaction_error(error, [], offset=1)
        return replace(current, etag=str(results[0]["etag"]), deleting=True)

    async def delete(
        self, kind: str, current: StoredResource, index: Sequence[IndexEntry], change: Change | None = None
    ) -> None:
        """Delete the reverse edges, then the resource and its index rows (conditional, last).

        The resource row goes in the last transaction, with the change record,
        so a crash part-way leaves the resource in place and a retried DELETE
        finishes the job.
        """
        last: list[tuple[Any, ...]] = [
            ("delete", self._row(kind, _RESOURCE + current.id), _if_unchanged(current.etag)),
            *(("delete", self._row(kind, row_key)) for row_key in _previous_rows(current, index)),
            *([("create", self._outbox_row(kind, change))] if change is not None else []),
        ]
        # An edge that changed since it was read (an add settled it, say) fails the delete: the
        # service re-reads and removes the member edge that add may have written (scim.service.membership).
        edges = [
            ("delete", self._row(kind, self._reverse_key(current.id, e.group_id)), _if_read(e.etag))
            for e in current.edges
        ]
        split = max(len(edges) - (BATCH - len(last)), 0)
        for chunk in _chunks(edges[:split], BATCH):
            await self._submit_dropping_missing(list(chunk))
        await self._submit_dropping_missing(last + edges[split:], required=0)

    def scan(self, kind: str, *, after: str | None = None, where: ScimFilter[Any] | None = None) -> Scan:
        """Resource rows of one partition in id order, page by page, narrowed by ``where`` where it can be.

        ``after`` (an id) resumes after that resource: keyset pagination for
        cursors (RFC 9865). The part of ``where`` the row's columns can answer
        (``scim.storage.pushdown``) is evaluated by the server; the whole filter
        comes back as the residual, since push-down only narrows.
        """
        condition = condition_for(where) if where is not None else None
        return Scan(self._scan_rows(kind, after, condition), residual=where)

    async def _scan_rows(
        self, kind: str, after: str | None, where: Condition | None
    ) -> AsyncIterator[StoredResource]:
        """The rows of :meth:`scan`.

        Without ``where``, each resource comes with its reverse edges (they
        sort right after its row, so a resource is yielded once the next one,
        or the end, is reached). With ``where``, the condition is evaluated by
        the server on the row's columns and resources come without edges:
        those whose row carries the ``g`` marker (ever added to a group) are
        flagged ``edges_known=False`` for the caller to read them.
        """
        low = _RESOURCE + after + "|~" if after is not None else _RESOURCE
        parameters: dict[str, Any] = {"pk": self._partition(kind), "lo": low, "hi": _RESOURCE_END}
        query = "PartitionKey eq @pk and RowKey gt @lo and RowKey lt @hi"
        if where is not None and _comparisons(where) <= _MAX_PUSHED:
            query += " and ( " + _odata(where, parameters) + " )"
            async for entity in self._query(query, parameters):
                stored = _stored(str(entity["RowKey"])[len(_RESOURCE) :], entity)
                yield replace(stored, edges_known=not entity.get("g"))
            return
        current: StoredResource | None = None
        async for entity in self._query(query, parameters):
            row_key = str(entity["RowKey"])
            if _EDGE in row_key:
                if current is not None and row_key.startswith(_RESOURCE + current.id + _EDGE):
                    edge = _reverse_edge(row_key[len(_RESOURCE + current.id + _EDGE) :], entity)
                    current = replace(current, edges=(*current.edges, edge))
                continue
            if current is not None:
                yield current
            current = _stored(row_key[len(_RESOURCE) :], entity)
        if current is not None:
            yield current

    async def count(self, kind: str) -> int:
        """Count resource rows, reading keys only."""
        rows = self._query(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi and t eq @t",
            {"pk": self._partition(kind), "lo": _RESOURCE, "hi": _RESOURCE_END, "t": "r"},
            select=["RowKey"],
        )
        return sum([1 async for _ in rows])

    async def reverse_edges(
        self, kind: str, resource_ids: Sequence[str]
    ) -> dict[str, tuple[ReverseEdge, ...]]:
        """The reverse edges of several resources: one query per 7 (each is a RowKey range).

        Table Storage allows 15 comparisons per filter: the partition, then two
        per resource.
        """
        edges: dict[str, list[ReverseEdge]] = {resource_id: [] for resource_id in resource_ids}
        for chunk in _chunks(list(resource_ids), 7):
            parameters: dict[str, Any] = {"pk": self._partition(kind)}
            ranges = []
            for i, resource_id in enumerate(chunk):
                parameters[f"lo{i}"] = _RESOURCE + resource_id + _EDGE
                parameters[f"hi{i}"] = _RESOURCE + resource_id + "|~"
                ranges.append(f"( RowKey gt @lo{i} and RowKey lt @hi{i} )")
            query = "PartitionKey eq @pk and ( " + " or ".join(ranges) + " )"
            async for entity in self._query(query, parameters):
                owner, _, group_id = str(entity["RowKey"])[len(_RESOURCE) :].partition(_EDGE)
                if owner in edges:
                    edges[owner].append(_reverse_edge(group_id, entity))
        return {resource_id: tuple(found) for resource_id, found in edges.items()}

    # -- change records (scim.feed.relay) ---------------------------------------------

    async def pending_changes(self, kind: str, limit: int = 1000) -> list[PendingChange]:
        """Outbox rows of one partition, in RowKey order (a resource's in version order): one read."""
        rows = self._query(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            {"pk": self._partition(kind), "lo": _OUTBOX, "hi": _OUTBOX_END},
        )
        pending: list[PendingChange] = []
        async for entity in rows:
            change = Change.from_json(_unchunked(entity, "c"))
            pending.append(PendingChange(str(entity["RowKey"]), str(entity.metadata["etag"]), change))
            if len(pending) >= limit:
                break
        return pending

    async def settle_changes(self, kind: str, published: Sequence[PendingChange]) -> int:
        """Move published outbox rows to the audit trail; how many this call moved.

        Each change is two operations in one transaction — delete the outbox row
        (conditional on its ETag) and write the audit row — batched up to 50
        changes and about 2 MB per transaction. A row another relay moved
        meanwhile is skipped (its pair dropped), never written twice. The audit
        row's key starts with the change's time, so the trail reads (and is
        pruned) by time range.
        """
        moved = 0
        batch: list[tuple[Any, ...]] = []
        size = 0
        for index, pending in enumerate(published):
            record = _record(pending.change)
            batch += [
                ("delete", self._row(kind, pending.row_key), _if_unchanged(pending.etag)),
                (
                    "upsert",
                    self._row(kind, _audit_key(pending.change), t="a", **record),
                    {"mode": UpdateMode.REPLACE},
                ),
            ]
            size += sum(len(text) for text in record.values())
            if len(batch) >= BATCH or size > _SETTLE_BYTES or index == len(published) - 1:
                _, dropped = await self._submit_dropping_missing(batch, group=2, drop=(404, 412))
                moved += len(batch) // 2 - len(dropped)
                batch, size = [], 0
        return moved

    async def audit_records(
        self, kind: str, *, since: str = "", until: str = "~"
    ) -> AsyncIterator[tuple[Change, bool]]:
        """Changes between two ISO times, as (change, published): audit rows, then outbox rows."""
        rows = self._query(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey le @hi",
            {"pk": self._partition(kind), "lo": _AUDIT + since, "hi": _AUDIT + until},
        )
        async for entity in rows:
            yield Change.from_json(_unchunked(entity, "c")), True
        for pending in await self.pending_changes(kind, limit=100_000):
            if since <= pending.change.time <= until:
                yield pending.change, False

    async def prune_audit(self, kind: str, before: str) -> int:
        """Delete the audit rows of one partition older than ``before`` (an ISO time); how many."""
        rows = self._query(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            {"pk": self._partition(kind), "lo": _AUDIT, "hi": _AUDIT + before},
            select=["RowKey"],
        )
        keys = [str(entity["RowKey"]) async for entity in rows]
        for chunk in _chunks(keys, BATCH):
            await self._submit_dropping_missing([("delete", self._row(kind, key)) for key in chunk])
        return len(keys)

    # -- backup and restore (scim.admin.backup) -------------------------------------

    def _directory_query(self) -> tuple[str, dict[str, Any]]:
        """The filter of every partition of this tenant's directory: ``<tenant>|…`` (``}`` follows ``|``)."""
        return (
            "PartitionKey ge @lo and PartitionKey lt @hi",
            {"lo": f"{self._tenant}|", "hi": f"{self._tenant}}}"},
        )

    async def dump_rows(self, *, audit: bool = False) -> AsyncIterator[dict[str, Any]]:
        """Every row of this tenant's directory as :func:`exported_row`, in key order, 1,000 per round trip.

        Resource, index, edge and outbox rows always; the audit rows (``aud:``)
        only with ``audit`` — without it the server's filter leaves them out.

        Raises:
            NotFoundError: The table does not exist.
            ServiceUnavailableError: Storage failed (after the client's retries).
        """
        query, parameters = self._directory_query()
        if not audit:
            query += " and ( RowKey lt @audit or RowKey ge @after )"
            parameters.update(audit=_AUDIT, after=_AUDIT[:-1] + ";")
        entities = self._client.query_entities(query, parameters=parameters)
        try:
            async for entity in entities:
                yield exported_row(entity)
        except ResourceNotFoundError:
            raise NotFoundError(f"Table {self._client.table_name} does not exist.") from None
        except Exception as error:  # noqa: BLE001 - translated below
            _translate(error)

    async def directory_row(self) -> tuple[str, str] | None:
        """The keys of one row of this tenant's directory; None when it has none (or the table is missing)."""
        query, parameters = self._directory_query()
        rows = self._client.query_entities(
            query, parameters=parameters, select=["PartitionKey", "RowKey"], results_per_page=1
        )
        try:
            async for entity in rows:
                return str(entity["PartitionKey"]), str(entity["RowKey"])
        except ResourceNotFoundError:
            return None
        except Exception as error:  # noqa: BLE001 - translated below
            _translate(error)
        return None

    async def ensure_table(self) -> bool:
        """Create the table unless it exists; whether this call created it."""
        try:
            await self._client.create_table()
        except ResourceExistsError:
            return False
        except Exception as error:  # noqa: BLE001 - translated below
            _translate(error)
        log.info("Created table %s", self._client.table_name)
        return True

    async def insert_rows(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert :func:`exported_row` rows of one partition in one transaction: all of them or none.

        At most :data:`BATCH` rows of at most :data:`MAX_TRANSACTION_BYTES` in all
        (:func:`transaction_bytes`); inserts, never upserts, so a row that exists is
        never overwritten.

        Raises:
            ConflictError: A row already exists (or appears twice in ``rows``).
            InvalidValueError: Storage refused a row (too large, a forbidden key…).
            ServiceUnavailableError: Storage failed; the transaction may or may not have committed.
        """
        operations: list[tuple[Any, ...]] = [("create", entity_of(row)) for row in rows]
        try:
            await self._submit(operations)
        except TableTransactionError as error:
            position = getattr(error, "index", None) or 0
            row = rows[position] if position < len(rows) else rows[0]
            where = f"row ({row['PartitionKey']}, {row['RowKey']})"
            code = _error_code(error) or str(error.status_code)
            if error.status_code == 409:
                raise ConflictError(f"{where} already exists in the table.") from error
            if error.status_code == 400 and code == "InvalidDuplicateRow":
                raise ConflictError(f"{where} appears twice in the export.") from error
            if error.status_code in (400, 413):
                raise InvalidValueError(f"Storage refused {where}: {code}.") from error
            _translate(error)

    async def read_rows(self, partition_key: str, row_keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The rows of ``partition_key`` with these RowKeys that exist, as :func:`exported_row`.

        One query per 14 keys (15 comparisons per filter, one for the partition).
        """
        found: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(list(row_keys), 14):
            names = [f"r{i}" for i in range(len(chunk))]
            query = "PartitionKey eq @pk and ( " + " or ".join(f"RowKey eq @{n}" for n in names) + " )"
            parameters: dict[str, Any] = {"pk": partition_key, **dict(zip(names, chunk, strict=True))}
            async for entity in self._query(query, parameters):
                found[str(entity["RowKey"])] = exported_row(entity)
        return found

    # -- consistency checks ---------------------------------------------------

    async def inventory(self, kind: str) -> AsyncIterator[InventoryRow]:
        """Every row of the partition, typed, 1,000 per round trip."""
        rows = self._query("PartitionKey eq @pk", {"pk": self._partition(kind)})
        async for entity in rows:
            row_key = str(entity["RowKey"])
            if row_key.startswith(_RESOURCE) and _EDGE in row_key:
                user_id, _, group_id = row_key[len(_RESOURCE) :].partition(_EDGE)
                edge = _reverse_edge(group_id, entity)
                yield ReverseEdgeRow(user_id, group_id, edge.pending, edge.written)
            elif row_key.startswith(_RESOURCE):
                yield _stored(row_key[len(_RESOURCE) :], entity)
            elif row_key.startswith("idx:"):
                attribute = row_key[len("idx:") :].partition(":")[0]
                etag = str(entity.metadata["etag"])
                yield IndexRow(kind, attribute, row_key, str(entity.get("id", "")), etag)
            elif row_key.startswith(_MEMBER):
                group_id, _, user_id = row_key[len(_MEMBER) :].partition(":")
                yield MemberEdgeRow(group_id, user_id)

    def index_row_keys(self, stored: StoredResource, entries: Sequence[IndexEntry]) -> dict[str, IndexEntry]:
        """The index rows a resource should have: by its entries, or the legacy rows (no ``ix``)."""
        if stored.index_rows is None:
            return {_index_row_key(e.index, e.key): e for e in entries if e.index in LEGACY_INDEXES}
        return _index_rows(entries, stored.id)

    def legacy_index_row_keys(self, stored: StoredResource, entries: Sequence[IndexEntry]) -> dict[str, str]:
        """Legacy ``sha256:`` row key → today's key, for each of the resource's long values (issue 14)."""
        legacy: dict[str, str] = {}
        for row_key, entry in self.index_row_keys(stored, entries).items():
            resource_id = None if entry.unique else stored.id
            old = _legacy_index_row_key(entry.index, entry.key, resource_id)
            if old is not None:
                legacy[old] = row_key
        return legacy

    async def rewrite_legacy_index_row(
        self, kind: str, resource_id: str, legacy_key: str, entries: Sequence[IndexEntry]
    ) -> None:
        """Move a long value's index row from the legacy ``sha256:`` key to today's, atomically.

        Acts only on what it re-reads: the legacy row must still name the
        resource and the resource must still list it in ``ix`` (or, written
        before ``ix``, hold the value in ``entries``); the move — create the new
        row, delete the old one (If-Match its ETag), list the new key in ``ix``
        (If-Match the resource's ETag) — is one transaction.

        Raises:
            NotFoundError: The row or the resource is gone, or no longer matches.
            PreconditionFailedError: The resource or the row changed meanwhile.
            UniquenessError: Another resource holds today's key.
        """
        current = await self.get(kind, resource_id)
        moves = self.legacy_index_row_keys(current, entries)
        listed = _previous_rows(current, entries)
        if legacy_key not in moves or legacy_key not in listed:
            raise NotFoundError(f"{kind} {resource_id} no longer holds the value of {legacy_key}.")
        try:
            row = await self._client.get_entity(self._partition(kind), legacy_key)
        except ResourceNotFoundError:
            raise NotFoundError(f"{legacy_key} is gone.") from None
        except Exception as error:  # noqa: BLE001 - translated below
            _translate(error)
        if str(row.get("id", "")) != resource_id:
            raise NotFoundError(f"{legacy_key} no longer names {kind} {resource_id}.")
        index_rows = [moves[k] if k == legacy_key else k for k in listed]
        merge = self._row(kind, _RESOURCE + resource_id, ix=json.dumps(index_rows))
        operations: list[tuple[Any, ...]] = [
            ("update", merge, {**_if_match(current.etag), "mode": UpdateMode.MERGE}),
            ("create", self._row(kind, moves[legacy_key], t="i", id=resource_id)),
            ("delete", self._row(kind, legacy_key), _if_unchanged(str(row.metadata["etag"]))),
        ]
        try:
            await self._submit(operations)
        except TableTransactionError as error:
            self._raise_transaction_error(error, [None, "the value"], offset=0)

    async def delete_index_row(self, kind: str, row_key: str) -> None:
        """Delete one index row (absent is fine)."""
        await self._submit_dropping_missing([("delete", self._row(kind, row_key))])

    async def create_index_row(self, kind: str, entry: IndexEntry, resource_id: str) -> None:
        """Insert one index row and list it in the resource's ``ix``; a taken key is a uniqueness conflict."""
        row_key = _entry_key(entry, resource_id)
        row = self._row(kind, row_key, t="i", id=resource_id)
        try:
            await self._submit([("create", row)])
        except TableTransactionError as error:
            self._raise_transaction_error(error, [entry.name or entry.index], offset=0)
        try:
            current = await self.get(kind, resource_id)
        except NotFoundError:
            return  # no such resource: nothing lists the row
        if current.index_rows is not None and row_key not in current.index_rows:
            listed = json.dumps([*current.index_rows, row_key])
            merge = self._row(kind, _RESOURCE + resource_id, ix=listed)
            try:
                await self._submit([("update", merge, {**_if_match(current.etag), "mode": UpdateMode.MERGE})])
            except TableTransactionError:
                pass  # the resource changed meanwhile: its write listed its own rows

    async def index_row(self, kind: str, row_key: str) -> IndexRow | None:
        """One point read of an index row, with its ETag (None: absent)."""
        try:
            entity = await self._client.get_entity(self._partition(kind), row_key)
        except ResourceNotFoundError:
            return None
        except Exception as error:  # noqa: BLE001 - translated below
            _translate(error)
        attribute = row_key[len("idx:") :].partition(":")[0]
        return IndexRow(kind, attribute, row_key, str(entity.get("id", "")), str(entity.metadata["etag"]))

    async def delete_index_row_if_unchanged(self, kind: str, row: IndexRow) -> None:
        """Delete an index row, If-Match the ETag it was read with (a rewrite since fails with 412)."""
        try:
            await self._submit([("delete", self._row(kind, row.row_key), _if_unchanged(row.etag))])
        except TableTransactionError as error:
            self._raise_transaction_error(error, [], offset=0)

    async def restore_index_row(self, kind: str, current: StoredResource, entry: IndexEntry) -> None:
        """Create a missing index row and list it in ``ix``, If-Match the resource's ETag: one transaction.

        A resource written before ``ix`` existed keeps no list (its legacy rows
        are implied); its row is still MERGEd (``t`` unchanged) so that the
        transaction fails if the resource changed since ``current`` was read.
        The resource's version is untouched: a repair is not a change.
        """
        row_key = _entry_key(entry, current.id)
        listed = current.index_rows
        ix = {} if listed is None or row_key in listed else {"ix": json.dumps([*listed, row_key])}
        merge = self._row(kind, _RESOURCE + current.id, t="r", **ix)
        operations: list[tuple[Any, ...]] = [
            ("update", merge, {**_if_match(current.etag), "mode": UpdateMode.MERGE}),
            ("create", self._row(kind, row_key, t="i", id=current.id)),
        ]
        try:
            await self._submit(operations)
        except TableTransactionError as error:
            self._raise_transaction_error(error, [entry.name or entry.index], offset=1)

    # -- membership edges (ordered by scim.service.membership) ------------------------

    def _reverse_key(self, user_id: str, group_id: str) -> str:
        return f"{_RESOURCE}{user_id}{_EDGE}{group_id}"

    async def read_reverse_edges(self, group_id: str, user_ids: Sequence[str]) -> dict[str, EdgeState]:
        """The users' reverse edges to ``group_id`` that exist: one query per 14 users."""
        found: dict[str, EdgeState] = {}
        keys = [self._reverse_key(u, group_id) for u in user_ids]
        async for entity in self._rows_by_key(_USER, keys):
            user_id = str(entity["RowKey"])[len(_RESOURCE) :].partition(_EDGE)[0]
            etag = str(entity.metadata["etag"])
            found[user_id] = EdgeState(user_id, etag, bool(entity.get("p")), _intents(entity))
        return found

    async def write_reverse_edges(self, group_id: str, writes: Sequence[EdgeWrite]) -> EdgeWrites:
        """Apply conditional reverse-edge writes, 100 operations per transaction.

        A write whose condition fails (412, 404, or 409 for an insert of an
        edge that exists) is dropped from its transaction and reported in
        ``conflicts``; one whose user row is gone, in ``missing_users``.
        """
        outcome = EdgeWrites()
        for touching in (True, False):
            chosen = [w for w in writes if w.touch_user is touching]
            width = 2 if touching else 1
            for chunk in _chunks(chosen, BATCH // width):
                operations: list[tuple[Any, ...]] = []
                for write in chunk:
                    if touching:  # `g` marks users that may have reverse edges (see `scan` with `where`).
                        touch = self._row(_USER, _RESOURCE + write.user_id, g=True)
                        operations.append(("update", touch, _MUST_EXIST_MERGE))
                    operations.append(self._edge_operation(group_id, write))
                results, dropped = await self._submit_dropping_missing(
                    operations, group=width, drop=(404, 409, 412)
                )
                failed = {index // width: index % width for index in dropped}
                for position, which in failed.items():
                    missing = touching and which == 0
                    (outcome.missing_users if missing else outcome.conflicts).add(chunk[position].user_id)
                kept = [w for position, w in enumerate(chunk) if position not in failed]
                for position, write in enumerate(kept):
                    if not write.delete:
                        outcome.etags[write.user_id] = str(results[width * position + width - 1]["etag"])
        return outcome

    def _edge_operation(self, group_id: str, write: EdgeWrite) -> tuple[Any, ...]:
        key = self._reverse_key(write.user_id, group_id)
        if write.delete:
            return ("delete", self._row(_USER, key), _if_unchanged(write.etag or "*"))
        marks = {_intent_property(token, intent): intent.written for token, intent in write.intents.items()}
        row = self._row(_USER, key, t="e", p=write.pending, **marks)
        if write.etag is None:
            return ("create", row)
        return ("update", row, {**_if_unchanged(write.etag), "mode": UpdateMode.REPLACE})

    async def mark_reverse_edges_pending(
        self, group_id: str, user_ids: Sequence[str], token: str, intent: Intent
    ) -> set[str]:
        """Add ``intent`` to existing reverse edges and flag them pending; return the users without one.

        A MERGE with ``If-Match: *``, so the other intents on an edge stay.
        """
        missing: set[str] = set()
        mark = {_intent_property(token, intent): intent.written}
        for chunk in _chunks(user_ids, BATCH):
            operations = [
                (
                    "update",
                    self._row(_USER, self._reverse_key(u, group_id), p=True, **mark),
                    _MUST_EXIST_MERGE,
                )
                for u in chunk
            ]
            _, dropped = await self._submit_dropping_missing(operations)
            missing.update(chunk[index] for index in dropped)
        return missing

    async def delete_reverse_edges(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Delete (user, group) reverse edges; absent ones are ignored."""
        operations = [("delete", self._row(_USER, self._reverse_key(u, g))) for u, g in pairs]
        for chunk in _chunks(operations, BATCH):
            await self._submit_dropping_missing(list(chunk))

    async def write_member_edges(
        self,
        group: StoredResource,
        *,
        modified: str,
        add: Mapping[str, str | None] | None = None,
        remove: Sequence[str] = (),
        conditional: bool = False,
        record: MemberRecord | None = None,
    ) -> StoredResource:
        """Upsert (id → display) and delete member edges of a group; return the group's new state.

        Every batch also MERGEs the group row — its membership timestamp
        ``ml`` and its version ``v`` + 1 — conditional on the group's ETag, and
        carries the change record ``record(version, added, removed, modified)``: the batch
        fails if the group is gone, a concurrent DELETE retries and sees the new
        edges, and each committed batch is exactly one version. When another
        writer moved the group meanwhile, the batch is retried on a fresh read of
        the group row (edges are idempotent), unless ``conditional`` (the client's
        ``If-Match``), which fails instead.

        Raises:
            PreconditionFailedError: ``conditional`` and the group changed since ``group``.
            NotFoundError: The group was deleted meanwhile.
        """
        upserts = [
            (u, ("upsert", self._member_row(group.id, u, display), {"mode": UpdateMode.REPLACE}))
            for u, display in (add or {}).items()
        ]
        deletes = [(u, ("delete", self._row(_GROUP, f"{_MEMBER}{group.id}:{u}"))) for u in remove]
        edges = upserts + deletes
        size = MEMBER_EDGES_PER_BATCH if record is not None else BATCH - 1
        etag, version = group.etag, group.version
        for chunk in _chunks(edges, size) if edges else [[]]:
            added = tuple(u for u, op in chunk if op[0] == "upsert")
            removed = tuple(u for u, op in chunk if op[0] == "delete")
            for attempt in range(MEMBER_WRITE_ATTEMPTS):
                touch = self._row(_GROUP, _RESOURCE + group.id, ml=modified, v=version + 1)
                operations: list[tuple[Any, ...]] = [
                    ("update", touch, {**_if_unchanged(etag), "mode": UpdateMode.MERGE}),
                    *(op for _, op in chunk),
                ]
                if record is not None:
                    operations.append(
                        ("create", self._outbox_row(_GROUP, record(version + 1, added, removed, modified)))
                    )
                try:
                    # The group row goes first and must be as read: if not, nothing is written.
                    results, _ = await self._submit_dropping_missing(operations, required=0)
                except PreconditionFailedError:
                    if conditional or attempt == MEMBER_WRITE_ATTEMPTS - 1:
                        raise
                    await asyncio.sleep(random.uniform(0, 0.005 * (attempt + 1)))  # noqa: S311 - jitter
                    etag, version = await self._version(_GROUP, group.id)
                    continue
                etag, version = str(results[0]["etag"]), version + 1
                break
            conditional = False  # the client's precondition held for the first batch
        return replace(group, etag=etag, version=version)

    async def _version(self, kind: str, resource_id: str) -> tuple[str, int]:
        """The ETag and version of a resource row: one point read.

        Raises:
            NotFoundError: The row is gone, or flagged *deleting* (its DELETE is under way and wins).
        """
        try:
            entity = await self._client.get_entity(
                self._partition(kind), _RESOURCE + resource_id, select=["v", "deleting"]
            )
        except ResourceNotFoundError:
            raise NotFoundError(f"{kind} {resource_id} not found.") from None
        except Exception as error:  # noqa: BLE001 - translated below
            _translate(error)
        if entity.get("deleting"):
            raise NotFoundError(f"{kind} {resource_id} is being deleted.")
        return str(entity.metadata["etag"]), int(entity.get("v") or 0)

    def _member_row(self, group_id: str, user_id: str, display: str | None) -> dict[str, Any]:
        row = self._row(_GROUP, f"{_MEMBER}{group_id}:{user_id}", t="m", value=user_id)
        if display is not None:
            row["display"] = display
        return row

    async def delete_member_edges(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Delete (group, user) member edges of any groups; absent ones are ignored."""
        operations = [("delete", self._row(_GROUP, f"{_MEMBER}{g}:{u}")) for g, u in pairs]
        for chunk in _chunks(operations, BATCH):
            await self._submit_dropping_missing(list(chunk))

    async def members(self, group_id: str) -> AsyncIterator[tuple[str, str | None]]:
        """The (id, display) of each member of a group, 1,000 per round trip."""
        prefix = f"{_MEMBER}{group_id}:"
        rows = self._query(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            {"pk": self._partition(_GROUP), "lo": prefix, "hi": prefix[:-1] + ";"},
            select=["value", "display"],
        )
        async for entity in rows:
            display = entity.get("display")
            yield str(entity["value"]), str(display) if display is not None else None

    async def existing_member_edges(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (group, user) member edges exist: one query per 14 pairs."""
        found: set[tuple[str, str]] = set()
        keys = [f"{_MEMBER}{g}:{u}" for g, u in pairs]
        async for entity in self._rows_by_key(_GROUP, keys, select=["RowKey"]):
            group_id, _, user_id = str(entity["RowKey"])[len(_MEMBER) :].partition(":")
            found.add((group_id, user_id))
        return found

    async def _rows_by_key(
        self, kind: str, row_keys: Sequence[str], select: list[str] | None = None
    ) -> AsyncIterator[Any]:
        """The rows of one partition with these RowKeys that exist: one query per 14 keys.

        Table Storage allows 15 comparisons per filter: one for the partition,
        fourteen row keys.
        """
        for chunk in _chunks(row_keys, 14):
            names = [f"r{i}" for i in range(len(chunk))]
            query = "PartitionKey eq @pk and ( " + " or ".join(f"RowKey eq @{n}" for n in names) + " )"
            parameters: dict[str, Any] = {"pk": self._partition(kind)}
            parameters.update(zip(names, chunk, strict=True))
            async for entity in self._query(query, parameters, select=select):
                yield entity


_MUST_EXIST_MERGE: dict[str, Any] = {
    "mode": UpdateMode.MERGE,
    "match_condition": MatchConditions.Unconditionally,
}
"""A MERGE with ``If-Match: *``: fails with 404 when the row does not exist."""


def _if_read(etag: str | None) -> dict[str, Any]:
    """Options of a delete conditional on the ETag a row was read with (any, when not known)."""
    return _if_unchanged(etag) if etag else {"match_condition": MatchConditions.Unconditionally}


def _if_unchanged(etag: str) -> dict[str, Any]:
    """Options of a delete conditional on ``etag``."""
    return {"etag": etag, "match_condition": MatchConditions.IfNotModified}


def _if_match(etag: str) -> dict[str, Any]:
    """Options of a full-row update conditional on ``etag``."""
    return {"mode": UpdateMode.REPLACE, **_if_unchanged(etag)}


def _stored(resource_id: str, entity: Any) -> StoredResource:
    """The StoredResource of a resource row (without its edges).

    A group's member writes record their time in ``ml`` rather than rewriting
    the document (which would race with renames); it is the group's
    ``meta.lastModified`` when later than the document's.
    """
    document = _join(entity)
    members_modified = entity.get("ml")
    meta = document.get("meta")
    if isinstance(members_modified, str) and isinstance(meta, dict):
        if members_modified > str(meta.get("lastModified", "")):
            document["meta"] = {**meta, "lastModified": members_modified}
    listed = entity.get("ix")
    return StoredResource(
        resource_id,
        document,
        str(entity.metadata["etag"]),
        deleting=bool(entity.get("deleting")),
        version=int(entity.get("v") or 0),
        index_rows=tuple(json.loads(listed)) if isinstance(listed, str) else None,
    )


def _intent_property(token: str, intent: Intent) -> str:
    """``xa<token>`` / ``xr<token>``: one property per in-flight operation, so marks never overwrite."""
    return f"x{intent.kind[0]}{token}"


def _intents(entity: Mapping[str, Any]) -> dict[str, Intent]:
    """The intents marked on a reverse-edge row (see :func:`_intent_property`)."""
    intents: dict[str, Intent] = {}
    for name, value in entity.items():
        if name[:2] in ("xa", "xr") and isinstance(value, datetime):
            intents[name[2:]] = Intent("add" if name[1] == "a" else "remove", value)
    return intents


def _reverse_edge(group_id: str, entity: Any) -> ReverseEdge:
    written = entity.metadata.get("timestamp")
    return ReverseEdge(
        group_id,
        pending=bool(entity.get("p")) or any(i.kind == "remove" for i in _intents(entity).values()),
        written=written if isinstance(written, datetime) else None,
        etag=str(entity.metadata["etag"]) if "etag" in entity.metadata else None,
    )


_MAX_PUSHED = 12
"""Column comparisons pushed per query: Table Storage allows 15 in a filter, 3 go to the keys."""


def _comparisons(condition: Condition) -> int:
    if isinstance(condition, ColumnTest):
        return 1
    return sum(_comparisons(term) for term in condition.terms)


def _odata(condition: Condition, parameters: dict[str, Any]) -> str:
    """OData text for a pushed-down condition; every value goes through ``parameters``.

    Spaces surround every parenthesis and ``@name``: the SDK's substitution
    splits on single spaces (azure-notes §5.2).
    """
    if isinstance(condition, ColumnTest):
        name = f"v{len(parameters)}"
        parameters[name] = condition.value
        return f"{condition.column} {condition.op} @{name}"
    joiner = " and " if isinstance(condition, AllOf) else " or "
    return joiner.join(f"( {_odata(term, parameters)} )" for term in condition.terms)


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# -- backup and restore: rows as JSON that loses nothing (scim.admin.backup) ------------------------

EDM_ANNOTATION = "@odata.type"
"""Suffix of the property naming another property's EDM type, as in the Table service's JSON."""

MAX_TRANSACTION_BYTES = 4 * 1024 * 1024
"""Largest entity-group transaction payload (*Performing entity group transactions*: "no more than 4 MiB")."""

_INT32 = range(-(2**31), 2**31)


def _edm_of(value: Any) -> EdmType:
    """The EDM type the SDK gives a Python value it read (it infers Int32, String and Boolean)."""
    if isinstance(value, bool):
        return EdmType.BOOLEAN
    if isinstance(value, int):
        return EdmType.INT32 if value in _INT32 else EdmType.INT64
    for python, edm in (
        (str, EdmType.STRING), (datetime, EdmType.DATETIME), (bytes, EdmType.BINARY),
        (UUID, EdmType.GUID), (float, EdmType.DOUBLE),
    ):  # fmt: skip
        if isinstance(value, python):
            return edm
    raise TypeError(f"no EDM type for a {type(value).__name__}")


def _exported_value(value: Any) -> tuple[Any, str | None]:
    """(JSON value, EDM annotation or None) of one property as the SDK read it."""
    edm: EdmType | None = None
    if isinstance(value, EntityProperty):
        value, edm = value.value, value.edm_type
        if isinstance(value, EdmType):  # the SDK builds an unknown type's property the other way round
            value, edm = edm, value
    edm = EdmType(edm) if edm is not None else _edm_of(value)
    if edm in (EdmType.STRING, EdmType.BOOLEAN, EdmType.INT32):
        return value, None
    if edm == EdmType.INT64:
        return str(int(value)), edm.value
    if edm == EdmType.DATETIME and isinstance(value, datetime):
        # The service's own text (7 fractional digits); a datetime keeps only microseconds.
        text = getattr(value, "tables_service_value", "") or value.strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
        return text, edm.value
    if edm == EdmType.BINARY and isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii"), edm.value
    if edm == EdmType.DOUBLE and isinstance(value, float):
        if value != value:
            return "NaN", edm.value
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity", edm.value
    return (value if isinstance(value, int | float) else str(value)), edm.value


def exported_row(entity: Mapping[str, Any]) -> dict[str, Any]:
    """A row as JSON that restores exactly: the Table service's own JSON form of an entity.

    Strings, booleans and Int32 values are plain JSON; every other property is
    followed by ``<name>@odata.type`` and carries the text the service sends:
    ``Edm.Int64`` as decimal text, ``Edm.Binary`` as Base64, ``Edm.DateTime`` as the
    service's text (7 fractional digits), ``Edm.Guid`` as text, ``Edm.Double`` as a
    number or ``NaN`` / ``Infinity`` / ``-Infinity`` (*Payload format for Table service
    operations*, Microsoft Learn). ``Timestamp`` and the ETag belong to the service:
    a restored row gets new ones.
    """
    row: dict[str, Any] = {"PartitionKey": entity["PartitionKey"], "RowKey": entity["RowKey"]}
    for name, value in entity.items():
        if name in row or value is None:
            continue
        row[name], annotation = _exported_value(value)
        if annotation is not None:
            row[name + EDM_ANNOTATION] = annotation
    return row


def entity_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """The SDK entity that writes an :func:`exported_row` back as it was (the inverse of that function).

    Raises:
        ValueError: A value does not fit its type (``scim.admin.backup`` validates rows before this).
    """
    entity: dict[str, Any] = {}
    for name, value in row.items():
        if name.endswith(EDM_ANNOTATION):
            continue
        annotation = row.get(name + EDM_ANNOTATION)
        if annotation is None:
            if isinstance(value, float) or (
                isinstance(value, int) and not isinstance(value, bool) and value not in _INT32
            ):
                raise ValueError(f"{name}: a number without a type annotation must be an Int32")
            if not isinstance(value, str | bool | int):
                raise ValueError(f"{name}: {type(value).__name__} is not a property value")
            entity[name] = value
            continue
        edm = EdmType(annotation)
        if edm == EdmType.BINARY:
            value = base64.b64decode(str(value), validate=True)
        entity[name] = EntityProperty(value, edm)  # Int64, DateTime, Double text passes through unchanged
    return entity


def transaction_bytes(row: Mapping[str, Any]) -> int:
    """An upper bound of the bytes an :func:`exported_row` adds to a transaction's payload.

    Its JSON as the SDK sends it (ASCII-escaped), an ``Edm.String`` annotation
    the SDK adds per property, and the operation's headers and URL.
    """
    return len(json.dumps(row)) + 40 * len(row) + 1024
