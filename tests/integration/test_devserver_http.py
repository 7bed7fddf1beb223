"""The development server over real HTTP, and the Azurite launcher (tools.devserver, tools.azurite).

These tests open loopback sockets and start Azurite (``npm ci`` first). The last one is the reason
the emulator owns one event loop: an ``azure.data.tables.aio`` client created on the first request
must still work on the next ones (azure-notes §5.7).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import httpx
import pytest
from azure.data.tables import TableServiceClient
from azure.data.tables.aio import TableClient

from scim.api import ScimApi
from tests.integration.conftest import TOKEN, DevServer, ScimClient, make_settings
from tools.azurite import Azurite
from tools.devserver import HostEmulator, serve_in_thread
from tools.run import BODY_FRAMING_MARGIN, scim_emulator

pytestmark = pytest.mark.integration

probe = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
_state: dict[str, TableClient] = {}


@probe.route(route="v2/Users/{id}", methods=[func.HttpMethod.GET])
async def users_item(req: func.HttpRequest) -> func.HttpResponse:
    document = {
        "id": req.route_params["id"],
        "filter": req.params.get("filter"),
        "authorization": req.headers.get("authorization"),
        "loop": id(asyncio.get_running_loop()),
    }
    return func.HttpResponse(json.dumps(document), mimetype="application/scim+json")


@probe.route(route="v2/Users/.search", methods=[func.HttpMethod.POST])
def users_search(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(req.get_body(), status_code=200, mimetype="application/scim+json")


@probe.route(route="v2/Entities/{row}", methods=[func.HttpMethod.PUT, func.HttpMethod.GET])
async def entities(req: func.HttpRequest) -> func.HttpResponse:
    # One module-level aio client, created lazily on the first request (as function_app.py does).
    table = _state["table"]
    row = req.route_params["row"]
    if req.method == "PUT":
        await table.upsert_entity({"PartitionKey": "p", "RowKey": row, "v": req.get_body().decode()})
        return func.HttpResponse(status_code=204)
    entity = await table.get_entity("p", row)
    return func.HttpResponse(entity["v"], status_code=200)


_PROBE_FUNCTIONS = list(probe.get_functions())  # get_functions() may be called once per app


@pytest.fixture(scope="module")
def emulator() -> Iterator[HostEmulator]:
    with HostEmulator(functions=_PROBE_FUNCTIONS, route_prefix="scim", max_body_bytes=1024) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def base_url(emulator: HostEmulator) -> Iterator[str]:
    with serve_in_thread(emulator) as url:
        yield url


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    with Azurite() as az:
        yield az


def _port_is_closed(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def test_serves_the_app_over_http(base_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tools.devserver")
    assert base_url.startswith("http://127.0.0.1:")
    with httpx.Client(base_url=base_url) as client:
        response = client.get(
            "/scim/v2/users/42",
            params={"filter": 'userName eq "a@b.c"'},
            headers={"Authorization": "Bearer s3cret"},
        )
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/scim+json"
        assert response.json()["id"] == "42"
        assert response.json()["filter"] == 'userName eq "a@b.c"'
        assert response.json()["authorization"] == "Bearer s3cret"

        search = client.post("/scim/v2/Users/.search", content=b'{"filter":"x"}')
        assert (search.status_code, search.content) == (200, b'{"filter":"x"}')

        missing = client.get("/scim/v2/Groups")
        assert (missing.status_code, missing.content) == (404, b"")
        too_big = client.post("/scim/v2/Users/.search", content=b"x" * 1025)
        assert (too_big.status_code, too_big.content) == (413, b"")
    lines = [r.getMessage() for r in caplog.records if r.name == "tools.devserver"]
    assert any(line.startswith("GET /scim/v2/users/42 200 ") for line in lines)
    assert not any("filter" in line or "s3cret" in line for line in lines)


def test_async_functions_share_one_loop_across_http_requests(base_url: str) -> None:
    with httpx.Client(base_url=base_url) as client:
        loops = {client.get(f"/scim/v2/Users/{n}").json()["loop"] for n in range(3)}
    assert len(loops) == 1


def test_azurite_starts_serves_tables_and_stops() -> None:
    az = Azurite()
    with az:
        assert az.table_endpoint == f"http://127.0.0.1:{az.port}/devstoreaccount1"
        with TableServiceClient.from_connection_string(az.connection_string) as service:
            table = service.create_table("probe")
            table.create_entity({"PartitionKey": "p", "RowKey": "r", "n": 7})
            assert table.get_entity("p", "r")["n"] == 7
    assert _port_is_closed("127.0.0.1", az.port)
    with pytest.raises(RuntimeError, match="not running"):
        _ = az.connection_string


def test_aio_client_survives_across_requests_on_the_emulator_loop(
    emulator: HostEmulator, base_url: str, azurite: Azurite
) -> None:
    async def open_table() -> TableClient:
        table = TableClient.from_connection_string(azurite.connection_string, "entities")
        await table.create_table()
        return table

    _state["table"] = emulator.run_coroutine(open_table())
    try:
        with httpx.Client(base_url=base_url) as client:
            for row in ("a", "b", "c"):
                assert client.put(f"/scim/v2/Entities/{row}", content=row.encode()).status_code == 204
                read = client.get(f"/scim/v2/Entities/{row}")
                assert (read.status_code, read.text) == (200, row)
    finally:
        emulator.run_coroutine(_state.pop("table").close())


# --- hostile clients: log injection, slowloris, oversized bodies (issue 14, items 8 and 9) ----------


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _exchange(
    url: str, chunks: list[bytes], *, pause: float = 0.0, wait: float = 15.0
) -> tuple[bytes, float]:
    """Send ``chunks`` (``pause`` s apart, stopping when the server closes) and read until it closes.

    Returns what the server sent and the seconds from connecting until it closed the connection.
    """
    started = time.monotonic()
    received = b""
    with socket.create_connection(_address(url), timeout=wait) as connection:
        for chunk in chunks:
            try:
                connection.sendall(chunk)
            except OSError:
                break
            if pause:
                connection.settimeout(pause)
                try:
                    data = connection.recv(65536)
                except TimeoutError:
                    continue
                finally:
                    connection.settimeout(wait)
                received += data
                if not data:
                    return received, time.monotonic() - started
        with contextlib.suppress(OSError):
            while data := connection.recv(65536):
                received += data
    return received, time.monotonic() - started


def test_request_paths_are_logged_sanitised_and_bounded(
    base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tools.devserver")
    forged = "/scim/v2/Users/x%0d%0aINFO forged 200 1.0ms%1b[2J" + "y" * 5000
    with httpx.Client(base_url=base_url) as client:
        client.get(forged)
    lines = [r.getMessage() for r in caplog.records if r.name == "tools.devserver"]
    line = next(line for line in lines if "/scim/v2/Users/x" in line)
    assert not any(ch in line for ch in "\r\n\x1b")
    assert "\\r\\nINFO forged" in line and "\\x1b[2J" in line
    assert len(line) < 300, len(line)


@pytest.fixture
def strict_server() -> Iterator[str]:
    """An emulator with short header/body deadlines, as ``make run`` builds it (SCIM 413 body)."""
    with scim_emulator(_PROBE_FUNCTIONS, max_body_bytes=1024) as emulator:
        with serve_in_thread(emulator, header_timeout=1.0, read_timeout=2.0, body_timeout=1.0) as url:
            yield url


def test_headers_trickled_slowly_are_cut_off_at_the_header_deadline(strict_server: str) -> None:
    request_line = b"GET /scim/v2/Users/1 HTTP/1.1\r\nHost: x\r\n"
    trickle = [b"X-Slow-%d: y\r\n" % n for n in range(40)]  # 40 x 0.25 s: 10 s if never cut
    received, elapsed = _exchange(strict_server, [request_line, *trickle], pause=0.25)
    assert elapsed < 5.0, elapsed  # each read arrives well within read_timeout: only the deadline cuts
    assert received == b"" or received.startswith(b"HTTP/1.1 408"), received[:80]


def test_a_body_trickled_slowly_gets_408(strict_server: str) -> None:
    head = b"POST /scim/v2/Users/.search HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n"
    received, elapsed = _exchange(strict_server, [head, *[b"a"] * 40], pause=0.25)
    assert received.startswith(b"HTTP/1.1 408"), received[:80]
    assert elapsed < 5.0, elapsed


def test_an_oversized_body_is_refused_unread_with_a_scim_413(strict_server: str) -> None:
    head = (
        b"POST /scim/v2/Users/.search HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: 50000000\r\nContent-Type: application/scim+json\r\n\r\n"
    )
    received, elapsed = _exchange(strict_server, [head])  # not one byte of the 50 MB is sent
    assert elapsed < 2.0, elapsed  # no read of the body, so no read timeout either
    status, _, rest = received.partition(b"\r\n")
    assert status == b"HTTP/1.1 413 REQUEST ENTITY TOO LARGE", received[:80]
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["status"] == "413" and body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert "SCIM_MAX_BODY_BYTES" in body["detail"]


def test_bodies_up_to_the_limit_plus_margin_reach_the_app(strict_server: str) -> None:
    with httpx.Client(base_url=strict_server) as client:
        passed = client.post("/scim/v2/Users/.search", content=b"x" * (1024 + BODY_FRAMING_MARGIN))
        assert (passed.status_code, len(passed.content)) == (200, 1024 + BODY_FRAMING_MARGIN)
        chunked = client.post(
            "/scim/v2/Users/.search", content=iter([b"x" * 65536] * 2)
        )  # no Content-Length: counted while read
        assert chunked.status_code == 413 and chunked.json()["status"] == "413"


# --- meta.location and a client-supplied Host header (issue 14, item 9) ------------------------------


def _service_provider_config(tenant_url: str, host: bytes) -> tuple[int, dict[str, Any]]:
    """GET /ServiceProviderConfig over a raw socket with ``host`` sent verbatim as the Host header."""
    head = (
        b"GET /scim/v2/ServiceProviderConfig HTTP/1.1\r\nHost: " + host + b"\r\n"
        b"Authorization: Bearer " + TOKEN.encode() + b"\r\nConnection: close\r\n\r\n"
    )
    received, _ = _exchange(tenant_url.removesuffix("/scim/v2"), [head])
    status_line, _, rest = received.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in headers.lower():
        body = _dechunk(body)
    return int(status_line.split()[1]), json.loads(body) if body else {}


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size, _, body = body.partition(b"\r\n")
        if not int(size, 16):
            break
        out, body = out + body[: int(size, 16)], body[int(size, 16) + 2 :]
    return out


def test_a_well_formed_host_header_gives_meta_location(dev_server: DevServer) -> None:
    status, document = _service_provider_config(dev_server.tenant_url, b"scim.corp.example:8443")
    assert status == 200
    assert document["meta"]["location"] == "http://scim.corp.example:8443/scim/v2/ServiceProviderConfig"


@pytest.mark.parametrize(
    "host",
    [
        b"evil.example/phish?x=",  # a path
        b"victim@evil.example",  # userinfo
        b"evil.example\r\n X-Injected: 1",  # obs-fold: a line break inside the value
        b"evil.example:8080x",
        b"[::1",
        b"evil_host.example <script>",
        b"a" * 300 + b".example",  # overlong
    ],
)
def test_a_hostile_host_header_is_never_reflected(dev_server: DevServer, host: bytes) -> None:
    status, document = _service_provider_config(dev_server.tenant_url, host)
    assert status == 200  # served: the rule in ScimApi._base_url, not the HTTP server, decides
    location = document["meta"]["location"]
    assert location == "/scim/v2/ServiceProviderConfig", location


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("http://scim.test/scim-Dir_1.x~/v2", "http://scim.test/scim-Dir_1.x~/v2"),  # path-safe: kept
        ("http://scim.test/a%0d%0aX-Injected:%201/v2", "http://scim.test/scim/v2"),
        ("http://scim.test/.hidden/v2", "http://scim.test/scim/v2"),
        ("http://scim.test/../v2", "http://scim.test/scim/v2"),
    ],
)
async def test_the_path_prefix_of_meta_location_is_path_safe(store, base: str, expected: str) -> None:
    client = ScimClient(ScimApi(make_settings(store), store.repository), base=base)
    response = await client.get("/ServiceProviderConfig")
    assert response.status == 200
    assert response.json()["meta"]["location"] == f"{expected}/ServiceProviderConfig"
