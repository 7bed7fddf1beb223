"""The consistency checker: find, and optionally repair, what no request should leave behind.

Every write is atomic within a partition, and membership writes keep the
invariants of ``scim.membership`` after each step, so a healthy table has no
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
``pending-edge``             a reverse edge a crash left pending
``interrupted-delete``       a user flagged *deleting* (a DELETE that did not finish)
===========================  ====================================================

``python -m scim check`` reports them; ``--repair`` fixes each (the member
edge is the truth for membership; an interrupted delete is only reported,
since re-sending the DELETE is the client's decision).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from scim.errors import ScimError
from scim.repository import IndexEntry, IndexRow, MemberEdgeRow, Repository, ReverseEdgeRow, StoredResource
from scim.resources import GROUP, USER, ResourceKind

__all__ = ["Anomaly", "check", "repair"]


@dataclass(frozen=True)
class Anomaly:
    """One inconsistency, and how to repair it (None: report only)."""

    code: str
    detail: str
    fix: Callable[[], Awaitable[None]] | None = None


@dataclass
class _Partition:
    resources: dict[str, StoredResource]
    indexes: list[IndexRow]
    reverse: list[ReverseEdgeRow]
    members: list[MemberEdgeRow]


async def _read(repository: Repository, kind: str) -> _Partition:
    partition = _Partition({}, [], [], [])
    async for row in repository.inventory(kind):
        if isinstance(row, StoredResource):
            partition.resources[row.id] = row
        elif isinstance(row, IndexRow):
            partition.indexes.append(row)
        elif isinstance(row, ReverseEdgeRow):
            partition.reverse.append(row)
        else:
            partition.members.append(row)
    return partition


def _index_anomalies(repository: Repository, kind: ResourceKind, partition: _Partition) -> list[Anomaly]:
    anomalies: list[Anomaly] = []
    expected: dict[str, tuple[str, IndexEntry]] = {}
    for stored in partition.resources.values():
        for row_key, entry in repository.index_row_keys(stored, kind.index_entries(stored.document)).items():
            expected[row_key] = (stored.id, entry)
    present = {row.row_key: row for row in partition.indexes}
    for row_key, row in present.items():
        owner = expected.get(row_key)
        if owner is None or owner[0] != row.resource_id:
            anomalies.append(
                Anomaly(
                    "orphaned-index",
                    f"{kind.name} index {row.attribute} points to {row.resource_id}, which does not hold it",
                    _unindex(repository, kind.name, row_key),
                )
            )
    for row_key, (resource_id, entry) in expected.items():
        if row_key not in present:
            anomalies.append(
                Anomaly(
                    "missing-index",
                    f"{kind.name} {resource_id} has no {entry.name or entry.index} index row",
                    _reindex(repository, kind.name, entry, resource_id),
                )
            )
    return anomalies


def _membership_anomalies(repository: Repository, users: _Partition, groups: _Partition) -> list[Anomaly]:
    anomalies: list[Anomaly] = []
    reverse = {(edge.user_id, edge.group_id): edge for edge in users.reverse}
    members = {(edge.group_id, edge.user_id) for edge in groups.members}
    for group_id, user_id in sorted(members):
        if group_id not in groups.resources:
            detail = f"member edge of deleted group {group_id}"
            anomalies.append(
                Anomaly("member-of-missing-group", detail, _unlink(repository, group_id, user_id))
            )
        elif user_id not in users.resources:
            detail = f"group {group_id} lists deleted user {user_id}"
            anomalies.append(Anomaly("member-missing-user", detail, _unlink(repository, group_id, user_id)))
        elif (user_id, group_id) not in reverse:
            detail = f"user {user_id} in group {group_id} has no reverse edge"
            fix = _settle(repository, user_id, group_id)
            anomalies.append(Anomaly("member-without-reverse", detail, fix))
    deleting = {user.id for user in users.resources.values() if user.deleting}
    for (user_id, group_id), edge in sorted(reverse.items()):
        if user_id in deleting:
            continue  # part of the interrupted delete reported below; readers verify these edges
        has_member = (group_id, user_id) in members and group_id in groups.resources
        if edge.pending:
            fix = (
                _settle(repository, user_id, group_id) if has_member else _drop(repository, user_id, group_id)
            )
            anomalies.append(Anomaly("pending-edge", f"user {user_id} / group {group_id} left pending", fix))
        elif not has_member:
            detail = f"user {user_id} lists group {group_id}, which does not list it"
            anomalies.append(Anomaly("reverse-without-member", detail, _drop(repository, user_id, group_id)))
    for user in users.resources.values():
        if user.deleting:
            anomalies.append(
                Anomaly("interrupted-delete", f"user {user.id} was being deleted; re-send the DELETE")
            )
    return anomalies


def _settle(repository: Repository, user_id: str, group_id: str) -> Callable[[], Awaitable[None]]:
    async def fix() -> None:
        await repository.stage_reverse_edges(group_id, [user_id], pending=False)

    return fix


def _drop(repository: Repository, user_id: str, group_id: str) -> Callable[[], Awaitable[None]]:
    async def fix() -> None:
        await repository.delete_reverse_edges([(user_id, group_id)])

    return fix


def _unlink(repository: Repository, group_id: str, user_id: str) -> Callable[[], Awaitable[None]]:
    async def fix() -> None:
        await repository.delete_member_edges([(group_id, user_id)])

    return fix


def _unindex(repository: Repository, kind: str, row_key: str) -> Callable[[], Awaitable[None]]:
    async def fix() -> None:
        await repository.delete_index_row(kind, row_key)

    return fix


def _reindex(
    repository: Repository, kind: str, entry: IndexEntry, resource_id: str
) -> Callable[[], Awaitable[None]]:
    async def fix() -> None:
        await repository.create_index_row(kind, entry, resource_id)

    return fix


async def check(
    repository: Repository, kinds: tuple[ResourceKind, ResourceKind] = (USER, GROUP)
) -> list[Anomaly]:
    """Scan the users' and groups' partitions; return every anomaly found."""
    user, group = kinds
    users = await _read(repository, user.name)
    groups = await _read(repository, group.name)
    return [
        *_index_anomalies(repository, user, users),
        *_index_anomalies(repository, group, groups),
        *_membership_anomalies(repository, users, groups),
    ]


async def repair(anomalies: list[Anomaly]) -> list[tuple[Anomaly, str]]:
    """Apply each anomaly's fix; return (anomaly, outcome) pairs."""
    outcomes = []
    for anomaly in anomalies:
        if anomaly.fix is None:
            outcomes.append((anomaly, "reported only"))
            continue
        try:
            await anomaly.fix()
            outcomes.append((anomaly, "repaired"))
        except ScimError as error:
            outcomes.append((anomaly, f"not repaired: {error.detail}"))
    return outcomes
