"""Entra-issued JWTs end to end: the tenant's keys served as a JWKS over loopback HTTP.

Entra cannot be reached from here, so a local JWKS endpoint stands in for
``login.microsoftonline.com/<tenant>/discovery/keys``; keys are generated in
the test and rotated by changing what it serves.
"""

from __future__ import annotations

import json
import threading

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from scim.web import jwks as jwks_module
from scim.web.api import ScimApi
from scim.web.jwks import JwksKeys
from tests.integration.conftest import ScimClient, make_settings
from tests.jwt_helpers import ISSUER, TENANT, SigningKey, jwks

pytestmark = pytest.mark.integration


class JwksServer:
    def __init__(self) -> None:
        self.document: dict = {"keys": []}
        self.hits = 0
        self.status = 200
        self._server = make_server("127.0.0.1", 0, self._app)
        self.url = f"http://127.0.0.1:{self._server.port}/{TENANT}/discovery/keys"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @Request.application
    def _app(self, request: Request) -> Response:
        self.hits += 1
        return Response(json.dumps(self.document), status=self.status, mimetype="application/json")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def jwks_server():
    server = JwksServer()
    yield server
    server.close()


@pytest.fixture
def entra(store, jwks_server):
    settings = make_settings(
        store, token_digests=(), entra_tenant_id=TENANT, jwt_issuer=ISSUER, jwks_url=jwks_server.url
    )
    keys = JwksKeys(jwks_server.url)
    return ScimClient(ScimApi(settings, store.repository, keys=keys), token=None)


async def test_entra_token_accepted_and_keys_cached(entra, jwks_server):
    key = SigningKey()
    jwks_server.document = jwks(key)
    for _ in range(3):
        response = await entra.get("/Users", headers={"Authorization": f"Bearer {key.token()}"})
        assert response.status == 200
    assert jwks_server.hits == 1


async def test_rotated_key_is_fetched_on_unknown_kid(entra, jwks_server, monkeypatch):
    old, new = SigningKey(), SigningKey()
    jwks_server.document = jwks(old)
    assert (await entra.get("/Users", headers={"Authorization": f"Bearer {old.token()}"})).status == 200
    monkeypatch.setattr(jwks_module, "MIN_REFETCH", 0.0)
    jwks_server.document = jwks(old, new)
    assert (await entra.get("/Users", headers={"Authorization": f"Bearer {new.token()}"})).status == 200
    assert jwks_server.hits == 2


async def test_forged_kids_do_not_flood_the_key_endpoint(entra, jwks_server):
    jwks_server.document = jwks(SigningKey())
    for _ in range(5):
        forged = SigningKey()
        response = await entra.get("/Users", headers={"Authorization": f"Bearer {forged.token()}"})
        assert response.status == 401
    assert jwks_server.hits == 1  # one fetch per MIN_REFETCH, whatever the kids


async def test_other_tenant_and_expired_tokens_are_401(entra, jwks_server):
    key = SigningKey()
    jwks_server.document = jwks(key)
    for token in (
        key.token(iss="https://sts.windows.net/00000000-0000-0000-0000-000000000000/"),
        key.token(exp=1),
    ):
        response = await entra.get("/Users", headers={"Authorization": f"Bearer {token}"})
        assert response.status == 401 and response.json()["status"] == "401"


async def test_unreachable_key_endpoint_is_503_not_401(entra, jwks_server):
    jwks_server.status = 500
    response = await entra.get("/Users", headers={"Authorization": f"Bearer {SigningKey().token()}"})
    assert response.status == 503 and "Retry-After" in response.headers


async def _get_users(client: ScimClient, key: SigningKey):
    return await client.get("/Users", headers={"Authorization": f"Bearer {key.token()}"})


def _assert_keys_unavailable(response) -> None:
    """503 with Retry-After and an RFC 7644 §3.12 body that says the keys could not be fetched."""
    assert response.status == 503, response.body
    assert response.headers["Retry-After"].isdigit()
    body = response.json()
    assert body["status"] == "503" and body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert "signing keys could not be fetched" in body["detail"]


async def test_failed_first_fetch_stays_503_until_the_next_fetch(entra, jwks_server):
    jwks_server.status = 500
    for _ in range(3):  # within MIN_REFETCH: no new fetch, still 503 (was 401 "key not published")
        _assert_keys_unavailable(await _get_users(entra, SigningKey()))
    assert jwks_server.hits == 1


async def test_empty_key_set_is_503_not_401(entra, jwks_server):
    jwks_server.document = {"keys": []}
    for _ in range(2):
        _assert_keys_unavailable(await _get_users(entra, SigningKey()))
    assert jwks_server.hits == 1


@pytest.mark.parametrize("document", [{"keys": "not-a-list"}, ["keys"], {"keys": [{"kid": 7}, "x"]}])
async def test_malformed_key_set_is_503_not_500(entra, jwks_server, document):
    jwks_server.document = document
    _assert_keys_unavailable(await _get_users(entra, SigningKey()))


async def test_unreachable_key_endpoint_before_any_fetch_is_503(entra, jwks_server):
    jwks_server.close()  # connection refused from now on
    for _ in range(2):
        _assert_keys_unavailable(await _get_users(entra, SigningKey()))


async def test_failed_refresh_is_503_for_unknown_kid_and_cached_keys_keep_working(
    entra, jwks_server, monkeypatch
):
    known = SigningKey()
    jwks_server.document = jwks(known)
    assert (await _get_users(entra, known)).status == 200
    monkeypatch.setattr(jwks_module, "MIN_REFETCH", 0.0)
    jwks_server.status = 503
    _assert_keys_unavailable(await _get_users(entra, SigningKey()))  # could be a rotated key
    assert (await _get_users(entra, known)).status == 200
    assert jwks_server.hits == 2


async def test_unknown_kid_in_a_fresh_non_empty_key_set_is_401(entra, jwks_server, monkeypatch):
    monkeypatch.setattr(jwks_module, "MIN_REFETCH", 0.0)
    jwks_server.document = jwks(SigningKey())
    response = await _get_users(entra, SigningKey())
    assert response.status == 401 and "does not publish" in response.json()["detail"]
    assert jwks_server.hits == 1
