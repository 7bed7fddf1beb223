"""Refused values explained in SCIM words over the real request path and Azurite (issue 16, item 3).

Entra shows ``detail`` verbatim in its provisioning logs: a bad ``active`` must
say what the attribute needs, never pydantic's text or its documentation link,
and nothing may be written.
"""

from __future__ import annotations

import uuid

import pytest

from tests.integration.test_users_entra import assert_error, create, entra_user, patch

pytestmark = pytest.mark.integration

BOOLEAN = '`active` must be a boolean: true/false, or Entra\'s "True"/"False" strings'


def assert_no_library_text(detail: str) -> None:
    for text in ("pydantic", "http", "Input should", "type=", "validation error"):
        assert text.lower() not in detail.lower(), detail


async def test_post_with_a_bad_active_is_explained_and_writes_nothing(scim, store):
    user_name = f"maybe_{uuid.uuid4()}"
    store.round_trips.reset()
    response = await scim.post("/Users", {**entra_user(user_name), "active": "maybe"})
    assert_error(response, 400, "invalidValue")
    assert response.json()["detail"] == f'{BOOLEAN} (got "maybe").'
    assert store.round_trips.count == 0  # refused before any storage request
    listed = await scim.get(f'/Users?filter=userName eq "{user_name}"')
    assert listed.json()["totalResults"] == 0


async def test_post_with_several_bad_values_names_three_and_counts_the_rest(scim, store):
    body = {**entra_user(), "active": 3, "title": 4, "nickName": 5, "locale": 6}
    response = await scim.post("/Users", body)
    assert_error(response, 400, "invalidValue")
    detail = response.json()["detail"]
    assert detail.endswith("; and 1 more.") and detail.count("; ") == 3, detail
    assert_no_library_text(detail)
    assert (await scim.get("/Users")).json()["totalResults"] == 0


async def test_patch_with_a_bad_value_names_the_operation_and_changes_nothing(scim):
    user = await create(scim)
    path = f"/Users/{user['id']}"
    response = await scim.patch(
        path,
        patch(
            {"op": "Replace", "path": "displayName", "value": "Half"},
            {"op": "Replace", "path": "active", "value": "maybe"},
        ),
    )
    assert_error(response, 400, "invalidValue")
    assert response.json()["detail"] == f'In the replace of `active`: {BOOLEAN} (got "maybe").'
    work = await scim.patch(
        path, patch({"op": "Replace", "path": 'emails[type eq "work"].value', "value": 7})
    )
    assert_error(work, 400, "invalidValue")
    assert work.json()["detail"] == (
        'In the replace of `emails[type eq "work"].value`: `value` must be a string (got 7).'
    )
    assert (await scim.get(path)).json() == user  # same document, same version


async def test_query_parameter_errors_carry_no_library_text(scim):
    user = await create(scim)
    response = await scim.get(f"/Users/{user['id']}?attributes=title&excludedAttributes=nickName")
    assert_error(response, 400, "invalidValue")
    assert_no_library_text(response.json()["detail"])
    search = await scim.post("/Users/.search", {"filter": 3})
    assert_error(search, 400, "invalidValue")
    assert search.json()["detail"] == "`filter` must be a string (got 3)."
