"""The seam between the SCIM service and storage: a small Protocol.

The service owns ids, ``meta``, PATCH semantics and uniqueness *rules*; the
repository owns rows, transactions and ETags, and enforces uniqueness
atomically through index rows. ``scim.tables`` is the implementation; tests
run it against Azurite, never a mock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Repository", "StoredResource"]


@dataclass(frozen=True)
class StoredResource:
    """A resource as stored: its SCIM JSON document and the storage ETag.

    ``document`` is the resource as it is served (without ``meta.location``
    and ``meta.version``, which are derived when a response is built).
    """

    id: str
    document: dict[str, Any]
    etag: str


class Repository(Protocol):
    """Storage of SCIM resources, one partition per (tenant, resource type).

    Every write is one atomic transaction with the resource's unique-index
    rows; ``unique`` maps an attribute name to its comparison key.
    All methods raise :class:`scim.errors.ServiceUnavailableError` when storage
    is unreachable or throttling.
    """

    async def create(
        self, kind: str, resource_id: str, document: dict[str, Any], unique: Mapping[str, str]
    ) -> str:
        """Insert a resource and its index rows; return the new ETag.

        Raises:
            UniquenessError: An index row already exists (names the attribute).
        """
        ...

    async def get(self, kind: str, resource_id: str) -> StoredResource:
        """One point read.

        Raises:
            NotFoundError: No such resource.
        """
        ...

    async def lookup(self, kind: str, attribute: str, key: str) -> StoredResource | None:
        """The resource whose unique ``attribute`` has comparison key ``key``."""
        ...

    async def replace(
        self,
        kind: str,
        current: StoredResource,
        document: dict[str, Any],
        *,
        old_unique: Mapping[str, str],
        new_unique: Mapping[str, str],
    ) -> str:
        """Replace the document if its ETag is still ``current.etag``; return the new ETag.

        Raises:
            PreconditionFailedError: The resource changed since ``current`` was read.
            NotFoundError: The resource was deleted since.
            UniquenessError: A new unique value is taken.
        """
        ...

    async def delete(self, kind: str, current: StoredResource, unique: Mapping[str, str]) -> None:
        """Delete the resource and its index rows if its ETag is still ``current.etag``.

        Raises:
            PreconditionFailedError: The resource changed since ``current`` was read.
            NotFoundError: The resource was deleted since.
        """
        ...

    def scan(self, kind: str) -> AsyncIterator[StoredResource]:
        """Every resource of ``kind``, in storage order (for filters no index answers)."""
        ...

    async def count(self, kind: str) -> int:
        """How many resources of ``kind`` exist (reads keys only)."""
        ...
