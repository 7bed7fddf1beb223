"""Every user request shape of entra-scim-behavior.md, against real Azurite.

Bodies are the ones Entra sends (default client and ``aadOptscim062020``), as
reproduced in the reference; the expected answers are the reference's.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.integration

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


def entra_user(user_name: str | None = None, external_id: str | None = None) -> dict[str, Any]:
    """The *Create User* body of the Entra SCIM tutorial."""
    return {
        "schemas": [CORE, ENTERPRISE],
        "externalId": external_id or str(uuid.uuid4()),
        "userName": user_name or f"Test_User_{uuid.uuid4()}",
        "active": True,
        "emails": [{"primary": True, "type": "work", "value": f"Test_User_{uuid.uuid4()}@testuser.com"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": [],
    }


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


async def create(scim, **fields: Any) -> dict[str, Any]:
    body = entra_user()
    body.update(fields)
    response = await scim.post("/Users", body)
    assert response.status == 201, response.json()
    return response.json()


def assert_error(response, status: int, scim_type: str | None = None) -> None:
    body = response.json()
    assert response.status == status, body
    assert body["schemas"] == [ERROR]
    assert body["status"] == str(status)
    assert body.get("scimType") == scim_type
    assert body["detail"]
    assert response.headers["Content-Type"] == "application/scim+json"


# -- probe, create, match ---------------------------------------------------


async def test_probe_filter_for_missing_user_is_an_empty_list(scim):
    response = await scim.get(f"/Users?filter=userName+eq+%22{uuid.uuid4()}%22")
    assert response.status == 200
    assert response.json() == {
        "schemas": [LIST],
        "totalResults": 0,
        "startIndex": 1,
        "itemsPerPage": 0,
        "Resources": [],
    }
    assert response.headers["Content-Type"] == "application/scim+json"


async def test_create_user_as_entra_sends_it(scim):
    body = entra_user()
    body["schemas"].append("http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/User")
    body.update({"active": "True", "addresses": None, "phoneNumbers": None, "title": None, "id": "client-id"})
    response = await scim.post("/Users", body)
    assert response.status == 201, response.json()
    created = response.json()
    assert created["id"] != "client-id"
    assert created["userName"] == body["userName"]
    assert created["externalId"] == body["externalId"]
    assert created["active"] is True
    assert created["emails"] == body["emails"]
    assert created["name"] == body["name"]
    assert created["schemas"] == [CORE]
    assert created["meta"]["resourceType"] == "User"
    assert created["meta"]["created"] == created["meta"]["lastModified"]
    assert response.headers["Location"] == created["meta"]["location"]
    assert created["meta"]["location"].endswith(f"/scim/v2/Users/{created['id']}")
    assert response.headers["ETag"] == created["meta"]["version"]
    got = await scim.get(f"/Users/{created['id']}")
    assert got.status == 200
    assert got.json() == created


async def test_email_values_are_stored_exactly_as_sent(scim):
    created = await create(scim, emails=[{"type": "work", "value": "Odd.Address@LOCALHOST"}])
    assert created["emails"] == [{"type": "work", "value": "Odd.Address@LOCALHOST"}]


async def test_match_by_user_name_is_case_insensitive(scim):
    created = await create(scim, userName="Alice.Smith@Contoso.com")
    response = await scim.get('/Users?filter=userName eq "alice.smith@CONTOSO.COM"')
    body = response.json()
    assert body["totalResults"] == 1
    assert body["Resources"][0]["id"] == created["id"]


async def test_match_by_external_id_is_case_exact(scim):
    created = await create(scim, externalId="AbC-123")
    hit = (await scim.get('/Users?filter=externalId eq "AbC-123"')).json()
    miss = (await scim.get('/Users?filter=externalId eq "abc-123"')).json()
    assert [r["id"] for r in hit["Resources"]] == [created["id"]]
    assert miss["totalResults"] == 0


async def test_match_by_id_and_combined_with_and(scim):
    created = await create(scim, userName="bob@contoso.com", externalId="bob")
    by_id = (await scim.get(f'/Users?filter=id eq "{created["id"]}"')).json()
    assert by_id["totalResults"] == 1
    both = (await scim.get('/Users?filter=userName eq "BOB@contoso.com" and externalId eq "bob"')).json()
    assert both["totalResults"] == 1
    wrong = (await scim.get('/Users?filter=userName eq "bob@contoso.com" and externalId eq "other"')).json()
    assert wrong["totalResults"] == 0


async def test_match_by_work_email_uses_a_bounded_scan(scim):
    created = await create(scim, emails=[{"type": "work", "value": "carol@contoso.com", "primary": True}])
    await create(scim)
    body = (await scim.get('/Users?filter=emails[type eq "work"].value eq "CAROL@contoso.com"')).json()
    assert [r["id"] for r in body["Resources"]] == [created["id"]]


async def test_duplicate_user_name_in_another_case_is_409_and_writes_nothing(scim):
    await create(scim, userName="dup@contoso.com")
    external_id = str(uuid.uuid4())
    response = await scim.post("/Users", entra_user("DUP@Contoso.com", external_id))
    assert_error(response, 409, "uniqueness")
    assert "userName" in response.json()["detail"]
    # The failed create reserved nothing: its externalId is still free.
    again = await scim.post("/Users", entra_user("other@contoso.com", external_id))
    assert again.status == 201
    listing = (await scim.get("/Users")).json()
    assert listing["totalResults"] == 2


async def test_duplicate_external_id_is_stored_unless_declared_unique(scim):
    """RFC 7643 §3.1 does not make externalId unique; Microsoft's Postman suite sends one for four users."""
    first = await create(scim, externalId="same")
    second = await create(scim, externalId="same")
    found = (await scim.get('/Users?filter=externalId eq "same"')).json()
    assert sorted(r["id"] for r in found["Resources"]) == sorted([first["id"], second["id"]])


# -- PATCH, default client ----------------------------------------------------


async def test_patch_replace_filtered_email_and_family_name(scim):
    user = await create(scim)
    response = await scim.patch(
        f"/Users/{user['id']}",
        patch(
            {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "updatedEmail@microsoft.com"},
            {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
        ),
    )
    assert response.status == 200, response.json()
    got = (await scim.get(f"/Users/{user['id']}")).json()
    assert got["emails"] == [{"value": "updatedEmail@microsoft.com", "type": "work", "primary": True}]
    assert got["name"]["familyName"] == "updatedFamilyName"
    assert got["name"]["givenName"] == "givenName"
    assert got["meta"]["lastModified"] > user["meta"]["lastModified"]
    assert got["meta"]["version"] != user["meta"]["version"]


async def test_patch_replace_user_name_moves_the_uniqueness(scim):
    user = await create(scim, userName="old@contoso.com")
    new_name = "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"
    response = await scim.patch(
        f"/Users/{user['id']}", patch({"op": "Replace", "path": "userName", "value": new_name})
    )
    assert response.status == 200
    assert (await scim.get('/Users?filter=userName eq "old@contoso.com"')).json()["totalResults"] == 0
    assert (await scim.get(f'/Users?filter=userName eq "{new_name.upper()}"')).json()["totalResults"] == 1
    # The old name is free again, the new one is taken.
    assert (await scim.post("/Users", entra_user("old@contoso.com"))).status == 201
    assert_error(await scim.post("/Users", entra_user(new_name)), 409, "uniqueness")


async def test_patch_rename_to_a_taken_user_name_is_409_and_changes_nothing(scim):
    await create(scim, userName="taken@contoso.com")
    user = await create(scim, userName="mine@contoso.com")
    response = await scim.patch(
        f"/Users/{user['id']}",
        patch(
            {"op": "Replace", "path": "displayName", "value": "Changed"},
            {"op": "Replace", "path": "userName", "value": "TAKEN@contoso.com"},
        ),
    )
    assert_error(response, 409, "uniqueness")
    got = (await scim.get(f"/Users/{user['id']}")).json()
    assert got["userName"] == "mine@contoso.com"
    assert "displayName" not in got


async def test_patch_many_attributes_one_op_each(scim):
    user = await create(scim)
    response = await scim.patch(
        f"/Users/{user['id']}",
        patch(
            {"op": "Replace", "path": "displayName", "value": "Pvlo"},
            {
                "op": "Replace",
                "path": 'emails[type eq "work"].value',
                "value": "TestBcwqnm@test.microsoft.com",
            },
            {"op": "Replace", "path": "name.givenName", "value": "Gtfd"},
            {"op": "Replace", "path": "name.familyName", "value": "Pkqf"},
            {"op": "Replace", "path": "externalId", "value": "Eqpj"},
            {"op": "Replace", "path": f"{ENTERPRISE}:employeeNumber", "value": "Eqpj"},
        ),
    )
    assert response.status == 200, response.json()
    got = (await scim.get(f"/Users/{user['id']}")).json()
    assert got["displayName"] == "Pvlo"
    assert got["emails"][0]["value"] == "TestBcwqnm@test.microsoft.com"
    assert got["name"]["givenName"] == "Gtfd" and got["name"]["familyName"] == "Pkqf"
    assert got["externalId"] == "Eqpj"
    assert got[ENTERPRISE]["employeeNumber"] == "Eqpj"
    assert ENTERPRISE in got["schemas"]
    assert (await scim.get('/Users?filter=externalId eq "Eqpj"')).json()["totalResults"] == 1
    assert (await scim.get(f'/Users?filter=externalId eq "{user["externalId"]}"')).json()["totalResults"] == 0


async def test_patch_add_single_valued(scim):
    user = await create(scim)
    response = await scim.patch(
        f"/Users/{user['id']}", patch({"op": "Add", "path": "nickName", "value": "Babs"})
    )
    assert response.status == 200
    assert response.json()["nickName"] == "Babs"


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("Replace", "False", False),  # default client
        ("replace", False, False),  # aadOptscim062020
        ("Add", "False", False),  # observed: rancher/rancher#54025
        ("Replace", "false", False),  # lower-case string, observed
        ("Replace", "True", True),
        ("replace", True, True),
    ],
)
async def test_patch_active_in_every_form(scim, op, value, expected):
    user = await create(scim, active=not expected)
    response = await scim.patch(f"/Users/{user['id']}", patch({"op": op, "path": "active", "value": value}))
    assert response.status == 200, response.json()
    assert (await scim.get(f"/Users/{user['id']}")).json()["active"] is expected


@pytest.mark.parametrize(
    ("path", "value", "attribute", "expected"),
    [
        (
            'phoneNumbers[type eq "mobile"].value',
            "+1 555 0100",
            "phoneNumbers",
            [{"value": "+1 555 0100", "type": "mobile"}],
        ),
        ('addresses[type eq "work"].locality', "Paris", "addresses", [{"locality": "Paris", "type": "work"}]),
        (
            'addresses[type eq "work"].streetAddress',
            "1 Rue",
            "addresses",
            [{"streetAddress": "1 Rue", "type": "work"}],
        ),
        (
            'addresses[type eq "other"].formatted',
            "Somewhere",
            "addresses",
            [{"formatted": "Somewhere", "type": "other"}],
        ),
        ('emails[type eq "home"].value', "me@home.example", "emails", None),
    ],
)
@pytest.mark.parametrize("op", ["Add", "Replace"])
async def test_value_filtered_path_creates_the_missing_element(scim, op, path, value, attribute, expected):
    user = await create(scim)
    response = await scim.patch(f"/Users/{user['id']}", patch({"op": op, "path": path, "value": value}))
    assert response.status == 200, response.json()
    got = (await scim.get(f"/Users/{user['id']}")).json()
    if expected is None:  # a second e-mail beside the work one
        assert {"value": "me@home.example", "type": "home"} in got["emails"]
        assert len(got["emails"]) == 2
    else:
        assert got[attribute] == expected


async def test_deactivation_is_not_lost_when_sent_with_filtered_paths(scim):
    user = await create(scim)
    response = await scim.patch(
        f"/Users/{user['id']}",
        patch(
            {"op": "Add", "path": 'phoneNumbers[type eq "work"].value', "value": "123"},
            {"op": "Replace", "path": "active", "value": "False"},
        ),
    )
    assert response.status == 200
    assert (await scim.get(f"/Users/{user['id']}")).json()["active"] is False


# -- PATCH, aadOptscim062020 --------------------------------------------------


async def test_pathless_replace_with_dotted_and_urn_keys(scim):
    user = await create(scim)
    response = await scim.patch(
        f"/Users/{user['id']}?aadOptscim062020",
        patch(
            {
                "op": "replace",
                "value": {
                    "displayName": "Bjfe",
                    "name.givenName": "Kkom",
                    "name.familyName": "Unua",
                    f"{ENTERPRISE}:employeeNumber": "Aklq",
                    "active": False,
                },
            }
        ),
    )
    assert response.status == 200, response.json()
    got = (await scim.get(f"/Users/{user['id']}")).json()
    assert got["displayName"] == "Bjfe"
    assert got["name"] == {"formatted": "givenName familyName", "givenName": "Kkom", "familyName": "Unua"}
    assert got[ENTERPRISE]["employeeNumber"] == "Aklq"
    assert got["active"] is False


# -- manager --------------------------------------------------------------------


async def test_manager_lifecycle_as_entra_sends_it(scim):
    manager = await create(scim)
    other = await create(scim)
    user = await create(scim)
    path = f"/Users/{user['id']}"
    add = await scim.patch(
        path, patch({"op": "Add", "path": f"{ENTERPRISE}:manager", "value": manager["id"]})
    )
    assert add.status == 200, add.json()
    got = (await scim.get(path)).json()
    assert got[ENTERPRISE]["manager"] == {"value": manager["id"]}  # complex, never a string
    assert ENTERPRISE in got["schemas"]

    await scim.patch(path, patch({"op": "replace", "path": f"{ENTERPRISE}:manager", "value": other["id"]}))
    assert (await scim.get(path)).json()[ENTERPRISE]["manager"] == {"value": other["id"]}

    await scim.patch(path, patch({"op": "replace", "path": f"{ENTERPRISE}:manager", "value": ""}))
    got = (await scim.get(path)).json()
    assert "manager" not in got.get(ENTERPRISE, {})
    assert ENTERPRISE not in got["schemas"]


async def test_manager_legacy_list_form_and_filtered_remove(scim):
    manager = await create(scim)
    user = await create(scim)
    path = f"/Users/{user['id']}"
    legacy = {
        "op": "Add",
        "path": "manager",
        "value": [{"$ref": f"http://x/Users/{manager['id']}", "value": manager["id"]}],
    }
    assert (await scim.patch(path, patch(legacy))).status == 200
    assert (await scim.get(path)).json()[ENTERPRISE]["manager"]["value"] == manager["id"]
    remove = {"op": "remove", "path": f'manager[value eq "{manager["id"]}"]'}
    assert (await scim.patch(path, patch(remove))).status == 200
    assert "manager" not in (await scim.get(path)).json().get(ENTERPRISE, {})


async def test_manager_in_a_create_body_as_a_bare_id(scim):
    user = await create(scim, **{ENTERPRISE: {"manager": "abc", "department": "Sales"}})
    assert user[ENTERPRISE] == {"manager": {"value": "abc"}, "department": "Sales"}


# -- clearing -------------------------------------------------------------------


@pytest.mark.parametrize("empty", ["", None])
async def test_replace_with_empty_clears_the_attribute(scim, empty):
    user = await create(scim, title="Engineer", nickName="Babs")
    path = f"/Users/{user['id']}"
    response = await scim.patch(
        path,
        patch(
            {"op": "replace", "path": "title", "value": empty},
            {"op": "replace", "value": {"nickName": empty}},
        ),
    )
    assert response.status == 200, response.json()
    got = (await scim.get(path)).json()
    assert "title" not in got and "nickName" not in got


async def test_remove_of_an_unset_attribute_is_a_no_op(scim):
    user = await create(scim)
    response = await scim.patch(f"/Users/{user['id']}", patch({"op": "Remove", "path": "title"}))
    assert response.status == 200
    assert response.json()["meta"]["version"] == user["meta"]["version"]


# -- disable, re-enable, delete ----------------------------------------------------


async def test_disabled_user_is_still_returned_by_id_and_filter(scim):
    user = await create(scim, userName="gone.soon@contoso.com")
    await scim.patch(f"/Users/{user['id']}", patch({"op": "Replace", "path": "active", "value": "False"}))
    by_id = (await scim.get(f"/Users/{user['id']}")).json()
    assert by_id["active"] is False
    listed = (await scim.get('/Users?filter=userName eq "gone.soon@contoso.com"')).json()
    assert listed["totalResults"] == 1 and listed["Resources"][0]["active"] is False
    await scim.patch(f"/Users/{user['id']}", patch({"op": "Replace", "path": "active", "value": "True"}))
    assert (await scim.get(f"/Users/{user['id']}")).json()["active"] is True


async def test_delete_user(scim):
    user = await create(scim, userName="del@contoso.com")
    response = await scim.delete(f"/Users/{user['id']}")
    assert response.status == 204 and response.body == b""
    assert_error(await scim.get(f"/Users/{user['id']}"), 404)
    assert (await scim.get('/Users?filter=userName eq "del@contoso.com"')).json()["totalResults"] == 0
    assert_error(await scim.delete(f"/Users/{user['id']}"), 404)
    # The userName and externalId are free again (index rows went with the user).
    assert (await scim.post("/Users", entra_user("del@contoso.com", user["externalId"]))).status == 201


# -- PUT, attributes, ETags ---------------------------------------------------------


async def test_put_replaces_the_resource_and_keeps_id_and_created(scim):
    user = await create(scim, title="Old")
    body = {"schemas": [CORE], "userName": user["userName"], "displayName": "New", "active": False}
    response = await scim.put(f"/Users/{user['id']}", body)
    assert response.status == 200, response.json()
    got = response.json()
    assert got["id"] == user["id"] and got["meta"]["created"] == user["meta"]["created"]
    assert got["displayName"] == "New" and "title" not in got and "emails" not in got
    assert (await scim.get(f'/Users?filter=externalId eq "{user["externalId"]}"')).json()["totalResults"] == 0


async def test_attributes_and_excluded_attributes(scim):
    user = await create(scim)
    only = (await scim.get(f"/Users/{user['id']}?attributes=userName")).json()
    assert set(only) == {"schemas", "id", "userName"}
    without = (await scim.get(f"/Users/{user['id']}?excludedAttributes=emails,name")).json()
    assert "emails" not in without and "name" not in without and without["userName"] == user["userName"]
    listed = (await scim.get(f'/Users?filter=id eq "{user["id"]}"&attributes=externalId')).json()
    assert set(listed["Resources"][0]) == {"schemas", "id", "externalId"}


async def test_if_match_and_if_none_match(scim):
    user = await create(scim)
    path = f"/Users/{user['id']}"
    version = user["meta"]["version"]
    assert (await scim.get(path, headers={"If-None-Match": version})).status == 304
    stale = 'W/"not-the-version"'
    op = patch({"op": "Add", "path": "nickName", "value": "x"})
    assert_error(await scim.patch(path, op, headers={"If-Match": stale}), 412)
    assert_error(await scim.delete(path, headers={"If-Match": stale}), 412)
    ok = await scim.patch(path, op, headers={"If-Match": version})
    assert ok.status == 200 and ok.headers["ETag"] != version
    assert (await scim.delete(path, headers={"If-Match": "*"})).status == 204


# -- paging ---------------------------------------------------------------------------


async def test_start_index_and_count_paging(scim):
    ids = {(await create(scim))["id"] for _ in range(12)}
    seen: list[str] = []
    for page in range(3):
        body = (await scim.get(f"/Users?startIndex={page * 5 + 1}&count=5")).json()
        assert body["totalResults"] == 12
        assert body["startIndex"] == page * 5 + 1
        assert body["itemsPerPage"] == len(body["Resources"]) == (5 if page < 2 else 2)
        seen.extend(r["id"] for r in body["Resources"])
    assert sorted(seen) == sorted(ids)
    beyond = (await scim.get("/Users?startIndex=50&count=5")).json()
    assert beyond["totalResults"] == 12 and beyond["Resources"] == []
    zero = (await scim.get("/Users?count=0")).json()
    assert zero["totalResults"] == 12 and zero["itemsPerPage"] == 0


async def test_count_is_capped_at_the_page_size(scim):
    for _ in range(3):
        await create(scim)
    body = (await scim.get("/Users?count=100000")).json()
    assert body["itemsPerPage"] == 3


# -- auth -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", "Basic dGVzdA==", "Bearer", "test-secret-token-0123456789abcdef"],
)
async def test_unauthenticated_requests_get_401(scim, authorization):
    scim.token = None
    headers = {"Authorization": authorization} if authorization else {}
    for path in ("/Users", "/Schemas", "/ServiceProviderConfig", f"/Users/{uuid.uuid4()}"):
        response = await scim.get(path, headers=headers)
        assert_error(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_next_token_is_accepted_for_rotation(scim):
    scim.token = "next-secret-token-fedcba9876543210"
    assert (await scim.get("/Users")).status == 200


# -- errors ---------------------------------------------------------------------------------


async def test_error_answers(scim):
    user = await create(scim)
    path = f"/Users/{user['id']}"
    assert_error(await scim.get(f"/Users/{uuid.uuid4()}"), 404)
    assert_error(await scim.get("/Users?filter=userName eq"), 400, "invalidFilter")
    assert_error(await scim.get('/Users?filter=nosuch eq "x"'), 400, "invalidFilter")
    assert_error(await scim.get("/Users?startIndex=abc"), 400, "invalidValue")
    assert_error(await scim.post("/Users", None, raw=b"{not json"), 400, "invalidSyntax")
    assert_error(await scim.post("/Users", None, raw=b"[1, 2]"), 400, "invalidSyntax")
    assert_error(await scim.post("/Users", {"schemas": [CORE]}), 400, "invalidValue")
    assert_error(
        await scim.post("/Users", {"schemas": [CORE], "userName": "x", "active": "maybe"}),
        400,
        "invalidValue",
    )
    assert_error(await scim.post("/Users", {"userName": "x"}, headers={"Content-Type": "text/plain"}), 415)
    assert_error(
        await scim.patch(path, patch({"op": "explode", "path": "title", "value": "x"})), 400, "invalidValue"
    )
    assert_error(
        await scim.patch(path, patch({"op": "replace", "path": "id", "value": "x"})), 400, "mutability"
    )
    assert_error(await scim.patch(path, patch({"op": "remove", "path": "userName"})), 400, "mutability")
    assert_error(
        await scim.patch(path, patch({"op": "replace", "path": "emails[type eq", "value": "x"})),
        400,
        "invalidPath",
    )
    assert_error(
        await scim.patch(f"/Users/{uuid.uuid4()}", patch({"op": "Add", "path": "title", "value": "x"})), 404
    )
    assert_error(await scim.request("PATCH", "/Users", patch()), 405)
    assert (await scim.get(path)).json() == user  # nothing above changed it (same version too)


async def test_a_failing_operation_leaves_the_resource_unchanged(scim):
    user = await create(scim)
    response = await scim.patch(
        f"/Users/{user['id']}",
        patch(
            {"op": "Replace", "path": "displayName", "value": "Half"},
            {"op": "replace", "path": "id", "value": "x"},
        ),
    )
    assert response.status == 400
    got = (await scim.get(f"/Users/{user['id']}")).json()
    assert "displayName" not in got and got["meta"]["version"] == user["meta"]["version"]


# -- concurrency -------------------------------------------------------------------------------


async def test_parallel_patches_lose_no_update(scim):
    user = await create(scim)
    path = f"/Users/{user['id']}"
    attributes = ["displayName", "nickName", "title", "userType", "locale", "timezone", "preferredLanguage"]
    responses = await asyncio.gather(
        *(scim.patch(path, patch({"op": "Add", "path": a, "value": f"v-{a}"})) for a in attributes)
    )
    assert [r.status for r in responses] == [200] * len(attributes)
    got = (await scim.get(path)).json()
    assert {a: got.get(a) for a in attributes} == {a: f"v-{a}" for a in attributes}


async def test_parallel_creates_of_one_user_name_yield_exactly_one_201(scim):
    names = ["race@contoso.com", "RACE@contoso.com", "Race@Contoso.com", "race@CONTOSO.com"]
    responses = await asyncio.gather(*(scim.post("/Users", entra_user(n)) for n in names))
    statuses = sorted(r.status for r in responses)
    assert statuses == [201, 409, 409, 409]
    assert (await scim.get('/Users?filter=userName eq "race@contoso.com"')).json()["totalResults"] == 1


# -- logging ------------------------------------------------------------------------------


async def test_one_structured_line_per_request_and_no_secrets(scim, caplog):
    caplog.set_level("INFO", logger="scim.api")
    secret_name = "very.private.person@contoso.com"
    await scim.post("/Users", entra_user(secret_name))
    await scim.get(f'/Users?filter=userName eq "{secret_name}"', headers={"x-ms-request-id": "entra-req-1"})
    scim.token = "wrong-token-value"
    await scim.get("/Users")
    records = [r for r in caplog.records if r.name == "scim.api"]
    assert [r.scim["status"] for r in records] == [201, 200, 401]
    assert records[1].scim["request_id"] == "entra-req-1"
    assert records[0].scim["principal"] == "secret-token-1" and records[2].scim["principal"] == "-"
    assert records[2].scim["scim_type"] is None and records[1].scim["route"] == "/Users"
    everything = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    for secret in ("test-secret-token-0123456789abcdef", "wrong-token-value", secret_name):
        assert secret not in everything
