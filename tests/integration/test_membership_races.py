"""Races of every pair of membership and resource writes on one user and one group (issue 14, item 1).

Each round starts from a fresh user U and group G (U a member or not, at
random), sends two writes at the same moment through a repository that
sleeps a random few milliseconds before every storage call (so the phases
of the two requests interleave differently each round, on real Azurite),
and then asserts that:

* the directory is in **one consistent state**: G lists U exactly when U
  lists G, a deleted user is in no group (by id and by ``members.value eq``
  filter), a deleted group is in nobody's ``groups``;
* that state is one a **serial** order of the two writes produces (writes
  that failed may or may not have applied, but none answered 5xx);
* no reverse edge is left pending, and ``python -m scim check`` finds nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from scim.service.consistency import check
from scim.storage.tables import TableRepository
from scim.web.api import ScimApi
from tests.integration.conftest import ScimClient, make_settings
from tests.integration.test_groups_entra import create_group, members_of, users
from tests.integration.test_users_entra import patch

pytestmark = pytest.mark.integration

ROUNDS = 4
"""Rounds per pair of writes (each with a fresh random initial state and random delays)."""

_MEMBERSHIP_CALLS = (
    "get",
    "read_reverse_edges",
    "stage_reverse_edges",  # (the protocol before issue 14, kept so the test can be run against it)
    "write_reverse_edges",
    "existing_member_edges",
    "mark_reverse_edges_pending",
    "write_member_edges",
    "delete_member_edges",
    "delete_reverse_edges",
    "members",
    "mark_deleting",
    "delete",
    "replace",
)


class JitteryRepository(TableRepository):
    """Sleeps 0-6 ms (seeded) before each storage call that orders membership writes."""

    def __init__(self, repository: TableRepository, seed: int) -> None:
        super().__init__(repository._client, tenant=repository._tenant)
        self._random = random.Random(seed)

    def __getattribute__(self, name: str) -> Any:
        attribute = super().__getattribute__(name)
        if name not in _MEMBERSHIP_CALLS or not asyncio.iscoroutinefunction(attribute):
            return attribute

        async def jittered(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(self._random.uniform(0, 0.006))
            return await attribute(*args, **kwargs)

        return jittered


@dataclass(frozen=True)
class State:
    """The membership of one user in one group, as the model sees it."""

    user: bool = True
    group: bool = True
    member: bool = False


Write = Callable[[ScimClient, str, str], Awaitable[Any]]


def _add(scim: ScimClient, user: str, group: str) -> Awaitable[Any]:
    return scim.patch(f"/Groups/{group}", patch({"op": "add", "path": "members", "value": members_of(user)}))


def _remove(scim: ScimClient, user: str, group: str) -> Awaitable[Any]:
    return scim.patch(
        f"/Groups/{group}", patch({"op": "remove", "path": "members", "value": members_of(user)})
    )


def _remove_filtered(scim: ScimClient, user: str, group: str) -> Awaitable[Any]:
    return scim.patch(f"/Groups/{group}", patch({"op": "remove", "path": f'members[value eq "{user}"]'}))


def _put_with(scim: ScimClient, user: str, group: str) -> Awaitable[Any]:
    body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": f"G {group}"}
    return scim.put(f"/Groups/{group}", {**body, "members": members_of(user)})


def _put_without(scim: ScimClient, user: str, group: str) -> Awaitable[Any]:
    body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": f"G {group}"}
    return scim.put(f"/Groups/{group}", body)


def _delete_user(scim: ScimClient, user: str, group: str) -> Awaitable[Any]:
    return scim.delete(f"/Users/{user}")


def _delete_group(scim: ScimClient, user: str, group: str) -> Awaitable[Any]:
    return scim.delete(f"/Groups/{group}")


def _disable_user(scim: ScimClient, user: str, group: str) -> Awaitable[Any]:
    return scim.patch(f"/Users/{user}", patch({"op": "replace", "path": "active", "value": False}))


def _model_member(value: bool) -> Callable[[State], State]:
    def apply(state: State) -> State:
        if not state.group:
            return state
        return replace(state, member=value and state.user)

    return apply


MODEL: dict[str, tuple[Write, Callable[[State], State]]] = {
    "add": (_add, _model_member(True)),
    "remove": (_remove, _model_member(False)),
    "remove-filtered": (_remove_filtered, _model_member(False)),
    "put-with": (_put_with, _model_member(True)),
    "put-without": (_put_without, _model_member(False)),
    "delete-user": (_delete_user, lambda s: replace(s, user=False, member=False)),
    "delete-group": (_delete_group, lambda s: replace(s, group=False, member=False)),
    "disable-user": (_disable_user, lambda s: s),
}
PAIRS = list(itertools.combinations_with_replacement(sorted(MODEL), 2))


def serial_outcomes(start: State, names: tuple[str, str], statuses: list[int]) -> set[State]:
    """Every state a serial order of the writes reaches (a failed write may or may not have applied)."""
    outcomes = set()
    for order in itertools.permutations(range(2)):
        for applied in itertools.product((True, False), repeat=2):
            if any(not applied[i] and statuses[i] < 400 for i in range(2)):
                continue
            state = start
            for i in order:
                if applied[i]:
                    state = MODEL[names[i]][1](state)
            outcomes.add(state)
    return outcomes


async def observed(scim: ScimClient, user: str, group: str) -> State:
    """The state as clients see it, after asserting that both sides agree."""
    user_doc = await scim.get(f"/Users/{user}")
    group_doc = await scim.get(f"/Groups/{group}")
    user_exists, group_exists = user_doc.status == 200, group_doc.status == 200
    listed = {m["value"] for m in group_doc.json().get("members", [])} if group_exists else set()
    groups = {g["value"] for g in user_doc.json().get("groups", [])} if user_exists else set()
    if user_exists:
        assert (user in listed) == (group in groups), (listed, groups)
    else:
        assert user not in listed, "a deleted user is still listed as a member"
        found = await scim.get(f'/Groups?filter=members.value eq "{user}"&excludedAttributes=members')
        assert found.json()["totalResults"] == 0, "a deleted user is found by members.value"
    if not group_exists:
        assert group not in groups, "a deleted group is still in the user's groups"
    return State(user=user_exists, group=group_exists, member=user in listed)


async def pending_edges(store) -> list[str]:
    rows = store.repository._client.query_entities("p eq @p", parameters={"p": True}, select=["RowKey"])
    return [row["RowKey"] async for row in rows]


@pytest.mark.parametrize("names", PAIRS, ids=["+".join(pair) for pair in PAIRS])
async def test_racing_pair_converges(scim, store, names):
    seed = random.randrange(2**32)
    chooser = random.Random(seed)
    racing = ScimClient(ScimApi(make_settings(store), JitteryRepository(store.repository, seed)))
    for round_ in range(ROUNDS):
        (user,) = await users(scim, 1)
        group = (await create_group(scim))["id"]
        start = State(member=chooser.random() < 0.5)
        if start.member:
            assert (await _add(scim, user, group)).status == 204
        writes = [MODEL[name][0](racing, user, group) for name in names]
        responses = await asyncio.gather(*writes)
        statuses = [r.status for r in responses]
        context = f"seed={seed} round={round_} start={start} statuses={statuses}"
        assert all(s < 500 for s in statuses), context
        state = await observed(scim, user, group)
        assert state in serial_outcomes(start, names, statuses), f"{context} got {state}"
    assert await pending_edges(store) == [], f"seed={seed}"
    assert [a.code for a in await check(store.repository)] == [], f"seed={seed}"


async def test_put_add_and_remove_racing_on_many_users(scim, store):
    """The review's case: a PUT, an add and a remove of the same users at once, many rounds."""
    seed = random.randrange(2**32)
    racing = ScimClient(ScimApi(make_settings(store), JitteryRepository(store.repository, seed)))
    for round_ in range(6):
        ids = await users(scim, 3)
        group = (await create_group(scim))["id"]
        await _add(scim, ids[0], group)
        body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": f"G {group}"}
        responses = await asyncio.gather(
            racing.put(f"/Groups/{group}", {**body, "members": members_of(ids[0], ids[1])}),
            racing.patch(
                f"/Groups/{group}", patch({"op": "add", "path": "members", "value": members_of(*ids)})
            ),
            racing.patch(
                f"/Groups/{group}", patch({"op": "remove", "path": "members", "value": members_of(*ids)})
            ),
        )
        assert all(r.status < 500 for r in responses), f"seed={seed} round={round_}"
        for user in ids:
            await observed(scim, user, group)
    assert await pending_edges(store) == [], f"seed={seed}"
    assert [a.code for a in await check(store.repository)] == [], f"seed={seed}"


class PausingRepository(TableRepository):
    """Stops before the ``call``-th call of ``method`` until the test lets it go on."""

    def __init__(self, repository: TableRepository, method: str, call: int = 1) -> None:
        super().__init__(repository._client, tenant=repository._tenant)
        self.method, self.call, self.calls = method, call, 0
        self.reached, self.proceed = asyncio.Event(), asyncio.Event()

    def __getattribute__(self, name: str) -> Any:
        attribute = super().__getattribute__(name)
        if name != super().__getattribute__("method"):
            return attribute

        async def paused(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls == self.call:
                self.reached.set()
                await self.proceed.wait()
            return await attribute(*args, **kwargs)

        return paused


async def interleave(store, method: str, call: int, first: Write, then: Write, user: str, group: str):
    """Run ``first`` up to the ``call``-th call of ``method``, run ``then`` to its end, finish ``first``."""
    pausing = PausingRepository(store.repository, method, call)
    paused = ScimClient(ScimApi(make_settings(store), pausing))
    plain = ScimClient(ScimApi(make_settings(store), store.repository))
    task = asyncio.ensure_future(first(paused, user, group))
    await asyncio.wait_for(pausing.reached.wait(), 10)
    between = await then(plain, user, group)
    pausing.proceed.set()
    return await task, between


async def test_a_user_deleted_between_the_phases_of_an_add_is_in_no_group(scim, store):
    """The add's member edge, written after the user is gone, is undone by its settle."""
    (user,) = await users(scim, 1)
    group = (await create_group(scim))["id"]
    added, deleted = await interleave(store, "write_member_edges", 1, _add, _delete_user, user, group)
    assert deleted.status == 204 and added.status == 204
    state = await observed(scim, user, group)
    assert state == State(user=False, group=True, member=False)
    assert [a.code for a in await check(store.repository)] == []


async def test_a_remove_between_the_member_write_and_the_settle_of_an_add_wins(scim, store):
    """The add's settle is conditional on the edge it marked: it never settles over the removal."""
    (user,) = await users(scim, 1)
    group = (await create_group(scim))["id"]
    # the add's first write_reverse_edges marks the edge, the second settles it
    added, removed = await interleave(store, "write_reverse_edges", 2, _add, _remove, user, group)
    assert added.status == 204 and removed.status == 204
    assert await observed(scim, user, group) == State(member=False)
    assert await pending_edges(store) == []
    assert [a.code for a in await check(store.repository)] == []


async def test_an_add_between_the_mark_and_the_member_delete_of_a_remove(scim, store):
    (user,) = await users(scim, 1)
    group = (await create_group(scim))["id"]
    assert (await _add(scim, user, group)).status == 204
    removed, added = await interleave(store, "write_member_edges", 1, _remove, _add, user, group)
    assert added.status == 204 and removed.status == 204
    assert await observed(scim, user, group) == State(member=False)  # the removal's delete came last
    assert await pending_edges(store) == []
    assert [a.code for a in await check(store.repository)] == []


async def version_and_outbox(scim, store, group: str) -> tuple[str, int]:
    version = (await scim.get(f"/Groups/{group}?excludedAttributes=members")).json()["meta"]["version"]
    return version, len(await store.repository.pending_changes("Group"))


async def test_a_member_patch_that_changes_nothing_keeps_the_version_and_emits_nothing(scim, store):
    (user, outsider) = await users(scim, 2)
    group = (await create_group(scim))["id"]
    assert (await _add(scim, user, group)).status == 204
    before = await version_and_outbox(scim, store, group)
    unknown = "00000000-0000-4000-8000-000000000000"
    for body in (
        {"op": "add", "path": "members", "value": members_of(unknown)},  # no such user
        {"op": "add", "path": "members", "value": members_of(user)},  # already a member
        {"op": "remove", "path": "members", "value": members_of(outsider)},  # not a member
        {"op": "remove", "path": f'members[value eq "{unknown}"]'},
    ):
        assert (await scim.patch(f"/Groups/{group}", patch(body))).status == 204, body
        assert await version_and_outbox(scim, store, group) == before, body
    assert (await _add(scim, outsider, group)).status == 204
    assert await version_and_outbox(scim, store, group) != before  # a real change does move it


async def test_member_patch_and_group_delete_honour_if_match(scim, store):
    (user,) = await users(scim, 1)
    group = (await create_group(scim))["id"]
    path = f"/Groups/{group}"
    stale = (await scim.get(path)).json()["meta"]["version"]
    assert (await scim.patch(path, patch({"op": "replace", "path": "externalId", "value": "moved"}))).status
    add = patch({"op": "add", "path": "members", "value": members_of(user)})
    response = await scim.patch(path, add, headers={"If-Match": stale})
    assert response.status == 412, response.json()
    assert await observed(scim, user, group) == State(member=False)
    assert (await scim.delete(path, headers={"If-Match": stale})).status == 412
    assert (await scim.get(path)).status == 200
    current = (await scim.get(path)).json()["meta"]["version"]
    assert (await scim.patch(path, add, headers={"If-Match": current})).status == 204
    assert await observed(scim, user, group) == State(member=True)
    assert (await scim.delete(path, headers={"If-Match": current})).status == 412  # the add moved it
    assert await observed(scim, user, group) == State(member=True)
    assert await pending_edges(store) == []


async def test_a_member_patch_with_if_match_fails_when_the_group_moves_before_its_write(scim, store):
    """If-Match holds at the member write itself, not only at the request's first read (RFC 7644 §3.14)."""
    (user,) = await users(scim, 1)
    group = (await create_group(scim))["id"]
    version = (await scim.get(f"/Groups/{group}")).json()["meta"]["version"]

    def conditional_add(client: ScimClient, user: str, group: str) -> Awaitable[Any]:
        add = patch({"op": "add", "path": "members", "value": members_of(user)})
        return client.patch(f"/Groups/{group}", add, headers={"If-Match": version})

    def rename(client: ScimClient, user: str, group: str) -> Awaitable[Any]:
        return client.patch(f"/Groups/{group}", patch({"op": "replace", "path": "externalId", "value": "x"}))

    added, renamed = await interleave(store, "write_member_edges", 1, conditional_add, rename, user, group)
    assert renamed.status == 204 and added.status == 412, added.json()
    assert await observed(scim, user, group) == State(member=False)
    assert await pending_edges(store) == []


async def test_a_user_delete_never_outruns_an_add_that_settles_under_it(scim, store):
    """The DELETE read the edge of an add in flight; the add settles; the DELETE must not orphan it."""
    (user,) = await users(scim, 1)
    group = (await create_group(scim))["id"]
    adding = PausingRepository(store.repository, "write_member_edges")
    deleting = PausingRepository(store.repository, "delete")
    add = asyncio.ensure_future(_add(ScimClient(ScimApi(make_settings(store), adding)), user, group))
    await asyncio.wait_for(adding.reached.wait(), 10)  # the add's edge is marked, its member edge not yet
    delete = asyncio.ensure_future(
        _delete_user(ScimClient(ScimApi(make_settings(store), deleting)), user, group)
    )
    await asyncio.wait_for(deleting.reached.wait(), 10)  # the DELETE read the edge and is about to remove it
    adding.proceed.set()
    assert (await add).status == 204  # member edge written, reverse edge settled
    deleting.proceed.set()
    assert (await delete).status == 204
    assert await observed(scim, user, group) == State(user=False, member=False)
    assert [a.code for a in await check(store.repository)] == []
