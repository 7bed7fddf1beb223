"""Declared schema extensions, app roles and undeclared attributes, over Azurite (issue 13).

The schema is the shipped example file (examples/schema-extensions.yaml), loaded
the way the runtime loads SCIM_SCHEMA_FILE.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables import UpdateMode

from scim.model.schemafile import load_schema_file, parse_schema_text
from scim.web.api import ScimApi
from tests.integration.conftest import ScimClient, make_settings
from tests.integration.test_users_entra import assert_error, entra_user, patch

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXT = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User"
GROUP_EXT = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:Group"
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def client(store, *, unknown: str = "reject", text: str | None = None) -> ScimClient:
    declared = (
        parse_schema_text(text, "test.yaml")
        if text is not None
        else load_schema_file("examples/schema-extensions.yaml", ROOT)
    )
    settings = make_settings(store, unknown_attributes=unknown)
    return ScimClient(ScimApi(settings, store.repository, declared=declared))


@pytest.fixture
def ext(store) -> ScimClient:
    return client(store)


def user_with(**attributes: Any) -> dict[str, Any]:
    body = entra_user()
    body["schemas"] = [CORE, ENTERPRISE, EXT]
    body[EXT] = attributes
    return body


async def created(scim: ScimClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await scim.post("/Users", body)
    assert response.status == 201, response.json()
    return response.json()


async def records(store, kind: str = "User") -> list[Any]:
    return await store.repository.pending_changes(kind)


# -- discovery ------------------------------------------------------------------


async def test_schemas_and_resource_types_list_the_declared_extensions(ext):
    schemas = (await ext.get("/Schemas")).json()
    ids = [s["id"] for s in schemas["Resources"]]
    assert EXT in ids and GROUP_EXT in ids
    custom = (await ext.get(f"/Schemas/{EXT}")).json()
    attributes = {a["name"]: a for a in custom["attributes"]}
    assert attributes["badge"]["uniqueness"] == "server"
    assert attributes["hireDate"]["type"] == "dateTime"
    assert attributes["clearanceLevel"]["type"] == "integer"
    assert custom["meta"]["resourceType"] == "Schema"
    assert all(v is not None for a in custom["attributes"] for v in a.values())  # RFC 7643 §7: no nulls
    user_type = (await ext.get("/ResourceTypes/User")).json()
    assert {"schema": EXT, "required": False} in user_type["schemaExtensions"]
    assert {"schema": ENTERPRISE, "required": False} in user_type["schemaExtensions"]
    group_type = (await ext.get("/ResourceTypes/Group")).json()
    assert group_type["schemaExtensions"] == [{"schema": GROUP_EXT, "required": False}]
    core = (await ext.get(f"/Schemas/{CORE}")).json()
    assert "password" not in {a["name"] for a in core["attributes"]}


# -- stored, returned, typed ------------------------------------------------------


async def test_declared_attributes_are_stored_typed_and_returned(ext, store):
    body = user_with(tag="t1", badge="B-1", hireDate="2026-03-01T00:00:00Z", isContractor="True",
                     clearanceLevel="3")  # fmt: skip
    user = await created(ext, body)
    expected = {"tag": "t1", "badge": "B-1", "hireDate": "2026-03-01T00:00:00Z", "isContractor": True,
                "clearanceLevel": 3}  # fmt: skip
    assert user[EXT] == expected
    assert EXT in user["schemas"]
    fetched = (await ext.get(f"/Users/{user['id']}")).json()
    assert fetched[EXT] == expected
    (change,) = await records(store)
    assert change.change.resource[EXT] == expected
    only = (await ext.get(f"/Users/{user['id']}?attributes={EXT}:tag")).json()
    assert only[EXT] == {"tag": "t1"}
    without = (await ext.get(f"/Users/{user['id']}?excludedAttributes={EXT}")).json()
    assert EXT not in without


async def test_returned_never_is_stored_but_not_served(store):
    text = f"""
extensions:
  - schema: {EXT}
    resourceType: User
    attributes:
      - {{name: pin, type: string, returned: never}}
      - {{name: note, type: string, returned: request}}
"""
    scim = client(store, text=text)
    user = await created(scim, user_with(pin="1234", note="n"))
    assert EXT not in user
    stored = await store.repository.get("User", user["id"])
    assert stored.document[EXT] == {"pin": "1234", "note": "n"}
    asked = (await scim.get(f"/Users/{user['id']}?attributes={EXT}:note")).json()
    assert asked[EXT] == {"note": "n"}


# -- every PATCH form Entra uses ----------------------------------------------------


async def test_patch_forms_change_declared_attributes_and_bump_the_version(ext, store):
    user = await created(ext, user_with(tag="t1"))
    path = f"/Users/{user['id']}"
    steps = [
        (patch({"op": "Add", "path": f"{EXT}:siteCode", "value": "AMS"}), {"tag": "t1", "siteCode": "AMS"}),
        (patch({"op": "Replace", "value": {f"{EXT}:tag": "t2", "name.givenName": "G"}}),
         {"tag": "t2", "siteCode": "AMS"}),
        (patch({"op": "replace", "value": {EXT: {"clearanceLevel": "4"}}}),
         {"tag": "t2", "siteCode": "AMS", "clearanceLevel": 4}),
        (patch({"op": "Replace", "path": f"{EXT}:isContractor", "value": "False"}),
         {"tag": "t2", "siteCode": "AMS", "clearanceLevel": 4, "isContractor": False}),
        (patch({"op": "Replace", "path": f"{EXT}:tag", "value": ""}),
         {"siteCode": "AMS", "clearanceLevel": 4, "isContractor": False}),
        (patch({"op": "replace", "path": f"{EXT}:siteCode", "value": None}),
         {"clearanceLevel": 4, "isContractor": False}),
        (patch({"op": "remove", "path": f"{EXT}:clearanceLevel"}), {"isContractor": False}),
    ]  # fmt: skip
    version = 1
    for body, expected in steps:
        response = await ext.patch(path, body)
        assert response.status == 200, response.json()
        version += 1
        document = (await ext.get(path)).json()
        assert document[EXT] == expected, body
        assert document["meta"]["version"] == f'W/"{version}"'
    assert document["name"]["givenName"] == "G"
    assert len(await records(store)) == 1 + len(steps)


async def test_patch_that_changes_nothing_keeps_the_version_and_emits_nothing(ext, store):
    user = await created(ext, user_with(tag="same", clearanceLevel=2))
    path = f"/Users/{user['id']}"
    for body in (
        patch({"op": "Replace", "path": f"{EXT}:tag", "value": "same"}),
        patch({"op": "Replace", "value": {f"{EXT}:clearanceLevel": "2", "userName": user["userName"]}}),
        patch({"op": "Add", "path": "roles", "value": []}),
    ):
        response = await ext.patch(path, body)
        assert response.status == 200, response.json()
        assert response.json()["meta"]["version"] == 'W/"1"', body
    assert len(await records(store)) == 1
    ignoring = client(store, unknown="ignore")
    response = await ignoring.patch(path, patch({"op": "Add", "path": "undeclaredThing", "value": "x"}))
    assert response.status == 200
    assert response.json()["meta"]["version"] == 'W/"1"'
    assert len(await records(store)) == 1


# -- filters, push-down, uniqueness ---------------------------------------------------


async def test_filters_on_declared_attributes(ext, store):
    a = await created(ext, user_with(tag="alpha", siteCode="AMS", clearanceLevel=2))
    b = await created(ext, user_with(tag="beta", siteCode="ams", clearanceLevel=5))
    await created(ext, user_with(tag="gamma", siteCode="LON"))

    async def ids(text: str) -> list[str]:
        response = await ext.get("/Users", query={"filter": text})
        assert response.status == 200, response.json()
        return sorted(r["id"] for r in response.json().get("Resources", []))

    assert await ids(f'{EXT}:siteCode eq "AMS"') == sorted([a["id"], b["id"]])  # caseExact false
    assert await ids(f'{EXT}:tag sw "al"') == [a["id"]]
    assert await ids(f"{EXT}:clearanceLevel gt 3") == [b["id"]]
    assert await ids(f'{EXT}:tag eq "beta" or {EXT}:tag eq "alpha"') == sorted([a["id"], b["id"]])
    assert await ids(f"{EXT}:hireDate pr") == []
    store.round_trips.reset()
    assert await ids(f'{EXT}:siteCode eq "lon" and {EXT}:tag eq "nope"') == []
    assert store.round_trips.count == 2  # the index range query, then the one resource row


async def test_declared_uniqueness_is_atomic_and_follows_renames(ext):
    first = await created(ext, user_with(badge="B-7"))
    assert_error(await ext.post("/Users", user_with(badge="b-7")), 409, "uniqueness")
    response = await ext.patch(f"/Users/{first['id']}", patch({"op": "replace", "path": f"{EXT}:badge",
                                                                "value": "B-8"}))  # fmt: skip
    assert response.status == 200
    second = await created(ext, user_with(badge="B-7"))
    conflict = await ext.patch(f"/Users/{second['id']}", patch({"op": "replace", "path": f"{EXT}:badge",
                                                                 "value": "B-8"}))  # fmt: skip
    assert_error(conflict, 409, "uniqueness")
    assert "badge" in conflict.json()["detail"]
    found = (await ext.get("/Users", query={"filter": f'{EXT}:badge eq "b-8"'})).json()
    assert [r["id"] for r in found["Resources"]] == [first["id"]]
    assert (await ext.delete(f"/Users/{first['id']}")).status == 204
    await created(ext, user_with(badge="B-8"))  # the index row went with the user


async def test_group_extension_description(ext, store):
    body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group", GROUP_EXT], "displayName": "Sales",
            GROUP_EXT: {"description": "Everyone in sales"}}  # fmt: skip
    group = (await ext.post("/Groups", body)).json()
    assert group[GROUP_EXT] == {"description": "Everyone in sales"}
    response = await ext.patch(f"/Groups/{group['id']}", patch({"op": "replace", "path": f"{GROUP_EXT}:description",
                                                                 "value": "Sales team"}))  # fmt: skip
    assert response.status == 204
    fetched = (await ext.get(f"/Groups/{group['id']}?excludedAttributes=members")).json()
    assert fetched[GROUP_EXT] == {"description": "Sales team"}


# -- undeclared attributes -------------------------------------------------------------


async def test_undeclared_attributes_get_a_400_that_names_them(ext, store):
    body = entra_user() | {"badgeNumber": "1"}
    response = await ext.post("/Users", body)
    assert_error(response, 400, "invalidValue")
    assert "'badgeNumber'" in response.json()["detail"] and "SCIM_SCHEMA_FILE" in response.json()["detail"]
    other = user_with(tag="x") | {"urn:ietf:params:scim:schemas:extension:Other:2.0:User": {"a": 1}}
    assert_error(await ext.post("/Users", other), 400, "invalidValue")
    sub = user_with(tag="x", nope=1)
    detail = (await ext.post("/Users", sub)).json()["detail"]
    assert f"'{EXT}:nope'" in detail
    assert await records(store) == []
    user = await created(ext, user_with(tag="x"))
    path = f"/Users/{user['id']}"
    assert_error(await ext.patch(path, patch({"op": "Add", "path": f"{EXT}:nope", "value": "1"})), 400,
                 "invalidPath")  # fmt: skip
    assert_error(await ext.patch(path, patch({"op": "Replace", "value": {"description": "d"}})), 400,
                 "invalidValue")  # fmt: skip
    group = await ext.post("/Groups", {"displayName": "G", "description": "d"})
    assert_error(group, 400, "invalidValue")


async def test_ignore_mode_drops_and_reports_undeclared_attributes(store):
    scim = client(store, unknown="ignore")
    user = await created(scim, user_with(tag="x", nope=1) | {"badgeNumber": "1"})
    assert "badgeNumber" not in user and "nope" not in user[EXT]
    (change,) = await records(store)
    assert change.change.ignored == ("badgeNumber", f"{EXT}:nope")
    assert change.change.audit(published=False)["ignored"] == ["badgeNumber", f"{EXT}:nope"]
    response = await scim.patch(
        f"/Users/{user['id']}",
        patch(
            {"op": "replace", "path": f"{EXT}:tag", "value": "y"},
            {"op": "add", "path": "nickname2", "value": "n"},
        ),
    )
    assert response.status == 200
    last = (await records(store))[-1]
    assert last.change.ignored == ("nickname2",)


async def test_passwords_are_refused(ext, store):
    response = await ext.post("/Users", entra_user() | {"password": "Secret-1"})
    assert_error(response, 400, "invalidValue")
    assert "does not store passwords" in response.json()["detail"]
    user = await created(ext, entra_user())
    for body in (patch({"op": "replace", "path": "password", "value": "p"}),
                 patch({"op": "replace", "value": {"password": "p"}})):  # fmt: skip
        assert_error(await ext.patch(f"/Users/{user['id']}", body), 400, "invalidValue")
    config = (await ext.get("/ServiceProviderConfig")).json()
    assert config["changePassword"] == {"supported": False}


# -- externalId, manager, roles -----------------------------------------------------------


async def test_external_id_is_indexed_not_unique_by_default(ext):
    ids = [(await created(ext, entra_user(external_id="alias")))["id"] for _ in range(4)]  # Postman suite
    found = (await ext.get('/Users?filter=externalId eq "alias"')).json()
    assert found["totalResults"] == 4 and sorted(r["id"] for r in found["Resources"]) == sorted(ids)
    assert (await ext.delete(f"/Users/{ids[0]}")).status == 204
    await ext.patch(f"/Users/{ids[1]}", patch({"op": "replace", "path": "externalId", "value": "other"}))
    found = (await ext.get('/Users?filter=externalId eq "alias"')).json()
    assert sorted(r["id"] for r in found["Resources"]) == sorted(ids[2:])


async def test_external_id_unique_where_declared(store):
    scim = client(store, text="uniqueExternalId: [User]\n")
    await created(scim, entra_user(external_id="same"))
    assert_error(await scim.post("/Users", entra_user(external_id="same")), 409, "uniqueness")
    group = {"displayName": "A", "externalId": "g"}
    assert (await scim.post("/Groups", group)).status == 201
    assert (await scim.post("/Groups", {"displayName": "B", "externalId": "g"})).status == 201


async def test_legacy_unique_external_id_rows_are_read_and_moved(store):
    """A user written before ``ix`` (a unique externalId row) is found, renamed and deleted cleanly."""
    scim = client(store, text="uniqueExternalId: [User]\n")
    user = await created(scim, entra_user(external_id="legacy"))
    stored = await store.repository.get("User", user["id"])
    entity = await store.repository._client.get_entity("default|User", f"res:{user['id']}")
    del entity["ix"]
    await store.repository._client.update_entity(
        entity, mode=UpdateMode.REPLACE
    )  # as an older version wrote it
    assert (await store.repository.get("User", user["id"])).index_rows is None and stored.index_rows
    now = client(store)  # externalId no longer unique
    found = (await now.get('/Users?filter=externalId eq "legacy"')).json()
    assert [r["id"] for r in found["Resources"]] == [user["id"]]
    await now.patch(f"/Users/{user['id']}", patch({"op": "replace", "path": "externalId", "value": "new"}))
    assert (await now.get('/Users?filter=externalId eq "legacy"')).json()["totalResults"] == 0
    await created(now, entra_user(external_id="legacy"))
    from scim.model.resources import build_kinds
    from scim.service.consistency import check

    assert await check(store.repository, build_kinds()) == []


async def test_manager_eq_filter(ext):
    manager = await created(ext, entra_user())
    user = await created(ext, entra_user())
    await ext.patch(f"/Users/{user['id']}", patch({"op": "Add", "path": f"{ENTERPRISE}:manager",
                                                   "value": manager["id"]}))  # fmt: skip
    for text in (f'id eq "{user["id"]}" and manager eq "{manager["id"]}"',
                 f'{ENTERPRISE}:manager eq "{manager["id"]}"', f'manager.value eq "{manager["id"]}"'):  # fmt: skip
        found = (await ext.get("/Users", query={"filter": text})).json()
        assert [r["id"] for r in found["Resources"]] == [user["id"]], text
    miss = (await ext.get("/Users", query={"filter": f'id eq "{user["id"]}" and manager eq "x"'})).json()
    assert miss["totalResults"] == 0


async def test_app_roles_in_both_shapes_converge(ext):
    body = entra_user() | {"roles": [{"primary": False, "type": "WindowsAzureActiveDirectoryRole",
                                      "value": "Admin", "displayName": "Admin"}]}  # fmt: skip
    user = await created(ext, body)
    path = f"/Users/{user['id']}"
    as_string = json.dumps({"id": str(uuid.uuid4()), "value": "Admin", "displayName": "Admin"})
    reader = json.dumps({"id": str(uuid.uuid4()), "value": "Reader", "displayName": "Reader"})
    await ext.patch(
        path, patch({"op": "add", "path": "roles", "value": [{"value": as_string}, {"value": reader}]})
    )
    roles = (await ext.get(path)).json()["roles"]
    assert sorted(r["value"] for r in roles) == ["Admin", "Reader"]
    assert {r["value"]: r["displayName"] for r in roles} == {"Admin": "Admin", "Reader": "Reader"}
    found = (await ext.get("/Users", query={"filter": 'roles[value eq "Reader"]'})).json()
    assert [r["id"] for r in found["Resources"]] == [user["id"]]
    await ext.patch(path, patch({"op": "remove", "path": "roles", "value": [{"value": as_string}]}))
    assert [r["value"] for r in (await ext.get(path)).json()["roles"]] == ["Reader"]


async def test_a_group_sent_as_a_member_is_refused(ext):
    inner = (await ext.post("/Groups", {"displayName": "Inner"})).json()
    outer = (await ext.post("/Groups", {"displayName": "Outer"})).json()
    body = patch({"op": "Add", "path": "members", "value": [{"value": inner["id"], "type": "Group"}]})
    response = await ext.patch(f"/Groups/{outer['id']}", body)
    assert_error(response, 400, "invalidValue")
    assert "nested groups are not supported" in response.json()["detail"]
    assert "members" not in (await ext.get(f"/Groups/{outer['id']}")).json()


async def test_racing_creates_of_one_declared_unique_value_store_one(ext):
    for round_ in range(10):
        responses = await asyncio.gather(
            *(ext.post("/Users", user_with(badge=f"race-{round_}")) for _ in range(2))
        )
        assert sorted(r.status for r in responses) == [201, 409], [r.json() for r in responses]
        found = (await ext.get("/Users", query={"filter": f'{EXT}:badge eq "race-{round_}"'})).json()
        assert found["totalResults"] == 1
