"""Group membership across two partitions, written in a crash-safe order.

A membership is stored twice (DESIGN §5): a **member edge** in the group's
partition (``Group.members`` reads it, 1,000 per round trip, never inside the
group row) and a **reverse edge** beside the user's row (so ``GET /Users/{id}``
returns ``groups`` in its single read). Table Storage cannot write both in one
transaction, so every change goes through phases that keep two invariants
after *each* write — a crash anywhere leaves a state readers answer correctly:

* **I1** a member edge (g, u) exists ⇒ the reverse edge (u, g) exists;
* **I2** a reverse edge (u, g) that is not *pending* ⇒ the member edge (g, u)
  exists (unless the user is flagged as being deleted).

So ``Group.members`` is the member edges, and ``User.groups`` is the settled
reverse edges plus the pending ones whose member edge exists (verified, which
only costs anything after a crash or during a concurrent write).

========================  =====================================================
Add users U to group g    1. reverse edges (u, g) written *pending*; each user
                             row is touched, so unknown users are found (and
                             skipped) and a concurrent user DELETE retries
                          2. member edges (g, u) written, the group row
                             rewritten conditionally in every batch
                          3. reverse edges settled — only those still as
                             phase 1 wrote them (ETag), so an edge a concurrent
                             removal or group deletion has marked is never
                             settled behind its back; user rows touched again
                             (a user deleted meanwhile gets its edges removed)
Remove users U from g     1. reverse edges marked pending (users without one
                             are not members: nothing to do)
                          2. member edges deleted (group row conditional)
                          3. reverse edges deleted
Delete user u             flag u *deleting*; delete its member edges; delete
                          its reverse edges, index rows, and row last
Delete group g            mark its members' reverse edges pending; delete its
                          member edges, index rows and row last; delete the
                          reverse edges
========================  =====================================================

A retried request re-runs every phase (each is idempotent), which repairs
what a crash interrupted; reads repair pending edges older than
:data:`REPAIR_AFTER`. Member ids that match no user are skipped, logged, and
can never appear in a later GET (phase 1 proves each user exists).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from scim.changes import Change, timestamp
from scim.repository import Repository, ReverseEdge, StoredResource

__all__ = ["REPAIR_AFTER", "Membership", "is_resource_id"]

log = logging.getLogger(__name__)

MemberRecord = Callable[[int, tuple[str, ...], tuple[str, ...], str], Change]
"""Builds the change record of one member batch from (version, added ids, removed ids, time)."""

REPAIR_AFTER = timedelta(seconds=60)
"""Age after which a pending reverse edge is considered abandoned by a crash."""

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def is_resource_id(value: str) -> bool:
    """Whether ``value`` can be an id this service issued (a lower-case UUID)."""
    return bool(_UUID.match(value))


def _unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


class Membership:
    """The membership protocol of the module docstring, over a Repository."""

    def __init__(self, repository: Repository, *, clock: Callable[[], datetime] | None = None) -> None:
        self._repository = repository
        self._clock = clock or (lambda: datetime.now(UTC))

    # -- writes -------------------------------------------------------------

    async def change(
        self,
        group: StoredResource,
        *,
        add: Mapping[str, str | None] | None = None,
        remove: Sequence[str] = (),
        conditional: bool = False,
        record: MemberRecord | None = None,
    ) -> tuple[StoredResource, set[str]]:
        """Add (id → display) and remove members of ``group``; return its new state and the skipped ids.

        With ``conditional``, the member write fails unless the group is still
        at ``group.etag`` (the client's ``If-Match``). Each batch of member
        edges is one version of the group and carries ``record(version, added,
        removed, time)``, the change record of that batch (``scim.changes``).

        Raises:
            PreconditionFailedError: The group changed meanwhile; retry from a fresh read.
            NotFoundError: The group was deleted meanwhile.
        """
        add = add or {}
        removing = set(remove)
        wanted = [u for u in add if u not in removing]
        skipped = {u for u in wanted if not is_resource_id(u)}
        wanted = [u for u in wanted if u not in skipped]
        leaving = [u for u in _unique(remove) if is_resource_id(u)]

        etags: dict[str, str] = {}
        if wanted:  # phase 1 of an add
            staged = await self._repository.stage_reverse_edges(group.id, wanted, pending=True)
            skipped |= staged.missing
            wanted = [u for u in wanted if u not in staged.missing]
            etags = staged.etags
        if leaving:  # phase 1 of a removal: users without a reverse edge are not members (I1)
            not_members = await self._repository.mark_reverse_edges_pending(group.id, leaving)
            leaving = [u for u in leaving if u not in not_members]

        group = await self._repository.write_member_edges(
            group,
            modified=timestamp(self._clock()),
            add={u: add[u] for u in wanted},
            remove=leaving,
            conditional=conditional,
            record=record,
        )

        if wanted:  # phase 3 of an add: settle only the edges nobody touched since phase 1
            settled = await self._repository.stage_reverse_edges(group.id, wanted, pending=False, etags=etags)
            vanished = settled.missing
            if vanished:  # deleted while being added: undo the member edges (keeps I1)
                await self._repository.delete_member_edges((group.id, u) for u in vanished)
                await self._repository.delete_reverse_edges((u, group.id) for u in vanished)
        if leaving:  # phase 3 of a removal
            await self._repository.delete_reverse_edges((u, group.id) for u in leaving)
        if skipped:
            log.warning(
                "Skipped %d member id(s) of group %s that match no user: %s",
                len(skipped), group.id, ", ".join(sorted(skipped)[:5]),
            )  # fmt: skip
        return group, skipped

    async def remove_user(self, user: StoredResource) -> None:
        """Delete the member edges of a user flagged *deleting* (before its rows go)."""
        await self._repository.delete_member_edges((edge.group_id, user.id) for edge in user.edges)

    async def prepare_group_deletion(self, group: StoredResource) -> list[str]:
        """Mark every member's reverse edge pending; return the member ids."""
        members = [member for member, _ in await self.members(group.id)]
        await self._repository.mark_reverse_edges_pending(group.id, members)
        return members

    async def finish_group_deletion(self, group_id: str, members: Sequence[str]) -> None:
        """Delete the reverse edges of a deleted group's former members."""
        await self._repository.delete_reverse_edges((u, group_id) for u in members)

    # -- reads ----------------------------------------------------------------

    async def members(self, group_id: str) -> list[tuple[str, str | None]]:
        """Every member of a group as (id, display) (1 round trip per 1,000)."""
        return [member async for member in self._repository.members(group_id)]

    async def groups_of(self, user: StoredResource) -> list[str]:
        """The groups a user is in, per the invariants; repairs abandoned pending edges."""
        if not user.edges:
            return []
        doubtful = [e for e in user.edges if e.pending or user.deleting]
        settled = [e.group_id for e in user.edges if not (e.pending or user.deleting)]
        if not doubtful:
            return settled
        pairs = [(e.group_id, user.id) for e in doubtful]
        confirmed = {g for g, _ in await self._repository.existing_member_edges(pairs)}
        if not user.deleting:
            await self._repair(user.id, [e for e in doubtful if self._abandoned(e)], confirmed)
        return settled + [e.group_id for e in doubtful if e.group_id in confirmed]

    def _abandoned(self, edge: ReverseEdge) -> bool:
        return edge.pending and edge.written is not None and self._clock() - edge.written > REPAIR_AFTER

    async def _repair(self, user_id: str, edges: list[ReverseEdge], confirmed: set[str]) -> None:
        """Settle pending edges a crash left behind: confirm them or delete them."""
        for edge in edges:
            if edge.group_id in confirmed:
                await self._repository.stage_reverse_edges(edge.group_id, [user_id], pending=False)
            else:
                await self._repository.delete_reverse_edges([(user_id, edge.group_id)])
            log.info("Repaired pending membership of user %s in group %s", user_id, edge.group_id)
