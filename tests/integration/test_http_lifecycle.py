"""Entra's user lifecycle over real HTTP: function_app.py served by the dev server.

The Functions host itself cannot run here (no Core Tools), so the triggers are
served by ``tools.devserver``, which routes like the host (azure-notes §2).
Requests are sent the way Entra encodes them (form-style query, ``+`` for
spaces, ``%22`` for quotes; no SCIM ``Accept`` header on GETs).
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.conftest import TOKEN
from tests.integration.test_users_entra import ENTERPRISE, PATCH_OP, entra_user

pytestmark = pytest.mark.integration


@pytest.fixture
def client(http_base_url):
    with httpx.Client(base_url=http_base_url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def scim_json(body):
    return {
        "content": httpx.Request("POST", "http://x", json=body).content,
        "headers": {"Content-Type": "application/scim+json; charset=utf-8"},
    }


def test_entra_user_lifecycle_over_http(client, http_base_url):
    # Test Connection / cycle start: the probe with a random GUID.
    probe = client.get(f"/Users?filter=userName+eq+%22{uuid.uuid4()}%22")
    assert probe.status_code == 200
    assert probe.headers["content-type"].startswith("application/scim+json")
    assert probe.json()["totalResults"] == 0

    name = f"Lifecycle.{uuid.uuid4().hex[:8]}@Contoso.com"
    created = client.post("/Users", **scim_json(entra_user(name)))
    assert created.status_code == 201, created.text
    user = created.json()
    assert created.headers["location"] == f"{http_base_url}/Users/{user['id']}"

    match = client.get("/Users", params={"filter": f'userName eq "{name.lower()}"'})
    assert [r["id"] for r in match.json()["Resources"]] == [user["id"]]

    manager = client.post("/Users", **scim_json(entra_user())).json()
    operations = [
        # default client
        [
            {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "new@contoso.com"},
            {"op": "Add", "path": 'phoneNumbers[type eq "mobile"].value', "value": "+1 555 0100"},
        ],
        # aadOptscim062020
        [
            {
                "op": "replace",
                "value": {
                    "displayName": "Life Cycle",
                    "name.givenName": "Life",
                    f"{ENTERPRISE}:department": "R&D",
                },
            }
        ],
        [{"op": "Add", "path": f"{ENTERPRISE}:manager", "value": manager["id"]}],
        [{"op": "Replace", "path": "active", "value": "False"}],
    ]
    for ops in operations:
        response = client.patch(
            f"/Users/{user['id']}?aadOptscim062020", **scim_json({"schemas": [PATCH_OP], "Operations": ops})
        )
        assert response.status_code == 200, response.text

    disabled = client.get(f"/Users/{user['id']}").json()
    assert disabled["active"] is False
    assert disabled["emails"][0]["value"] == "new@contoso.com"
    assert disabled["phoneNumbers"] == [{"value": "+1 555 0100", "type": "mobile"}]
    assert disabled["displayName"] == "Life Cycle"
    assert disabled[ENTERPRISE] == {"department": "R&D", "manager": {"value": manager["id"]}}
    assert (
        client.get("/Users", params={"filter": f'userName eq "{name}"'}).json()["Resources"][0]["active"]
        is False
    )

    enable = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": True}]}
    assert client.patch(f"/Users/{user['id']}", **scim_json(enable)).json()["active"] is True

    assert client.delete(f"/Users/{user['id']}").status_code == 204
    gone = client.get(f"/Users/{user['id']}")
    assert gone.status_code == 404 and gone.json()["status"] == "404"


def test_gets_do_not_require_a_scim_accept_header(client):
    for accept in ("*/*", "application/json", "text/html"):
        assert client.get("/ServiceProviderConfig", headers={"Accept": accept}).status_code == 200


def test_discovery_over_http(client, http_base_url):
    schemas = client.get("/Schemas").json()
    assert {s["id"] for s in schemas["Resources"]} == {
        "urn:ietf:params:scim:schemas:core:2.0:User",
        ENTERPRISE,
        "urn:ietf:params:scim:schemas:core:2.0:Group",
    }
    assert client.get("/ResourceTypes/User").json()["endpoint"] == "/Users"
    assert client.get(f"/Schemas/{ENTERPRISE}").json()["name"] == "EnterpriseUser"


def test_401_over_http(http_base_url):
    for headers in ({}, {"Authorization": "Bearer nope"}):
        response = httpx.get(f"{http_base_url}/Users", headers=headers)
        assert response.status_code == 401
        assert response.json()["status"] == "401"
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_route_literals_are_case_insensitive(client):
    assert client.get("/users?count=1").status_code == 200
