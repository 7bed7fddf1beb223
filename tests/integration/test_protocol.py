"""The wider RFC 7644 protocol: sorting, cursor paging (RFC 9865), /.search, filters."""

from __future__ import annotations

import pytest

from tests.integration.test_groups_entra import create_group, members_of
from tests.integration.test_users_entra import assert_error, create, patch

pytestmark = pytest.mark.integration

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


async def named_users(scim, names):
    return {name: (await create(scim, userName=name, displayName=name.split("@")[0]))["id"] for name in names}


async def test_sort_by_and_order(scim):
    await named_users(scim, ["carol@x.com", "Alice@x.com", "bob@x.com"])
    ascending = (await scim.get("/Users?sortBy=userName")).json()
    assert [u["userName"] for u in ascending["Resources"]] == ["Alice@x.com", "bob@x.com", "carol@x.com"]
    descending = (await scim.get("/Users?sortBy=userName&sortOrder=descending&count=2")).json()
    assert [u["userName"] for u in descending["Resources"]] == ["carol@x.com", "bob@x.com"]
    assert descending["totalResults"] == 3
    filtered = (await scim.get('/Users?filter=userName sw "b" or userName sw "c"&sortBy=displayName')).json()
    assert [u["displayName"] for u in filtered["Resources"]] == ["bob", "carol"]


async def test_cursor_paging_walks_every_user_once(scim):
    ids = set((await named_users(scim, [f"user{n:02d}@x.com" for n in range(11)])).values())
    seen, cursor, pages = [], "", 0
    while cursor is not None:
        body = (await scim.get(f"/Users?count=4&cursor={cursor}")).json()
        assert "startIndex" not in body and body["itemsPerPage"] == len(body["Resources"]) <= 4
        seen += [u["id"] for u in body["Resources"]]
        cursor, pages = body.get("nextCursor"), pages + 1
    assert sorted(seen) == sorted(ids) and pages == 3


async def test_cursor_paging_with_a_filter_and_with_sorting(scim):
    await named_users(scim, [f"{kind}{n}@x.com" for kind in ("a", "b") for n in range(5)])
    seen, cursor = [], ""
    while cursor is not None:
        body = (await scim.get(f'/Users?filter=userName sw "b"&count=2&cursor={cursor}')).json()
        seen += [u["userName"] for u in body["Resources"]]
        cursor = body.get("nextCursor")
    assert sorted(seen) == [f"b{n}@x.com" for n in range(5)]
    first = (await scim.get("/Users?sortBy=userName&count=3&cursor=")).json()
    second = (await scim.get(f"/Users?sortBy=userName&count=3&cursor={first['nextCursor']}")).json()
    assert [u["userName"] for u in first["Resources"] + second["Resources"]] == sorted(
        [f"{k}{n}@x.com" for k in ("a", "b") for n in range(5)]
    )[:6]
    assert first["totalResults"] == 10


async def test_cursor_pages_are_bounded_by_max_scan(scim, store):
    from scim.web.api import ScimApi
    from tests.integration.conftest import ScimClient, make_settings

    await named_users(scim, [f"c{n}@x.com" for n in range(6)])
    tight = ScimClient(ScimApi(make_settings(store, max_scan=2), store.repository))
    assert_error(await tight.get('/Users?filter=title eq "none"'), 400, "tooMany")
    pages, cursor = 0, ""
    while cursor is not None:
        body = (await tight.get(f'/Users?filter=title eq "none"&cursor={cursor}')).json()
        assert body["Resources"] == []
        cursor, pages = body.get("nextCursor"), pages + 1
    assert pages == 3  # six users, two examined per request, never an error


@pytest.mark.parametrize("cursor", ["not-base64!", "eyJ4IjoxfQ", "W10", "eyJvIjotMX0"])
async def test_forged_cursors_are_invalid(scim, cursor):
    assert_error(await scim.get(f"/Users?cursor={cursor}"), 400, "invalidCursor")


async def test_search_endpoints(scim):
    users = await named_users(scim, ["dave@x.com", "erin@x.com"])
    group = await create_group(scim, displayName="dave's group")
    await scim.patch(
        f"/Groups/{group['id']}",
        patch({"op": "add", "path": "members", "value": members_of(users["dave@x.com"])}),
    )
    body = {
        "schemas": [SEARCH],
        "filter": 'userName eq "DAVE@x.com"',
        "attributes": ["userName", "groups"],
    }
    found = (await scim.post("/Users/.search", body)).json()
    assert found["totalResults"] == 1
    assert set(found["Resources"][0]) == {"schemas", "id", "userName", "groups"}
    groups = (
        await scim.post("/Groups/.search", {"schemas": [SEARCH], "excludedAttributes": ["members"]})
    ).json()
    assert groups["totalResults"] == 1 and "members" not in groups["Resources"][0]
    everywhere = (
        await scim.post("/.search", {"schemas": [SEARCH], "filter": 'displayName sw "dave"'})
    ).json()
    assert sorted(r["meta"]["resourceType"] for r in everywhere["Resources"]) == ["Group", "User"]
    assert_error(
        await scim.post("/.search", {"schemas": [SEARCH], "filter": "nosuch eq 1"}), 400, "invalidFilter"
    )
    assert_error(await scim.post("/.search", {"schemas": [SEARCH], "cursor": ""}), 400, "invalidValue")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('userName co "rin"', ["erin"]),
        ('userName ew "@x.com" and not (displayName eq "dave")', ["erin"]),
        ('displayName pr and (title eq "CTO" or nickName eq "X")', ["erin"]),
        ('emails[type eq "work" and value co "@testuser.com"]', ["dave", "erin"]),
        ('meta.lastModified gt "2000-01-01T00:00:00Z"', ["dave", "erin"]),
        ("active eq false", []),
        ('urn:ietf:params:scim:schemas:core:2.0:User:userName sw "d"', ["dave"]),
    ],
)
async def test_full_filter_grammar(scim, expression, expected):
    await create(scim, userName="dave@x.com", displayName="dave", nickName="D")
    await create(scim, userName="erin@x.com", displayName="erin", title="CTO")
    body = (await scim.get("/Users", query={"filter": expression, "sortBy": "displayName"})).json()
    assert [u["displayName"] for u in body["Resources"]] == expected


async def test_bulk_creates_users_and_a_group_that_references_them(scim):
    body = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            {
                "method": "POST",
                "path": "/Groups",
                "bulkId": "g",
                "data": {
                    "displayName": "Bulk Group",
                    "members": [{"value": "bulkId:u1"}, {"value": "bulkId:u2"}],
                },
            },
            {"method": "POST", "path": "/Users", "bulkId": "u1", "data": {"userName": "bulk1@x.com"}},
            {"method": "POST", "path": "/Users", "bulkId": "u2", "data": {"userName": "bulk2@x.com"}},
            {
                "method": "PATCH",
                "path": "/Users/bulkId:u1",
                "data": patch({"op": "add", "path": "title", "value": "T"}),
            },
            {"method": "POST", "path": "/Users", "bulkId": "dup", "data": {"userName": "BULK1@x.com"}},
        ],
    }
    response = await scim.post("/Bulk", body)
    assert response.status == 200, response.json()
    results = response.json()["Operations"]
    assert [r["status"] for r in results] == ["201", "201", "201", "200", "409"]
    assert results[4]["response"]["scimType"] == "uniqueness"
    group_id = results[0]["location"].rsplit("/", 1)[1]
    user_ids = sorted(r["location"].rsplit("/", 1)[1] for r in results[1:3])
    members = (await scim.get(f"/Groups/{group_id}")).json()["members"]
    assert sorted(m["value"] for m in members) == user_ids
    assert (await scim.get(f"/Users/{user_ids[0]}")).json().get("groups")


async def test_bulk_limits(scim):
    too_many = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [{"method": "DELETE", "path": f"/Users/{n}"} for n in range(101)],
    }
    assert_error(await scim.post("/Bulk", too_many), 413)
    assert_error(await scim.post("/Bulk", {"schemas": ["x"], "Operations": []}), 400, "invalidSyntax")
