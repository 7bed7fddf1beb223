"""Concurrent writers: nothing lost, nothing resurrected, no 5xx (issue 5 §3)."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.test_groups_entra import create_group, member_ids, members_of, users
from tests.integration.test_users_entra import create, patch

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("round_", range(5))
async def test_delete_racing_patches_never_resurrects(scim, round_):
    user = await create(scim)
    path = f"/Users/{user['id']}"
    patches = [
        scim.patch(path, patch({"op": "replace", "path": "title", "value": f"t{n}"})) for n in range(4)
    ]
    results = await asyncio.gather(scim.delete(path), *patches)
    assert results[0].status == 204
    assert all(r.status in (200, 404) for r in results[1:]), [r.status for r in results]
    await asyncio.sleep(0)
    assert (await scim.get(path)).status == 404
    assert (await scim.get(f'/Users?filter=userName eq "{user["userName"]}"')).json()["totalResults"] == 0


async def test_group_delete_racing_member_adds_leaves_no_member_edges(scim, store):
    ids = await users(scim, 6)
    group = await create_group(scim)
    path = f"/Groups/{group['id']}"
    adds = [scim.patch(path, patch({"op": "add", "path": "members", "value": members_of(m)})) for m in ids]
    results = await asyncio.gather(*adds[:3], scim.delete(path), *adds[3:])
    assert all(r.status in (204, 404) for r in results), [r.status for r in results]
    assert (await scim.get(path)).status == 404
    for member in ids:
        assert "groups" not in (await scim.get(f"/Users/{member}")).json()


async def test_parallel_group_patches_lose_no_update(scim):
    ids = await users(scim, 8)
    group = await create_group(scim)
    path = f"/Groups/{group['id']}"
    calls = [scim.patch(path, patch({"op": "add", "path": "members", "value": members_of(m)})) for m in ids]
    calls.append(
        scim.patch(path, patch({"op": "replace", "path": "displayName", "value": "Renamed Concurrently"}))
    )
    calls.append(scim.patch(path, patch({"op": "replace", "path": "externalId", "value": "ext-concurrent"})))
    results = await asyncio.gather(*calls)
    assert [r.status for r in results] == [204] * len(calls)
    got = (await scim.get(path)).json()
    assert got["displayName"] == "Renamed Concurrently" and got["externalId"] == "ext-concurrent"
    assert await member_ids(scim, group["id"]) == sorted(ids)
