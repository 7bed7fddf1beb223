"""Model check of the membership protocol: the real ``scim.service.membership`` code, thousands of interleavings.

The storage here is a model, not Table Storage: a few dicts with the
semantics the protocol relies on (ETags that change on every write,
conditional writes that fail as a whole transaction would, user rows touched
in the same transaction as their edge). Every storage call yields to the event
loop a random number of times first (seeded), so concurrent operations
interleave differently in each run; after **every** storage write the model
asserts the invariants of ``scim.service.membership``:

* I1: a member edge (g, u) ⇒ the reverse edge (u, g) exists (for a user not being deleted: an
  add whose member write lands after the user's DELETE leaves a member edge of a deleted user
  until its own settle removes it — nothing can stop a write to another partition);
* I2: a settled reverse edge (u, g) ⇒ the member edge exists (unless u is being deleted);

and at the end, that the outcome is one a serial order of the operations
gives, and that no intent is left behind. The same races run on Azurite in
``tests/integration/test_membership_races.py``; this file explores far more
orders than real I/O can in the same time.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from scim.model.errors import ConflictError, NotFoundError, PreconditionFailedError
from scim.service.membership import Membership
from scim.storage.repository import EdgeState, EdgeWrite, EdgeWrites, Intent, ReverseEdge, StoredResource

GROUP = "g"
USERS = ("00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002")


@dataclass
class Edge:
    etag: int
    pending: bool
    intents: dict[str, Intent] = field(default_factory=dict)


@dataclass
class Model:
    """The rows the protocol touches, with Table Storage's conditional-write semantics."""

    rng: random.Random
    users: dict[str, int] = field(default_factory=dict)  # user id → row ETag
    deleting: set[str] = field(default_factory=set)
    group: tuple[int, int] | None = (1, 0)  # (ETag, version); None: deleted
    group_deleting: bool = False
    edges: dict[str, Edge] = field(default_factory=dict)  # reverse edges (u, GROUP)
    members: set[str] = field(default_factory=set)  # member edges (GROUP, u)
    clock: int = 100

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    async def step(self) -> None:
        for _ in range(self.rng.randrange(4)):
            await asyncio.sleep(0)

    def check_invariants(self) -> None:
        for user in self.members:
            if user in self.users and user not in self.deleting:  # see the module docstring
                assert user in self.edges, f"I1 broken: {user} is a member without a reverse edge"
        for user, edge in self.edges.items():
            if not edge.pending and user not in self.deleting:
                assert user in self.members, f"I2 broken: settled edge of {user} without a member edge"


class ModelRepository:
    """The membership methods of :class:`scim.storage.repository.Repository`, over :class:`Model`."""

    def __init__(self, model: Model) -> None:
        self.m = model

    async def read_reverse_edges(self, group_id: str, user_ids: Sequence[str]) -> dict[str, EdgeState]:
        await self.m.step()
        return {
            u: EdgeState(u, str(e.etag), e.pending, dict(e.intents))
            for u in user_ids
            if (e := self.m.edges.get(u)) is not None
        }

    async def write_reverse_edges(self, group_id: str, writes: Sequence[EdgeWrite]) -> EdgeWrites:
        await self.m.step()
        outcome = EdgeWrites()
        for write in writes:  # each is its own pair of operations; a failed one is dropped
            if write.touch_user and write.user_id not in self.m.users:
                outcome.missing_users.add(write.user_id)
                continue
            edge = self.m.edges.get(write.user_id)
            if (write.etag is None) != (edge is None) or (edge and write.etag != str(edge.etag)):
                outcome.conflicts.add(write.user_id)
                continue
            if write.touch_user:
                self.m.users[write.user_id] = self.m.tick()
            if write.delete:
                del self.m.edges[write.user_id]
            else:
                etag = self.m.tick()
                self.m.edges[write.user_id] = Edge(etag, write.pending, dict(write.intents))
                outcome.etags[write.user_id] = str(etag)
            self.m.check_invariants()
        return outcome

    async def mark_reverse_edges_pending(
        self, group_id: str, user_ids: Sequence[str], token: str, intent: Intent
    ) -> set[str]:
        await self.m.step()
        for user in user_ids:
            if user in self.m.edges:
                edge = self.m.edges[user]
                intents = {**edge.intents, token: intent}
                self.m.edges[user] = replace(edge, etag=self.m.tick(), pending=True, intents=intents)
        self.m.check_invariants()
        return {u for u in user_ids if u not in self.m.edges}

    async def delete_reverse_edges(self, pairs: Iterable[tuple[str, str]]) -> None:
        await self.m.step()
        for user, _ in list(pairs):
            self.m.edges.pop(user, None)
        self.m.check_invariants()

    async def write_member_edges(
        self,
        group: StoredResource,
        *,
        modified: str,
        add: Mapping[str, str | None] | None = None,
        remove: Sequence[str] = (),
        conditional: bool = False,
        record: Any = None,
    ) -> StoredResource:
        etag = int(group.etag)
        for _ in range(32):
            await self.m.step()
            if self.m.group is None or self.m.group_deleting:
                raise NotFoundError()
            if self.m.group[0] != etag:
                if conditional:
                    raise PreconditionFailedError()
                etag = self.m.group[0]
                continue
            self.m.group = (self.m.tick(), self.m.group[1] + 1)
            self.m.members |= set(add or {})
            self.m.members -= set(remove)
            self.m.check_invariants()
            return replace(group, etag=str(self.m.group[0]), version=self.m.group[1])
        raise PreconditionFailedError()

    async def delete_member_edges(self, pairs: Iterable[tuple[str, str]]) -> None:
        await self.m.step()
        self.m.members -= {u for _, u in list(pairs)}
        self.m.check_invariants()

    async def existing_member_edges(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        await self.m.step()
        return {(g, u) for g, u in pairs if u in self.m.members and self.m.group is not None}

    async def members(self, group_id: str) -> AsyncIterator[tuple[str, str | None]]:
        await self.m.step()
        for user in sorted(self.m.members):
            yield user, None

    # -- the service-level steps of a user / group DELETE (scim.service.users, scim.service.groups, scim.service.operations) --

    async def delete_user(self, membership: Membership, user: str) -> None:
        """UserService: flag deleting, delete member edges, then edges and row if all are unchanged."""
        for _ in range(32):
            await self.m.step()
            if user not in self.m.users:
                raise NotFoundError()
            etag = self.m.users[user]
            seen = self.m.edges.get(user)
            edges = (ReverseEdge(GROUP, etag=str(seen.etag)),) if seen else ()
            if edges:
                self.m.users[user] = etag = self.m.tick()
                self.m.deleting.add(user)
                stored = StoredResource(user, {}, str(etag), edges=edges, deleting=True)
                await membership.remove_user(stored)
            await self.m.step()
            now = self.m.edges.get(user)
            if self.m.users.get(user) != etag or (now and (not seen or now.etag != seen.etag)):
                continue  # touched, or its edge changed, meanwhile: retry, as scim.service.operations does
            self.m.edges.pop(user, None)
            del self.m.users[user]
            self.m.deleting.discard(user)
            self.m.check_invariants()
            return
        raise ConflictError("kept changing")

    async def delete_group(self, membership: Membership) -> None:
        """GroupService: flag deleting, mark and delete memberships, then the row if unchanged."""
        for _ in range(32):
            await self.m.step()
            if self.m.group is None:
                raise NotFoundError()
            self.m.group = (self.m.tick(), self.m.group[1])
            self.m.group_deleting = True
            flagged = self.m.group[0]
            stored = StoredResource(GROUP, {}, str(flagged))
            members = await membership.prepare_group_deletion(stored)
            await self.delete_member_edges((GROUP, u) for u in members)
            await membership.finish_group_deletion(GROUP, members)
            await self.m.step()
            if self.m.group is None:
                raise NotFoundError()  # a concurrent DELETE finished first
            if self.m.group[0] != flagged:
                continue
            self.m.group = None
            self.m.check_invariants()
            return
        raise ConflictError("kept changing")


OPERATIONS = ("add", "remove", "replace", "delete-user", "delete-group")


async def run(model: Model, operation: str, user: str) -> bool:
    """Run one operation as the service would; whether it reported success."""
    repository = ModelRepository(model)
    membership = Membership(repository)  # type: ignore[arg-type]
    try:
        if operation == "delete-user":
            await repository.delete_user(membership, user)
            return True
        if operation == "delete-group":
            await repository.delete_group(membership)
            return True
        for _ in range(8):  # as GroupService._change_members: retry on a fresh read
            if model.group is None or model.group_deleting:
                raise NotFoundError()
            group = StoredResource(GROUP, {}, str(model.group[0]), version=model.group[1])
            try:
                if operation == "add":
                    await membership.change(group, add={user: None})
                elif operation == "remove":
                    await membership.change(group, remove=[user])
                else:  # a PUT of the group with this user as its only member: conditional on the read
                    others = [u for u, _ in await membership.members(GROUP) if u != user]
                    await membership.change(group, add={user: None}, remove=others, conditional=True)
            except PreconditionFailedError:
                continue
            return True
        return False
    except (NotFoundError, ConflictError):
        return False
    return True


@dataclass(frozen=True)
class Serial:
    users: frozenset[str]
    group: bool
    members: frozenset[str]


def serial(start: Serial, steps: Sequence[tuple[str, str]]) -> Serial:
    users, group, members = set(start.users), start.group, set(start.members)
    for operation, user in steps:
        if operation == "delete-user":
            users.discard(user)
            members.discard(user)
        elif operation == "delete-group":
            group, members = False, set()
        elif group and operation == "add" and user in users:
            members.add(user)
        elif group and operation == "remove":
            members.discard(user)
        elif group and operation == "replace":
            members = {user} if user in users else set()
    return Serial(frozenset(users), group, frozenset(members))


def outcomes(start: Serial, steps: list[tuple[str, str]], succeeded: list[bool]) -> set[Serial]:
    found = set()
    for order in itertools.permutations(range(len(steps))):
        for applied in itertools.product((True, False), repeat=len(steps)):
            if any(succeeded[i] and not applied[i] for i in range(len(steps))):
                continue
            found.add(serial(start, [steps[i] for i in order if applied[i]]))
    return found


async def explore(seed: int) -> None:
    rng = random.Random(seed)
    model = Model(rng)
    model.users = {u: model.tick() for u in USERS}
    for user in USERS:  # a random initial membership, settled
        if rng.random() < 0.5:
            model.members.add(user)
            model.edges[user] = Edge(model.tick(), pending=False)
    start = Serial(frozenset(model.users), True, frozenset(model.members))
    steps = [(rng.choice(OPERATIONS), rng.choice(USERS)) for _ in range(rng.choice((2, 2, 3)))]
    try:
        succeeded = list(await asyncio.gather(*(run(model, op, user) for op, user in steps)))
    except AssertionError as error:
        raise AssertionError(f"seed={seed} steps={steps} start={start}: {error}") from None
    end = Serial(frozenset(model.users), model.group is not None, frozenset(model.members))
    assert end in outcomes(start, steps, succeeded), (seed, steps, succeeded, end)
    model.check_invariants()
    for user, edge in model.edges.items():
        assert not edge.pending and not edge.intents, (seed, steps, user, edge)
        assert user in model.members and model.group is not None, (seed, steps, user)


@pytest.mark.parametrize("block", range(10))
async def test_every_interleaving_explored_converges(block: int) -> None:
    for seed in range(block * 1000, (block + 1) * 1000):
        await explore(seed)
