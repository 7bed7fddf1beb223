"""The local Functions host (``functions_host``), one test per host rule, over real HTTP.

``functions_host`` runs the real ``azure-functions-runtime`` behind an emulation of the .NET host;
each test below pins one emulated rule and names its source as the ``functions_host`` module
docstrings give it (azure-notes §6.2 collects them).

The runtime keeps its function registry in module globals, one app per process, so every probe
app runs in a subprocess: ``python -m functions_host --app-dir DIR --port 0``, which prints
``Starting on URL`` once the port is bound and ``Listening on URL`` once the app is indexed, or
exits 1 with ``error: ...`` on stderr. Only the real ``function_app.py`` (the repository root) is
served in-process, through the host the rest of the HTTP suite shares
(``tests.conftest.function_app_host``), and only for requests that never reach a function.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from functions_host import serve_in_thread
from scim.web.api import ScimApi
from tests.conftest import TOKEN, function_app_host
from tests.integration.conftest import ScimClient, make_settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0

# --- the probe app ------------------------------------------------------------------------------

PROBE_HOST_JSON = {
    "version": "2.0",
    "functionTimeout": "00:00:02",
    "extensions": {"http": {"routePrefix": "probe", "customHeaders": {"X-Content-Type-Options": "nosniff"}}},
}
PROBE_SETTINGS = {
    "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "1024",
    "AzureWebJobs_disabled_probe_Disabled": "true",
}
PROBE_APP = '''
"""Probe app for tests/integration/test_functions_host.py: each function reports what it received."""

import asyncio
import json
import threading
import time

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
CALLS: list[str] = []  # every invocation of an echoing function, in order
TICKS: list[dict[str, object]] = []  # every run of the timer


def _loop_id() -> int | None:
    try:
        return id(asyncio.get_running_loop())
    except RuntimeError:
        return None


def _echo(name: str, req: func.HttpRequest) -> func.HttpResponse:
    CALLS.append(name)
    document = {
        "function": name,
        "method": req.method,
        "url": req.url,
        "route_params": dict(req.route_params),
        "query": dict(req.params),
        "headers": dict(req.headers),
        "body": req.get_body().decode("latin-1"),
        "thread": threading.get_ident(),
        "thread_name": threading.current_thread().name,
        "loop": _loop_id(),
    }
    return func.HttpResponse(json.dumps(document), mimetype="application/json")


# Registered in an order that is not the name order: only sorting by name gives the order tested.
@app.route(route="{*rest}", methods=["GET"])
def zz_catch_all(req: func.HttpRequest) -> func.HttpResponse:
    return _echo("zz_catch_all", req)


@app.route(route="items/.search", methods=["GET", "POST"])
def b_search(req: func.HttpRequest) -> func.HttpResponse:
    return _echo("b_search", req)


@app.route(route="items/{id}", methods=["GET"])
async def a_item(req: func.HttpRequest) -> func.HttpResponse:
    await asyncio.sleep(0)
    return _echo("a_item", req)


@app.route(route="sort/{p}", methods=["GET"])
def Sort_p(req: func.HttpRequest) -> func.HttpResponse:
    return _echo("Sort_p", req)


@app.route(route="sort/literal", methods=["GET"])
def sorta(req: func.HttpRequest) -> func.HttpResponse:
    return _echo("sorta", req)


@app.route(route="echo/{id}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
async def echo(req: func.HttpRequest) -> func.HttpResponse:
    return _echo("echo", req)


@app.route(route="any")
def echo_any(req: func.HttpRequest) -> func.HttpResponse:
    return _echo("echo_any", req)


@app.route(route="boom", methods=["GET"])
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("probe failure 7f3a")


@app.route(route="slow", methods=["GET"])
async def slow(req: func.HttpRequest) -> func.HttpResponse:
    await asyncio.sleep(30)
    return func.HttpResponse("too late")


@app.route(route="calls", methods=["GET"])
def calls(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(CALLS), mimetype="application/json")


@app.route(route="ticks", methods=["GET"])
def ticks(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(TICKS), mimetype="application/json")


@app.timer_trigger(schedule="*/1 * * * * *", arg_name="timer", run_on_startup=False, use_monitor=False)
def tick(timer: func.TimerRequest) -> None:
    TICKS.append({"at": time.time(), "past_due": timer.past_due})


@app.route(route="off", methods=["POST"])
def disabled_probe(req: func.HttpRequest) -> func.HttpResponse:
    return _echo("disabled_probe", req)

'''

SLOW_START_APP = '''
"""Probe app whose import takes two seconds, so the host answers 503 meanwhile."""

import time

import azure.functions as func

time.sleep(2)
app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="ready", methods=["GET"])
def ready(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("ready")
'''


# --- running a host in a subprocess -------------------------------------------------------------

_URL = re.compile(r"http://127\.0\.0\.1:\d+")


@dataclass
class HostProcess:
    """``python -m functions_host`` in a subprocess: stdout read line by line, stderr to a file."""

    process: subprocess.Popen[str]
    lines: queue.Queue[str | None]
    reader: threading.Thread
    stderr_path: Path
    url: str = ""

    def wait_for(self, marker: str, timeout: float = START_TIMEOUT_S) -> str:
        """Return the first stdout line containing ``marker`` (and remember its URL)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"the host exited ({self.process.wait()}): {self.stderr()}")
            if marker in line:
                found = _URL.search(line)
                self.url = found.group(0) if found else self.url
                return line
        raise AssertionError(f"no {marker!r} line within {timeout} s: {self.stderr()}")

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.reader.join(timeout=10)  # it closes stdout at end of file


def launch(app_dir: Path, settings: dict[str, str] | None = None) -> HostProcess:
    """Start the host on a free port for the app in ``app_dir``; app settings come from the env."""
    environ = {**os.environ, **(settings or {})}
    environ.pop("PYTHON_ENABLE_DEBUG_LOGGING", None)
    stderr_path = app_dir / "host.stderr"
    with stderr_path.open("w", encoding="utf-8") as stderr:
        process = subprocess.Popen(  # noqa: S603 - our own module, run as `make run` runs it
            [sys.executable, "-m", "functions_host", "--app-dir", str(app_dir), "--port", "0"],
            cwd=ROOT,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        with process.stdout as stdout:
            for line in stdout:
                lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    return HostProcess(process, lines, reader, stderr_path)


def write_app(app_dir: Path, source: str, host_json: dict[str, Any]) -> Path:
    app_dir.mkdir(parents=True, exist_ok=True)
    (app_dir / "function_app.py").write_text(source, encoding="utf-8")
    (app_dir / "host.json").write_text(json.dumps(host_json), encoding="utf-8")
    return app_dir


@pytest.fixture(scope="module")
def probe_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    """The probe app served by ``python -m functions_host`` with the probe's app settings."""
    app_dir = write_app(tmp_path_factory.mktemp("probe_app"), PROBE_APP, PROBE_HOST_JSON)
    host = launch(app_dir, PROBE_SETTINGS)
    try:
        host.wait_for("Listening on")
        yield host
    finally:
        host.stop()


@pytest.fixture(scope="module")
def probe_url(probe_host: HostProcess) -> str:
    return probe_host.url


@pytest.fixture
def client(probe_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=probe_url + "/probe", timeout=15) as client:
        yield client


def seen(response: httpx.Response) -> dict[str, Any]:
    """The probe's echo of the request, asserting the function answered."""
    assert response.status_code == 200, (response.status_code, response.content[:200])
    document: dict[str, Any] = response.json()
    return document


# --- raw sockets, where httpx would normalise the request ---------------------------------------


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)

    def json(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.body)
        return document


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def raw_request(url: str, request: bytes, *, timeout: float = 15.0) -> RawResponse:
    """Send ``request`` verbatim, read until the server closes, parse the response."""
    received = b""
    with socket.create_connection(_address(url), timeout=timeout) as connection:
        connection.sendall(request)
        with contextlib.suppress(ConnectionResetError):
            while data := connection.recv(65536):
                received += data
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = [(name, value.strip()) for name, _, value in (line.partition(":") for line in header_lines)]
    return RawResponse(int(status_line.split()[1]), headers, body)


def raw_get(url: str, target: str) -> RawResponse:
    return raw_request(
        url, f"GET {target} HTTP/1.1\r\nHost: probe.test\r\nConnection: close\r\n\r\n".encode()
    )


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


# --- routing (functions_host.routing) -----------------------------------------------------------


def test_routes_are_tried_in_function_name_order_and_a_literal_does_not_win(client: httpx.Client) -> None:
    """Function-name order, first match wins; a literal does not beat a parameter.

    Source: ``WebScriptHostHttpRoutesManager`` / ``WebJobsRouter`` (azure-notes §6.2). ``a_item``
    (``items/{id}``, GET) sorts before ``b_search`` (``items/.search``, GET and POST), though it is
    registered after it.
    """
    get = seen(client.get("/items/.search"))
    assert (get["function"], get["route_params"]) == ("a_item", {"id": ".search"})
    # a_item's method constraint does not admit POST, so the next route in order answers.
    assert seen(client.post("/items/.search", content=b"{}"))["function"] == "b_search"


def test_function_names_sort_ordinal_ignore_case(client: httpx.Client) -> None:
    """Routes are ordered by ``StringComparer.OrdinalIgnoreCase`` (upper-cased ordinal comparison).

    Source: the host sorts function metadata with ``StringComparer.OrdinalIgnoreCase`` before it
    builds the route table (azure-notes §6.2). ``Sort_p`` (``sort/{p}``) and ``sorta``
    (``sort/literal``) both match ``/sort/literal``. Case-sensitive ordinal order puts ``Sort_p``
    first ('S' < 's'), so does lower-casing ('_' < 'a'); only upper-casing puts ``SORTA`` before
    ``SORT_P`` ('A' < '_').
    """
    assert seen(client.get("/sort/literal"))["function"] == "sorta"
    assert seen(client.get("/sort/other"))["route_params"] == {"p": "other"}


def test_a_catch_all_named_to_sort_last_takes_only_what_no_other_route_matches(client: httpx.Client) -> None:
    """``zz_catch_all`` (``{*rest}``, GET), registered first, sorts last: it gets only what no other route takes.

    Source: function-name order (``WebScriptHostHttpRoutesManager``; azure-notes §1.2, §6.2).
    """
    assert seen(client.get("/items/7"))["function"] == "a_item"
    fallback = seen(client.get("/no/such/path"))
    assert (fallback["function"], fallback["route_params"]) == ("zz_catch_all", {"rest": "no/such/path"})


def test_route_literals_match_case_insensitively(probe_url: str) -> None:
    """Templates match case-insensitively, the route prefix included (ASP.NET routing; ``functions_host.routing``)."""
    upper = raw_get(probe_url, "/PROBE/ITEMS/Abc").json()
    assert (upper["function"], upper["route_params"]) == ("a_item", {"id": "Abc"})
    mixed = raw_get(probe_url, "/Probe/Items/.SEARCH").json()
    assert (mixed["function"], mixed["route_params"]) == ("a_item", {"id": ".SEARCH"})


def test_a_method_the_route_does_not_list_gets_an_empty_404_not_405(client: httpx.Client) -> None:
    """A template match whose method constraint fails is no match: empty 404, no ``Allow``.

    Source: ``HttpMethodRouteConstraint`` added only when ``methods`` is set
    (``WebScriptHostHttpRoutesManager``; azure-notes §1.2, §6.2); ``functions_host.server``: 404
    when no route matches the path and method.
    """
    for method in ("PUT", "DELETE", "PATCH", "POST"):
        response = client.request(method, "/items/7", content=b"x" if method != "DELETE" else None)
        assert (response.status_code, response.content) == (404, b""), method
        assert "allow" not in response.headers
        assert "content-type" not in response.headers


def test_head_and_options_are_404_unless_the_route_lists_them(client: httpx.Client) -> None:
    """No HEAD-for-GET and no automatic OPTIONS: both get the host's empty 404.

    Source: azure-notes §6.2 ("HEAD/OPTIONS on routes that do not list them: empty 404");
    ``functions_host.routing`` (the method constraint matches exactly the listed methods).
    A route without ``methods`` has no constraint and takes them.
    """
    assert client.get("/items/7").status_code == 200
    for method in ("HEAD", "OPTIONS"):
        response = client.request(method, "/items/7")
        assert (response.status_code, response.content) == (404, b""), method
        assert client.request(method, "/any").status_code == 200, method
    assert seen(client.options("/any"))["method"] == "OPTIONS"


def test_one_trailing_slash_is_ignored(client: httpx.Client) -> None:
    """``/echo/x/`` routes as ``/echo/x``; a second slash does not (ASP.NET routing; azure-notes §6.2)."""
    echoed = seen(client.get("/echo/x/"))
    assert (echoed["function"], echoed["route_params"]) == ("echo", {"id": "x"})
    assert seen(client.get("/echo/x//"))["function"] == "zz_catch_all"


def test_an_encoded_slash_is_not_decoded(probe_url: str) -> None:
    """``%2F`` stays ``%2F`` inside its segment; other escapes are decoded before routing.

    Source: Kestrel never decodes ``%2F`` in a path (``functions_host.routing.routing_path``;
    azure-notes §6.2).
    """
    slash = raw_get(probe_url, "/probe/echo/a%2Fb").json()
    assert (slash["function"], slash["route_params"]) == ("echo", {"id": "a%2Fb"})
    assert slash["url"] == "http://probe.test/probe/echo/a%2Fb"
    space = raw_get(probe_url, "/probe/echo/a%20b").json()
    assert (space["function"], space["route_params"]) == ("echo", {"id": "a b"})


# --- the request the function receives (functions_host.http) ------------------------------------


def test_the_body_is_forwarded_only_with_a_content_length(client: httpx.Client, probe_url: str) -> None:
    """A chunked request (no ``Content-Length``) reaches the function with an empty body.

    Source: Azure/azure-functions-host#4926 and #7930 (``functions_host.http``; azure-notes §6.2).
    The function still sees the ``transfer-encoding`` header.
    """
    sized = seen(client.post("/echo/1", content=b"hello"))
    assert sized["body"] == "hello"
    chunked = raw_request(
        probe_url,
        b"POST /probe/echo/2 HTTP/1.1\r\nHost: probe.test\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    assert chunked.status == 200
    document = chunked.json()
    assert document["body"] == ""
    assert document["headers"]["transfer-encoding"] == "chunked"
    streamed = seen(client.post("/echo/3", content=iter([b"hel", b"lo"])))  # httpx sends it chunked
    assert (streamed["body"], streamed["headers"].get("transfer-encoding")) == ("", "chunked")


def test_repeated_query_keys_are_joined_with_commas_case_insensitively(probe_url: str) -> None:
    """``?tag=a&Tag=b`` arrives as one key with ``a,b``; ``+`` and escapes decoded; ``url`` raw.

    Source: ASP.NET's case-insensitive query collection and ``StringValues.ToString``
    (``functions_host.http``; azure-notes §6.2).
    """
    query = "tag=a&Tag=b&TAG=c&filter=userName+eq+%22a%40b.c%22"
    document = raw_get(probe_url, f"/probe/echo/q?{query}").json()
    values = {key.lower(): value for key, value in document["query"].items()}
    assert len(document["query"]) == 2, document["query"]
    assert values == {"tag": "a,b,c", "filter": 'userName eq "a@b.c"'}
    assert document["url"] == f"http://probe.test/probe/echo/q?{query}"


def test_query_keys_with_empty_values_are_dropped(probe_url: str) -> None:
    """``?empty=&flag&kept=1`` arrives as ``{"kept": "1"}``.

    Source: the Python worker announces no nullable types, so the host skips empty strings
    (``functions_host.http``; azure-notes §6.2).
    """
    document = raw_get(probe_url, "/probe/echo/q?empty=&flag&kept=1").json()
    assert document["query"] == {"kept": "1"}


def test_repeated_headers_are_joined_and_names_lower_cased(client: httpx.Client) -> None:
    """Header names arrive lower-cased; a repeated header once, its values joined with ``,``.

    Source: ``StringValues.ToString`` in the host's ``RpcMessageConversionExtensions``
    (``functions_host.http``; azure-notes §6.2).
    """
    headers = [("X-Multi", "a"), ("x-multi", "b"), ("X-MULTI", "c"), ("X-Upper-Case", "V")]
    received = seen(client.get("/echo/h", headers=headers))["headers"]
    assert received["x-multi"] == "a,b,c"
    assert received["x-upper-case"] == "V"
    assert all(name == name.lower() for name in received)


def test_the_function_sees_method_url_and_route_params(client: httpx.Client, probe_url: str) -> None:
    """``method`` as sent, ``url`` as scheme://host/path?query, ``params`` the route values (``functions_host.http``)."""
    echoed = seen(client.patch("/echo/42?x=1", content=b"{}"))
    assert echoed["method"] == "PATCH"
    assert echoed["url"] == f"{probe_url}/probe/echo/42?x=1"
    assert echoed["route_params"] == {"id": "42"}


# --- responses and failures (functions_host.server, functions_host.config) ----------------------


def test_custom_headers_are_added_to_every_response(client: httpx.Client) -> None:
    """host.json ``customHeaders`` on 200, 404 and 500 alike.

    Source: Microsoft Learn *host.json reference* (``extensions.http.customHeaders``);
    ``functions_host.config`` and ``functions_host.server`` (azure-notes §6.2: 404s included).
    """
    responses = {
        200: client.get("/items/1"),
        404: client.delete("/items/1"),
        500: client.get("/boom"),
    }
    for status, response in responses.items():
        assert response.status_code == status
        assert response.headers.get("x-content-type-options") == "nosniff", status


def test_a_body_over_the_host_limit_is_an_empty_500_and_the_function_is_not_invoked(
    client: httpx.Client,
) -> None:
    """Above ``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT`` (1024 here): empty 500, not 413, no invocation.

    Source: Azure/azure-functions-host#10519 (``functions_host.server``; azure-notes §1.5, §6.2).
    """
    at_limit = seen(client.post("/items/.search", content=b"a" * 1024))
    assert len(at_limit["body"]) == 1024
    before = client.get("/calls").json()
    over = client.post("/items/.search", content=b"b" * 1025)
    assert (over.status_code, over.content) == (500, b"")
    assert over.headers.get("x-content-type-options") == "nosniff"
    assert client.get("/calls").json() == before


def test_an_announced_oversized_body_is_refused_without_reading_it(probe_url: str) -> None:
    """A 50 MB ``Content-Length`` is refused at once (empty 500) and the connection closed, unread.

    Source: ``functions_host.server`` (the body is not read above the limit; Azure/azure-functions-host#10519).
    """
    head = (
        b"POST /probe/items/.search HTTP/1.1\r\nHost: probe.test\r\n"
        b"Content-Length: 50000000\r\nContent-Type: application/json\r\n\r\n"
    )
    received, elapsed = _exchange(probe_url, [head])  # not one byte of the body is sent
    assert received.startswith(b"HTTP/1.1 500 "), received[:80]
    assert received.endswith(b"\r\n\r\n"), received[-80:]  # an empty body
    assert elapsed < 5.0, elapsed


def test_a_raising_function_is_an_empty_500(client: httpx.Client, probe_host: HostProcess) -> None:
    """A function that raises gives an empty 500; the runtime logs the traceback.

    Source: ``functions_host.server`` (the runtime's failed invocation; azure-notes §6.2).
    """
    response = client.get("/boom")
    assert (response.status_code, response.content) == (500, b"")
    assert "content-type" not in response.headers
    deadline = time.monotonic() + 5
    while "probe failure 7f3a" not in probe_host.stderr() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "probe failure 7f3a" in probe_host.stderr()


def test_an_invocation_over_function_timeout_is_an_empty_500(client: httpx.Client) -> None:
    """host.json ``functionTimeout`` (2 s here) ends the invocation with an empty 500.

    Source: ``functions_host.server`` and ``functions_host.config`` (Microsoft Learn *host.json
    reference*, ``functionTimeout``).
    """
    started = time.monotonic()
    response = client.get("/slow")
    assert (response.status_code, response.content) == (500, b"")
    assert 1.5 < time.monotonic() - started < 10


# --- how functions run (functions_host.worker) --------------------------------------------------


def test_async_functions_share_one_event_loop_across_requests(client: httpx.Client) -> None:
    """``async def`` functions run on the worker's one event loop, request after request.

    Source: ``functions_host.worker`` (``invocation_request_native`` awaits them on the worker's
    loop, as in Azure; azure-notes §5.7).
    """
    echoes = [seen(client.get(f"/items/{n}")) for n in range(4)]
    echoes.append(seen(client.put("/echo/5", content=b"x")))
    assert len({echo["loop"] for echo in echoes}) == 1
    assert None not in {echo["loop"] for echo in echoes}
    assert len({echo["thread"] for echo in echoes}) == 1  # the loop's one thread


def test_sync_functions_run_in_the_runtimes_thread_pool(client: httpx.Client) -> None:
    """``def`` functions run on the runtime's thread pool, never on the event loop's thread.

    Source: ``functions_host.worker`` (``run_in_executor`` on the pool of
    ``azure_functions_runtime.start_threadpool_executor``).
    """
    loop_thread = seen(client.get("/items/1"))["thread"]
    for _ in range(3):
        sync = seen(client.post("/items/.search", content=b"{}"))
        assert sync["thread"] != loop_thread
        assert sync["loop"] is None  # no event loop runs in that thread
        assert sync["thread_name"].startswith("ThreadPoolExecutor-"), sync["thread_name"]


def test_the_timer_fires_on_its_schedule(client: httpx.Client) -> None:
    """``*/1 * * * * *`` fires every second, not past due.

    Source: ``functions_host.timers`` (Microsoft Learn *Timer trigger for Azure Functions*, NCRONTAB).
    """
    first = client.get("/ticks").json()
    time.sleep(3.5)
    ticks = client.get("/ticks").json()
    new = ticks[len(first) :]
    assert len(new) >= 2, ticks
    gaps = [later["at"] - earlier["at"] for earlier, later in itertools.pairwise(ticks)]
    assert all(0.5 < gap < 1.6 for gap in gaps[-2:]), gaps
    assert not any(tick["past_due"] for tick in new)


def test_a_disabled_function_is_not_routed(client: httpx.Client) -> None:
    """``AzureWebJobs_disabled_probe_Disabled=true``: POST /off gets the empty 404.

    Source: ``functions_host.config.is_disabled`` (Microsoft Learn *How to disable functions*;
    azure-notes §6.2).
    """
    response = client.post("/off", content=b"x")
    assert (response.status_code, response.content) == (404, b"")
    assert "disabled_probe" not in client.get("/calls").json()
    assert seen(client.post("/echo/on", content=b"x"))["function"] == "echo"  # POST is routed


def test_an_absolute_form_request_target_is_routed_by_its_path(probe_url: str) -> None:
    """``GET http://host/probe/echo/x`` routes as ``/probe/echo/x``.

    Source: RFC 9112 §3.2.2 (a server MUST accept the absolute-form); Kestrel does, and routes by
    its path.
    """
    response = raw_get(probe_url, f"{probe_url}/probe/echo/x")
    assert response.status == 200, response.status
    document = response.json()
    assert (document["function"], document["route_params"]) == ("echo", {"id": "x"})


# --- start-up (functions_host.server, functions_host.__main__) ----------------------------------


def test_the_host_answers_503_while_the_app_is_indexed(tmp_path: Path) -> None:
    """The port is bound before indexing; until the app is indexed every request gets an empty 503.

    Source: azure-notes §6.2 ("while the host starts or after a failed start: 503");
    ``functions_host.__main__`` binds the ``Listener`` before ``FunctionsHost.start``.
    """
    app_dir = write_app(tmp_path / "slow", SLOW_START_APP, PROBE_HOST_JSON)
    host = launch(app_dir)
    try:
        host.wait_for("Starting on")
        started = time.monotonic()
        early = httpx.get(f"{host.url}/probe/ready", timeout=10)
        assert time.monotonic() - started < 1.5, "the 503 must come before indexing ends"
        assert (early.status_code, early.content) == (503, b"")
        assert early.headers.get("x-content-type-options") == "nosniff"
        host.wait_for("Listening on")
        ready = httpx.get(f"{host.url}/probe/ready", timeout=10)
        assert (ready.status_code, ready.text) == (200, "ready")
    finally:
        host.stop()


def _scratch_copy_of_the_real_app(target: Path) -> Path:
    target.mkdir()
    shutil.copy(ROOT / "function_app.py", target)
    shutil.copy(ROOT / "host.json", target)
    shutil.copytree(ROOT / "scim", target / "scim", ignore=shutil.ignore_patterns("__pycache__"))
    return target


def _exits_with_error(app_dir: Path) -> str:
    host = launch(app_dir)
    try:
        status = host.process.wait(timeout=START_TIMEOUT_S)
    finally:
        host.stop()
    stdout = "".join(line for line in iter(host.lines.get, None))
    assert status == 1, (status, host.stderr())
    assert "Listening on" not in stdout
    return host.stderr()


def test_an_app_the_runtime_refuses_at_indexing_exits_1_with_the_runtimes_message(tmp_path: Path) -> None:
    """A trigger parameter annotated with the wrong type: the runtime refuses the app, exit 1.

    Source: ``azure_functions_runtime.functions.FunctionInfo.validate_function_params`` (the same
    check refuses the app in Azure); ``functions_host.worker.IndexingError``, ``functions_host.__main__``.
    """
    app_dir = _scratch_copy_of_the_real_app(tmp_path / "broken")
    source = (app_dir / "function_app.py").read_text(encoding="utf-8")
    good = "def health(req: func.HttpRequest) -> func.HttpResponse:"
    assert source.count(good) == 1
    (app_dir / "function_app.py").write_text(
        source.replace(good, "def health(req: func.TimerRequest) -> func.HttpResponse:"), encoding="utf-8"
    )
    stderr = _exits_with_error(app_dir)
    assert "error: the function app in" in stderr
    assert "FunctionLoadError: cannot load the health function" in stderr
    assert "TimerRequest" in stderr


def test_a_route_the_host_reserves_puts_that_function_in_error_and_serves_the_others(tmp_path: Path) -> None:
    """A route under ``admin`` is the host's own API: that function is in error, the rest are served.

    Source: ``ScriptHost.ValidateHttpFunction`` ("conflicts with one or more built in routes"),
    caught and logged per function by ``ScriptHost.GetFunctionDescriptors`` (azure-notes §6.2).
    """
    source = PROBE_APP.replace('route="boom"', 'route="admin/boom"')
    app_dir = write_app(tmp_path / "reserved", source, PROBE_HOST_JSON)
    host = launch(app_dir)
    try:
        host.wait_for("Listening on")
        # boom is not routed: its path falls through to the catch-all, which the host still serves.
        assert httpx.get(f"{host.url}/probe/admin/boom", timeout=10).json()["function"] == "zz_catch_all"
        assert httpx.get(f"{host.url}/probe/items/7", timeout=10).status_code == 200
    finally:
        host.stop()
    assert "function boom is in error and not served: the route 'admin/boom' conflicts" in host.stderr()


# --- the real app in-process: slow clients and the request log (functions_host.server) ----------


@pytest.fixture(scope="module")
def strict_url() -> Iterator[str]:
    """``function_app.py`` behind a listener with short header and body deadlines."""
    with serve_in_thread(function_app_host(), header_timeout=1.0, read_timeout=2.0, body_timeout=1.0) as url:
        yield url


def test_headers_trickled_slowly_are_cut_off_at_the_header_deadline(strict_url: str) -> None:
    """Request line and headers must arrive within the header deadline (slowloris guard).

    Source: ``functions_host.server`` (``HEADER_TIMEOUT_S``; Kestrel's ``RequestHeadersTimeout``).
    """
    request_line = b"GET /scim/health HTTP/1.1\r\nHost: x\r\n"
    trickle = [b"X-Slow-%d: y\r\n" % n for n in range(40)]  # 40 x 0.25 s: 10 s if never cut
    received, elapsed = _exchange(strict_url, [request_line, *trickle], pause=0.25)
    assert elapsed < 5.0, elapsed  # each read arrives well within read_timeout: only the deadline cuts
    assert received == b"" or received.startswith(b"HTTP/1.1 408"), received[:80]


def test_a_body_trickled_slowly_gets_408(strict_url: str) -> None:
    """The body must arrive within the body deadline, else 408 and no invocation.

    Source: ``functions_host.server`` (``BODY_TIMEOUT_S``; Kestrel's ``MinRequestBodyDataRate``).
    """
    head = b"POST /scim/v2/Users/.search HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n"
    received, elapsed = _exchange(strict_url, [head, *[b"a"] * 40], pause=0.25)
    assert received.startswith(b"HTTP/1.1 408"), received[:80]
    assert elapsed < 5.0, elapsed


def test_request_paths_are_logged_sanitised_and_bounded(
    strict_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The logged path has control characters escaped and is cut at 120 characters (``functions_host.server``)."""
    caplog.set_level(logging.INFO, logger="functions_host")
    forged = "/scim/nothing/x%0d%0aINFO forged 200 1.0ms%1b[2J" + "y" * 5000
    assert httpx.get(strict_url + forged).status_code == 404
    lines = [r.getMessage() for r in caplog.records if r.name == "functions_host"]
    line = next(line for line in lines if "/scim/nothing/x" in line)
    assert not any(ch in line for ch in "\r\n\x1b")
    assert len(line) < 300, len(line)
    assert line.startswith("GET /scim/nothing/x") and " 404 " in line


def test_one_log_line_per_request_without_query_or_headers(
    strict_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Only method, path, status and duration are logged: never the query or headers (``functions_host.server``)."""
    caplog.set_level(logging.INFO, logger="functions_host")
    response = httpx.get(
        strict_url + "/scim/nothing?filter=secretish", headers={"Authorization": "Bearer s3cret"}
    )
    assert response.status_code == 404
    messages = [r.getMessage() for r in caplog.records if r.name == "functions_host"]
    assert len(messages) == 1, messages
    assert re.fullmatch(r"GET /scim/nothing 404 \d+\.\dms", messages[0]), messages[0]


# --- the Host header through the host to ScimApi ----------------------------------------------


def _service_provider_config(tenant_url: str, host: bytes) -> tuple[int, dict[str, Any]]:
    """GET /ServiceProviderConfig over a raw socket with ``host`` sent verbatim as the Host header."""
    head = (
        b"GET /scim/v2/ServiceProviderConfig HTTP/1.1\r\nHost: " + host + b"\r\n"
        b"Authorization: Bearer " + TOKEN.encode() + b"\r\nConnection: close\r\n\r\n"
    )
    response = raw_request(tenant_url.removesuffix("/scim/v2"), head)
    return response.status, response.json() if response.body else {}


def test_a_well_formed_host_header_gives_meta_location(http_base_url: str) -> None:
    """The host builds the function's ``url`` from the Host header (``GetDisplayUrl``; ``functions_host.http``)."""
    status, document = _service_provider_config(http_base_url, b"scim.corp.example:8443")
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
def test_a_hostile_host_header_is_never_reflected(http_base_url: str, host: bytes) -> None:
    """A Host header that is not a plain host[:port] never reaches ``meta.location``.

    Kestrel refuses an invalid Host with 400 (RFC 9112 §3.2); whatever the host lets through,
    ``ScimApi._base_url`` must not reflect.
    """
    status, document = _service_provider_config(http_base_url, host)
    assert status in (200, 400), status
    if status == 200:
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
async def test_the_path_prefix_of_meta_location_is_path_safe(store: Any, base: str, expected: str) -> None:
    """Only a path-safe prefix of the request URL is reused in ``meta.location`` (``ScimApi._base_url``)."""
    client = ScimClient(ScimApi(make_settings(store), store.repository), base=base)
    response = await client.get("/ServiceProviderConfig")
    assert response.status == 200
    assert response.json()["meta"]["location"] == f"{expected}/ServiceProviderConfig"
