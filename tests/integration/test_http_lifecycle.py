"""Entra's user lifecycle over real HTTP: function_app.py served by the local Functions host.

The .NET Functions host cannot run here (no Core Tools): ``functions_host`` runs the real
``azure-functions-runtime`` behind an emulation of the host's routing and HTTP conversion.
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


def test_entra_group_lifecycle_over_http(client):
    from tests.integration.test_groups_entra import entra_group

    members = [client.post("/Users", **scim_json(entra_user())).json()["id"] for _ in range(3)]
    name = f"Engineering {uuid.uuid4().hex[:6]}"
    probe = client.get(
        "/Groups", params={"excludedAttributes": "members", "filter": f'displayName eq "{name}"'}
    )
    assert probe.json()["totalResults"] == 0
    created = client.post("/Groups", **scim_json(entra_group(name)))
    assert created.status_code == 201, created.text
    gid = created.json()["id"]

    def patch_group(ops, flag=False):
        url = f"/Groups/{gid}" + ("?aadOptscim062020" if flag else "")
        response = client.patch(url, **scim_json({"schemas": [PATCH_OP], "Operations": ops}))
        assert response.status_code == 204, response.text
        assert response.content == b""

    patch_group([{"op": "Add", "path": "members", "value": [{"$ref": None, "value": m} for m in members]}])
    patch_group([{"op": "Remove", "path": "members", "value": [{"$ref": None, "value": members[0]}]}])
    patch_group([{"op": "remove", "path": f'members[value eq "{members[1]}"]'}], flag=True)
    patch_group([{"op": "Replace", "path": "displayName", "value": name + " (renamed)"}])

    lean = client.get(f"/Groups/{gid}", params={"excludedAttributes": "members"}).json()
    assert lean["displayName"] == name + " (renamed)" and "members" not in lean
    full = client.get(f"/Groups/{gid}").json()
    assert [m["value"] for m in full["members"]] == [members[2]]
    assert client.get(f"/Users/{members[2]}").json()["groups"][0]["value"] == gid
    match = client.get(
        "/Groups",
        params={"excludedAttributes": "members", "filter": f'displayName eq "{name.upper()} (RENAMED)"'},
    )
    assert [g["id"] for g in match.json()["Resources"]] == [gid]

    assert client.delete(f"/Groups/{gid}").status_code == 204
    assert client.get(f"/Groups/{gid}").status_code == 404
    assert "groups" not in client.get(f"/Users/{members[2]}").json()


def _user_body(user_name: str, padding: int = 0) -> bytes:
    body = entra_user(user_name)
    if padding:
        body["nickName"] = "n" * padding
    return httpx.Request("POST", "http://x", json=body).content


def test_a_chunked_body_gets_411_saying_to_send_content_length(client):
    """The host forwards a body only with Content-Length > 0 (azure-functions-host#4926): say so."""
    user_name = f"chunked-{uuid.uuid4().hex[:8]}@example.com"
    body = _user_body(user_name)
    response = client.post(
        "/Users", content=iter([body[:10], body[10:]]), headers={"Content-Type": "application/scim+json"}
    )
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 411
    assert "Content-Length" in response.json()["detail"]
    found = client.get("/Users", params={"filter": f'userName eq "{user_name}"'}).json()
    assert found["totalResults"] == 0


def test_a_body_over_the_app_limit_gets_the_scim_413_not_the_hosts_500(client):
    """The host's limit is 4 × SCIM_MAX_BODY_BYTES (as in Bicep), so the app's 413 is what clients see."""
    response = client.post(
        "/Users",
        content=_user_body("big@example.com", 1_200_000),
        headers={"Content-Type": "application/scim+json"},
    )
    assert response.status_code == 413
    assert response.json()["detail"].endswith("the limit is 1,048,576.")


def test_a_body_over_the_host_limit_is_the_hosts_empty_500(client):
    """Above FUNCTIONS_REQUEST_BODY_SIZE_LIMIT the host fails the request unread (azure-functions-host#10519)."""
    response = client.post(
        "/Users",
        content=_user_body("huge@example.com", 4_200_000),
        headers={"Content-Type": "application/scim+json"},
    )
    assert (response.status_code, response.content) == (500, b"")
