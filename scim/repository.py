"""The seam between the SCIM service and storage: a small Protocol.

The service owns ids, ``meta``, PATCH semantics and uniqueness *rules*; the
repository owns rows, transactions and ETags, and enforces uniqueness
atomically through index rows. ``scim.tables`` is the implementation; tests
run it against Azurite, never a mock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from scim.pushdown import Condition

__all__ = [
    "IndexRow",
    "MemberEdgeRow",
    "Repository",
    "ReverseEdge",
    "ReverseEdgeRow",
    "StagedEdges",
    "StoredResource",
]


@dataclass(frozen=True)
class ReverseEdge:
    """A user's record that it belongs to a group (the user side of membership).

    ``pending`` edges are being written or removed by ``scim.membership``;
    readers verify them against the group's member edge instead of trusting them.
    """

    group_id: str
    pending: bool = False
    written: datetime | None = None


@dataclass(frozen=True)
class StoredResource:
    """A resource as stored: its SCIM JSON document and the storage ETag.

    ``document`` is the resource as it is served (without ``meta.location``
    and ``meta.version``, which are derived when a response is built).
    """

    id: str
    document: dict[str, Any]
    etag: str
    edges: tuple[ReverseEdge, ...] = ()
    deleting: bool = False
    edges_known: bool = True


@dataclass(frozen=True)
class IndexRow:
    """A unique-index row as found in storage (for the consistency checker)."""

    kind: str
    attribute: str
    row_key: str
    resource_id: str


@dataclass(frozen=True)
class ReverseEdgeRow:
    """A user's reverse edge as found in storage."""

    user_id: str
    group_id: str
    pending: bool
    written: datetime | None


@dataclass(frozen=True)
class MemberEdgeRow:
    """A group's member edge as found in storage."""

    group_id: str
    user_id: str


@dataclass
class StagedEdges:
    """What became of a batch of reverse-edge writes."""

    missing: set[str] = field(default_factory=set)
    """Users that do not exist (their edge was not written)."""
    contested: set[str] = field(default_factory=set)
    """Users whose edge changed or went since it was staged (so it was not settled)."""
    etags: dict[str, str] = field(default_factory=dict)
    """The ETag of each edge written."""


InventoryRow = StoredResource | IndexRow | ReverseEdgeRow | MemberEdgeRow


class Repository(Protocol):
    """Storage of SCIM resources, one partition per (tenant, resource type).

    Every write is one atomic transaction with the resource's unique-index
    rows; ``unique`` maps an attribute name to its comparison key.
    All methods raise :class:`scim.errors.ServiceUnavailableError` when storage
    is unreachable or throttling.
    """

    async def create(
        self,
        kind: str,
        resource_id: str,
        document: dict[str, Any],
        unique: Mapping[str, str],
        *,
        columns: Mapping[str, Any] | None = None,
    ) -> str:
        """Insert a resource and its index rows; return the new ETag.

        Raises:
            UniquenessError: An index row already exists (names the attribute).
        """
        ...

    async def get(self, kind: str, resource_id: str) -> StoredResource:
        """One read: the resource and its reverse edges.

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
        columns: Mapping[str, Any] | None = None,
    ) -> str:
        """Replace the document if its ETag is still ``current.etag``; return the new ETag.

        Raises:
            PreconditionFailedError: The resource changed since ``current`` was read.
            NotFoundError: The resource was deleted since.
            UniquenessError: A new unique value is taken.
        """
        ...

    async def mark_deleting(self, kind: str, current: StoredResource) -> StoredResource:
        """Flag the resource as being deleted, conditional on ``current.etag``.

        Raises:
            PreconditionFailedError: The resource changed since ``current`` was read.
        """
        ...

    async def delete(self, kind: str, current: StoredResource, unique: Mapping[str, str]) -> None:
        """Delete the resource, its index rows and ``current.edges`` if its ETag is still ``current.etag``.

        Raises:
            PreconditionFailedError: The resource changed since ``current`` was read.
            NotFoundError: The resource was deleted since.
        """
        ...

    def scan(
        self, kind: str, *, after: str | None = None, where: Condition | None = None
    ) -> AsyncIterator[StoredResource]:
        """Resources of ``kind`` in id order, after the resource ``after``, narrowed by ``where``.

        With ``where`` the resources come without their reverse edges
        (``edges_known`` is False).
        """
        ...

    async def count(self, kind: str) -> int:
        """How many resources of ``kind`` exist (reads keys only)."""
        ...

    async def stage_reverse_edges(
        self,
        group_id: str,
        user_ids: Sequence[str],
        *,
        pending: bool,
        etags: Mapping[str, str] | None = None,
    ) -> StagedEdges:
        """Write the users' reverse edges to ``group_id`` pending, or settle them.

        Settling is conditional on ``etags`` (the edges this writer staged) when given.
        """
        ...

    async def mark_reverse_edges_pending(self, group_id: str, user_ids: Sequence[str]) -> set[str]:
        """Flag the users' reverse edges to ``group_id`` pending; return the users that had none."""
        ...

    async def delete_reverse_edges(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Delete (user id, group id) reverse edges; absent ones are ignored."""
        ...

    async def write_member_edges(
        self,
        group_id: str,
        *,
        modified: str,
        add: Mapping[str, str | None] | None = None,
        remove: Sequence[str] = (),
        if_match: str | None = None,
    ) -> str:
        """Add (id → display) and remove member edges, touching the group row; return its ETag.

        Raises:
            PreconditionFailedError: ``if_match`` (a storage ETag) no longer matches.
            NotFoundError: The group was deleted meanwhile.
        """
        ...

    async def delete_member_edges(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Delete (group id, user id) member edges; absent ones are ignored."""
        ...

    def members(self, group_id: str) -> AsyncIterator[tuple[str, str | None]]:
        """The (id, display) of each member of a group."""
        ...

    async def existing_member_edges(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of the (group id, user id) member edges exist."""
        ...

    def inventory(self, kind: str) -> AsyncIterator[InventoryRow]:
        """Every row of a resource type's partition, typed (consistency checks)."""
        ...

    def index_row_key(self, attribute: str, key: str) -> str:
        """The RowKey of the index row for ``attribute`` = comparison key ``key``."""
        ...

    async def delete_index_row(self, kind: str, row_key: str) -> None:
        """Delete an index row (consistency repair)."""
        ...

    async def create_index_row(self, kind: str, attribute: str, key: str, resource_id: str) -> None:
        """Create a missing index row (consistency repair).

        Raises:
            UniquenessError: Another resource holds the key.
        """
        ...

    async def reverse_edges(
        self, kind: str, resource_ids: Sequence[str]
    ) -> dict[str, tuple[ReverseEdge, ...]]:
        """The reverse edges of several resources at once."""
        ...
