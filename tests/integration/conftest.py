"""Integration fixtures: a real Azurite, a table per test, real HTTP.

Azurite's table and queue services are started once per session on free
loopback ports with in-memory persistence (``tools.azurite``). Set ``TEST_STORAGE_CONNECTION_STRING``
to run the same tests against a real storage account instead.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy

from functions_host import FunctionsHost, Listener
from scim.config import Settings, token_digest
from scim.storage.tables import TableRepository, connect
from scim.web.api import Request, Response, ScimApi
from tests.conftest import NEXT_TOKEN, TOKEN, function_app_host
from tools.azurite import Azurite
from tools.run import host_body_limit

ROOT = Path(__file__).resolve().parents[2]
_T = TypeVar("_T")


@pytest.fixture(scope="session")
def storage_connection_string() -> Iterator[str]:
    """A live Table Storage endpoint: Azurite unless a real account is given."""
    given = os.environ.get("TEST_STORAGE_CONNECTION_STRING")
    if given:
        yield given
        return
    with Azurite() as tables, Azurite(service="queue") as queues:
        yield tables.connection_string_with(queues)


class RoundTrips(SansIOHTTPPolicy[Any, Any]):
    """Counts every HTTP request the Table SDK sends, retries included."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.urls: list[str] = []

    def on_request(self, request: PipelineRequest[Any]) -> None:
        self.requests.append(f"{request.http_request.method} {urlsplit(request.http_request.url).path}")
        self.urls.append(unquote(request.http_request.url))

    @property
    def count(self) -> int:
        return len(self.requests)

    def reset(self) -> None:
        self.requests.clear()
        self.urls.clear()


@dataclass
class Store:
    repository: TableRepository
    round_trips: RoundTrips
    table_name: str
    connection_string: str


@pytest.fixture
async def store(storage_connection_string: str) -> AsyncIterator[Store]:
    """A fresh table on the live endpoint, deleted afterwards."""
    table_name = "t" + uuid.uuid4().hex[:16]
    counter = RoundTrips()
    client = connect(storage_connection_string, table_name, per_retry_policies=[counter])
    await client.create_table()
    counter.reset()
    yield Store(TableRepository(client), counter, table_name, storage_connection_string)
    await client.delete_table()
    await client.close()


def make_settings(store: Store, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "storage_connection_string": store.connection_string,
        "table_name": store.table_name,
        "token_digests": (token_digest(TOKEN), token_digest(NEXT_TOKEN)),
        "max_page_size": 50,
        "max_scan": 500,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class ScimClient:
    """Drives :class:`ScimApi` handlers the way the triggers do, without sockets."""

    api: ScimApi
    token: str | None = TOKEN
    base: str = "http://scim.test/scim/v2"
    default_headers: dict[str, str] = field(default_factory=dict)

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        query: dict[str, str] | None = None,
    ) -> Response:
        url = self.base + path
        parts = urlsplit(url)
        parameters = dict(parse_qsl(parts.query, keep_blank_values=True))
        parameters.update(query or {})
        segments = [s for s in parts.path.split("/") if s][2:]  # drop "scim", "v2"
        route: dict[str, str] = {}
        name = segments[0].lower()
        if segments[-1] == ".search":
            name = {".search": "root"}.get(name, name) + "/.search"
        elif len(segments) > 1:
            route["id"] = segments[1]
        handler = {
            "users/.search": self.api.users_search,
            "groups/.search": self.api.groups_search,
            "root/.search": self.api.root_search,
            "bulk": self.api.bulk,
            "users": self.api.user if len(segments) > 1 else self.api.users,
            "groups": self.api.group if len(segments) > 1 else self.api.groups,
            "serviceproviderconfig": self.api.service_provider_config,
            "resourcetypes": self.api.resource_types,
            "schemas": self.api.schemas,
        }[name]
        all_headers = {"content-type": "application/scim+json; charset=utf-8", **self.default_headers}
        if self.token is not None:
            all_headers["authorization"] = f"Bearer {self.token}"
        all_headers.update({k.lower(): v for k, v in (headers or {}).items()})
        payload = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        request = Request(
            method=method,
            url=url,
            headers=all_headers,
            query=parameters,
            route=route,
            body=payload,
        )
        return await handler(request)

    async def get(self, path: str, **kw: Any) -> Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any, **kw: Any) -> Response:
        return await self.request("POST", path, body, **kw)

    async def patch(self, path: str, body: Any, **kw: Any) -> Response:
        return await self.request("PATCH", path, body, **kw)

    async def put(self, path: str, body: Any, **kw: Any) -> Response:
        return await self.request("PUT", path, body, **kw)

    async def delete(self, path: str, **kw: Any) -> Response:
        return await self.request("DELETE", path, **kw)


@pytest.fixture
def scim(store: Store) -> ScimClient:
    """A client of a ScimApi over its own fresh table."""
    return ScimClient(ScimApi(make_settings(store), store.repository))


@dataclass(frozen=True)
class DevServer:
    """The running dev server: its Tenant URL and the local Functions host (a WSGI application)."""

    tenant_url: str
    host: FunctionsHost
    table_name: str

    def run_coroutine(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coroutine`` on the event loop the app's ``async def`` functions run on."""
        assert self.host.worker is not None
        return self.host.worker.run_coroutine(coroutine)


@pytest.fixture(scope="session")
def http_base_url(dev_server: DevServer) -> str:
    """The Tenant URL of the dev server, ``http://127.0.0.1:PORT/scim/v2``."""
    return dev_server.tenant_url


async def _warm_up() -> None:
    import function_app

    function_app.runtime.api()


@pytest.fixture(scope="session")
def dev_server(storage_connection_string: str) -> Iterator[DevServer]:
    """``function_app`` served over real HTTP by the local Functions host, as ``make run`` does."""
    import function_app

    saved = dict(os.environ)
    table_name = "http" + uuid.uuid4().hex[:12]
    os.environ.update(
        {
            "SCIM_STORAGE_CONNECTION_STRING": storage_connection_string,
            "SCIM_TABLE_NAME": table_name,
            "SCIM_BEARER_TOKEN": TOKEN,
            "SCIM_BEARER_TOKEN_NEXT": NEXT_TOKEN,
            # As in Bicep and the container: the host's limit well above the app's 1 MiB.
            "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": str(host_body_limit(1_048_576)),
        }
    )
    host = function_app_host()  # azure-functions-runtime has indexed function_app.py
    host.start()  # re-reads the app settings above
    listener = Listener(host, port=0)
    listener.start_thread()
    server = DevServer(listener.url + "/scim/v2", host, table_name)
    try:
        # Build the API now, while the SCIM_* variables are set: per-test
        # fixtures clear them, and the runtime reads them only once.
        server.run_coroutine(_warm_up())
        yield server
    finally:
        listener.shutdown()
        server.run_coroutine(function_app.runtime.aclose())
        os.environ.clear()
        os.environ.update(saved)
