"""Filter push-down is visible in the storage requests, and never changes an answer."""

from __future__ import annotations

import pytest

from tests.integration.test_round_trips import measure
from tests.integration.test_users_entra import create, patch

pytestmark = pytest.mark.integration


async def population(scim):
    users = {}
    for name, active, title in [
        ("amy", True, "CEO"),
        ("ben", False, "CTO"),
        ("bea", True, None),
        ("cal", True, None),
    ]:
        user = await create(scim, userName=f"{name}@x.com", active=active, displayName=name.title())
        if title:
            await scim.patch(f"/Users/{user['id']}", patch({"op": "add", "path": "title", "value": title}))
        users[name] = user["id"]
    return users


def storage_filter(store) -> str:
    queries = [url for url in store.round_trips.urls if "$filter=" in url]
    assert queries, store.round_trips.urls
    return queries[-1].split("$filter=", 1)[1]


@pytest.mark.parametrize(
    ("expression", "pushed", "expected"),
    [
        ("active eq false", ["c_act eq false"], ["ben"]),
        ('userName sw "B"', ["c_un ge 'b'", "c_un lt 'c'"], ["bea", "ben"]),
        ('userName sw "b" and title eq "CTO"', ["c_un ge 'b'"], ["ben"]),
        ('displayName eq "amy" or displayName eq "CAL"', ["c_dn eq 'amy'", "c_dn eq 'cal'"], ["amy", "cal"]),
        (
            'meta.lastModified gt "2000-01-01T00:00:00Z"',
            ["c_lm gt datetime'2000-01-01T00:00:00"],
            ["amy", "bea", "ben", "cal"],
        ),
    ],
)
async def test_pushed_terms_reach_storage(scim, store, expression, pushed, expected):
    ids = await population(scim)
    response, _ = await measure(store, lambda: scim.get("/Users", query={"filter": expression}))
    found = sorted(
        name for name, uid in ids.items() if uid in {u["id"] for u in response.json()["Resources"]}
    )
    assert found == expected
    text = storage_filter(store)
    for fragment in pushed:
        assert fragment in text, text


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("not (active eq true)", ["ben"]),  # never pushed: storage and SCIM differ on absent values
        ('title ne "CEO"', ["bea", "ben", "cal"]),
        ('userName sw "b" or title pr', ["amy", "bea", "ben"]),
    ],
)
async def test_unpushable_terms_stay_correct(scim, store, expression, expected):
    ids = await population(scim)
    response, _ = await measure(store, lambda: scim.get("/Users", query={"filter": expression}))
    found = sorted(
        name for name, uid in ids.items() if uid in {u["id"] for u in response.json()["Resources"]}
    )
    assert found == expected
    assert "c_" not in storage_filter(store)


async def test_indexed_eq_with_other_terms_costs_two_round_trips(scim, store):
    ids = await population(scim)
    query = {"filter": 'userName eq "BEN@x.com" and active eq false and title sw "C"'}
    response, trips = await measure(store, lambda: scim.get("/Users", query=query))
    assert [u["id"] for u in response.json()["Resources"]] == [ids["ben"]] and trips == 2


@pytest.mark.parametrize(
    "value",
    ["a' or 'a' eq 'a", "x') or (PartitionKey ne '", "' or RowKey gt '", "\\' or 1 eq 1 or '"],
)
async def test_hostile_values_never_widen_the_query(scim, store, value):
    await population(scim)
    escaped = value.replace("\\", "\\\\")
    for attribute in ("userName", "displayName", "externalId"):
        for op in ("eq", "sw", "gt"):
            response, _ = await measure(
                store, lambda a=attribute, o=op: scim.get("/Users", query={"filter": f'{a} {o} "{escaped}"'})
            )
            body = response.json()
            assert response.status == 200, body
            names = [u["userName"] for u in body["Resources"]]
            if op == "gt":  # a genuine comparison: only users whose value sorts after it
                assert all(n.lower() > value.lower() for n in names if attribute == "userName")
            else:
                assert names == []


async def test_pushed_results_still_carry_groups(scim, store):
    from tests.integration.test_groups_entra import create_group, members_of

    ids = await population(scim)
    group = await create_group(scim)
    await scim.patch(
        f"/Groups/{group['id']}", patch({"op": "add", "path": "members", "value": members_of(ids["ben"])})
    )
    await scim.patch(
        f"/Users/{ids['ben']}", patch({"op": "replace", "path": "nickName", "value": "B"})
    )  # full-row write
    body = (await scim.get("/Users", query={"filter": 'userName sw "b"', "sortBy": "userName"})).json()
    assert [u.get("groups", [{}])[0].get("value") for u in body["Resources"]] == [None, group["id"]]


async def test_pushed_results_of_users_in_groups_cost_one_query_per_seven(scim, store):
    from tests.integration.test_groups_entra import create_group, members_of

    ids = [(await create(scim, userName=f"grouped{n:02d}@x.com"))["id"] for n in range(15)]
    group = await create_group(scim)
    await scim.patch(
        f"/Groups/{group['id']}", patch({"op": "add", "path": "members", "value": members_of(*ids)})
    )
    response, trips = await measure(
        store, lambda: scim.get("/Users", query={"filter": 'userName sw "grouped"'})
    )
    body = response.json()
    assert body["totalResults"] == 15 and all(
        u["groups"][0]["value"] == group["id"] for u in body["Resources"]
    )
    assert trips == 1 + 3  # the pushed-down scan, then the edges of 15 users, 7 per query
