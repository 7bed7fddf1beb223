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
