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

from scim import jwks as jwks_module
from scim.api import ScimApi
from scim.jwks import JwksKeys
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
