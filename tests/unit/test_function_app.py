"""function_app.py: the route table as azure-functions-runtime indexes it, and triggers called directly.

No storage is touched: discovery and authentication failures never reach it,
and the table client is created lazily without network.
"""

from __future__ import annotations

import json

import azure.functions as func
import pytest

import function_app
from scim.config import Settings, token_digest
from scim.runtime import ROUTES, Runtime
from tests.conftest import TOKEN, function_app_host

BASE = "http://localhost:7071/scim/v2"
ALL = ("GET", "POST", "PUT", "PATCH", "DELETE")


def route_table():
    """Each HTTP trigger's route, methods and auth level, as the runtime reported them to the host."""
    worker = function_app_host().worker
    table = {}
    for function in worker.functions:
        trigger = function.trigger
        if trigger["type"] != "httpTrigger":
            continue
        table[function.name] = (
            trigger["route"],
            tuple(trigger["methods"]),
            trigger["authLevel"].lower(),
            function.is_async,
        )
    return table


def test_one_async_anonymous_trigger_per_scim_route_template():
    table = route_table()
    default = {
        name: row for name, row in table.items() if not name.startswith(("directory_", "zz_directory_"))
    }
    twins = {name: row for name, row in table.items() if name not in default}
    # Every SCIM route of the default directory has its twin under /scim/<directory>/v2 (issue 17).
    assert twins == {
        name.replace("zz_", "zz_directory_") if name.startswith("zz_") else f"directory_{name}": (
            "{directory}/" + route,
            methods,
            level,
            is_async,
        )
        for name, (route, methods, level, is_async) in default.items()
        if name != "health"
    }
    table = default
    assert table == {
        "users": ("v2/Users", ("GET", "POST", "PUT", "PATCH", "DELETE"), "anonymous", True),
        "user": ("v2/Users/{id}", ("GET", "PUT", "PATCH", "DELETE"), "anonymous", True),
        "groups": ("v2/Groups", ALL, "anonymous", True),
        "users_search": ("v2/Users/.search", ("POST",), "anonymous", True),
        "groups_search": ("v2/Groups/.search", ("POST",), "anonymous", True),
        "root_search": ("v2/.search", ("POST",), "anonymous", True),
        "bulk": ("v2/Bulk", ("POST",), "anonymous", True),
        "health": ("health", ("GET",), "anonymous", False),
        "group": ("v2/Groups/{id}", ("GET", "PUT", "PATCH", "DELETE"), "anonymous", True),
        "service_provider_config": ("v2/ServiceProviderConfig", ALL, "anonymous", True),
        "resource_types": ("v2/ResourceTypes/{id?}", ALL, "anonymous", True),
        "schemas": ("v2/Schemas/{id?}", ALL, "anonymous", True),
        "zz_unknown_endpoint": ("v2/{*path}", ALL, "anonymous", True),
    }
    assert {name.removeprefix("zz_") for name in table} == set(ROUTES) | {"health"}


def test_the_change_feed_relay_is_one_async_timer_trigger():
    worker = function_app_host().worker
    (timer,) = [f for f in worker.functions if f.trigger["type"] != "httpTrigger"]
    assert (timer.name, timer.trigger["type"]) == ("change_feed_relay", "timerTrigger")
    assert timer.trigger["schedule"] == "*/10 * * * * *"  # NCRONTAB with seconds: every 10 s
    assert timer.trigger["useMonitor"] is False  # no schedule blobs in AzureWebJobsStorage
    assert timer.is_async


@pytest.mark.parametrize(
    ("method", "path", "function"),
    [
        ("GET", "/scim/v2/Users", "users"),
        ("POST", "/scim/v2/users", "users"),
        ("PATCH", "/scim/v2/Users/abc", "user"),
        ("POST", "/scim/v2/Users/abc", "zz_unknown_endpoint"),
        ("POST", "/scim/v2/Users/.search", "users_search"),
        ("GET", "/scim/v2/Users/.search", "user"),
        ("POST", "/scim/v2/Groups/.search", "groups_search"),
        ("POST", "/scim/v2/.search", "root_search"),
        ("GET", "/scim/v2/.search", "zz_unknown_endpoint"),
        ("GET", "/scim/v2/Schemas", "schemas"),
        ("PATCH", "/scim/v2/Groups/abc", "group"),
        ("GET", "/scim/v2/groups", "groups"),
        ("GET", "/scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:User", "schemas"),
        ("DELETE", "/scim/v2/ServiceProviderConfig", "service_provider_config"),
        ("GET", "/scim/v2/ResourceTypes/User", "resource_types"),
        ("GET", "/scim/v2/Nope", "zz_unknown_endpoint"),
        ("GET", "/scim/acme/v2/Users", "directory_users"),
        ("PATCH", "/scim/acme/v2/Users/abc", "directory_user"),
        ("POST", "/scim/acme/v2/Users/abc", "zz_directory_unknown_endpoint"),
        ("POST", "/scim/acme/v2/Users/.search", "directory_users_search"),
        ("GET", "/scim/acme/v2/Users/.search", "directory_user"),
        ("POST", "/scim/acme/v2/.search", "directory_root_search"),
        ("GET", "/scim/acme/v2/Nope", "zz_directory_unknown_endpoint"),
        ("GET", "/scim/acme/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:User", "directory_schemas"),
    ],
)
def test_host_order_routes_every_request_to_its_trigger(method, path, function):
    """The host tries routes in function-name order (azure-notes §1.2): the catch-all must come last."""
    resolved = function_app_host().routes.resolve(method, path)
    assert resolved is not None and resolved[0].function_name == function


def test_host_json_puts_the_routes_under_scim():
    from pathlib import Path

    host = json.loads((Path(function_app.__file__).parent / "host.json").read_text())
    assert host["extensions"]["http"]["routePrefix"] == "scim"


@pytest.fixture
async def runtime(monkeypatch):
    settings = Settings(
        storage_connection_string="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
        "TableEndpoint=http://127.0.0.1:9/devstoreaccount1;",
        token_digests=(token_digest(TOKEN),),
    )
    runtime = Runtime(lambda: settings)
    monkeypatch.setattr(function_app, "runtime", runtime)
    yield runtime
    await runtime.aclose()


def request(method, path, *, token=TOKEN, route_params=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return func.HttpRequest(
        method, BASE + path, headers=headers, params={}, route_params=route_params or {}, body=b""
    )


async def test_triggers_serve_discovery(runtime):
    response = await function_app.service_provider_config(request("GET", "/ServiceProviderConfig"))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/scim+json"
    assert json.loads(response.get_body())["patch"] == {"supported": True}

    response = await function_app.schemas(request("GET", "/Schemas"))
    body = json.loads(response.get_body())
    assert body["totalResults"] == 3
    assert body["Resources"][0]["meta"]["location"].startswith(f"{BASE}/Schemas/")

    urn = "urn:ietf:params:scim:schemas:core:2.0:User"
    one = await function_app.schemas(request("GET", f"/Schemas/{urn}", route_params={"id": urn}))
    assert json.loads(one.get_body())["id"] == urn

    missing = await function_app.resource_types(
        request("GET", "/ResourceTypes/Nope", route_params={"id": "Nope"})
    )
    assert missing.status_code == 404
    assert json.loads(missing.get_body())["status"] == "404"


async def test_triggers_refuse_a_missing_or_wrong_token(runtime):
    for token in (None, "wrong"):
        response = await function_app.users(request("GET", "/Users", token=token))
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert json.loads(response.get_body())["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]


async def test_unconfigured_endpoint_says_what_is_missing(monkeypatch):
    runtime = Runtime(lambda: Settings())
    monkeypatch.setattr(function_app, "runtime", runtime)
    response = await function_app.users(request("GET", "/Users"))
    assert response.status_code == 503 and response.headers["Retry-After"] == "60"
    assert "SCIM_STORAGE_CONNECTION_STRING" in json.loads(response.get_body())["detail"]


AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@pytest.mark.parametrize(
    ("connection_string", "problem"),
    [
        ("garbage", "malformed"),
        (
            "AccountName=a;AccountKey=not base64!;TableEndpoint=http://127.0.0.1:9/a",
            "AccountKey is not base64",
        ),
        (
            f"AccountName=a;AccountKey={AZURITE_KEY};TableEndpoint=ftp://x",
            "TableEndpoint must be an http(s) URL",
        ),
        ("TableEndpoint=http://127.0.0.1:9/a", "neither AccountKey nor SharedAccessSignature"),
        (f"AccountKey={AZURITE_KEY}", "no AccountName"),
    ],
)
async def test_a_malformed_connection_string_is_a_503_naming_the_setting_and_health_says_so(
    monkeypatch, caplog, connection_string, problem
):
    """Not an empty 500 per request: a 503 that says what to fix, /scim/health agrees, logged once."""
    settings = Settings(storage_connection_string=connection_string, token_digests=(token_digest(TOKEN),))
    runtime = Runtime(lambda: settings)
    monkeypatch.setattr(function_app, "runtime", runtime)
    caplog.set_level("INFO", logger="scim.runtime")
    for _ in range(3):
        response = await function_app.users(request("GET", "/Users"))
        assert response.status_code == 503
        detail = json.loads(response.get_body())["detail"]
        assert "SCIM_STORAGE_CONNECTION_STRING" in detail and problem in detail
        assert AZURITE_KEY not in detail
    errors = [r for r in caplog.records if r.name == "scim.runtime" and r.levelname == "ERROR"]
    assert len(errors) == 1 and problem in errors[0].getMessage()
    health = function_app.health(request("GET", "/health", token=None))
    assert health.status_code == 503 and problem in json.loads(health.get_body())["detail"]


async def test_the_relay_logs_a_configuration_problem_once_not_every_tick(caplog):
    state = {"settings": Settings(storage_connection_string="garbage", token_digests=(token_digest(TOKEN),))}
    runtime = Runtime(lambda: state["settings"])
    caplog.set_level("INFO", logger="scim.runtime")
    for _ in range(3):
        assert not await runtime.relay_once()
    messages = [r.getMessage() for r in caplog.records if r.name == "scim.runtime"]
    assert len([m for m in messages if "not usable" in m]) == 1


async def test_a_short_token_is_served_with_a_loud_warning(caplog):
    settings = Settings.from_env(
        {"SCIM_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true", "SCIM_BEARER_TOKEN": "abc"}
    )
    assert settings.weak_tokens == ("SCIM_BEARER_TOKEN",)
    caplog.set_level("WARNING", logger="scim.runtime")
    runtime = Runtime(lambda: settings)
    runtime.api()
    await runtime.aclose()
    assert any("shorter than 32 characters" in r.getMessage() for r in caplog.records)
    strong = Settings.from_env({"SCIM_BEARER_TOKEN": "x" * 32})
    assert strong.weak_tokens == ()


async def test_unknown_endpoints_get_scim_errors(runtime):
    response = await function_app.zz_unknown_endpoint(request("GET", "/Nope", route_params={"path": "Nope"}))
    assert response.status_code == 404 and json.loads(response.get_body())["status"] == "404"
    search = await function_app.zz_unknown_endpoint(request("GET", "/.search"))
    assert search.status_code == 405
    wrong = await function_app.schemas(request("DELETE", "/Schemas"))
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "GET"


def test_health_needs_no_token_and_touches_no_storage(monkeypatch):
    configured = Runtime(
        lambda: Settings(storage_connection_string="UseDevelopmentStorage=true", token_digests=(b"x",))
    )
    monkeypatch.setattr(function_app, "runtime", configured)
    response = function_app.health(request("GET", "/health", token=None))
    assert response.status_code == 200 and json.loads(response.get_body()) == {"status": "ok"}
    monkeypatch.setattr(function_app, "runtime", Runtime(lambda: Settings()))
    response = function_app.health(request("GET", "/health", token=None))
    assert response.status_code == 503 and "SCIM_STORAGE" in json.loads(response.get_body())["detail"]
