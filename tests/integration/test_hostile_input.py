"""Hostile input gets clear 4xx SCIM errors, never a 5xx or a storage error, and nothing is written."""

from __future__ import annotations

import uuid

import pytest

from scim.limits import MAX_FILTER_CHARS, MAX_INDEXED_CHARS, MAX_MEMBERS_PER_PATCH, MAX_PATCH_OPERATIONS
from tests.integration.test_groups_entra import create_group
from tests.integration.test_users_entra import assert_error, create, entra_user, patch

pytestmark = pytest.mark.integration


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
    store.round_trips.reset()
    response = await scim.get("/Users", query={"filter": expression})
    assert response.status == 400, response.json()
    assert response.json()["scimType"] in ("invalidFilter", "tooMany")
    assert (await scim.get("/Users")).status == 200  # still serving


@pytest.mark.parametrize(
    "resource_id",
    ["..", "%2e%2e", "' or 'a' eq 'a", "res:x|g:y", "a" * 5000, "\u0000", str(uuid.uuid4()).upper()],
)
async def test_hostile_ids_are_404(scim, store, resource_id):
    store.round_trips.reset()
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        body = patch({"op": "add", "path": "title", "value": "x"}) if method == "PATCH" else {"userName": "x"}
        response = await scim.request(
            method, f"/Users/{resource_id}", body if method in ("PATCH", "PUT") else None
        )
        assert_error(response, 404)
    assert store.round_trips.count == 0  # refused before storage


async def test_oversized_values_are_refused_before_storage(scim, store):
    long = "x" * (MAX_INDEXED_CHARS + 1)
    assert_error(await scim.post("/Users", entra_user(long)), 400, "invalidValue")
    assert_error(await scim.post("/Users", entra_user() | {"displayName": long}), 400, "invalidValue")
    assert_error(await scim.post("/Groups", {"displayName": long}), 400, "invalidValue")
    user = await create(scim)
    assert_error(
        await scim.patch(
            f"/Users/{user['id']}", patch({"op": "replace", "path": "externalId", "value": long})
        ),
        400,
        "invalidValue",
    )
    too_many_ops = patch(*[{"op": "add", "path": "title", "value": "t"}] * (MAX_PATCH_OPERATIONS + 1))
    assert_error(await scim.patch(f"/Users/{user['id']}", too_many_ops), 413)
    group = await create_group(scim)
    members = [{"value": str(uuid.uuid4())} for _ in range(MAX_MEMBERS_PER_PATCH + 1)]
    response = await scim.patch(
        f"/Groups/{group['id']}", patch({"op": "add", "path": "members", "value": members})
    )
    assert_error(response, 413)
    assert_error(
        await scim.patch(
            f"/Groups/{group['id']}",
            patch({"op": "add", "path": "members", "value": [{"value": user["id"], "display": long}]}),
        ),
        400,
        "invalidValue",
    )
    assert (await scim.get(f"/Users/{user['id']}")).json()["externalId"] == user["externalId"]


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
async def test_malformed_bodies_are_400(scim, body):
    response = await scim.post("/Users", None, raw=body)
    assert response.status == 400, response.json()
    assert response.json()["scimType"] in ("invalidSyntax", "invalidValue")


async def test_oversized_body_is_413(scim, store):
    from scim.api import ScimApi
    from tests.integration.conftest import ScimClient, make_settings

    small = ScimClient(ScimApi(make_settings(store, max_body_bytes=1000), store.repository))
    assert_error(await small.post("/Users", entra_user() | {"nickName": "n" * 2000}), 413)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"a\\udfffb"}',
        b'{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"p1","nickName":"\\ud800"}',
        b'{"\\ud800":"key"}',
    ],
)
async def test_unpaired_surrogates_are_400_and_store_nothing(scim, raw):
    """Found by the fuzzer: valid JSON, but not text that can be stored or sent back."""
    response = await scim.post("/Users", None, raw=raw)
    assert_error(response, 400, "invalidSyntax")
    assert (await scim.get("/Users")).json()["totalResults"] == 0
