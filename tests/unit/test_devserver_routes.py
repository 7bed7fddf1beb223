"""The development host emulator (tools.devserver), driven through werkzeug's test client.

No sockets: requests go straight into the WSGI application. The probe app below is built for these
tests only; it mirrors the shape of the SCIM route table (azure-notes §1.2).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.decorators.function_app import Function
from werkzeug.test import Client, TestResponse

from tools.devserver import (
    DEFAULT_MAX_BODY_BYTES,
    HostEmulator,
    read_route_prefix,
    request_body_limit,
)

probe = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
GET, POST, PUT, PATCH, DELETE = (
    func.HttpMethod.GET,
    func.HttpMethod.POST,
    func.HttpMethod.PUT,
    func.HttpMethod.PATCH,
    func.HttpMethod.DELETE,
)


def _echo(name: str, req: func.HttpRequest, **extra: Any) -> func.HttpResponse:
    document = {
        "function": name,
        "method": req.method,
        "url": req.url,
        "params": dict(req.params),
        "route_params": dict(req.route_params),
        "authorization": req.headers.get("authorization"),
        "body": req.get_body().decode(),
        "thread": threading.get_ident(),
        **extra,
    }
    return func.HttpResponse(
        json.dumps(document),
        status_code=200,
        headers={"ETag": 'W/"1"', "X-Probe": name},
        mimetype="application/scim+json",
    )


async def _async_echo(name: str, req: func.HttpRequest) -> func.HttpResponse:
    await asyncio.sleep(0)
    return _echo(name, req, loop=id(asyncio.get_running_loop()))


@probe.route(route="v2/Users", methods=[GET, POST])
async def users_collection(req: func.HttpRequest) -> func.HttpResponse:
    return await _async_echo("users_collection", req)


@probe.route(route="v2/Users/{id}", methods=[GET, PATCH, DELETE])
async def users_item(req: func.HttpRequest) -> func.HttpResponse:
    return await _async_echo("users_item", req)


@probe.route(route="v2/Users/.search", methods=[POST])
def users_search(req: func.HttpRequest) -> func.HttpResponse:
    return _echo("users_search", req)


@probe.route(route="v2/ResourceTypes/{id?}", methods=[GET])
def resource_types(req: func.HttpRequest) -> func.HttpResponse:
    return _echo("resource_types", req)


@probe.route(route="v2/Groups/{id:guid}", methods=[GET])
def groups_item(req: func.HttpRequest) -> func.HttpResponse:
    return _echo("groups_item", req)


@probe.route(route="v2/Pages/{n:int}/{*rest}", methods=[GET])
def pages(req: func.HttpRequest) -> func.HttpResponse:
    return _echo("pages", req)


@probe.route(route="v2/Codes/{code:regex(^[a-z]{{3}}$)}", methods=[GET])
def codes(req: func.HttpRequest) -> func.HttpResponse:
    return _echo("codes", req)


@probe.route(route="v2/Any")  # no methods: every verb
def any_method(req: func.HttpRequest) -> func.HttpResponse:
    return _echo("any_method", req)


@probe.route(route="v2/Plain", methods=[GET])
def plain(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("plain text", status_code=202)


@probe.route(route="v2/Boom", methods=[GET])
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("probe failure")


# Registered literal-first on purpose: only "sorted by function name" makes the parameter win.
@probe.route(route="v2/Order/literal", methods=[GET])
def b_order_literal(req: func.HttpRequest) -> func.HttpResponse:
    return _echo("b_order_literal", req)


@probe.route(route="v2/Order/{x}", methods=[GET])
def a_order_param(req: func.HttpRequest) -> func.HttpResponse:
    return _echo("a_order_param", req)


@pytest.fixture(scope="module")
def functions() -> list[Function]:
    # get_functions() raises on a second call for the same app (azure-notes §1.6).
    return probe.get_functions()


@pytest.fixture(scope="module")
def emulator(functions: list[Function]) -> Iterator[HostEmulator]:
    with HostEmulator(functions=functions, route_prefix="scim", max_body_bytes=64) as emulator:
        yield emulator


@pytest.fixture
def client(emulator: HostEmulator) -> Client:
    return Client(emulator)


def body(response: TestResponse) -> dict[str, Any]:
    assert response.status_code == 200, response.status_code
    document: dict[str, Any] = json.loads(response.get_data())
    return document


# --- routing ---------------------------------------------------------------------------------


def test_routes_are_sorted_by_function_name(emulator: HostEmulator) -> None:
    names = [route.function_name for route in emulator.routes]
    assert names == sorted(names, key=str.casefold)
    assert names[:2] == ["a_order_param", "any_method"]


def test_the_route_whose_function_name_sorts_first_wins(client: Client) -> None:
    # b_order_literal was registered first and is a literal, yet a_order_param wins.
    assert body(client.get("/scim/v2/Order/literal"))["function"] == "a_order_param"


def test_collection_and_item_routes(client: Client) -> None:
    assert body(client.get("/scim/v2/Users"))["function"] == "users_collection"
    assert body(client.post("/scim/v2/Users", data=b"{}"))["function"] == "users_collection"
    item = body(client.delete("/scim/v2/Users/7f1c"))
    assert item["function"] == "users_item"
    assert item["route_params"] == {"id": "7f1c"}


def test_literals_match_case_insensitively(client: Client) -> None:
    assert body(client.get("/SCIM/V2/users"))["function"] == "users_collection"
    assert body(client.post("/scim/v2/uSeRs/.SEARCH"))["function"] == "users_search"


def test_dot_search_post_goes_to_search_and_get_goes_to_the_item(client: Client) -> None:
    assert body(client.post("/scim/v2/Users/.search"))["function"] == "users_search"
    item = body(client.get("/scim/v2/Users/.search"))
    assert item["function"] == "users_item"
    assert item["route_params"] == {"id": ".search"}


def test_template_match_with_a_method_no_route_allows_is_404(client: Client) -> None:
    response = client.put("/scim/v2/Users/7f1c", data=b"{}")
    assert response.status_code == 404
    assert response.get_data() == b""


def test_route_without_methods_accepts_every_method(client: Client) -> None:
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        assert body(client.open("/scim/v2/Any", method=method))["method"] == method


def test_optional_parameter(client: Client) -> None:
    assert body(client.get("/scim/v2/ResourceTypes"))["route_params"] == {}
    assert body(client.get("/scim/v2/ResourceTypes/User"))["route_params"] == {"id": "User"}
    assert client.get("/scim/v2/ResourceTypes/User/extra").status_code == 404


def test_guid_constraint(client: Client) -> None:
    guid = "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert body(client.get(f"/scim/v2/Groups/{guid.upper()}"))["route_params"] == {"id": guid.upper()}
    assert client.get("/scim/v2/Groups/not-a-guid").status_code == 404


def test_int_constraint_and_catch_all(client: Client) -> None:
    assert body(client.get("/scim/v2/Pages/3"))["route_params"] == {"n": "3"}
    assert body(client.get("/scim/v2/Pages/3/a/b"))["route_params"] == {"n": "3", "rest": "a/b"}
    assert client.get("/scim/v2/Pages/three").status_code == 404
    assert client.get("/scim/v2/Pages/99999999999").status_code == 404  # beyond Int32


def test_regex_constraint(client: Client) -> None:
    assert body(client.get("/scim/v2/Codes/abc"))["route_params"] == {"code": "abc"}
    assert client.get("/scim/v2/Codes/abcd").status_code == 404


def test_unknown_path_and_missing_prefix_are_empty_404s(client: Client) -> None:
    for path in ("/scim/v2/Nope", "/v2/Users", "/", "/scim/v2/Users/a/b"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.get_data() == b""
        assert "Content-Type" not in response.headers


def test_route_prefix_can_be_empty(functions: list[Function]) -> None:
    with HostEmulator(functions=functions, route_prefix="") as emulator:
        assert body(Client(emulator).get("/v2/ResourceTypes"))["function"] == "resource_types"
        assert Client(emulator).get("/scim/v2/ResourceTypes").status_code == 404


def test_unemulated_constraint_is_refused_at_construction() -> None:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="when/{d:datetime}", methods=[GET])
    def when(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse()

    with pytest.raises(ValueError, match="datetime"):
        HostEmulator(app, route_prefix="api")


def test_app_or_functions_but_not_both(functions: list[Function]) -> None:
    with pytest.raises(TypeError):
        HostEmulator(route_prefix="api")
    with pytest.raises(TypeError):
        HostEmulator(probe, route_prefix="api", functions=functions)


# --- the request the function sees -------------------------------------------------------------


def test_query_is_decoded_and_url_keeps_it_raw(client: Client) -> None:
    seen = body(client.get("/scim/v2/Users?filter=userName+eq+%22a%40b.c%22&count=1&count=2"))
    assert seen["params"] == {"filter": 'userName eq "a@b.c"', "count": "2"}
    assert seen["url"] == "http://localhost/scim/v2/Users?filter=userName+eq+%22a%40b.c%22&count=1&count=2"


def test_headers_and_body_reach_the_function(client: Client) -> None:
    seen = body(
        client.patch(
            "/scim/v2/Users/42",
            data=b'{"Operations":[]}',
            headers={"Authorization": "Bearer s3cret", "Content-Type": "application/scim+json"},
        )
    )
    assert seen["authorization"] == "Bearer s3cret"
    assert seen["body"] == '{"Operations":[]}'
    assert seen["method"] == "PATCH"


def test_body_limit(client: Client) -> None:
    assert client.post("/scim/v2/Users", data=b"x" * 64).status_code == 200
    response = client.post("/scim/v2/Users", data=b"x" * 65)
    assert response.status_code == 413
    assert response.get_data() == b""


def test_body_limit_without_content_length(client: Client) -> None:
    # A chunked request has no Content-Length: the limit applies while reading.
    def chunked(data: bytes) -> TestResponse:
        return client.post(
            "/scim/v2/Users/.search",
            input_stream=io.BytesIO(data),
            headers={"Transfer-Encoding": "chunked"},
            environ_overrides={"wsgi.input_terminated": True},
        )

    assert body(chunked(b"y" * 64))["body"] == "y" * 64
    response = chunked(b"y" * 65)
    assert (response.status_code, response.get_data()) == (413, b"")


def test_body_limit_setting() -> None:
    assert request_body_limit({}) == DEFAULT_MAX_BODY_BYTES == 100 * 1024 * 1024
    assert request_body_limit({"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "1048576"}) == 1048576
    with pytest.raises(ValueError):
        request_body_limit({"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "1MB"})


def test_read_route_prefix(tmp_path: Path) -> None:
    host_json = tmp_path / "host.json"
    host_json.write_text('{"version": "2.0"}')
    assert read_route_prefix(host_json) == "api"
    host_json.write_text('{"extensions": {"http": {"routePrefix": ""}}}')
    assert read_route_prefix(host_json) == ""
    host_json.write_text('{"extensions": {"http": {"routePrefix": "scim"}}}')
    assert read_route_prefix(host_json) == "scim"


# --- the response the client sees --------------------------------------------------------------


def test_response_status_headers_and_content_type(client: Client) -> None:
    response = client.get("/scim/v2/Users/42")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/scim+json"
    assert response.headers["ETag"] == 'W/"1"'
    assert response.headers["X-Probe"] == "users_item"
    plain = client.get("/scim/v2/Plain")
    assert plain.status_code == 202
    assert plain.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert plain.get_data() == b"plain text"


def test_raising_function_is_an_empty_500_and_logged(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tools.devserver")
    response = client.get("/scim/v2/Boom")
    assert response.status_code == 500
    assert response.get_data() == b""
    assert any(r.exc_info and "probe failure" in str(r.exc_info[1]) for r in caplog.records)


def test_one_log_line_per_request_without_query_or_headers(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tools.devserver")
    client.get("/scim/v2/Users?filter=secretish", headers={"Authorization": "Bearer s3cret"})
    messages = [r.getMessage() for r in caplog.records if r.name == "tools.devserver"]
    assert len(messages) == 1
    assert messages[0].startswith("GET /scim/v2/Users 200 ")
    assert messages[0].endswith("ms")
    assert "secretish" not in messages[0]
    assert "s3cret" not in messages[0]


# --- execution model ---------------------------------------------------------------------------


def test_async_functions_share_one_event_loop_across_requests(client: Client) -> None:
    loops = {
        body(client.get("/scim/v2/Users"))["loop"],
        body(client.get("/scim/v2/Users/1"))["loop"],
        body(client.post("/scim/v2/Users"))["loop"],
        body(client.get("/scim/v2/Users/2"))["loop"],
    }
    assert len(loops) == 1


def test_async_functions_run_off_the_request_thread_and_sync_ones_on_it(client: Client) -> None:
    here = threading.get_ident()
    assert body(client.get("/scim/v2/Users"))["thread"] != here
    assert body(client.get("/scim/v2/ResourceTypes"))["thread"] == here


def test_closed_emulator_answers_async_routes_with_500(functions: list[Function]) -> None:
    emulator = HostEmulator(functions=functions, route_prefix="scim")
    client = Client(emulator)
    assert client.get("/scim/v2/Users").status_code == 200
    emulator.close()
    emulator.close()  # idempotent
    assert client.get("/scim/v2/Users").status_code == 500
    assert client.get("/scim/v2/ResourceTypes").status_code == 200  # sync still works
