"""Storage faults: an outage, a restart, throttling — 503 with Retry-After, quickly; nothing half-written."""

from __future__ import annotations

import tempfile
import threading
import time

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from scim.config import token_digest
from scim.service.consistency import check
from scim.storage.tables import TableRepository, connect
from scim.web.api import ScimApi
from tests.conftest import TOKEN
from tests.integration.conftest import ScimClient, make_settings
from tests.integration.test_users_entra import assert_error, create, entra_user, patch
from tools.azurite import Azurite

pytestmark = pytest.mark.integration


async def test_azurite_stopped_mid_run_then_restarted(store):
    with tempfile.TemporaryDirectory() as data:
        azurite = Azurite(location=data).start()
        port = azurite.port
        client = connect(azurite.connection_string, "outage")
        await client.create_table()
        repository = TableRepository(client)
        scim = ScimClient(ScimApi(make_settings(store, token_digests=(token_digest(TOKEN),)), repository))
        try:
            user = await create(scim, userName="outage@x.com")
            azurite.stop()
            for call in (
                lambda: scim.get(f"/Users/{user['id']}"),
                lambda: scim.get('/Users?filter=userName eq "outage@x.com"'),
                lambda: scim.post("/Users", entra_user("during@x.com")),
                lambda: scim.patch(
                    f"/Users/{user['id']}", patch({"op": "replace", "path": "active", "value": False})
                ),
            ):
                started = time.perf_counter()
                response = await call()
                assert_error(response, 503)
                assert int(response.headers["Retry-After"]) > 0
                assert time.perf_counter() - started < 10
            azurite = Azurite(port=port, location=data).start()
            # (Azurite may lose its last seconds of writes when stopped: only the
            # writes refused during the outage are checked, not the user before it.)
            assert (await scim.get('/Users?filter=userName eq "during@x.com"')).json()["totalResults"] == 0
            assert (await scim.post("/Users", entra_user("after@x.com"))).status == 201
            assert await check(repository) == []
        finally:
            await client.close()
            azurite.stop()


class ThrottlingStorage:
    """A stand-in for Table Storage that answers every request 503 ServerBusy, or hangs."""

    def __init__(self, *, hang: float = 0.0) -> None:
        self.hits = 0
        self.hang = hang
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.endpoint = f"http://127.0.0.1:{self._server.port}/devstoreaccount1"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @Request.application
    def _app(self, request: Request) -> Response:
        self.hits += 1
        if self.hang:
            time.sleep(self.hang)
        body = '{"odata.error":{"code":"ServerBusy","message":{"value":"The server is busy."}}}'
        return Response(
            body, status=503, mimetype="application/json", headers={"x-ms-error-code": "ServerBusy"}
        )

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.mark.parametrize("hang", [0.0, 8.0])
async def test_throttling_or_hanging_storage_is_a_bounded_503(store, hang):
    fake = ThrottlingStorage(hang=hang)
    connection = store.connection_string.split("TableEndpoint=")[0] + f"TableEndpoint={fake.endpoint};"
    client = connect(connection, "busy")
    scim = ScimClient(ScimApi(make_settings(store), TableRepository(client)))
    try:
        started = time.perf_counter()
        response = await scim.get(f"/Users/{'0' * 8}-0000-4000-8000-{'0' * 12}")
        elapsed = time.perf_counter() - started
        assert_error(response, 503)
        assert "Retry-After" in response.headers
        assert elapsed < (25 if hang else 10)  # bounded retries, fit for an HTTP function
        assert 1 <= fake.hits <= 3
    finally:
        await client.close()
        fake.close()
