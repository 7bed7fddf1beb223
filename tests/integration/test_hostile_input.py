"""Hostile input gets clear 4xx SCIM errors, never a 5xx or a storage error, and nothing is written."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable
from typing import Any

import pytest

from scim.model.limits import MAX_FILTER_CHARS, MAX_INDEXED_CHARS, MAX_MEMBERS_PER_PATCH, MAX_PATCH_OPERATIONS
from scim.storage.tables import connect
from scim.web.api import MAX_JSON_DEPTH
from tests.integration.test_groups_entra import create_group
from tests.integration.test_users_entra import assert_error, create, entra_user, patch

pytestmark = pytest.mark.integration


async def table_rows(store) -> dict[tuple[str, str], str]:
    """Every row of the test's table, by key, with its ETag: any write changes this."""
    async with connect(store.connection_string, store.table_name) as client:
        return {
            (str(e["PartitionKey"]), str(e["RowKey"])): str(e.metadata["etag"])
            async for e in client.list_entities(select=["PartitionKey", "RowKey"])
        }


async def refused(store, request: Awaitable[Any]) -> Any:
    """Send ``request`` and check that it left every row of the table as it was."""
    before = await table_rows(store)
    response = await request
    assert await table_rows(store) == before, f"a refused request wrote to the table: {response.json()}"
    return response


@pytest.mark.parametrize(
    "expression",
    [
        "(" * 40 + 'userName eq "a"' + ")" * 40,  # nesting bomb
        'userName eq "' + "a" * MAX_FILTER_CHARS + '"',
        " or ".join(f'userName eq "{n}"' for n in range(300)),
        'userName eq "unterminated',
        "userName eq 'single quotes'",
        'userName eq "a") or (PartitionKey ne "',
        "userName eq true",
        'emails[type eq "work"',
        "\x00\x01",
    ],
)
async def test_hostile_filters_are_400(scim, store, expression):
    await create(scim)
    store.round_trips.reset()
    response = await refused(store, scim.get("/Users", query={"filter": expression}))
    assert response.status == 400, response.json()
    assert response.json()["scimType"] in ("invalidFilter", "tooMany")
    assert (await scim.get("/Users")).status == 200  # still serving


@pytest.mark.parametrize(
    "resource_id",
    [
        "..",
        "%2e%2e",
        "' or 'a' eq 'a",
        "res:x|g:y",
        "a" * 5000,
        "\u0000",
        str(uuid.uuid4()).upper(),
        "\ud800",
    ],
)
async def test_hostile_ids_are_404(scim, store, resource_id):
    await create(scim)
    store.round_trips.reset()
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        body = patch({"op": "add", "path": "title", "value": "x"}) if method == "PATCH" else {"userName": "x"}
        response = await refused(
            store, scim.request(method, f"/Users/{resource_id}", body if method in ("PATCH", "PUT") else None)
        )
        assert_error(response, 404)
    assert store.round_trips.count == 0  # refused before storage


async def test_oversized_values_are_refused_before_storage(scim, store):
    long = "x" * (MAX_INDEXED_CHARS + 1)
    user = await create(scim)
    group = await create_group(scim)
    assert_error(await refused(store, scim.post("/Users", entra_user(long))), 400, "invalidValue")
    response = await refused(store, scim.post("/Users", entra_user() | {"displayName": long}))
    assert_error(response, 400, "invalidValue")
    assert_error(await refused(store, scim.post("/Groups", {"displayName": long})), 400, "invalidValue")
    response = await refused(
        store,
        scim.patch(f"/Users/{user['id']}", patch({"op": "replace", "path": "externalId", "value": long})),
    )
    assert_error(response, 400, "invalidValue")
    too_many_ops = patch(*[{"op": "add", "path": "title", "value": "t"}] * (MAX_PATCH_OPERATIONS + 1))
    assert_error(await refused(store, scim.patch(f"/Users/{user['id']}", too_many_ops)), 413)
    members = [{"value": str(uuid.uuid4())} for _ in range(MAX_MEMBERS_PER_PATCH + 1)]
    response = await refused(
        store, scim.patch(f"/Groups/{group['id']}", patch({"op": "add", "path": "members", "value": members}))
    )
    assert_error(response, 413)
    response = await refused(
        store,
        scim.patch(
            f"/Groups/{group['id']}",
            patch({"op": "add", "path": "members", "value": [{"value": user["id"], "display": long}]}),
        ),
    )
    assert_error(response, 400, "invalidValue")


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe not utf-8",
        b"{" * 10000,
        b'{"userName": "a", "userName": ' + b"[" * 5000,
        b"null",
        b"123",
        b'"str"',
    ],
)
async def test_malformed_bodies_are_400(scim, store, body):
    response = await refused(store, scim.post("/Users", None, raw=body))
    assert response.status == 400, response.json()
    assert response.json()["scimType"] in ("invalidSyntax", "invalidValue")


async def test_oversized_body_is_413(scim, store):
    from scim.web.api import ScimApi
    from tests.integration.conftest import ScimClient, make_settings

    small = ScimClient(ScimApi(make_settings(store, max_body_bytes=1000), store.repository))
    assert_error(await refused(store, small.post("/Users", entra_user() | {"nickName": "n" * 2000})), 413)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"a\\udfffb"}',
        b'{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"p1","nickName":"\\ud800"}',
        b'{"\\ud800":"key"}',
    ],
)
async def test_unpaired_surrogates_are_400_and_store_nothing(scim, store, raw):
    """Found by the fuzzer: valid JSON, but not text that can be stored or sent back."""
    response = await refused(store, scim.post("/Users", None, raw=raw))
    assert_error(response, 400, "invalidSyntax")
    assert (await scim.get("/Users")).json()["totalResults"] == 0


# -- issue 14, item 7: numbers and nesting no parser or storage can take --------------------

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"


def nested(depth: int, leaf: str = "1") -> str:
    """JSON text of ``depth`` nested arrays and objects around ``leaf``."""
    text = leaf
    for level in range(depth):
        text = f"[{text}]" if level % 2 else f'{{"a":{text}}}'
    return text


def user_with(field: str, json_value: str) -> bytes:
    return f'{{"schemas":["{CORE}"],"userName":"n-{uuid.uuid4()}","{field}":{json_value}}}'.encode()


def patch_with(json_value: str) -> bytes:
    operation = f'{{"op":"replace","path":"nickName","value":{json_value}}}'
    return (
        f'{{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{operation}]}}'.encode()
    )


def bulk_with(json_value: str) -> bytes:
    data = user_with("nickName", json_value).decode()
    operation = f'{{"method":"POST","path":"/Users","bulkId":"b1","data":{data}}}'
    return f'{{"schemas":["{BULK}"],"Operations":[{operation}]}}'.encode()


HOSTILE_VALUES = {
    "5000-digit integer": ("1" * 5000, "invalidValue"),
    "negative 5000-digit integer": ("-" + "9" * 5000, "invalidValue"),
    "integer beyond 64 bits": (str(2**63), "invalidValue"),
    "NaN": ("NaN", "invalidSyntax"),
    "Infinity": ("Infinity", "invalidSyntax"),
    "-Infinity": ("-Infinity", "invalidSyntax"),
    "float overflowing to infinity": ("1e999", "invalidValue"),
    "5000-digit float overflowing": ("9" * 5000 + ".0", "invalidValue"),
    "600 levels of nesting": (nested(600), "invalidSyntax"),
    "one level too deep": (nested(MAX_JSON_DEPTH), "invalidSyntax"),
}


@pytest.mark.parametrize("name", list(HOSTILE_VALUES))
@pytest.mark.parametrize("route", ["POST /Users", "PUT /Users/{id}", "PATCH /Users/{id}", "POST /Bulk"])
async def test_hostile_numbers_and_nesting_are_400_and_write_nothing(scim, store, route, name):
    value, scim_type = HOSTILE_VALUES[name]
    user = await create(scim)
    method, path = route.split()
    raw = {"POST /Users": user_with("nickName", value), "PUT /Users/{id}": user_with("nickName", value)}.get(
        route, patch_with(value) if method == "PATCH" else bulk_with(value)
    )
    response = await refused(store, scim.request(method, path.format(id=user["id"]), None, raw=raw))
    assert_error(response, 400, scim_type)


async def test_nesting_within_the_bound_is_an_ordinary_answer(scim, store):
    """The bound counts the document itself: a value nested just below it is judged by the schema."""
    response = await refused(
        store, scim.post("/Users", None, raw=user_with("nickName", nested(MAX_JSON_DEPTH - 2)))
    )
    assert_error(response, 400, "invalidValue")  # not a string: the schema's answer, not the bound's
    user = await create(scim, nickName="n")
    body = json.loads(patch_with('"ok"'))
    assert (await scim.patch(f"/Users/{user['id']}", body)).status == 200


@pytest.mark.parametrize(
    "expression",
    [
        'userName eq "\\ud800"',
        'externalId eq "a\\udfff"',
        'userName sw "\\ud800"',
        'displayName gt "\\udc00x"',
        'id eq "\\ud800"',
    ],
)
async def test_filters_with_unpaired_surrogates_match_nothing(scim, store, expression):
    """No stored value holds an unpaired surrogate, and storage cannot be sent one (issue 14, item 7)."""
    await create(scim)
    response = await refused(store, scim.get("/Users", query={"filter": expression}))
    assert response.status == 200, response.json()
    assert response.json()["totalResults"] == 0
