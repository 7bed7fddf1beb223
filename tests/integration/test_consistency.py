"""The consistency checker finds what interrupted writes and hand edits leave, and repairs it.

And it is safe during live traffic (DESIGN §11, issue 14): ``check`` reports
only what a re-read confirms, never a write in flight, and each repair re-reads
what it is about and acts only on what is still broken.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scim.model.resources import IndexEntry
from scim.service.consistency import RESOLVED, check, repair
from scim.service.membership import REPAIR_AFTER
from scim.storage.repository import EdgeWrite, IndexRow
from scim.storage.tables import TableRepository
from tests.integration.test_groups_entra import create_group, groups_of, member_ids, members_of, users
from tests.integration.test_users_entra import create, entra_user, patch

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def later() -> datetime:
    """A clock past ``REPAIR_AFTER``: every pending edge written now counts as abandoned."""
    return datetime.now(UTC) + REPAIR_AFTER + timedelta(seconds=5)


async def codes(store, **options) -> list[str]:
    return sorted(a.code for a in await check(store.repository, **options))


async def user_name_row(repository, user_id: str) -> tuple[str, str]:
    """(userName, its index row key) of a stored user."""
    stored = await repository.get("User", user_id)
    entry = IndexEntry("userName", stored.document["userName"].lower(), True)
    (row_key,) = repository.index_row_keys(stored, [entry])
    return stored.document["userName"], row_key


async def test_a_healthy_table_has_no_anomaly(scim, store):
    ids = await users(scim, 3)
    group = await create_group(scim)
    await scim.patch(
        f"/Groups/{group['id']}", patch({"op": "add", "path": "members", "value": members_of(*ids)})
    )
    await scim.patch(
        f"/Groups/{group['id']}", patch({"op": "remove", "path": "members", "value": members_of(ids[0])})
    )
    await scim.delete(f"/Users/{ids[1]}")
    assert await codes(store) == []


async def test_interrupted_writes_are_found_and_repaired(scim, store):
    """What a crash between phases leaves: reported once abandoned (not while in flight), then repaired."""
    ids = await users(scim, 3)
    group = await create_group(scim)
    repository = store.repository
    staged = [EdgeWrite(u, None, pending=True, touch_user=True) for u in ids[:2]]
    assert not (await repository.write_reverse_edges(group["id"], staged)).conflicts  # phase 1 of an add
    stored_group = await repository.get("Group", group["id"])
    await repository.write_member_edges(stored_group, modified="2026-01-01T00:00:00Z", add={ids[0]: None})
    deleting = await repository.mark_deleting("User", await repository.get("User", ids[2]))
    assert deleting.deleting  # a DELETE that stopped after flagging the user

    assert await codes(store) == ["interrupted-delete"]  # the pending edges may still be in flight
    assert await codes(store, clock=later) == ["interrupted-delete", "pending-edge", "pending-edge"]
    outcomes = await repair(await check(repository, clock=later))
    assert sorted(outcome for _, outcome in outcomes) == ["repaired", "repaired", "reported only"]
    assert await codes(store, clock=later) == ["interrupted-delete"]
    assert (await scim.delete(f"/Users/{ids[2]}")).status == 204  # the client's retry finishes it
    assert await codes(store, clock=later) == []
    assert await member_ids(scim, group["id"]) == [ids[0]]  # the member edge is the truth
    assert await groups_of(scim, ids[0]) == [group["id"]]
    assert await groups_of(scim, ids[1]) == []


async def test_hand_edits_are_found_and_repaired(scim, store):
    (user,) = await users(scim, 1)
    group = await create_group(scim)
    repository = store.repository
    ghost = str(uuid.uuid4())
    await repository.create_index_row("User", IndexEntry("userName", "ghost@x.com", True), ghost)  # orphaned
    name, row_key = await user_name_row(repository, user)
    await repository.delete_index_row("User", row_key)  # missing
    stored_group = await repository.get("Group", group["id"])
    await repository.write_member_edges(
        stored_group, modified="2026-01-01T00:00:00Z", add={ghost: None}
    )  # no user
    settled = EdgeWrite(user, None, pending=False, touch_user=True)
    await repository.write_reverse_edges(group["id"], [settled])  # no member edge
    found = await codes(store)
    assert found == ["member-missing-user", "missing-index", "orphaned-index", "reverse-without-member"], (
        found
    )
    outcomes = await repair(await check(repository))
    assert [outcome for _, outcome in outcomes] == ["repaired"] * 4
    assert await codes(store) == []
    assert (await scim.get(f'/Users?filter=userName eq "{name}"')).json()["totalResults"] == 1
    assert "groups" not in (await scim.get(f"/Users/{user}")).json()
    assert (await scim.post("/Users", entra_user("ghost@x.com"))).status == 201  # the value is free again


async def test_a_deleted_groups_member_edge_is_removed_with_the_users_edge(scim, store):
    (user,) = await users(scim, 1)
    group = await create_group(scim)
    await scim.patch(
        f"/Groups/{group['id']}", patch({"op": "add", "path": "members", "value": members_of(user)})
    )
    repository = store.repository
    stored = await repository.get("Group", group["id"])
    await repository.delete("Group", stored, [])  # the group row goes, its member edge stays (a crash)
    assert await codes(store) == ["member-of-missing-group"]
    assert [outcome for _, outcome in await repair(await check(repository))] == ["repaired"]
    assert await codes(store, clock=later) == []
    assert await groups_of(scim, user) == []


# -- live traffic: a repair acts only on what it re-reads and still finds broken --------------


class Interleaved(TableRepository):
    """The table, with a hook run before the Group partition's scan or after a chosen re-read.

    It stands for the traffic that goes on between the checker's two partition
    scans, and between a repair's re-read and its write.
    """

    def __init__(self, repository: TableRepository) -> None:
        super().__init__(repository._client, tenant=repository._tenant)
        self.before_groups = None
        self.after_index_read = None

    async def inventory(self, kind):
        if kind == "Group" and self.before_groups is not None:
            hook, self.before_groups = self.before_groups, None
            await hook()
        async for row in super().inventory(kind):
            yield row

    async def index_row(self, kind: str, row_key: str) -> IndexRow | None:
        row = await super().index_row(kind, row_key)
        if self.after_index_read is not None:
            hook, self.after_index_read = self.after_index_read, None
            await hook()
        return row


async def test_a_member_added_between_the_two_scans_is_not_an_anomaly(scim, store):
    """Issue 14 item 3: the user scan misses a user created after it; its new membership is not an orphan."""
    group = await create_group(scim)
    repository = Interleaved(store.repository)
    added: list[str] = []

    async def provisioning() -> None:
        user = (await create(scim))["id"]
        body = patch({"op": "add", "path": "members", "value": members_of(user)})
        assert (await scim.patch(f"/Groups/{group['id']}", body)).status == 204
        added.append(user)

    repository.before_groups = provisioning
    anomalies = await check(repository)
    assert anomalies == [], [a.detail for a in anomalies]
    await repair(anomalies)
    assert await member_ids(scim, group["id"]) == added
    assert await groups_of(scim, added[0]) == [group["id"]]


async def test_a_repair_rereads_a_membership_fixed_since_the_check(scim, store):
    (user,) = await users(scim, 1)
    group = await create_group(scim)
    repository = store.repository
    staged = EdgeWrite(user, None, pending=True, touch_user=True)
    await repository.write_reverse_edges(group["id"], [staged])  # an add that stopped after phase 1
    anomalies = await check(repository, clock=later)
    assert [a.code for a in anomalies] == ["pending-edge"]
    body = patch({"op": "add", "path": "members", "value": members_of(user)})
    assert (await scim.patch(f"/Groups/{group['id']}", body)).status == 204  # Entra's retry completes it
    assert [outcome for _, outcome in await repair(anomalies)] == [RESOLVED]
    assert await member_ids(scim, group["id"]) == [user]
    assert await groups_of(scim, user) == [group["id"]]


async def test_a_missing_index_row_of_a_value_renamed_since_the_check_is_not_restored(scim, store):
    (user,) = await users(scim, 1)
    repository = store.repository
    name, row_key = await user_name_row(repository, user)
    await repository.delete_index_row("User", row_key)
    anomalies = await check(repository)
    assert [a.code for a in anomalies] == ["missing-index"]
    rename = patch({"op": "Replace", "path": "userName", "value": "renamed@contoso.com"})
    assert (await scim.patch(f"/Users/{user}", rename)).status == 200
    assert [outcome for _, outcome in await repair(anomalies)] == [RESOLVED]
    assert (await scim.post("/Users", entra_user(name))).status == 201  # the old value is free
    assert await codes(store) == []


async def test_an_orphaned_index_row_taken_since_the_check_is_kept(scim, store):
    repository = store.repository
    ghost = str(uuid.uuid4())
    await repository.create_index_row("User", IndexEntry("userName", "taken@x.com", True), ghost)
    anomalies = await check(repository)
    assert [a.code for a in anomalies] == ["orphaned-index"]
    (row_key,) = [row.row_key async for row in repository.inventory("User") if isinstance(row, IndexRow)]
    await repository.delete_index_row("User", row_key)  # meanwhile: the value is freed ...
    owner = (await scim.post("/Users", entra_user("taken@x.com"))).json()["id"]  # ... and taken again
    assert [outcome for _, outcome in await repair(anomalies)] == [RESOLVED]
    assert (await scim.get('/Users?filter=userName eq "taken@x.com"')).json()["Resources"][0]["id"] == owner
    assert (await scim.post("/Users", entra_user("taken@x.com"))).status == 409
    assert await codes(store) == []


async def test_an_index_row_rewritten_after_the_repairs_reread_is_not_deleted(scim, store):
    """The delete is conditional on the ETag the re-read saw."""
    repository = Interleaved(store.repository)
    ghost = str(uuid.uuid4())
    await repository.create_index_row("User", IndexEntry("userName", "busy@x.com", True), ghost)
    anomalies = await check(repository)
    (row,) = [row async for row in repository.inventory("User") if isinstance(row, IndexRow)]

    async def rewrite() -> None:  # a writer touches the row between the re-read and the delete
        await repository._client.upsert_entity(
            {"PartitionKey": "default|User", "RowKey": row.row_key, "t": "i", "id": ghost}
        )

    repository.after_index_read = rewrite
    ((_, outcome),) = await repair(anomalies)
    assert outcome.startswith("not repaired"), outcome
    assert await repository.index_row("User", row.row_key) is not None


async def test_an_index_row_is_restored_only_beside_the_resource_as_reread(scim, store):
    """The restore is one transaction with the resource row, conditional on its ETag."""
    (user,) = await users(scim, 1)
    repository = Interleaved(store.repository)
    name, row_key = await user_name_row(repository, user)
    await repository.delete_index_row("User", row_key)
    anomalies = await check(repository)

    async def rename() -> None:  # the user is renamed between the repair's re-read and its write
        body = patch({"op": "Replace", "path": "userName", "value": "moved@contoso.com"})
        assert (await scim.patch(f"/Users/{user}", body)).status == 200

    repository.after_index_read = rename
    ((_, outcome),) = await repair(anomalies)
    assert outcome.startswith("not repaired"), outcome
    assert await repository.index_row("User", row_key) is None  # no row for the old value
    assert (await scim.post("/Users", entra_user(name))).status == 201
    assert await codes(store) == []


class Provisioning:
    """Entra-like traffic: workers that create users, add them to groups, remove some, delete some.

    Each worker owns its users and sends their requests one after another, so
    the requests it saw complete say exactly what each group must hold.
    """

    def __init__(self, scim, groups: list[str], members: list[str]) -> None:
        self.scim, self.groups = scim, groups
        self.expected: dict[str, set[str]] = {g: set(members) for g in groups}
        self.failures: list[str] = []

    async def _send(self, call, expected_status: int) -> bool:
        response = await call
        if response.status != expected_status:
            self.failures.append(f"{response.status} {response.json()}")
        return response.status == expected_status

    async def worker(self, pick: random.Random, rounds: int) -> None:
        for _ in range(rounds):
            user = (await create(self.scim))["id"]
            mine = pick.sample(self.groups, 2)
            for group in mine:
                add = patch({"op": "add", "path": "members", "value": members_of(user)})
                if await self._send(self.scim.patch(f"/Groups/{group}", add), 204):
                    self.expected[group].add(user)
            fate = pick.random()
            if fate < 0.3:
                remove = patch({"op": "remove", "path": "members", "value": members_of(user)})
                if await self._send(self.scim.patch(f"/Groups/{mine[0]}", remove), 204):
                    self.expected[mine[0]].discard(user)
            elif fate < 0.5 and await self._send(self.scim.delete(f"/Users/{user}"), 204):
                for group in self.groups:
                    self.expected[group].discard(user)

    def memberships(self) -> dict[str, set[str]]:
        """User id → the groups the completed requests put it in."""
        by_user: dict[str, set[str]] = defaultdict(set)
        for group, members in self.expected.items():
            for user in members:
                by_user[user].add(group)
        return by_user


async def test_check_and_repair_during_live_provisioning_destroy_nothing(scim, store):
    """Issue 14 item 3: `check --repair` in a loop while provisioning goes on loses no membership."""
    rng = random.Random(14)
    groups = [(await create_group(scim))["id"] for _ in range(3)]
    base = await users(scim, 30)  # partitions big enough that a scan takes a while
    for group in groups:
        body = patch({"op": "add", "path": "members", "value": members_of(*base)})
        assert (await scim.patch(f"/Groups/{group}", body)).status == 204
    traffic = Provisioning(scim, groups, base)
    done = asyncio.Event()

    async def provisioning() -> None:
        try:
            await asyncio.gather(*(traffic.worker(random.Random(rng.random()), 12) for _ in range(6)))
        finally:
            done.set()

    async def checker() -> int:
        rounds = 0
        while not done.is_set() or rounds < 3:
            await repair(await check(store.repository))
            rounds += 1
        return rounds

    _, rounds = await asyncio.gather(provisioning(), checker())
    assert rounds >= 3 and not traffic.failures, (rounds, traffic.failures)
    for group in groups:
        assert set(await member_ids(scim, group)) == traffic.expected[group], group
    for user, joined in traffic.memberships().items():
        assert set(await groups_of(scim, user)) == joined, user
    assert await codes(store) == []


def test_command_line(store):
    environment = {
        **os.environ,
        "SCIM_STORAGE_CONNECTION_STRING": store.connection_string,
        "SCIM_TABLE_NAME": store.table_name,
    }
    clean = subprocess.run(
        [sys.executable, "-m", "scim", "check"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert clean.returncode == 0, clean.stderr
    assert "0 anomalies found" in clean.stderr
    broken = subprocess.run(
        [sys.executable, "-m", "scim", "check", "--json"],
        cwd=ROOT,
        env={**environment, "SCIM_STORAGE_CONNECTION_STRING": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert broken.returncode == 2 and "SCIM_STORAGE_CONNECTION_STRING" in broken.stderr
