"""Storage edge cases against real Azurite: key characters, sizes, outages."""

from __future__ import annotations

import json
import time

import pytest

from scim.storage.tables import CHUNK_CHARS, MAX_CHUNKS, TableRepository, connect
from scim.web.api import ScimApi
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


ASTRAL = "\U0001f600"  # one character, two UTF-16 code units, four UTF-8 bytes


def utf8(body: dict[str, object]) -> bytes:
    """A body as UTF-8 JSON (``ensure_ascii`` would make each astral character 12 bytes)."""
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@pytest.mark.parametrize(
    "nick_name",
    [
        ASTRAL * 40_000,  # 80,000 units: 40,000 characters no longer fit one 64 KiB property
        "a" + ASTRAL * 100_000,  # every property boundary falls inside a surrogate pair if cut by units
        ASTRAL * (CHUNK_CHARS * MAX_CHUNKS // 2 - 1_000),  # just under the resource's limit
        "é" * 3 + ("a" + ASTRAL) * 150_000,
    ],
    ids=["40k-astral", "odd-offset", "near-limit", "mixed"],
)
# The SDK sends each astral character as two \uXXXX escapes (12 bytes), so these transactions
# exceed 1 MiB (still under Table Storage's 4 MiB): aiohttp then warns that a large bytes body
# is written in one go.
@pytest.mark.filterwarnings("ignore:Sending a large body directly with raw bytes:ResourceWarning")
async def test_astral_text_near_the_property_limits_round_trips(scim, store, nick_name):
    """Issue 14, item 7: Table Storage measures a string property in UTF-16 (64 KiB = 32,768 units)."""
    response = await scim.post("/Users", None, raw=utf8(entra_user() | {"nickName": nick_name}))
    assert response.status == 201, response.json()
    created = response.json()
    assert (await scim.get(f"/Users/{created['id']}")).json()["nickName"] == nick_name
    async with connect(store.connection_string, store.table_name) as client:
        row = await client.get_entity("default|User", f"res:{created['id']}")
    chunks = [value for name, value in row.items() if name[0] == "d" and name[1:].isdigit()]
    assert len(chunks) <= MAX_CHUNKS and max(utf16_units(c) for c in chunks) <= CHUNK_CHARS
    assert (
        await scim.put(f"/Users/{created['id']}", entra_user(created["userName"]) | {"nickName": "x"})
    ).status == 200


async def test_astral_text_beyond_the_resource_limit_is_413_and_not_stored(scim, store):
    before = (await scim.get("/Users")).json()["totalResults"]
    nick_name = ASTRAL * (CHUNK_CHARS * MAX_CHUNKS // 2 + 1_000)  # fits the body limit, not an entity
    response = await scim.post(
        "/Users", None, raw=utf8(entra_user("astral@contoso.com") | {"nickName": nick_name})
    )
    assert_error(response, 413)
    assert (await scim.get("/Users")).json()["totalResults"] == before
