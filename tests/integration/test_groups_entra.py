"""Every group request shape of entra-scim-behavior.md §4.4/§5, against real Azurite."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tests.integration.test_users_entra import CORE, ENTERPRISE, assert_error, create, patch

pytestmark = pytest.mark.integration

GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
MS_GROUP = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"


def entra_group(name: str | None = None, external_id: str | None = None) -> dict[str, Any]:
    """The *Create Group* body of the Entra SCIM tutorial."""
    return {
        "schemas": [GROUP, MS_GROUP],
        "externalId": external_id or str(uuid.uuid4()),
        "displayName": name or f"Group {uuid.uuid4()}",
        "meta": {"resourceType": "Group"},
    }


async def create_group(scim, **fields: Any) -> dict[str, Any]:
    body = entra_group()
    body.update(fields)
    response = await scim.post("/Groups", body)
    assert response.status == 201, response.json()
    return response.json()


async def users(scim, count: int) -> list[str]:
    return [(await create(scim))["id"] for _ in range(count)]


def members_of(*ids: str) -> list[dict[str, Any]]:
    return [{"$ref": None, "value": member} for member in ids]


async def member_ids(scim, group_id: str) -> list[str]:
    body = (await scim.get(f"/Groups/{group_id}")).json()
    return sorted(m["value"] for m in body.get("members", []))


async def groups_of(scim, user_id: str) -> list[str]:
    body = (await scim.get(f"/Users/{user_id}")).json()
    return sorted(g["value"] for g in body.get("groups", []))


# -- create, match ------------------------------------------------------------


async def test_create_group_as_entra_sends_it(scim):
    body = entra_group("Sales EMEA")
    response = await scim.post("/Groups", body)
    assert response.status == 201, response.json()
    group = response.json()
    assert group["schemas"] == [GROUP]
    assert group["displayName"] == "Sales EMEA" and group["externalId"] == body["externalId"]
    assert group["meta"]["resourceType"] == "Group"
    assert response.headers["Location"].endswith(f"/scim/v2/Groups/{group['id']}")
    assert group.get("members", []) == []


async def test_match_by_display_name_case_insensitive_without_members(scim):
    user = await create(scim)
    group = await create_group(scim, displayName="Finance Team")
    await scim.patch(
        f"/Groups/{group['id']}", patch({"op": "Add", "path": "members", "value": members_of(user["id"])})
    )
    body = (await scim.get('/Groups?excludedAttributes=members&filter=displayName eq "FINANCE team"')).json()
    assert body["totalResults"] == 1
    assert body["Resources"][0]["id"] == group["id"]
    assert "members" not in body["Resources"][0]
    by_ext = (
        await scim.get(f'/Groups?excludedAttributes=members&filter=externalId eq "{group["externalId"]}"')
    ).json()
    assert [g["id"] for g in by_ext["Resources"]] == [group["id"]]
    both = f'/Groups?filter=id eq "{group["id"]}" and displayName eq "finance team"'
    assert (await scim.get(both)).json()["totalResults"] == 1
    probe = (
        await scim.get(f'/Groups?excludedAttributes=members&filter=displayName eq "{uuid.uuid4()}"')
    ).json()
    assert probe["totalResults"] == 0 and probe["Resources"] == []


async def test_display_name_is_unique_case_insensitively(scim):
    await create_group(scim, displayName="Unique Name")
    assert_error(await scim.post("/Groups", entra_group("UNIQUE name")), 409, "uniqueness")


async def test_get_by_id_with_and_without_members(scim):
    user = await create(scim)
    group = await create_group(scim)
    await scim.patch(
        f"/Groups/{group['id']}", patch({"op": "Add", "path": "members", "value": members_of(user["id"])})
    )
    full = (await scim.get(f"/Groups/{group['id']}")).json()
    assert full["members"] == [
        {"value": user["id"], "type": "User", "$ref": f"http://scim.test/scim/v2/Users/{user['id']}"}
    ]
    lean = (await scim.get(f"/Groups/{group['id']}?excludedAttributes=members")).json()
    assert "members" not in lean and lean["displayName"] == group["displayName"]


# -- membership, default client ----------------------------------------------------


async def test_add_and_remove_members_in_entra_default_form(scim):
    a, b, c = await users(scim, 3)
    group = await create_group(scim)
    path = f"/Groups/{group['id']}"
    response = await scim.patch(path, patch({"op": "Add", "path": "members", "value": members_of(a, b, c)}))
    assert response.status == 204 and response.body == b""
    assert await member_ids(scim, group["id"]) == sorted([a, b, c])
    # Entra's Remove carries the member in `value`: only that one goes.
    response = await scim.patch(path, patch({"op": "Remove", "path": "members", "value": members_of(b)}))
    assert response.status == 204
    assert await member_ids(scim, group["id"]) == sorted([a, c])
    assert await groups_of(scim, b) == []
    assert await groups_of(scim, a) == [group["id"]]


async def test_remove_member_in_the_flag_form(scim):
    a, b = await users(scim, 2)
    group = await create_group(scim)
    path = f"/Groups/{group['id']}?aadOptscim062020"
    await scim.patch(path, patch({"op": "add", "path": "members", "value": members_of(a, b)}))
    response = await scim.patch(path, patch({"op": "remove", "path": f'members[value eq "{a}"]'}))
    assert response.status == 204
    assert await member_ids(scim, group["id"]) == [b]


async def test_membership_operations_are_idempotent(scim):
    a, b = await users(scim, 2)
    group = await create_group(scim)
    path = f"/Groups/{group['id']}"
    for _ in range(2):
        assert (
            await scim.patch(path, patch({"op": "Add", "path": "members", "value": members_of(a)}))
        ).status == 204
    assert await member_ids(scim, group["id"]) == [a]
    remove_non_member = patch({"op": "Remove", "path": "members", "value": members_of(b)})
    assert (await scim.patch(path, remove_non_member)).status == 204
    assert await member_ids(scim, group["id"]) == [a]
    assert await groups_of(scim, a) == [group["id"]]


async def test_unknown_member_ids_are_skipped_and_never_appear(scim):
    (a,) = await users(scim, 1)
    group = await create_group(scim)
    ghosts = [str(uuid.uuid4()), "not-a-uuid", str(group["id"])]  # no user, malformed, a group
    response = await scim.patch(
        f"/Groups/{group['id']}", patch({"op": "Add", "path": "members", "value": members_of(a, *ghosts)})
    )
    assert response.status == 204
    assert await member_ids(scim, group["id"]) == [a]


async def test_rename_and_pathless_replace(scim):
    group = await create_group(scim, displayName="Old Name")
    path = f"/Groups/{group['id']}"
    assert (
        await scim.patch(path, patch({"op": "Replace", "path": "displayName", "value": "New Name"}))
    ).status == 204
    assert (await scim.get('/Groups?filter=displayName eq "old name"')).json()["totalResults"] == 0
    assert (await scim.get('/Groups?filter=displayName eq "new name"')).json()["totalResults"] == 1
    assert (await scim.post("/Groups", entra_group("Old Name"))).status == 201
    (member,) = await users(scim, 1)
    pathless = patch({"op": "replace", "value": {"displayName": "Newer", "members": members_of(member)}})
    assert (await scim.patch(path, pathless)).status == 204
    got = (await scim.get(path)).json()
    assert got["displayName"] == "Newer" and [m["value"] for m in got["members"]] == [member]


async def test_replace_and_remove_all_members(scim):
    a, b, c = await users(scim, 3)
    group = await create_group(scim)
    path = f"/Groups/{group['id']}"
    await scim.patch(path, patch({"op": "add", "path": "members", "value": members_of(a, b)}))
    await scim.patch(path, patch({"op": "replace", "path": "members", "value": members_of(b, c)}))
    assert await member_ids(scim, group["id"]) == sorted([b, c])
    assert await groups_of(scim, a) == []
    await scim.patch(path, patch({"op": "remove", "path": "members"}))  # RFC 7644 §3.5.2.2: all
    assert await member_ids(scim, group["id"]) == []
    assert await groups_of(scim, c) == []


async def test_patch_response_never_carries_members(scim):
    (a,) = await users(scim, 1)
    group = await create_group(scim)
    add = patch({"op": "add", "path": "members", "value": members_of(a)})
    lean = await scim.patch(f"/Groups/{group['id']}?excludedAttributes=members", add)
    assert lean.status == 200 and "members" not in lean.json()
    assert lean.json()["meta"]["version"] == lean.headers["ETag"]


async def test_malformed_member_operations_are_400(scim):
    group = await create_group(scim)
    path = f"/Groups/{group['id']}"
    assert_error(
        await scim.patch(path, patch({"op": "add", "path": "members", "value": ["x"]})), 400, "invalidValue"
    )
    bad_path = patch({"op": "add", "path": 'members[value eq "x"]', "value": "y"})
    assert_error(await scim.patch(path, bad_path), 400, "invalidPath")
    assert_error(
        await scim.patch(path, patch({"op": "add", "path": "members.display", "value": "y"})),
        400,
        "invalidPath",
    )
    assert_error(await scim.patch(path, {"schemas": []}), 400, "invalidValue")
    assert_error(
        await scim.patch(f"/Groups/{uuid.uuid4()}", patch({"op": "add", "path": "members", "value": []})), 404
    )


async def test_post_and_put_with_members(scim):
    a, b = await users(scim, 2)
    response = await scim.post("/Groups", entra_group() | {"members": [{"value": a, "display": "A"}]})
    group = response.json()
    assert group["members"][0]["value"] == a and group["members"][0]["display"] == "A"
    put = await scim.put(
        f"/Groups/{group['id']}", {"schemas": [GROUP], "displayName": "Put", "members": members_of(b)}
    )
    assert put.status == 200, put.json()
    assert await member_ids(scim, group["id"]) == [b]
    assert await groups_of(scim, a) == []


# -- deletes ----------------------------------------------------------------------------


async def test_delete_group_removes_memberships(scim):
    a, b = await users(scim, 2)
    group = await create_group(scim, displayName="Doomed")
    await scim.patch(
        f"/Groups/{group['id']}", patch({"op": "Add", "path": "members", "value": members_of(a, b)})
    )
    assert (await scim.delete(f"/Groups/{group['id']}")).status == 204
    assert_error(await scim.get(f"/Groups/{group['id']}"), 404)
    assert await groups_of(scim, a) == [] and await groups_of(scim, b) == []
    # Re-assignment creates it again (LOGICAPP Restore_Group_Test).
    again = await scim.post("/Groups", entra_group("Doomed", group["externalId"]))
    assert again.status == 201
    assert await member_ids(scim, again.json()["id"]) == []


async def test_delete_user_removes_it_from_every_group(scim):
    (user,) = await users(scim, 1)
    (other,) = await users(scim, 1)
    groups = [await create_group(scim) for _ in range(3)]
    for group in groups:
        add = patch({"op": "Add", "path": "members", "value": members_of(user, other)})
        await scim.patch(f"/Groups/{group['id']}", add)
    assert await groups_of(scim, user) == sorted(g["id"] for g in groups)
    assert (await scim.delete(f"/Users/{user}")).status == 204
    for group in groups:
        assert await member_ids(scim, group["id"]) == [other]
    # The id of the deleted user can never come back through a later add.
    await scim.patch(
        f"/Groups/{groups[0]['id']}", patch({"op": "Add", "path": "members", "value": members_of(user)})
    )
    assert await member_ids(scim, groups[0]["id"]) == [other]


async def test_user_groups_filter_and_attributes(scim):
    (user,) = await users(scim, 1)
    group = await create_group(scim)
    await scim.patch(
        f"/Groups/{group['id']}", patch({"op": "Add", "path": "members", "value": members_of(user)})
    )
    got = (await scim.get(f"/Users/{user}")).json()
    assert got["groups"] == [
        {"value": group["id"], "type": "direct", "$ref": f"http://scim.test/scim/v2/Groups/{group['id']}"}
    ]
    assert "groups" not in (await scim.get(f"/Users/{user}?excludedAttributes=groups")).json()
    found = (await scim.get(f'/Users?filter=groups[value eq "{group["id"]}"]')).json()
    assert [u["id"] for u in found["Resources"]] == [user]
    by_member = (
        await scim.get(f'/Groups?filter=members[value eq "{user}"]&excludedAttributes=members')
    ).json()
    assert [g["id"] for g in by_member["Resources"]] == [group["id"]]


async def test_user_groups_is_read_only(scim):
    user = await create(scim)
    response = await scim.patch(
        f"/Users/{user['id']}", patch({"op": "add", "path": "groups", "value": [{"value": "x"}]})
    )
    assert_error(response, 400, "mutability")


# -- concurrency ------------------------------------------------------------------------


async def test_parallel_member_adds_are_all_present(scim):
    ids = await users(scim, 12)
    group = await create_group(scim)
    path = f"/Groups/{group['id']}"
    responses = await asyncio.gather(
        *(scim.patch(path, patch({"op": "Add", "path": "members", "value": members_of(m)})) for m in ids)
    )
    assert [r.status for r in responses] == [204] * len(ids)
    assert await member_ids(scim, group["id"]) == sorted(ids)
    for member in ids:
        assert await groups_of(scim, member) == [group["id"]]


async def test_users_in_groups_keep_user_operations_working(scim):
    user = await create(scim)
    group = await create_group(scim)
    add = patch({"op": "Add", "path": "members", "value": members_of(user["id"])})
    await scim.patch(f"/Groups/{group['id']}", add)
    disable = await scim.patch(
        f"/Users/{user['id']}", patch({"op": "Replace", "path": "active", "value": "False"})
    )
    assert disable.status == 200 and disable.json()["groups"][0]["value"] == group["id"]
    assert (
        await scim.put(f"/Users/{user['id']}", {"schemas": [CORE], "userName": user["userName"]})
    ).status == 200
    assert await groups_of(scim, user["id"]) == [group["id"]]
    listed = (await scim.get(f'/Users?filter=userName eq "{user["userName"]}"')).json()
    assert listed["Resources"][0]["groups"][0]["value"] == group["id"]
    assert ENTERPRISE not in listed["Resources"][0]
