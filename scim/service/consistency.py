"""The consistency checker: find, and optionally repair, what no request should leave behind.

Every write is atomic within a partition, and membership writes keep the
invariants of ``scim.service.membership`` after each step, so a healthy table has no
anomaly. A crash, a storage outage mid-request or a hand edit can still leave:

===========================  ====================================================
``orphaned-index``           an index row whose resource is gone or holds another
                             value — it would block the value forever (409)
``missing-index``            a resource without its index row — its value is
                             not unique-checked nor findable by ``eq``
``member-of-missing-group``  a member edge of a deleted group
``member-missing-user``      a member edge naming a deleted user
``member-without-reverse``   a member edge without the user's reverse edge (I1)
``reverse-without-member``   a settled reverse edge without a member edge (I2)
``pending-edge``             a reverse edge left pending for longer than
                             :data:`scim.service.membership.REPAIR_AFTER`
``interrupted-delete``       a user or group flagged *deleting* (a DELETE that did not finish)
``legacy-index``             a long value's index row under the legacy ``sha256:``
                             key, which a short value could squat: rewritten
                             under today's ``%~sha256:`` key
===========================  ====================================================

``python -m scim check`` reports them; ``--repair`` fixes each (the member
edge is the truth for membership; an interrupted delete is only reported,
since re-sending the DELETE is the client's decision).

**Safe during live traffic** (DESIGN §11: a repair acts only on what it
re-reads and still finds broken). The two partitions are scanned at different
moments, and provisioning goes on meanwhile, so the scan only proposes
*candidates*:

* ``check`` re-reads each candidate's rows and reports it only if the fresh
  read still shows it; a pending edge younger than ``REPAIR_AFTER`` is a write
  in flight, not an anomaly;
* each fix re-reads again at repair time and does nothing when the anomaly is
  gone (outcome :data:`RESOLVED`). An index row is deleted only if it is still
  the row that was read (conditional on its ETag), and restored only together
  with a conditional write of its resource (one transaction); membership is
  never decided here: every membership fix is
  :meth:`scim.service.membership.Membership.reconcile`, which re-reads the edges and
  writes conditionally — except the member edge of a group that a re-read
  shows deleted (no writer can add one to a deleted group), which is deleted
  before its user's reverse edge is reconciled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from scim.model.errors import NotFoundError, ScimError
from scim.model.resources import GROUP, USER, IndexEntry, ResourceKind
from scim.service.membership import REPAIR_AFTER, Membership
from scim.storage.repository import IndexRow, MemberEdgeRow, Repository, ReverseEdgeRow, StoredResource

__all__ = ["REPAIRED", "RESOLVED", "Anomaly", "Progress", "check", "repair"]

REPAIRED = "repaired"
RESOLVED = "no longer broken"
"""The outcome of a fix whose re-read found nothing left to repair (a concurrent write fixed it)."""

Fix = Callable[[], Awaitable[str | None]]
"""Re-reads, repairs what is still broken; returns the outcome when not :data:`REPAIRED` (None)."""

Clock = Callable[[], datetime]
Kinds = tuple[ResourceKind, ResourceKind]


@dataclass(frozen=True)
class Anomaly:
    """One inconsistency, and how to repair it (None: report only)."""

    code: str
    detail: str
    fix: Fix | None = None


@dataclass(frozen=True)
class _Candidate:
    """An anomaly the scan suggests, and the re-read that confirms it (None: the fix re-reads)."""

    anomaly: Anomaly
    confirm: Callable[[], Awaitable[bool]] | None = None


@dataclass
class _Partition:
    resources: dict[str, StoredResource]
    indexes: list[IndexRow]
    reverse: list[ReverseEdgeRow]
    members: list[MemberEdgeRow]
    rows: int = 0


Progress = Callable[[int], None]
"""Told the number of rows read so far, after each row of the scan (the command line shows it)."""


async def _read(repository: Repository, kind: str, progress: Progress, before: int = 0) -> _Partition:
    partition = _Partition({}, [], [], [])
    async for row in repository.inventory(kind):
        partition.rows += 1
        progress(before + partition.rows)
        if isinstance(row, StoredResource):
            partition.resources[row.id] = row
        elif isinstance(row, IndexRow):
            partition.indexes.append(row)
        elif isinstance(row, ReverseEdgeRow):
            partition.reverse.append(row)
        else:
            partition.members.append(row)
    return partition


async def _get(repository: Repository, kind: str, resource_id: str) -> StoredResource | None:
    try:
        return await repository.get(kind, resource_id)
    except NotFoundError:
        return None


# -- index rows ------------------------------------------------------------------


def _index_anomalies(repository: Repository, kind: ResourceKind, partition: _Partition) -> list[_Candidate]:
    candidates: list[_Candidate] = []
    expected: dict[str, tuple[str, IndexEntry]] = {}
    for stored in partition.resources.values():
        for row_key, entry in repository.index_row_keys(stored, kind.index_entries(stored.document)).items():
            expected[row_key] = (stored.id, entry)
    present = {row.row_key: row for row in partition.indexes}
    # issue 14 item 4 (helper "hostile"): long values' rows still under the squattable ``sha256:`` key.
    legacy: dict[str, tuple[str, str]] = {}
    for stored in partition.resources.values():
        entries = kind.index_entries(stored.document)
        for old, new in repository.legacy_index_row_keys(stored, entries).items():
            row = present.get(old)
            if row is not None and row.resource_id == stored.id and new not in present:
                legacy[old] = (stored.id, new)
                detail = (
                    f"{kind.name} {stored.id} has its {row.attribute} index row under a legacy hashed key"
                )
                fix = _rekey(repository, kind.name, stored.id, old, entries)
                candidates.append(_Candidate(Anomaly("legacy-index", detail, fix)))
    handled = set(legacy) | {new for _, new in legacy.values()}
    for row_key, row in present.items():
        if row_key in handled:
            continue
        owner = expected.get(row_key)
        if owner is None or owner[0] != row.resource_id:
            detail = f"{kind.name} index {row.attribute} points to {row.resource_id}, which does not hold it"
            candidates.append(
                _Candidate(
                    Anomaly("orphaned-index", detail, _unindex(repository, kind, row_key)),
                    _confirmed(_orphaned(repository, kind, row_key)),
                )
            )
    for row_key, (resource_id, entry) in expected.items():
        if row_key not in present and row_key not in handled:
            detail = f"{kind.name} {resource_id} has no {entry.name or entry.index} index row"
            candidates.append(
                _Candidate(
                    Anomaly("missing-index", detail, _reindex(repository, kind, resource_id, row_key)),
                    _confirmed(_missing(repository, kind, resource_id, row_key)),
                )
            )
    return candidates


def _confirmed(reread: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[bool]]:
    async def confirm() -> bool:
        return await reread() is not None

    return confirm


def _orphaned(
    repository: Repository, kind: ResourceKind, row_key: str
) -> Callable[[], Awaitable[IndexRow | None]]:
    """Re-reads the index row, then the resource it names: the row, if that resource does not hold it."""

    async def reread() -> IndexRow | None:
        row = await repository.index_row(kind.name, row_key)
        if row is None:
            return None
        owner = await _get(repository, kind.name, row.resource_id)
        if owner is None:
            return row
        entries = kind.index_entries(owner.document)
        if row_key in repository.index_row_keys(owner, entries):
            return None
        today = repository.legacy_index_row_keys(owner, entries).get(row_key)
        if today is not None and await repository.index_row(kind.name, today) is None:
            return None  # the resource's row under the legacy key: ``legacy-index`` moves it
        return row

    return reread


def _missing(
    repository: Repository, kind: ResourceKind, resource_id: str, row_key: str
) -> Callable[[], Awaitable[tuple[StoredResource, IndexEntry] | None]]:
    """Re-reads the resource, then the row: (resource, entry) if it holds the value and has no row."""

    async def reread() -> tuple[StoredResource, IndexEntry] | None:
        current = await _get(repository, kind.name, resource_id)
        if current is None:
            return None
        entries = kind.index_entries(current.document)
        entry = repository.index_row_keys(current, entries).get(row_key)
        if entry is None or await repository.index_row(kind.name, row_key) is not None:
            return None
        legacy = {new: old for old, new in repository.legacy_index_row_keys(current, entries).items()}
        if row_key in legacy:
            old = await repository.index_row(kind.name, legacy[row_key])
            if old is not None and old.resource_id == resource_id:
                return None  # held under the legacy key: ``legacy-index`` moves it
        return current, entry

    return reread


def _unindex(repository: Repository, kind: ResourceKind, row_key: str) -> Fix:
    async def fix() -> str | None:
        row = await _orphaned(repository, kind, row_key)()
        if row is None:
            return RESOLVED
        await repository.delete_index_row_if_unchanged(kind.name, row)
        return None

    return fix


def _reindex(repository: Repository, kind: ResourceKind, resource_id: str, row_key: str) -> Fix:
    async def fix() -> str | None:
        found = await _missing(repository, kind, resource_id, row_key)()
        if found is None:
            return RESOLVED
        current, entry = found
        await repository.restore_index_row(kind.name, current, entry)
        return None

    return fix


def _rekey(
    repository: Repository, kind: str, resource_id: str, legacy_key: str, entries: tuple[IndexEntry, ...]
) -> Fix:
    async def fix() -> str | None:
        try:
            await repository.rewrite_legacy_index_row(kind, resource_id, legacy_key, entries)
        except NotFoundError:
            return RESOLVED  # the re-read found the row moved, or the resource gone or changed
        return None

    return fix


# -- membership ------------------------------------------------------------------


@dataclass(frozen=True)
class _Pair:
    """What one read shows of a (group, user) membership."""

    group_exists: bool
    member: bool
    user: StoredResource | None
    edge: ReverseEdgeRow | None

    def anomaly(self, now: datetime) -> str | None:
        """The anomaly's code, or None when healthy or a write is in flight."""
        if self.member and not self.group_exists:
            return "member-of-missing-group"
        if self.member and self.user is None:
            return "member-missing-user"
        if self.user is not None and self.user.deleting:
            return None  # part of the interrupted delete; readers verify these edges
        if self.edge is None:
            return "member-without-reverse" if self.member else None
        if self.edge.pending:
            written = self.edge.written
            return "pending-edge" if written is None or now - written > REPAIR_AFTER else None
        return None if self.member and self.group_exists else "reverse-without-member"


_DETAILS = {
    "member-of-missing-group": "member edge of deleted group {g} (user {u})",
    "member-missing-user": "group {g} lists deleted user {u}",
    "member-without-reverse": "user {u} in group {g} has no reverse edge",
    "reverse-without-member": "user {u} lists group {g}, which does not list it",
    "pending-edge": "user {u} / group {g} left pending",
}


async def _reread_pair(repository: Repository, kinds: Kinds, group_id: str, user_id: str) -> _Pair:
    """The pair as storage holds it now: the user row and its edges, the group row, the member edge."""
    user_kind, group_kind = kinds
    user = await _get(repository, user_kind.name, user_id)
    group = await _get(repository, group_kind.name, group_id)
    member = bool(await repository.existing_member_edges([(group_id, user_id)]))
    edge = None
    for found in user.edges if user is not None else ():
        if found.group_id == group_id:
            edge = ReverseEdgeRow(user_id, group_id, found.pending, found.written)
    return _Pair(group is not None, member, user, edge)


def _membership_anomalies(
    repository: Repository,
    kinds: Kinds,
    users: _Partition,
    groups: _Partition,
    now: datetime,
    clock: Clock,
) -> list[_Candidate]:
    candidates: list[_Candidate] = []
    reverse = {(edge.group_id, edge.user_id): edge for edge in users.reverse}
    members = {(edge.group_id, edge.user_id) for edge in groups.members}
    for group_id, user_id in sorted(members | set(reverse)):
        pair = _Pair(
            group_id in groups.resources,
            (group_id, user_id) in members,
            users.resources.get(user_id),
            reverse.get((group_id, user_id)),
        )
        code = pair.anomaly(now)
        if code is None:
            continue
        reread = _reread(repository, kinds, group_id, user_id, clock)
        fix = _unlink(repository, reread, group_id, user_id) if code == "member-of-missing-group" else None
        anomaly = Anomaly(
            code,
            _DETAILS[code].format(g=group_id, u=user_id),
            fix or _reconcile(repository, reread, group_id, user_id),
        )
        candidates.append(_Candidate(anomaly, _confirmed(reread)))
    for kind, partition in zip(kinds, (users, groups), strict=True):
        for resource in partition.resources.values():
            if resource.deleting:
                detail = f"{kind.name.lower()} {resource.id} was being deleted; re-send the DELETE"
                confirm = _still_deleting(repository, kind.name, resource.id)
                candidates.append(_Candidate(Anomaly("interrupted-delete", detail), confirm))
    return candidates


def _reread(
    repository: Repository, kinds: Kinds, group_id: str, user_id: str, clock: Clock
) -> Callable[[], Awaitable[str | None]]:
    """The pair's anomaly on a fresh read (None: healthy, or a write in flight)."""

    async def reread() -> str | None:
        return (await _reread_pair(repository, kinds, group_id, user_id)).anomaly(clock())

    return reread


def _still_deleting(repository: Repository, kind: str, resource_id: str) -> Callable[[], Awaitable[bool]]:
    async def confirm() -> bool:
        resource = await _get(repository, kind, resource_id)
        return resource is not None and resource.deleting

    return confirm


def _reconcile(
    repository: Repository, reread: Callable[[], Awaitable[str | None]], group_id: str, user_id: str
) -> Fix:
    async def fix() -> str | None:
        if await reread() is None:
            return RESOLVED
        await Membership(repository).reconcile(group_id, [user_id])
        return None

    return fix


def _unlink(
    repository: Repository, reread: Callable[[], Awaitable[str | None]], group_id: str, user_id: str
) -> Fix:
    """A member edge of a group a re-read shows deleted (no writer can add one): delete it, reconcile."""

    async def fix() -> str | None:
        if await reread() != "member-of-missing-group":
            return await _reconcile(repository, reread, group_id, user_id)()
        await repository.delete_member_edges([(group_id, user_id)])
        await Membership(repository).reconcile(group_id, [user_id])
        return None

    return fix


# -- the checker -----------------------------------------------------------------


async def check(
    repository: Repository,
    kinds: Kinds = (USER, GROUP),
    *,
    clock: Clock | None = None,
    progress: Progress | None = None,
) -> list[Anomaly]:
    """Scan the users' and groups' partitions; return every anomaly a re-read confirms.

    ``progress`` is called with the running count of rows read (both partitions).
    """
    clock = clock or (lambda: datetime.now(UTC))
    progress = progress or (lambda _: None)
    user, group = kinds
    users = await _read(repository, user.name, progress)
    groups = await _read(repository, group.name, progress, before=users.rows)
    candidates = [
        *_index_anomalies(repository, user, users),
        *_index_anomalies(repository, group, groups),
        *_membership_anomalies(repository, kinds, users, groups, clock(), clock),
    ]
    return [c.anomaly for c in candidates if c.confirm is None or await c.confirm()]


async def repair(anomalies: list[Anomaly]) -> list[tuple[Anomaly, str]]:
    """Apply each anomaly's fix (each re-reads first); return (anomaly, outcome) pairs."""
    outcomes = []
    for anomaly in anomalies:
        if anomaly.fix is None:
            outcomes.append((anomaly, "reported only"))
            continue
        try:
            outcome = await anomaly.fix()
            outcomes.append((anomaly, outcome or REPAIRED))
        except ScimError as error:
            outcomes.append((anomaly, f"not repaired: {error.detail}"))
    return outcomes
