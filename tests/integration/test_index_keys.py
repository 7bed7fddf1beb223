"""Index keys cannot be squatted (issue 14, item 4), and legacy hashed rows keep working until repaired.

A value whose escaped key exceeds 200 bytes is indexed under its SHA-256. Earlier
releases wrote that as ``sha256:<hex>``, which a short value can equal; today's
marker ``%~sha256:`` is never produced by escaping (a ``%`` is always followed by
two hex digits), so no client value can take a long value's row.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from azure.data.tables import UpdateMode

from scim.model.resources import case_exact_key, case_insensitive_key
from scim.service.consistency import check, repair
from scim.storage.tables import HASHED_KEY, LEGACY_HASHED_KEY, connect
from tests.integration.test_groups_entra import create_group
from tests.integration.test_users_entra import assert_error, entra_user

pytestmark = pytest.mark.integration

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
LONG = "Long.Name." + "x" * 300 + "@contoso.com"
"""A value beyond the readable key length: indexed by its hash."""


def digest(value: str, case_exact: bool = False) -> str:
    key = case_exact_key(value) if case_exact else case_insensitive_key(value)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


ATTRIBUTES = {
    # attribute: (collection, unique, caseExact, body of a resource holding the value)
    "userName": ("/Users", True, False, lambda v: entra_user(v)),
    "externalId": ("/Users", False, True, lambda v: entra_user(external_id=v)),  # unique only if declared
    "displayName": ("/Groups", True, False, lambda v: {"displayName": v}),
}


async def found(scim, collection: str, attribute: str, value: str) -> list[str]:
    literal = json.dumps(value, ensure_ascii=False)
    response = await scim.get(collection, query={"filter": f"{attribute} eq {literal}"})
    assert response.status == 200, response.json()
    return [r["id"] for r in response.json()["Resources"]]


async def post(scim, collection: str, body: dict[str, Any]) -> str:
    if collection == "/Groups":
        return str((await create_group(scim, **body))["id"])
    response = await scim.post(collection, body)
    assert response.status == 201, response.json()
    return str(response.json()["id"])


@pytest.mark.parametrize("attribute", list(ATTRIBUTES))
@pytest.mark.parametrize("long_first", [True, False], ids=["long-first", "short-first"])
@pytest.mark.parametrize("marker", [LEGACY_HASHED_KEY, HASHED_KEY], ids=["legacy-marker", "marker"])
async def test_a_short_value_cannot_squat_a_long_value(scim, attribute, long_first, marker):
    collection, unique, case_exact, body = ATTRIBUTES[attribute]
    squat = marker + digest(LONG, case_exact)  # the literal text of a hashed key
    order = [LONG, squat] if long_first else [squat, LONG]
    ids = {value: await post(scim, collection, body(value)) for value in order}
    assert await found(scim, collection, attribute, LONG) == [ids[LONG]]
    assert await found(scim, collection, attribute, squat) == [ids[squat]]
    for value in order if unique else []:  # each value is still unique
        assert_error(await scim.post(collection, body(value)), 409, "uniqueness")


# -- legacy rows: what an earlier release left in the table ------------------------------


async def make_legacy(store, resource_id: str, index: str, hexdigest: str, *, keep_ix: bool) -> str:
    """Rewrite a user's hashed index row the way an earlier release wrote it; return the legacy key."""
    today = f"idx:{index}:{HASHED_KEY}{hexdigest}"
    legacy = f"idx:{index}:{LEGACY_HASHED_KEY}{hexdigest}"
    partition = "default|User"
    async with connect(store.connection_string, store.table_name) as client:
        await client.delete_entity(partition, today)
        await client.create_entity({"PartitionKey": partition, "RowKey": legacy, "t": "i", "id": resource_id})
        row = dict(await client.get_entity(partition, f"res:{resource_id}"))
        listed = [legacy if key == today else key for key in json.loads(row.pop("ix"))]
        if keep_ix:
            row["ix"] = json.dumps(listed)
        else:
            assert listed == [legacy]  # written before ``ix``: the userName row was its only one
        await client.update_entity(row, mode=UpdateMode.REPLACE)
    return legacy


async def row_keys(store) -> set[str]:
    async with connect(store.connection_string, store.table_name) as client:
        return {str(e["RowKey"]) async for e in client.list_entities(select=["RowKey"])}


def user_with(user_name: str) -> dict[str, Any]:
    body = entra_user(user_name)
    del body["externalId"]  # one index row: the shape of a pre-``ix`` user
    return body


@pytest.mark.parametrize("keep_ix", [True, False], ids=["listed-in-ix", "before-ix"])
async def test_legacy_hashed_rows_are_found_then_repaired(scim, store, keep_ix):
    user_id = await post(scim, "/Users", user_with(LONG))
    legacy = await make_legacy(store, user_id, "userName", digest(LONG), keep_ix=keep_ix)
    squat = LEGACY_HASHED_KEY + digest(LONG)

    # Until the repair, a lookup reads both forms, and verifies what it found.
    assert await found(scim, "/Users", "userName", LONG.upper()) == [user_id]
    assert await found(scim, "/Users", "userName", squat) == []
    assert_error(await scim.post("/Users", entra_user(LONG.lower())), 409, "uniqueness")  # still unique
    other = await post(scim, "/Users", user_with("other@contoso.com"))
    rename = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "userName", "value": LONG}]}
    assert_error(await scim.patch(f"/Users/{other}", rename), 409, "uniqueness")

    anomalies = await check(store.repository)
    assert [a.code for a in anomalies] == ["legacy-index"]
    assert [outcome for _, outcome in await repair(anomalies)] == ["repaired"]
    assert [a.code for a in await check(store.repository)] == []
    keys = await row_keys(store)
    assert legacy not in keys and f"idx:userName:{HASHED_KEY}{digest(LONG)}" in keys
    assert await found(scim, "/Users", "userName", LONG) == [user_id]

    # Repaired, the legacy key no longer stands for the long value.
    squatter = await post(scim, "/Users", user_with(squat))
    assert await found(scim, "/Users", "userName", squat) == [squatter]
    assert await found(scim, "/Users", "userName", LONG) == [user_id]
    assert (await scim.delete(f"/Users/{user_id}")).status == 204
    assert [a.code for a in await check(store.repository)] == []
    assert await found(scim, "/Users", "userName", squat) == [squatter]


@pytest.mark.parametrize("keep_ix", [True, False], ids=["listed-in-ix", "before-ix"])
async def test_a_write_moves_or_removes_a_legacy_row(scim, store, keep_ix):
    user_id = await post(scim, "/Users", user_with(LONG))
    legacy = await make_legacy(store, user_id, "userName", digest(LONG), keep_ix=keep_ix)
    renamed = {"op": "replace", "path": "userName", "value": "short@contoso.com"}
    response = await scim.patch(f"/Users/{user_id}", {"schemas": [PATCH_OP], "Operations": [renamed]})
    assert response.status == 200, response.json()
    assert legacy not in await row_keys(store)
    assert [a.code for a in await check(store.repository)] == []
    assert await found(scim, "/Users", "userName", LONG) == []
    assert await post(scim, "/Users", user_with(LONG))  # the value is free again
