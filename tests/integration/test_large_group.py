"""A 10,000-member group built with Entra-sized PATCHes (issue 3).

Slowest test of the suite (about a minute on 2 cores): 10,000 users are
created through the API, then added 100 per PATCH, as Entra batches them.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.test_groups_entra import create_group, members_of
from tests.integration.test_round_trips import measure
from tests.integration.test_users_entra import entra_user, patch

pytestmark = pytest.mark.integration

SIZE = 10_000
PER_PATCH = 100


async def test_ten_thousand_member_group(scim, store):
    limit = asyncio.Semaphore(16)

    async def new_user(n: int) -> str:
        async with limit:
            response = await scim.post("/Users", entra_user(f"member{n:05d}@contoso.com"))
            assert response.status == 201
            return str(response.json()["id"])

    ids = await asyncio.gather(*(new_user(n) for n in range(SIZE)))
    group = await create_group(scim, displayName="All Staff")
    empty = await create_group(scim, displayName="Nobody")
    path = f"/Groups/{group['id']}"

    async def add(chunk: list[str]) -> None:
        async with limit:
            response = await scim.patch(
                path, patch({"op": "Add", "path": "members", "value": members_of(*chunk)})
            )
            assert response.status == 204

    chunks = [ids[i : i + PER_PATCH] for i in range(0, SIZE, PER_PATCH)]
    await asyncio.gather(*(add(chunk) for chunk in chunks[:50]))  # parallel PATCHes of one group
    for chunk in chunks[50:]:
        await add(chunk)

    full, trips = await measure(store, lambda: scim.get(path))
    members = [m["value"] for m in full.json()["members"]]
    assert len(members) == SIZE and set(members) == set(ids)
    assert trips == 1 + SIZE // 1000  # the row, then one round trip per 1,000 member edges

    lean, lean_trips = await measure(store, lambda: scim.get(f"{path}?excludedAttributes=members"))
    _, empty_trips = await measure(
        store, lambda: scim.get(f"/Groups/{empty['id']}?excludedAttributes=members")
    )
    assert "members" not in lean.json() and lean_trips == empty_trips == 1
    assert len(lean.body) < 1_000

    removed = ids[4321]
    remove = patch({"op": "Remove", "path": "members", "value": members_of(removed)})
    assert (await scim.patch(path, remove)).status == 204
    after = [m["value"] for m in (await scim.get(path)).json()["members"]]
    assert len(after) == SIZE - 1 and removed not in after and set(after) == set(ids) - {removed}
    assert "groups" not in (await scim.get(f"/Users/{removed}")).json()
    assert (await scim.get(f"/Users/{ids[0]}")).json()["groups"][0]["value"] == group["id"]
