"""Storage edge cases against real Azurite: key characters, sizes, outages."""

from __future__ import annotations

import json
import time

import pytest

from scim.api import ScimApi
from scim.tables import CHUNK_CHARS, TableRepository, connect
from tests.integration.conftest import ScimClient, make_settings
from tests.integration.test_users_entra import assert_error, create, entra_user

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "user_name",
    [
        "slash/name@contoso.com",
        "back\\slash#hash?query%percent@contoso.com",
        "tab\there@contoso.com",
        "ÜNÏCÖDÉ.名前@contoso.com",
        "x" * 300 + "@contoso.com",  # beyond the readable key length: hashed
        'O\'Brien "quoted"@contoso.com',
    ],
)
async def test_user_names_with_any_characters_stay_unique_and_findable(scim, user_name):
    created = await create(scim, userName=user_name)
    literal = json.dumps(user_name.upper(), ensure_ascii=False)  # RFC 7644 §3.4.2.2: a JSON string
    found = (await scim.get("/Users", query={"filter": f"userName eq {literal}"})).json()
    assert [r["id"] for r in found["Resources"]] == [created["id"]]
    assert_error(await scim.post("/Users", entra_user(user_name.lower())), 409, "uniqueness")


async def test_large_resource_spans_several_properties(scim):
    roles = [{"value": f"role-{i}-" + "r" * 200, "type": "app"} for i in range(400)]  # ~90k chars
    created = await create(scim, roles=roles)
    got = (await scim.get(f"/Users/{created['id']}")).json()
    assert got["roles"] == roles
    assert len(str(roles)) > 2 * CHUNK_CHARS


async def test_resource_too_large_for_an_entity_is_413_and_not_stored(scim):
    roles = [{"value": f"{i:04d}" + "r" * 1000} for i in range(600)]  # 600k chars of JSON
    response = await scim.post("/Users", entra_user("big@contoso.com") | {"roles": roles})
    assert_error(response, 413)
    assert (await scim.get('/Users?filter=userName eq "big@contoso.com"')).json()["totalResults"] == 0


async def test_unreachable_storage_is_a_quick_503_with_retry_after(store):
    client = connect(
        store.connection_string.replace(
            store.connection_string.split("TableEndpoint=")[1], "http://127.0.0.1:9/devstoreaccount1;"
        ),
        "unreachable",
    )
    scim = ScimClient(ScimApi(make_settings(store), TableRepository(client)))
    started = time.perf_counter()
    response = await scim.get('/Users?filter=userName eq "x"')
    elapsed = time.perf_counter() - started
    await client.close()
    assert_error(response, 503)
    assert response.headers["Retry-After"].isdigit()
    assert elapsed < 15


async def test_table_is_created_on_first_write(store):
    client = connect(store.connection_string, "fresh" + store.table_name[1:])
    repository = TableRepository(client)
    scim = ScimClient(ScimApi(make_settings(store), repository))
    assert (await scim.get("/Users")).json()["totalResults"] == 0
    assert (await scim.get('/Users?filter=userName eq "a"')).json()["totalResults"] == 0
    assert (await scim.post("/Users", entra_user("first@contoso.com"))).status == 201
    assert (await scim.get('/Users?filter=userName eq "first@contoso.com"')).json()["totalResults"] == 1
    await client.delete_table()
    await client.close()
