"""Group membership across two partitions: writes that converge whatever the interleaving.

A membership is stored twice (DESIGN §5): a **member edge** in the group's
partition (``Group.members`` reads it, 1,000 per round trip, never inside the
group row) and a **reverse edge** beside the user's row (so ``GET /Users/{id}``
returns ``groups`` in its single read). Table Storage cannot write both in one
transaction. The member edge is the truth; the reverse edge follows it, and
readers trust it only when it is *settled*. Two invariants hold after every
write, whatever runs concurrently, so a crash anywhere leaves a state that
readers answer correctly:

* **I1** a member edge (g, u) exists ⇒ the reverse edge (u, g) exists;
* **I2** a settled reverse edge (u, g) ⇒ the member edge (g, u) exists
  (unless the user is flagged as being deleted).

``User.groups`` is the settled reverse edges plus the pending ones whose
member edge exists (verified: it costs a query only during a concurrent write
or after a crash).

Every operation marks each reverse edge it touches with its own **intent** (a
random token, ``add`` or ``remove``, :class:`scim.storage.repository.Intent`); marks
of concurrent operations sit side by side and never overwrite each other.

========================  =====================================================
Add users U to group g    1. each reverse edge gets an ``add`` intent and turns
                             pending — inserted when absent (the user row is
                             touched in the same transaction, so an unknown user
                             is skipped and a concurrent user DELETE retries); an
                             edge already settled is a member: nothing to do
                          2. member edges written (group row conditional)
                          3. settle (below)
Remove users U from g     1. each existing reverse edge gets a ``remove`` intent
                             and turns pending (no edge: not a member, by I1)
                          2. member edges deleted (group row conditional)
                          3. settle (below)
Settle                    re-read the reverse edge, *then* the member edge, and
                          write, conditional on the edge's ETag: drop this
                          operation's intent; member edge present → settled
                          unless a ``remove`` intent remains; absent → deleted
                          unless an ``add`` intent remains (then pending). A
                          failed condition re-reads. When the edge was left as
                          phase 1 wrote it and carried no other intent, nothing
                          can have moved the member edge since phase 2, and the
                          write needs no read (the uncontended case).
Delete user u             flag u *deleting*; delete its member edges; delete
                          its reverse edges, index rows, and row last
Delete group g            mark its members' reverse edges pending; delete its
                          member edges, index rows and row last (a member write
                          touches the group row, so a concurrent add makes the
                          delete retry); then delete the reverse edges
========================  =====================================================

Why it converges: the last successful settle write read the edge, then the
member edge; a member write after that read is followed by its own settle,
which either finds nothing to change or writes later — a contradiction. Why
I2 holds: a member edge is deleted only after a ``remove`` intent is on the
reverse edge, and settling is conditional on the ETag read before the member
edge. ``tests/unit/test_membership_model.py`` explores interleavings of the real
code; ``tests/integration/test_membership_races.py`` races it on Azurite.

A retried request re-runs every phase (each is idempotent), which repairs
what a crash interrupted; an intent older than :data:`INTENT_LIFETIME` was
abandoned by a crash and is dropped by the next settle; readers settle
pending edges older than :data:`REPAIR_AFTER`. Member ids that match no user
are skipped, logged, and can never appear in a later GET. A batch that
changes nothing (only unknown ids, members already present, non-members
removed) writes nothing: the group keeps its version and emits no event.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from scim.logs import printable
from scim.model.changes import Change, timestamp
from scim.model.errors import ConflictError
from scim.storage.repository import EdgeState, EdgeWrite, Intent, Repository, ReverseEdge, StoredResource

__all__ = ["INTENT_LIFETIME", "REPAIR_AFTER", "Membership", "is_resource_id"]

log = logging.getLogger(__name__)

MemberRecord = Callable[[int, tuple[str, ...], tuple[str, ...], str], Change]
"""Builds the change record of one member batch from (version, added ids, removed ids, time)."""

INTENT_LIFETIME = timedelta(minutes=10)
"""Age after which an intent is taken as abandoned by a crash: twice the longest an invocation
may run (host.json ``functionTimeout``, 5 minutes; Azure's front end cuts HTTP at 230 s).
Correctness never depends on it: an abandoned intent only keeps its edge pending (verified by
readers, never trusted) until it is dropped."""

REPAIR_AFTER = INTENT_LIFETIME
"""Age after which a reader settles a pending reverse edge (its intents are then abandoned)."""

SETTLE_ATTEMPTS = 16
"""Re-reads of one settle against concurrent writers of the same edges."""

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def is_resource_id(value: str) -> bool:
    """Whether ``value`` can be an id this service issued (a lower-case UUID)."""
    return bool(_UUID.match(value))


def _unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


@dataclass(frozen=True)
class _Staged:
    """A reverse edge this operation marked: its ETag then, and whether it carried no other intent."""

    etag: str
    alone: bool


def settled_state(
    edge: EdgeState, member: bool, *, token: str | None, now: datetime
) -> tuple[bool, dict[str, Intent]] | None:
    """What a reverse edge must become, given whether its member edge exists (None: deleted).

    ``token``'s own intent is dropped, and intents older than
    :data:`INTENT_LIFETIME`. A member edge present → settled, unless a
    ``remove`` intent remains (its member delete may still come); absent →
    deleted, unless an ``add`` intent remains (its member write may still come).
    """
    intents = {
        name: intent
        for name, intent in edge.intents.items()
        if name != token and now - intent.written <= INTENT_LIFETIME
    }
    kinds = {intent.kind for intent in intents.values()}
    if member:
        return "remove" in kinds, intents
    if "add" in kinds:
        return True, intents
    return None


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
        removed, time)``, the change record of that batch (``scim.model.changes``).
        A change that turns out to change nothing writes nothing.

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
        token = secrets.token_hex(6)

        staged: dict[str, _Staged] = {}
        added: set[str] | None = None
        try:
            # phase 1: mark the reverse edges (a member with a display to store is written again)
            keep_display = {u for u in wanted if add[u] is None}
            skipped |= await self._mark(group.id, wanted, token, "add", staged, skip_settled=keep_display)
            await self._mark(group.id, leaving, token, "remove", staged)
            adding = [u for u in wanted if u in staged]
            removing_now = [u for u in leaving if u in staged]
            if adding or removing_now:  # phase 2
                group = await self._repository.write_member_edges(
                    group,
                    modified=timestamp(self._clock()),
                    add={u: add[u] for u in adding},
                    remove=removing_now,
                    conditional=conditional,
                    record=record,
                )
            added = set(adding)
        finally:  # phase 3, also when a phase failed: no intent of this operation outlives it
            if staged:
                await self._settle(group.id, staged, token, added=added)
        if skipped:
            log.warning(
                "Skipped %d member id(s) of group %s that match no user: %s",
                len(skipped), group.id, ", ".join(printable(u, 40) for u in sorted(skipped)[:5]),
            )  # fmt: skip
        return group, skipped

    async def _mark(
        self,
        group_id: str,
        user_ids: Sequence[str],
        token: str,
        kind: Literal["add", "remove"],
        staged: dict[str, _Staged],
        *,
        skip_settled: set[str] | None = None,
    ) -> set[str]:
        """Phase 1: put this operation's intent on each user's reverse edge, recording it in ``staged``.

        Returns the users skipped as unknown (adds). An ``add`` first tries to
        insert the edge (the common case: one transaction, no read); an edge
        that exists is re-read and rewritten conditionally. Skipped without a
        write: an ``add`` of a user in ``skip_settled`` whose edge is settled
        (already a member, by I2), a ``remove`` of a user without an edge (not
        a member, by I1).

        Raises:
            ConflictError: The edges kept changing (``staged`` holds what was marked).
        """
        missing: set[str] = set()
        if not user_ids:
            return missing
        intent = Intent(kind, self._clock())
        todo = list(user_ids)
        if kind == "add":
            writes = [EdgeWrite(u, None, True, {token: intent}, touch_user=True) for u in todo]
            outcome = await self._repository.write_reverse_edges(group_id, writes)
            staged.update({u: _Staged(etag, True) for u, etag in outcome.etags.items()})
            missing |= outcome.missing_users
            todo = [u for u in todo if u in outcome.conflicts]
        for _ in range(SETTLE_ATTEMPTS):
            if not todo:
                return missing
            edges = await self._repository.read_reverse_edges(group_id, todo)
            writes = []
            for user_id in todo:
                edge = edges.get(user_id)
                if edge is None:
                    if kind == "add":  # deleted since the insert failed: insert again
                        writes.append(EdgeWrite(user_id, None, True, {token: intent}, touch_user=True))
                    continue
                if kind == "add" and not edge.pending and user_id in (skip_settled or set()):
                    continue
                intents = {**edge.intents, token: intent}
                writes.append(EdgeWrite(user_id, edge.etag, True, intents, touch_user=kind == "add"))
            outcome = await self._repository.write_reverse_edges(group_id, writes)
            alone = {w.user_id: len(w.intents) == 1 for w in writes}
            staged.update({u: _Staged(etag, alone[u]) for u, etag in outcome.etags.items()})
            missing |= outcome.missing_users
            todo = [w.user_id for w in writes if w.user_id in outcome.conflicts]
        raise ConflictError("The group's memberships were changed by concurrent requests; retry.")

    async def _settle(
        self, group_id: str, staged: Mapping[str, _Staged], token: str, *, added: set[str] | None
    ) -> None:
        """Phase 3: drop this operation's intents; the edges follow their member edges.

        ``added`` is the users whose member edges phase 2 wrote (the others'
        it deleted), or None when phase 2 did not complete. An edge still as
        phase 1 left it, with no other intent, is then written without a read:
        no other operation touched it, so its member edge is as phase 2 left it.
        Every other edge is reconciled.
        """
        fast = [u for u, mark in staged.items() if mark.alone] if added is not None else []
        writes = [
            EdgeWrite(u, staged[u].etag, False)
            if u in (added or set())
            else EdgeWrite(u, staged[u].etag, delete=True)
            for u in fast
        ]
        outcome = await self._repository.write_reverse_edges(group_id, writes)
        done = set(fast) - outcome.conflicts
        await self.reconcile(group_id, [u for u in staged if u not in done], token=token)

    async def reconcile(self, group_id: str, user_ids: Sequence[str], *, token: str | None = None) -> None:
        """Make the users' reverse edges to ``group_id`` follow their member edges (safe under live traffic).

        Re-reads each reverse edge, *then* its member edge, and writes what
        :func:`settled_state` says, conditional on the edge's ETag (a changed
        edge is re-read). A member edge without a reverse edge gets one back
        when its user exists, and is removed when the user is gone.
        Used by phase 3, by readers for abandoned pending edges, and by
        ``python -m scim check --repair``.

        Raises:
            ConflictError: The edges kept changing for :data:`SETTLE_ATTEMPTS` rounds.
        """
        todo = _unique(user_ids)
        for _ in range(SETTLE_ATTEMPTS):
            if not todo:
                return
            edges = await self._repository.read_reverse_edges(group_id, todo)
            present = await self._repository.existing_member_edges([(group_id, u) for u in todo])
            now = self._clock()
            writes = []
            for user_id in todo:
                member = (group_id, user_id) in present
                edge = edges.get(user_id)
                if edge is None:
                    if member:  # I1 broken (a crash, or the user deleted meanwhile): the truth wins
                        writes.append(EdgeWrite(user_id, None, False, touch_user=True))
                    continue
                wanted = settled_state(edge, member, token=token, now=now)
                if wanted is None:
                    writes.append(EdgeWrite(user_id, edge.etag, delete=True))
                elif wanted != (edge.pending, dict(edge.intents)):
                    writes.append(EdgeWrite(user_id, edge.etag, wanted[0], wanted[1]))
            outcome = await self._repository.write_reverse_edges(group_id, writes)
            if outcome.missing_users:  # member edges of users that are gone
                await self._repository.delete_member_edges((group_id, u) for u in outcome.missing_users)
            todo = sorted(outcome.conflicts)
        raise ConflictError("The group's memberships were changed by concurrent requests; retry.")

    async def remove_user(self, user: StoredResource) -> None:
        """Delete the member edges of a user flagged *deleting* (before its rows go)."""
        await self._repository.delete_member_edges((edge.group_id, user.id) for edge in user.edges)

    async def prepare_group_deletion(self, group: StoredResource) -> list[str]:
        """Put a ``remove`` intent on every member's reverse edge (no read); return the member ids."""
        members = [member for member, _ in await self.members(group.id)]
        intent = Intent("remove", self._clock())
        await self._repository.mark_reverse_edges_pending(group.id, members, secrets.token_hex(6), intent)
        return members

    async def finish_group_deletion(self, group_id: str, members: Sequence[str]) -> None:
        """Delete the reverse edges of a deleted group's former members (no member edge can come back)."""
        await self._repository.delete_reverse_edges((u, group_id) for u in members)

    # -- reads ----------------------------------------------------------------

    async def members(self, group_id: str) -> list[tuple[str, str | None]]:
        """Every member of a group as (id, display) (1 round trip per 1,000)."""
        return [member async for member in self._repository.members(group_id)]

    async def groups_of(self, user: StoredResource) -> list[str]:
        """The groups a user is in, per the invariants; settles pending edges left too long."""
        if not user.edges:
            return []
        doubtful = [e for e in user.edges if e.pending or user.deleting]
        settled = [e.group_id for e in user.edges if not (e.pending or user.deleting)]
        if not doubtful:
            return settled
        pairs = [(e.group_id, user.id) for e in doubtful]
        confirmed = {g for g, _ in await self._repository.existing_member_edges(pairs)}
        if not user.deleting:
            await self._repair(user.id, [e for e in doubtful if self._abandoned(e)])
        return settled + [e.group_id for e in doubtful if e.group_id in confirmed]

    def _abandoned(self, edge: ReverseEdge) -> bool:
        return edge.pending and edge.written is not None and self._clock() - edge.written > REPAIR_AFTER

    async def _repair(self, user_id: str, edges: list[ReverseEdge]) -> None:
        """Settle pending edges a crash (or a very slow writer) left behind."""
        for edge in edges:
            try:
                await self.reconcile(edge.group_id, [user_id])
            except ConflictError:
                continue  # busy: a writer settles it, or the next reader does
            log.info("Settled pending membership of user %s in group %s", user_id, edge.group_id)
