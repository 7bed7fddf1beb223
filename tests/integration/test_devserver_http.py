"""The development server over real HTTP, and the Azurite launcher (tools.devserver, tools.azurite).

These tests open loopback sockets and start Azurite (``npm ci`` first). The last one is the reason
the emulator owns one event loop: an ``azure.data.tables.aio`` client created on the first request
must still work on the next ones (azure-notes §5.7).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Iterator

import azure.functions as func
import httpx
import pytest
from azure.data.tables import TableServiceClient
from azure.data.tables.aio import TableClient

from tools.azurite import Azurite
from tools.devserver import HostEmulator, serve_in_thread

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


@pytest.fixture(scope="module")
def emulator() -> Iterator[HostEmulator]:
    with HostEmulator(probe, route_prefix="scim", max_body_bytes=1024) as emulator:
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
