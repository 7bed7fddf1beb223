"""The seam between the SCIM service and storage: a small Protocol.

The service owns ids, ``meta``, PATCH semantics and uniqueness *rules*; the
repository owns rows, transactions and ETags, and enforces uniqueness
atomically through index rows. ``scim.storage.tables`` is the implementation; tests
run it against Azurite, never a mock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from scim.model.resources import IndexEntry

if TYPE_CHECKING:
    from scim2_models.path import ScimFilter

    from scim.model.changes import Change

__all__ = [
    "EdgeState",
    "EdgeWrite",
    "EdgeWrites",
    "IndexRow",
    "Intent",
    "MemberEdgeRow",
    "PendingChange",
    "Repository",
    "ReverseEdge",
    "ReverseEdgeRow",
    "Scan",
    "StoredResource",
]


@dataclass(frozen=True)
class ReverseEdge:
    """A user's record that it belongs to a group (the user side of membership).

    ``pending`` edges are being written or removed by ``scim.service.membership``;
    readers verify them against the group's member edge instead of trusting them.
    """

    group_id: str
    pending: bool = False
    written: datetime | None = None
    etag: str | None = None
    """The edge row's ETag when read: a user DELETE removes the edge only if it is still so."""


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
    version: int = 0
    """The version counter: +1 on every committed change (``meta.version`` is ``W/"<version>"``)."""
    index_rows: tuple[str, ...] | None = None
    """The keys of the index rows the resource's last write made (None: written before they were kept)."""


@dataclass(frozen=True)
class Scan:
    """What :meth:`Repository.scan` gives back: the rows read, and the filter they still have to pass.

    ``residual`` None means every row matches; otherwise the caller evaluates
    it on each row. A storage that narrows only approximately (Table Storage's
    push-down, ``scim.storage.pushdown``) hands back the whole filter.
    """

    rows: AsyncIterator[StoredResource]
    residual: ScimFilter[Any] | None = None


@dataclass(frozen=True)
class IndexRow:
    """A unique-index row as found in storage (for the consistency checker)."""

    kind: str
    attribute: str
    row_key: str
    resource_id: str
    etag: str = ""
    """The row's ETag as read (a repair deletes the row only if it is unchanged)."""


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


@dataclass(frozen=True)
class Intent:
    """The mark an in-flight membership operation leaves on a reverse edge (``scim.service.membership``).

    Each operation names its own intent (a random token), so concurrent
    operations on one edge never overwrite each other's marks: an ``add``
    intent keeps the edge while its member edge may still be written, a
    ``remove`` intent keeps it pending while its member edge may still be deleted.
    """

    kind: Literal["add", "remove"]
    written: datetime


@dataclass(frozen=True)
class EdgeState:
    """A reverse edge as read for a conditional rewrite."""

    user_id: str
    etag: str
    pending: bool
    intents: Mapping[str, Intent] = field(default_factory=dict)


@dataclass(frozen=True)
class EdgeWrite:
    """A conditional write of one reverse edge (user partition).

    ``etag`` None: the edge must not exist (insert); otherwise it must still be
    at ``etag``. ``delete`` removes it; else it becomes ``pending`` with exactly
    ``intents``. ``touch_user`` also MERGEs the user row in the same
    transaction: it fails when the user does not exist, and it changes the
    user's ETag, so a concurrent DELETE of the user retries and sees the edge.
    """

    user_id: str
    etag: str | None
    pending: bool = True
    intents: Mapping[str, Intent] = field(default_factory=dict)
    delete: bool = False
    touch_user: bool = False


@dataclass
class EdgeWrites:
    """What became of a set of :class:`EdgeWrite`."""

    etags: dict[str, str] = field(default_factory=dict)
    """The new ETag of each edge written (not of those deleted)."""
    conflicts: set[str] = field(default_factory=set)
    """Users whose edge was not as expected (changed, gone, or already there): re-read and retry."""
    missing_users: set[str] = field(default_factory=set)
    """Users that do not exist (``touch_user`` failed): nothing was written for them."""


@dataclass(frozen=True)
class PendingChange:
    """An outbox row: a committed change not yet published (``scim.feed.relay``)."""

    row_key: str
    etag: str
    change: Change


InventoryRow = StoredResource | IndexRow | ReverseEdgeRow | MemberEdgeRow


class Repository(Protocol):
    """Storage of SCIM resources, one partition per (tenant, resource type).

    Every write is one atomic transaction with the resource's unique-index
    rows; ``unique`` maps an attribute name to its comparison key.
    All methods raise :class:`scim.model.errors.ServiceUnavailableError` when storage
    is unreachable or throttling.
    """

    async def create(
        self,
        kind: str,
        resource_id: str,
        document: dict[str, Any],
        index: Sequence[IndexEntry],
        *,
        change: Change | None = None,
    ) -> str:
        """Insert a resource, its index rows and the record of its change; return the new ETag.

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

    async def lookup(self, kind: str, index: str, key: str) -> list[StoredResource]:
        """The resources whose indexed attribute (stored as ``index``) has comparison key ``key``."""
        ...

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
        """If the ETag is still ``current.etag``, replace the document and record the change; new ETag.

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

    async def delete(
        self, kind: str, current: StoredResource, index: Sequence[IndexEntry], change: Change | None = None
    ) -> None:
        """Delete the resource, its index rows and ``current.edges`` if its ETag is still ``current.etag``.

        The record of the change is written in the transaction that deletes the resource row.

        Raises:
            PreconditionFailedError: The resource changed since ``current`` was read.
            NotFoundError: The resource was deleted since.
        """
        ...

    def scan(self, kind: str, *, after: str | None = None, where: ScimFilter[Any] | None = None) -> Scan:
        """Resources of ``kind`` in id order, after the resource ``after``, and what ``where`` leaves to test.

        ``where`` is the request's parsed filter, bound to the resource type
        (RFC 7644 §3.4.2.2). The storage may use it to narrow the rows it reads
        (and may then leave out reverse edges: ``edges_known`` is False); what
        it has not decided exactly comes back as :attr:`Scan.residual`, which
        the caller evaluates on every row.
        """
        ...

    async def count(self, kind: str) -> int:
        """How many resources of ``kind`` exist (reads keys only)."""
        ...

    async def read_reverse_edges(self, group_id: str, user_ids: Sequence[str]) -> dict[str, EdgeState]:
        """The users' reverse edges to ``group_id`` that exist, by user id (1 query per 14 users)."""
        ...

    async def write_reverse_edges(self, group_id: str, writes: Sequence[EdgeWrite]) -> EdgeWrites:
        """Apply conditional reverse-edge writes; a failed condition never fails the others."""
        ...

    async def mark_reverse_edges_pending(
        self, group_id: str, user_ids: Sequence[str], token: str, intent: Intent
    ) -> set[str]:
        """Add ``intent`` to the users' reverse edges and flag them pending; return the users without one.

        A blind MERGE, no read: the other intents on the edges stay.
        """
        ...

    async def delete_reverse_edges(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Delete (user id, group id) reverse edges; absent ones are ignored."""
        ...

    async def write_member_edges(
        self,
        group: StoredResource,
        *,
        modified: str,
        add: Mapping[str, str | None] | None = None,
        remove: Sequence[str] = (),
        conditional: bool = False,
        record: Callable[[int, tuple[str, ...], tuple[str, ...], str], Change] | None = None,
    ) -> StoredResource:
        """Add (id → display) and remove member edges; each batch is one version of the group.

        Each batch carries ``record(version, added, removed, modified)``. Returns the group
        with its new ETag and version.

        Raises:
            PreconditionFailedError: ``conditional`` and the group changed since ``group`` was read.
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

    async def pending_changes(self, kind: str, limit: int = 1000) -> list[PendingChange]:
        """Committed changes not yet published (outbox rows), a resource's in version order."""
        ...

    async def settle_changes(self, kind: str, published: Sequence[PendingChange]) -> int:
        """Move published changes from the outbox to the audit trail; how many this call moved."""
        ...

    def audit_records(
        self, kind: str, *, since: str = "", until: str = "~"
    ) -> AsyncIterator[tuple[Change, bool]]:
        """Recorded changes between two ISO times, with whether each was published."""
        ...

    async def prune_audit(self, kind: str, before: str) -> int:
        """Delete audit records older than ``before`` (ISO time); return how many."""
        ...

    def inventory(self, kind: str) -> AsyncIterator[InventoryRow]:
        """Every row of a resource type's partition, typed (consistency checks)."""
        ...

    def index_row_keys(self, stored: StoredResource, entries: Sequence[IndexEntry]) -> dict[str, IndexEntry]:
        """The RowKeys of the index rows a stored resource should have, for its ``entries``."""
        ...

    def legacy_index_row_keys(self, stored: StoredResource, entries: Sequence[IndexEntry]) -> dict[str, str]:
        """Legacy hashed RowKey → today's RowKey, for each of the resource's long indexed values."""
        ...

    async def rewrite_legacy_index_row(
        self, kind: str, resource_id: str, legacy_key: str, entries: Sequence[IndexEntry]
    ) -> None:
        """Move a long value's index row from its legacy hashed key to today's (consistency repair)."""
        ...

    async def delete_index_row(self, kind: str, row_key: str) -> None:
        """Delete an index row (consistency repair)."""
        ...

    async def create_index_row(self, kind: str, entry: IndexEntry, resource_id: str) -> None:
        """Create a missing index row (consistency repair).

        Raises:
            UniquenessError: Another resource holds the key.
        """
        ...

    async def index_row(self, kind: str, row_key: str) -> IndexRow | None:
        """One point read of an index row, with its ETag; None when it does not exist (consistency repair)."""
        ...

    async def delete_index_row_if_unchanged(self, kind: str, row: IndexRow) -> None:
        """Delete an index row only if it is still at ``row.etag`` (consistency repair).

        Raises:
            PreconditionFailedError: The row changed since it was read.
            NotFoundError: The row is gone.
        """
        ...

    async def restore_index_row(self, kind: str, current: StoredResource, entry: IndexEntry) -> None:
        """Create a resource's missing index row and list it in ``ix`` (consistency repair).

        One transaction, conditional on the resource still being at ``current.etag``.

        Raises:
            PreconditionFailedError: The resource changed since ``current`` was read.
            NotFoundError: The resource is gone.
            UniquenessError: The row exists (another resource holds the key).
        """
        ...

    async def reverse_edges(
        self, kind: str, resource_ids: Sequence[str]
    ) -> dict[str, tuple[ReverseEdge, ...]]:
        """The reverse edges of several resources at once."""
        ...
