"""Crash safety of membership writes across the user and group partitions.

A repository that fails one chosen write on purpose (as a storage outage or a
killed worker would) interrupts each protocol of ``scim.service.membership`` between
its phases. After every interruption the two sides must agree (a group lists
a user exactly when the user lists the group), and retrying the same request
must finish the job and leave no pending edge behind.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scim.model.errors import ServiceUnavailableError
from scim.service.membership import REPAIR_AFTER, Membership
from scim.storage.tables import TableRepository
from scim.web.api import ScimApi
from tests.integration.conftest import ScimClient, make_settings
from tests.integration.test_groups_entra import create_group, groups_of, member_ids, members_of, users
from tests.integration.test_users_entra import assert_error, patch

pytestmark = pytest.mark.integration


class CrashingRepository(TableRepository):
    """Fails the ``call``-th call of the method ``crash_at`` with a 503, once."""

    def __init__(self, repository: TableRepository, crash_at: str, call: int = 1) -> None:
        super().__init__(repository._client, tenant=repository._tenant)
        self.crash_at, self.call, self.calls, self.crashed = crash_at, call, 0, False

    def _maybe_crash(self, name: str) -> None:
        """A killed worker: the chosen call fails, and so does every call after it."""
        if self.crashed:
            raise ServiceUnavailableError("the worker is gone")
        if name == self.crash_at:
            self.calls += 1
            if self.calls == self.call:
                self.crashed = True
                raise ServiceUnavailableError("injected crash")

    def __getattribute__(self, name: str):
        attribute = super().__getattribute__(name)
        if name not in CRASH_POINTS:
            return attribute

        async def crashable(*args, **kwargs):
            self._maybe_crash(name)
            return await attribute(*args, **kwargs)

        return crashable


CRASH_POINTS = frozenset({
    "read_reverse_edges", "write_reverse_edges", "existing_member_edges", "mark_reverse_edges_pending",
    "write_member_edges", "delete_reverse_edges", "delete_member_edges", "mark_deleting", "delete",
})  # fmt: skip
"""The storage calls of the membership protocol a crash can interrupt."""


def crashing(store, crash_at: str, call: int = 1) -> ScimClient:
    return ScimClient(ScimApi(make_settings(store), CrashingRepository(store.repository, crash_at, call)))


async def assert_agree(scim, group_id: str, user_ids: list[str]) -> None:
    """Each user lists the group exactly when the group lists the user."""
    members = set(await member_ids(scim, group_id))
    for user_id in user_ids:
        assert (user_id in members) == (group_id in await groups_of(scim, user_id)), user_id


async def pending_edges(store) -> list[str]:
    rows = store.repository._client.query_entities("p eq @p", parameters={"p": True}, select=["RowKey"])
    return [row["RowKey"] async for row in rows]


@pytest.mark.parametrize(
    ("crash_at", "call", "applied"),
    [
        ("write_reverse_edges", 1, False),  # before anything
        ("write_member_edges", 1, False),  # after phase 1: pending reverse edges only
        ("write_reverse_edges", 2, True),  # after phase 2: member edges written, not settled
    ],
)
async def test_add_interrupted_between_phases(scim, store, crash_at, call, applied):
    ids = await users(scim, 3)
    group = await create_group(scim)
    add = patch({"op": "Add", "path": "members", "value": members_of(*ids)})
    assert_error(await crashing(store, crash_at, call).patch(f"/Groups/{group['id']}", add), 503)
    await assert_agree(scim, group["id"], ids)
    assert await member_ids(scim, group["id"]) == (sorted(ids) if applied else [])
    assert (await scim.patch(f"/Groups/{group['id']}", add)).status == 204  # Entra retries
    assert await member_ids(scim, group["id"]) == sorted(ids)
    await assert_agree(scim, group["id"], ids)
    assert await pending_edges(store) == []


@pytest.mark.parametrize(
    ("crash_at", "call", "applied"),
    [
        ("read_reverse_edges", 1, False),  # before anything
        ("write_member_edges", 1, False),  # after phase 1: reverse edges pending
        ("write_reverse_edges", 2, True),  # after phase 2: member edges gone, reverse edges pending
    ],
)
async def test_remove_interrupted_between_phases(scim, store, crash_at, call, applied):
    ids = await users(scim, 3)
    group = await create_group(scim)
    await scim.patch(
        f"/Groups/{group['id']}", patch({"op": "Add", "path": "members", "value": members_of(*ids)})
    )
    remove = patch({"op": "Remove", "path": "members", "value": members_of(ids[0], ids[1])})
    assert_error(await crashing(store, crash_at, call).patch(f"/Groups/{group['id']}", remove), 503)
    await assert_agree(scim, group["id"], ids)
    assert await member_ids(scim, group["id"]) == ([ids[2]] if applied else sorted(ids))
    assert (await scim.patch(f"/Groups/{group['id']}", remove)).status == 204
    assert await member_ids(scim, group["id"]) == [ids[2]]
    await assert_agree(scim, group["id"], ids)
    assert await pending_edges(store) == []


@pytest.mark.parametrize("crash_at", ["delete_member_edges", "delete"])
async def test_user_delete_interrupted(scim, store, crash_at):
    (user, other) = await users(scim, 2)
    groups = [await create_group(scim) for _ in range(2)]
    for group in groups:
        await scim.patch(
            f"/Groups/{group['id']}",
            patch({"op": "Add", "path": "members", "value": members_of(user, other)}),
        )
    assert_error(await crashing(store, crash_at).delete(f"/Users/{user}"), 503)
    for group in groups:
        await assert_agree(scim, group["id"], [user, other])
    assert (await scim.delete(f"/Users/{user}")).status == 204
    for group in groups:
        assert await member_ids(scim, group["id"]) == [other]
    assert_error(await scim.get(f"/Users/{user}"), 404)


@pytest.mark.parametrize("crash_at", ["delete_member_edges", "delete_reverse_edges", "delete"])
async def test_group_delete_interrupted(scim, store, crash_at):
    ids = await users(scim, 3)
    group = await create_group(scim)
    await scim.patch(
        f"/Groups/{group['id']}", patch({"op": "Add", "path": "members", "value": members_of(*ids)})
    )
    assert_error(await crashing(store, crash_at).delete(f"/Groups/{group['id']}"), 503)
    await assert_agree(scim, group["id"], ids)
    assert (await scim.delete(f"/Groups/{group['id']}")).status == 204
    for user_id in ids:
        assert await groups_of(scim, user_id) == []
    # After a crash past the member edges, the retry cannot list the former
    # members: their pending reverse edges are settled by the next read.
    later = Membership(store.repository, clock=lambda: datetime.now(UTC) + REPAIR_AFTER * 2)
    for user_id in ids:
        assert await later.groups_of(await store.repository.get("User", user_id)) == []
    assert await pending_edges(store) == []


async def test_a_read_repairs_edges_a_crash_abandoned(scim, store):
    ids = await users(scim, 2)
    group = await create_group(scim)
    add = patch({"op": "Add", "path": "members", "value": members_of(ids[0])})
    assert_error(await crashing(store, "write_reverse_edges", 2).patch(f"/Groups/{group['id']}", add), 503)
    remove_crash = patch({"op": "Add", "path": "members", "value": members_of(ids[1])})
    assert_error(
        await crashing(store, "write_member_edges").patch(f"/Groups/{group['id']}", remove_crash), 503
    )
    assert len(await pending_edges(store)) == 2
    later = Membership(store.repository, clock=lambda: datetime.now(UTC) + REPAIR_AFTER * 2)
    assert await later.groups_of(await store.repository.get("User", ids[0])) == [group["id"]]
    assert await later.groups_of(await store.repository.get("User", ids[1])) == []
    assert await pending_edges(store) == []  # settled: one confirmed, one removed
    assert await groups_of(scim, ids[0]) == [group["id"]] and await groups_of(scim, ids[1]) == []


async def test_a_group_delete_interrupted_after_its_flag_is_reported_and_finished_by_a_retry(scim, store):
    from scim.service.consistency import check

    ids = await users(scim, 2)
    group = await create_group(scim)
    path = f"/Groups/{group['id']}"
    await scim.patch(path, patch({"op": "Add", "path": "members", "value": members_of(*ids)}))
    assert_error(await crashing(store, "mark_reverse_edges_pending").delete(path), 503)
    await assert_agree(scim, group["id"], ids)  # the flag alone changes no membership
    assert [a.code for a in await check(store.repository)] == ["interrupted-delete"]
    late = patch({"op": "Remove", "path": "members", "value": members_of(ids[0])})
    assert_error(await scim.patch(path, late), 404)  # the DELETE under way wins
    assert (await scim.delete(path)).status == 204  # Entra retries
    for user_id in ids:
        assert await groups_of(scim, user_id) == []
    assert [a.code for a in await check(store.repository)] == []
