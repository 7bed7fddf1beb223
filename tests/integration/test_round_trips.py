"""Storage round trips per SCIM operation (issue budgets; DESIGN §5).

Counted by an azure-core pipeline policy on the real client against Azurite:
every HTTP request the Table SDK sends, retries included.
"""

from __future__ import annotations

import pytest

from tests.integration.test_users_entra import ENTERPRISE, create, entra_user, patch

pytestmark = pytest.mark.integration


async def measure(store, call):
    store.round_trips.reset()
    response = await call()
    return response, store.round_trips.count


async def test_budgets_of_the_entra_hot_path(scim, store):
    user = await create(scim, userName="budget@contoso.com", externalId="budget-ext")
    uid = user["id"]

    response, trips = await measure(store, lambda: scim.post("/Users", entra_user()))
    assert response.status == 201 and trips == 1, store.round_trips.requests

    response, trips = await measure(store, lambda: scim.get(f"/Users/{uid}"))
    assert response.status == 200 and trips == 1

    response, trips = await measure(store, lambda: scim.get('/Users?filter=userName eq "BUDGET@contoso.com"'))
    assert response.json()["totalResults"] == 1 and trips == 2

    response, trips = await measure(store, lambda: scim.get('/Users?filter=externalId eq "budget-ext"'))
    assert response.json()["totalResults"] == 1 and trips == 2

    response, trips = await measure(store, lambda: scim.get(f'/Users?filter=id eq "{uid}"'))
    assert response.json()["totalResults"] == 1 and trips == 1

    # The probe: a miss on the index costs one read.
    response, trips = await measure(store, lambda: scim.get('/Users?filter=userName eq "nobody@contoso.com"'))
    assert response.json()["totalResults"] == 0 and trips == 1

    response, trips = await measure(
        store,
        lambda: scim.patch(f"/Users/{uid}", patch({"op": "Replace", "path": "active", "value": "False"})),
    )
    assert response.status == 200 and trips == 2

    # A rename moves index rows inside the same transaction: still 2.
    response, trips = await measure(
        store,
        lambda: scim.patch(
            f"/Users/{uid}", patch({"op": "Replace", "path": "userName", "value": "b2@x.com"})
        ),
    )
    assert response.status == 200 and trips == 2

    # A PATCH that changes nothing is not written.
    response, trips = await measure(
        store,
        lambda: scim.patch(f"/Users/{uid}", patch({"op": "Replace", "path": "active", "value": "False"})),
    )
    assert response.status == 200 and trips == 1

    response, trips = await measure(
        store,
        lambda: scim.patch(
            f"/Users/{uid}", patch({"op": "Add", "path": f"{ENTERPRISE}:manager", "value": uid})
        ),
    )
    assert response.status == 200 and trips == 2

    response, trips = await measure(store, lambda: scim.put(f"/Users/{uid}", {"userName": "b2@x.com"}))
    assert response.status == 200 and trips == 2

    response, trips = await measure(store, lambda: scim.delete(f"/Users/{uid}"))
    assert response.status == 204 and trips == 2


async def test_bad_requests_cost_no_storage_round_trip(scim, store):
    user = await create(scim)
    calls = [
        lambda: scim.get("/Users?filter=userName eq"),
        lambda: scim.post("/Users", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]}),
        lambda: scim.patch(f"/Users/{user['id']}", patch({"op": "explode", "path": "title"})),
    ]
    for call in calls:
        response, trips = await measure(store, call)
        assert response.status == 400 and trips == 0


async def test_discovery_costs_no_storage_round_trip(scim, store):
    for path in ("/ServiceProviderConfig", "/Schemas", "/ResourceTypes"):
        response, trips = await measure(store, lambda path=path: scim.get(path))
        assert response.status == 200 and trips == 0


# -- groups (issue 3 budgets) -------------------------------------------------------


def add_cost(k: int) -> int:
    """Read + phase 1 (edge insert and user touch per member) + phase 2 (group row + 98 edges +
    change record) + phase 3 (uncontended: one conditional write per edge, no read)."""
    return 1 + -(-k // 50) + -(-k // 98) + -(-k // 100)


def remove_cost(k: int) -> int:
    """Read + phase 1 (read the edges, 14 per query, then mark them) + phase 2 (group row + 98 edges
    + change record) + phase 3 (uncontended: one conditional delete per edge, no read)."""
    return 1 + -(-k // 14) + -(-k // 100) + -(-k // 98) + -(-k // 100)


async def test_group_budgets(scim, store):
    from tests.integration.test_groups_entra import create_group, members_of

    ids = [(await scim.post("/Users", entra_user())).json()["id"] for _ in range(150)]
    group = await create_group(scim, displayName="Budget Group")
    gid = group["id"]

    response, trips = await measure(store, lambda: scim.post("/Groups", {"displayName": "Another"}))
    assert response.status == 201 and trips == 1

    response, trips = await measure(store, lambda: scim.get(f"/Groups/{gid}?excludedAttributes=members"))
    assert response.status == 200 and trips == 1

    query = '/Groups?excludedAttributes=members&filter=displayName eq "budget GROUP"'
    response, trips = await measure(store, lambda: scim.get(query))
    assert response.json()["totalResults"] == 1 and trips == 2

    added = 0
    for k in (1, 49, 100):
        chunk = ids[added : added + k]
        added += k
        body = patch({"op": "Add", "path": "members", "value": members_of(*chunk)})
        response, trips = await measure(store, lambda body=body: scim.patch(f"/Groups/{gid}", body))
        assert response.status == 204 and trips == add_cost(k), (k, store.round_trips.requests)
        group_partition = [r for r in store.round_trips.requests if r.startswith("POST")]
        assert len(group_partition) == add_cost(k) - 1  # every write is a batch

    response, trips = await measure(store, lambda: scim.get(f"/Groups/{gid}?excludedAttributes=members"))
    assert trips == 1  # whatever the group's size

    response, trips = await measure(store, lambda: scim.get(f"/Groups/{gid}"))
    assert len(response.json()["members"]) == 150 and trips == 2  # row + one page of member edges

    response, trips = await measure(store, lambda: scim.get(f"/Users/{ids[0]}"))
    assert response.json()["groups"][0]["value"] == gid and trips == 1  # groups ride in the user's read

    for k in (1, 98):
        chunk = ids[:k] if k == 1 else ids[1 : 1 + k]
        body = patch({"op": "Remove", "path": "members", "value": members_of(*chunk)})
        response, trips = await measure(store, lambda body=body: scim.patch(f"/Groups/{gid}", body))
        assert response.status == 204 and trips == remove_cost(k), (k, store.round_trips.requests)

    rename = patch({"op": "Replace", "path": "displayName", "value": "Renamed"})
    response, trips = await measure(store, lambda: scim.patch(f"/Groups/{gid}", rename))
    assert response.status == 204 and trips == 2


def delete_cost(groups: int, last: int) -> int:
    """Read + flag + member-edge deletes (100 per batch) + reverse edges that do not fit beside the
    ``last`` operations (row, index rows, change record) + that last transaction."""
    if not groups:
        return 2
    overflow = max(groups - (100 - last), 0)
    return 1 + 1 + -(-groups // 100) + -(-overflow // 100) + 1


async def test_deleting_a_user_costs_in_proportion_to_its_groups(scim, store):
    """Exact, across the 100-operation batch limit (issue 14: the test must cross its chunk limits)."""
    from tests.integration.test_groups_entra import create_group, members_of

    crowd = [(await scim.post("/Users", entra_user())).json()["id"] for _ in range(120)]
    for groups in (0, 3, 7, 101):
        user = (await scim.post("/Users", entra_user())).json()["id"]
        for n in range(groups):
            group = await create_group(scim)  # the first group also holds 120 other members
            body = patch(
                {"op": "Add", "path": "members", "value": members_of(user, *(crowd if not n else []))}
            )
            assert (await scim.patch(f"/Groups/{group['id']}", body)).status == 204
        stored = await store.repository.get("User", user)
        assert len(stored.edges) == groups
        last = 1 + len(stored.index_rows or ()) + 1  # the row, its index rows, the change record
        response, trips = await measure(store, lambda user=user: scim.delete(f"/Users/{user}"))
        assert response.status == 204
        assert trips == delete_cost(groups, last), (groups, store.round_trips.requests)
        assert (await scim.get(f"/Users/{user}")).status == 404


async def test_the_groups_of_a_pushed_down_page_cost_one_query_per_seven_users(scim, store):
    """Exact on both sides of each multiple of 7: a chunk size of 5, 6 or 8 fails it."""
    from tests.integration.test_groups_entra import create_group, members_of

    group = await create_group(scim)
    for count in (1, 7, 8, 14, 15):
        ids = [(await create(scim, userName=f"p{count}-{n:02d}@x.com"))["id"] for n in range(count)]
        body = patch({"op": "Add", "path": "members", "value": members_of(*ids)})
        assert (await scim.patch(f"/Groups/{group['id']}", body)).status == 204
        response, trips = await measure(
            store, lambda count=count: scim.get("/Users", query={"filter": f'userName sw "p{count}-"'})
        )
        body = response.json()
        assert body["totalResults"] == count
        assert all([g["value"] for g in u["groups"]] == [group["id"]] for u in body["Resources"])
        assert trips == 1 + -(-count // 7), (count, store.round_trips.requests)  # the scan, the edges
