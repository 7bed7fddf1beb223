"""The host rules of ``functions_host`` as pure functions: routing, HTTP conversion, settings, schedules.

No sockets and no subprocess (``tests/integration/test_functions_host.py`` runs the same rules over
real HTTP). Each test names the source of its rule as the ``functions_host`` module docstrings give
it (azure-notes §6.2). Requests and responses go through the converters of ``azure.functions``,
the ones ``azure-functions-runtime`` uses, so what is checked is what a function would see.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.http import HttpRequestConverter, HttpResponseConverter
from azure.functions.timer import TimerRequestConverter

from functions_host import HostStartupError
from functions_host.config import DEFAULT_BODY_LIMIT, HostConfig, body_size_limit, is_disabled
from functions_host.http import body_expected, header_values, query_values, request_datum, response_from_datum
from functions_host.routing import RouteTable, routing_path
from functions_host.timers import Schedule, _timer_datum
from functions_host.worker import Datum

ROOT = Path(__file__).resolve().parents[2]
ALL = ["GET", "POST", "PUT", "PATCH", "DELETE"]


# --- building route tables ----------------------------------------------------------------------


def trigger(route: str | None, methods: list[str] | None = None, name: str = "req") -> dict[str, Any]:
    """An ``httpTrigger`` binding as the runtime reports it (``route``/``methods`` only when set)."""
    binding: dict[str, Any] = {"type": "httpTrigger", "direction": "in", "name": name}
    if route is not None:
        binding["route"] = route
    if methods:
        binding["methods"] = methods
    return binding


def table(*routes: tuple[str, str | None, list[str] | None], prefix: str = "scim") -> RouteTable:
    """A route table from ``(function name, route, methods)``; each route's function is its name."""
    return RouteTable([(name, trigger(route, methods), name) for name, route, methods in routes], prefix)


def resolve(routes: RouteTable, method: str, raw_path: str) -> tuple[str, dict[str, str]] | None:
    """``(function name, route parameters)`` for a request, the path as Kestrel decodes it."""
    found = routes.resolve(method, routing_path(raw_path))
    return None if found is None else (found[0].function_name, found[1])


# The shape of the SCIM route table (function_app.py), registered in a scrambled order.
SCIM = table(
    ("zz_unknown_endpoint", "v2/{*path}", ALL),
    ("users_search", "v2/Users/.search", ["POST"]),
    ("user", "v2/Users/{id}", ["GET", "PUT", "PATCH", "DELETE"]),
    ("users", "v2/Users", ALL),
    ("resource_types", "v2/ResourceTypes/{id?}", ALL),
    ("health", "health", ["GET"]),
    ("root_search", "v2/.search", ["POST"]),
)


# --- route order (functions_host.routing) -------------------------------------------------------


def test_routes_are_ordered_by_function_name_ordinal_ignore_case() -> None:
    """``StringComparer.OrdinalIgnoreCase``: names compared upper-cased, ordinally.

    Source: the host sorts function metadata with ``StringComparer.OrdinalIgnoreCase`` before it
    builds the route table (``functions_host.routing``; azure-notes §6.2). Upper-cased, '_' (0x5F)
    sorts after every letter, unlike lower-cased ('_' < 'a') or case-sensitive ('B' < 'a') order.
    """
    routes = table(("b", "r1", None), ("A_x", "r2", None), ("ab", "r3", None), ("B1", "r4", None))
    assert [route.function_name for route in routes.routes] == ["ab", "A_x", "b", "B1"]


def test_the_first_route_in_name_order_wins_even_over_a_literal() -> None:
    """First match in function-name order wins; a literal does not beat a parameter.

    Source: ``WebScriptHostHttpRoutesManager``, ``WebJobsRouter`` (azure-notes §1.2, §6.2).
    The literal route is registered first on purpose: only the name order makes the parameter win.
    """
    routes = table(("b_literal", "v2/Order/literal", ["GET"]), ("a_param", "v2/Order/{x}", ["GET"]))
    assert resolve(routes, "GET", "/scim/v2/Order/literal") == ("a_param", {"x": "literal"})


def test_a_failed_method_constraint_falls_through_to_the_next_route() -> None:
    """A route whose template matches but whose methods do not is skipped (``WebJobsRouter``).

    ``user`` sorts before ``users_search``: GET ``/Users/.search`` reaches ``user`` with
    ``id=".search"``, POST reaches ``users_search`` (azure-notes §1.2).
    """
    assert resolve(SCIM, "GET", "/scim/v2/Users/.search") == ("user", {"id": ".search"})
    assert resolve(SCIM, "POST", "/scim/v2/Users/.search") == ("users_search", {})
    assert resolve(SCIM, "PUT", "/scim/v2/Users/.search") == ("user", {"id": ".search"})


def test_the_catch_all_named_to_sort_last_gets_only_the_rest() -> None:
    """``zz_unknown_endpoint`` sorts last, so it only gets paths and methods no other route takes."""
    assert resolve(SCIM, "GET", "/scim/v2/Users/42") == ("user", {"id": "42"})
    assert resolve(SCIM, "POST", "/scim/v2/Users/42") == ("zz_unknown_endpoint", {"path": "Users/42"})
    assert resolve(SCIM, "GET", "/scim/v2/Nope/a/b") == ("zz_unknown_endpoint", {"path": "Nope/a/b"})


# --- templates and method constraints (functions_host.routing) ----------------------------------


def test_literals_and_the_prefix_match_case_insensitively() -> None:
    """ASP.NET routing matches templates case-insensitively (``functions_host.routing``)."""
    assert resolve(SCIM, "GET", "/SCIM/V2/users") == ("users", {})
    assert resolve(SCIM, "POST", "/scim/v2/uSeRs/.SEARCH") == ("users_search", {})
    assert resolve(SCIM, "GET", "/Scim/Health") == ("health", {})


def test_methods_match_exactly_with_no_head_for_get_and_no_options() -> None:
    """A method constraint exists only when ``methods`` is set and admits exactly those methods.

    Source: ``HttpMethodRouteConstraint`` in ``WebScriptHostHttpRoutesManager`` (azure-notes §1.2,
    §6.2): HEAD and OPTIONS are not implied by GET.
    """
    for method in ("HEAD", "OPTIONS", "POST", "TRACE"):
        assert resolve(SCIM, method, "/scim/health") is None, method
    assert resolve(SCIM, "get", "/scim/health") == ("health", {})  # method names compare upper-cased
    open_route = table(("any", "any", None))
    for method in ("GET", "POST", "HEAD", "OPTIONS", "TRACE", "PROPFIND"):
        assert resolve(open_route, method, "/scim/any") == ("any", {}), method


def test_one_trailing_slash_is_ignored_and_two_are_not() -> None:
    """One trailing slash is ignored (ASP.NET routing; azure-notes §6.2)."""
    routes = table(("users", "v2/Users", ["GET"]), ("user", "v2/Users/{id}", ["GET"]))
    assert resolve(routes, "GET", "/scim/v2/Users/") == ("users", {})
    assert resolve(routes, "GET", "/scim/v2/Users/7/") == ("user", {"id": "7"})
    assert resolve(routes, "GET", "/scim/v2/Users//") is None
    assert resolve(routes, "GET", "/scim/v2/Users/7//") is None


def test_unknown_paths_and_a_missing_prefix_match_nothing() -> None:
    """Only ``<routePrefix>/<route>`` matches (host.json ``extensions.http.routePrefix``)."""
    routes = table(("users", "v2/Users", ["GET"]), ("user", "v2/Users/{id}", ["GET"]))
    for path in ("/scim/v2/Nope", "/v2/Users", "/", "/scim", "/scim/v2/Users/a/b", "/scimx/v2/Users"):
        assert resolve(routes, "GET", path) is None, path


def test_an_empty_route_prefix_means_no_prefix_and_a_missing_route_is_the_function_name() -> None:
    """``routePrefix: ""`` removes the prefix; a trigger without ``route`` uses its function name.

    Source: Microsoft Learn *HTTP trigger* ("Customize the HTTP endpoint"; azure-notes §1.2, §1.3).
    """
    routes = table(("resource_types", "v2/ResourceTypes/{id?}", ["GET"]), ("ping", None, None), prefix="")
    assert resolve(routes, "GET", "/v2/ResourceTypes") == ("resource_types", {})
    assert resolve(routes, "GET", "/scim/v2/ResourceTypes") is None
    assert resolve(routes, "GET", "/ping") == ("ping", {})
    assert [route.template for route in routes.routes] == ["ping", "v2/ResourceTypes/{id?}"]
    assert [route.template for route in table(("ping", None, None), prefix="/api/").routes] == ["api/ping"]


def test_the_route_knows_its_argument_name_and_methods() -> None:
    """The trigger's ``name`` is the parameter the request is bound to; methods are upper-cased."""
    routes = RouteTable([("f", trigger("r", ["get", "Post"], name="request"), "f")], "api")
    (route,) = routes.routes
    assert (route.argument_name, route.methods, route.template) == (
        "request",
        frozenset({"GET", "POST"}),
        "api/r",
    )


def test_optional_and_default_parameters() -> None:
    """``{p?}`` may be absent; ``{p=default}`` takes its default when absent (ASP.NET template syntax)."""
    routes = table(("types", "v2/ResourceTypes/{id?}", ["GET"]), ("pages", "v2/Pages/{size=10}", ["GET"]))
    assert resolve(routes, "GET", "/scim/v2/ResourceTypes") == ("types", {})
    assert resolve(routes, "GET", "/scim/v2/ResourceTypes/") == ("types", {})
    assert resolve(routes, "GET", "/scim/v2/ResourceTypes/User") == ("types", {"id": "User"})
    assert resolve(routes, "GET", "/scim/v2/ResourceTypes/User/extra") is None
    assert resolve(routes, "GET", "/scim/v2/Pages") == ("pages", {"size": "10"})
    assert resolve(routes, "GET", "/scim/v2/Pages/50") == ("pages", {"size": "50"})


def test_a_catch_all_takes_the_rest_of_the_path_slashes_included() -> None:
    """``{*p}`` matches the remaining segments, or nothing (ASP.NET template syntax)."""
    routes = table(("pages", "v2/Pages/{n:int}/{*rest}", ["GET"]))
    assert resolve(routes, "GET", "/scim/v2/Pages/3") == ("pages", {"n": "3"})
    assert resolve(routes, "GET", "/scim/v2/Pages/3/a/b/c") == ("pages", {"n": "3", "rest": "a/b/c"})


@pytest.mark.parametrize(
    ("constraint", "accepted", "refused"),
    [
        ("int", ["3", "-3", "+3", "2147483647", "-2147483648"], ["three", "2147483648", "3.0", ""]),
        ("long", ["9223372036854775807", "-9223372036854775808"], ["9223372036854775808", "x1"]),
        (
            "guid",
            [
                "0f8fad5b-d9cb-469f-a165-70867728950e",
                "0F8FAD5B-D9CB-469F-A165-70867728950E",
                "0f8fad5bd9cb469fa16570867728950e",
                "{0f8fad5b-d9cb-469f-a165-70867728950e}",
                "(0f8fad5b-d9cb-469f-a165-70867728950e)",
            ],
            ["not-a-guid", "0f8fad5b-d9cb-469f-a165-70867728950", "0f8fad5bd9cb469fa16570867728950g"],
        ),
        ("alpha", ["abc", "ABC", "aBc"], ["ab1", "a-b", "é"]),
        ("regex(^[a-z]{{3}}$)", ["abc", "XYZ"], ["abcd", "ab"]),  # case-insensitive
        ("regex(ab)", ["ab", "xaby"], ["ba"]),  # unanchored, as RegexRouteConstraint
    ],
)
def test_route_constraints(constraint: str, accepted: list[str], refused: list[str]) -> None:
    """``int`` (Int32), ``long`` (Int64), ``guid`` (N, D, B, P), ``alpha`` (ASCII letters), ``regex``.

    Source: ASP.NET route constraints (Microsoft Learn *HTTP trigger*; ``functions_host.routing``).
    """
    routes = table(("f", f"v2/C/{{v:{constraint}}}", ["GET"]))
    for value in accepted:
        assert resolve(routes, "GET", f"/scim/v2/C/{value}") == ("f", {"v": value}), value
    for value in refused:
        assert resolve(routes, "GET", f"/scim/v2/C/{value}") is None, value


def test_several_constraints_on_one_parameter_must_all_hold() -> None:
    """``{n:int:regex(^[0-9]{{2}}$)}``: every constraint must accept the value (ASP.NET)."""
    routes = table(("f", "n/{n:int:regex(^[0-9]{{2}}$)}", ["GET"]))
    assert resolve(routes, "GET", "/scim/n/42") == ("f", {"n": "42"})
    assert resolve(routes, "GET", "/scim/n/420") is None
    assert resolve(routes, "GET", "/scim/n/ab") is None


# --- routing_path: Kestrel's path decoding ------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("/Users/a%2Fb", "/Users/a%2Fb"),
        ("/Users/a%2fb", "/Users/a%2fb"),
        ("/Users/a%20b", "/Users/a b"),
        ("/Users/%C3%A9", "/Users/é"),
        ("/Users/a+b", "/Users/a+b"),  # '+' is a space only in a query
        ("/Users/%252F", "/Users/%2F"),  # %25 decodes to '%'; nothing is decoded twice
    ],
)
def test_routing_path_decodes_escapes_except_an_encoded_slash(raw: str, decoded: str) -> None:
    """Kestrel decodes percent escapes in the path but never ``%2F`` (``routing_path``; azure-notes §6.2)."""
    assert routing_path(raw) == decoded


def test_an_encoded_slash_stays_inside_its_segment() -> None:
    """``/Users/a%2Fb`` routes with the single segment ``a%2Fb`` (azure-notes §6.2)."""
    assert resolve(SCIM, "GET", "/scim/v2/Users/a%2Fb") == ("user", {"id": "a%2Fb"})
    assert resolve(SCIM, "GET", "/scim/v2/Users/a%20b") == ("user", {"id": "a b"})


# --- start-up refusals (functions_host.routing) -------------------------------------------------


@pytest.mark.parametrize(
    "route", ["admin/tools", "/admin", "Admin/x", "administrators", "runtime/x", "RUNTIME"]
)
def test_routes_in_the_hosts_own_space_are_refused(route: str) -> None:
    """Routes beginning with ``admin`` (or ``runtime``) are the host's: the function is in error.

    Source: ``ScriptHost.ValidateHttpFunction`` ("The specified route conflicts with one or more
    built in routes"; it tests ``StartsWith("admin")`` on the trimmed, lower-cased route); the
    host logs it and serves the other functions (``ScriptHost.GetFunctionDescriptors``).
    """
    routes = table(("f", route, ["GET"]), ("other", "v2/ok", ["GET"]))
    assert "built-in routes" in routes.errors["f"]
    assert [route.function_name for route in routes.routes] == ["other"]


def test_a_route_may_contain_admin_after_its_first_segment() -> None:
    """Only the start of the route is reserved (``ScriptHost.ValidateHttpFunction``)."""
    routes = table(("f", "v2/admin", ["GET"]))
    assert resolve(routes, "GET", "/scim/v2/admin") == ("f", {})


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("a", "v2/Users", ["GET", "POST"]), ("b", "v2/Users", ["POST"])),
        (("a", "v2/Users", None), ("b", "v2/Users", ["DELETE"])),  # no methods: every method
        (("a", "v2/Users", ["GET"]), ("b", "/V2/users/", ["GET"])),  # compared trimmed, ignoring case
    ],
)
def test_two_functions_with_one_route_and_overlapping_methods_are_refused(
    first: tuple[str, str, list[str] | None], second: tuple[str, str, list[str] | None]
) -> None:
    """Same route (trimmed, case-insensitive) and intersecting methods: the later function is in error.

    Source: ``ScriptHost.HttpRoutesConflict`` ("The route specified conflicts with the route
    defined by function ..."; azure-notes §6.2); the first function keeps the route.
    """
    routes = table(first, second)
    assert "already used by function 'a'" in routes.errors["b"]
    assert [route.function_name for route in routes.routes] == ["a"]


def test_one_route_with_disjoint_methods_is_allowed() -> None:
    """Disjoint methods on one route do not conflict (``ScriptHost.HttpRoutesConflict``)."""
    routes = table(("read", "v2/Users", ["GET"]), ("write", "v2/Users", ["POST"]))
    assert resolve(routes, "GET", "/scim/v2/Users") == ("read", {})
    assert resolve(routes, "POST", "/scim/v2/Users") == ("write", {})


def test_a_conflict_with_any_earlier_route_is_refused_not_only_with_the_first() -> None:
    """``ScriptHost.ValidateFunction`` compares each new route with every route added before it."""
    routes = table(
        ("a", "v2/Users", ["GET"]), ("b", "v2/Users", ["POST"]), ("c", "v2/Users", ["POST", "PUT"])
    )
    assert set(routes.errors) == {"c"} and "already used by function 'b'" in routes.errors["c"]


@pytest.mark.parametrize("name", ["1abc", "_abc", "a b", "a.b", "a" * 129, "é"])
def test_invalid_function_names_are_refused(name: str) -> None:
    """Function names must match ``^[a-z][a-z0-9_\\-]{0,127}$``, ignoring case (``FunctionMetadataManager``)."""
    routes = table((name, "r", ["GET"]))
    assert "invalid" in routes.errors[name] and routes.routes == ()


def test_valid_function_names() -> None:
    """Upper case, digits, ``_`` and ``-`` after a first letter, up to 128 characters."""
    routes = table(("A-b_c9", "r1", ["GET"]), ("a" * 128, "r2", ["GET"]))
    assert {route.function_name for route in routes.routes} == {"A-b_c9", "a" * 128}


@pytest.mark.parametrize(
    ("route", "reason"),
    [
        ("when/{d:datetime}", "datetime"),
        ("n/{n:min(1)}", "min"),
        ("f/file.{ext}", "complex segment"),
        ("f/{name}.{ext}", "bad parameter name"),
        ("f/{*rest}/x", "catch-all must be the last"),
        ("f/{id}/{ID}", "appears twice"),
        ("f/{v:regex(a[)}", "bad regex"),
        ("f//g", "empty segment"),
    ],
)
def test_syntax_this_host_does_not_implement_is_refused_at_start_up(route: str, reason: str) -> None:
    """Constraints and template syntax not implemented here are refused, not ignored (``functions_host.routing``)."""
    with pytest.raises(HostStartupError, match=reason):
        table(("f", route, ["GET"]))


# --- query and headers (functions_host.http) ----------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("tag=a&tag=b", {"tag": "a,b"}),
        ("Tag=a&tag=b&TAG=c", {"Tag": "a,b,c"}),  # case-insensitive keys, the first spelling kept
        ("a=1&a=", {"a": "1,"}),  # the joined value is not empty
        ("empty=&flag&kept=1", {"kept": "1"}),  # empty values dropped
        ("filter=userName+eq+%22a%40b.c%22", {"filter": 'userName eq "a@b.c"'}),
        ("a%20b=c%2Bd", {"a b": "c+d"}),
        ("&&x=1&", {"x": "1"}),
        ("", {}),
    ],
)
def test_query_values(raw: str, expected: dict[str, str]) -> None:
    """Repeated keys joined with ``,`` (``StringValues.ToString``), keys case-insensitive, empty values dropped.

    Source: ASP.NET's query collection and the host's ``RpcMessageConversionExtensions``
    (``functions_host.http``; azure-notes §6.2).
    """
    assert query_values(raw) == expected


def test_header_values_lower_case_names_and_join_repeats() -> None:
    """Header names lower-cased; one header per name, repeated values joined with ``,`` (azure-notes §6.2)."""
    assert header_values({"X-Multi": "a", "x-multi": "b", "Content-Type": "text/plain"}) == {
        "x-multi": "a,b",
        "content-type": "text/plain",
    }


@pytest.mark.parametrize(("length", "expected"), [(None, False), (0, False), (1, True), (10_000, True)])
def test_the_body_is_read_only_with_a_positive_content_length(length: int | None, expected: bool) -> None:
    """Body forwarded only when ``Content-Length > 0`` (Azure/azure-functions-host#4926, #7930)."""
    assert body_expected(length) is expected


def _decode(datum: Datum) -> func.HttpRequest:
    request: func.HttpRequest = HttpRequestConverter.decode(datum, trigger_metadata={})
    return request


def test_request_datum_is_what_the_function_receives() -> None:
    """The ``http`` Datum, decoded by ``azure.functions``' ``HttpRequestConverter`` as the runtime does.

    Source: the host's ``RpcMessageConversionExtensions`` (``functions_host.http``): method as sent,
    url with the Kestrel-decoded path and the raw query (``GetDisplayUrl``), lower-cased headers,
    decoded query, route parameters, raw body bytes whatever the content type.
    """
    datum = request_datum(
        method="PATCH",
        scheme="http",
        host="scim.test:7071",
        raw_path="/scim/v2/Users/a%2Fb%20c",
        raw_query="filter=x+y&Filter=z&empty=",
        headers={"Content-Type": "application/scim+json", "X-Multi": "a", "x-multi": "b"},
        route_params={"id": "a%2Fb c"},
        body=b"\xff\x00{}",
    )
    request = _decode(datum)
    assert request.method == "PATCH"
    assert request.url == "http://scim.test:7071/scim/v2/Users/a%2Fb c?filter=x+y&Filter=z&empty="
    assert dict(request.params) == {"filter": "x y,z"}
    assert dict(request.route_params) == {"id": "a%2Fb c"}
    assert dict(request.headers) == {"content-type": "application/scim+json", "x-multi": "a,b"}
    assert request.get_body() == b"\xff\x00{}"


def _encode(response: func.HttpResponse | str) -> Datum:
    datum: Datum = HttpResponseConverter.encode(response, expected_type=func.HttpResponse)
    return datum


def test_the_response_keeps_status_headers_and_content_type_as_the_function_set_them() -> None:
    """Status, headers and ``Content-Type`` verbatim; the body as bytes (``functions_host.http``)."""
    encoded = _encode(
        func.HttpResponse(
            b'{"a":1}', status_code=201, headers={"ETag": 'W/"1"'}, mimetype="application/scim+json"
        )
    )
    response = response_from_datum(encoded)
    assert response.status == 201
    assert dict(response.headers) == {"ETag": 'W/"1"', "content-type": "application/scim+json"}
    assert response.body == b'{"a":1}'


def test_a_text_response_without_content_type_gets_azure_functions_default() -> None:
    """``azure.functions`` adds ``text/plain; charset=utf-8`` when none is set (azure-notes §6.2 [V])."""
    response = response_from_datum(_encode(func.HttpResponse("plain", status_code=202)))
    assert (response.status, dict(response.headers), response.body) == (
        202,
        {"content-type": "text/plain; charset=utf-8"},
        b"plain",
    )


def test_a_returned_string_is_a_200_text_response_and_nothing_is_a_204() -> None:
    """A ``str`` return value: 200 ``text/plain``; no return value: 204 (``functions_host.http``)."""
    text = response_from_datum(_encode("héllo"))
    assert (text.status, text.headers, text.body) == (
        200,
        [("Content-Type", "text/plain; charset=utf-8")],
        "héllo".encode(),
    )
    assert (response_from_datum(None).status, response_from_datum(None).body) == (204, b"")


def test_a_function_set_content_length_is_not_passed_through() -> None:
    """The host frames the body itself: a ``Content-Length`` set by the function is dropped."""
    response = response_from_datum(_encode(func.HttpResponse("abc", headers={"Content-Length": "999"})))
    assert "content-length" not in {name.lower() for name, _ in response.headers}
    assert response.body == b"abc"


def test_a_datum_the_host_cannot_send_is_a_type_error() -> None:
    """Anything but an HTTP or string Datum cannot be an HTTP response (the host answers 500)."""
    with pytest.raises(TypeError, match="json"):
        response_from_datum(Datum('{"a": 1}', "json"))


def test_a_set_cookie_header_reaches_the_client() -> None:
    """The runtime sends ``Set-Cookie`` as ``RpcHttpCookie``; the host writes it back as a header."""
    response = response_from_datum(_encode(func.HttpResponse("x", headers={"Set-Cookie": "sid=1; Path=/"})))
    cookies = [value for name, value in response.headers if name.lower() == "set-cookie"]
    assert len(cookies) == 1 and cookies[0].startswith("sid=1"), response.headers


# --- host.json and app settings (functions_host.config) -----------------------------------------


def _host_json(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "host.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document), encoding="utf-8")
    return path


def test_host_json_defaults_when_absent_or_silent(tmp_path: Path) -> None:
    """No host.json, or none of its keys: prefix ``api``, no custom headers, 30 min timeout.

    Source: Microsoft Learn *host.json reference* (``extensions.http``, ``functionTimeout``;
    Flex Consumption default), ``functions_host.config``.
    """
    for config in (HostConfig.read(tmp_path / "missing.json"), HostConfig.read(_host_json(tmp_path, {}))):
        assert (config.route_prefix, dict(config.custom_headers)) == ("api", {})
        assert config.function_timeout.total_seconds() == 30 * 60


def test_host_json_values_are_read(tmp_path: Path) -> None:
    """``routePrefix`` (``""`` means none), ``customHeaders`` and ``functionTimeout`` (hh:mm:ss)."""
    document = {
        "functionTimeout": "01:02:03",
        "extensions": {"http": {"routePrefix": "", "customHeaders": {"X-Content-Type-Options": "nosniff"}}},
    }
    config = HostConfig.read(_host_json(tmp_path, document))
    assert config.route_prefix == ""
    assert dict(config.custom_headers) == {"X-Content-Type-Options": "nosniff"}
    assert config.function_timeout.total_seconds() == 3600 + 120 + 3


def test_the_projects_host_json() -> None:
    """The repository's host.json: prefix ``scim``, ``nosniff`` on every response, 5 minutes."""
    config = HostConfig.read(ROOT / "host.json")
    assert config.route_prefix == "scim"
    assert dict(config.custom_headers) == {"X-Content-Type-Options": "nosniff"}
    assert config.function_timeout.total_seconds() == 300


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{not json", "not JSON"),
        ({"extensions": {"http": {"routePrefix": 5}}}, "routePrefix"),
        ({"extensions": {"http": []}}, "http must be an object"),
        ({"extensions": {"http": {"customHeaders": {"X-A": 1}}}}, "customHeaders"),
        ({"functionTimeout": "5 minutes"}, "functionTimeout"),
    ],
)
def test_a_malformed_host_json_is_refused(tmp_path: Path, document: Any, message: str) -> None:
    """A host.json the host cannot use stops the start (``functions_host.config.HostConfig.read``)."""
    with pytest.raises(ValueError, match=message):
        HostConfig.read(_host_json(tmp_path, document))


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, DEFAULT_BODY_LIMIT),
        ({"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "1048576"}, 1_048_576),
        ({"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": " 2048 "}, 2048),
        ({"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "1MB"}, DEFAULT_BODY_LIMIT),  # ignored, as the host does
        ({"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "0"}, DEFAULT_BODY_LIMIT),
        ({"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "-5"}, DEFAULT_BODY_LIMIT),
    ],
)
def test_body_size_limit(environ: Mapping[str, str], expected: int) -> None:
    """``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT`` in bytes; 100 MB when unset or unparseable.

    Source: ``HttpRequestSizeMiddleware`` / ``Program.cs`` (azure-notes §1.5, §6.2).
    """
    assert DEFAULT_BODY_LIMIT == 104_857_600
    assert body_size_limit(environ) == expected


def test_an_unparseable_body_limit_is_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """The host silently ignores a bad value; this host also says so (``functions_host.config``)."""
    caplog.set_level(logging.WARNING, logger="functions_host")
    assert body_size_limit({"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "lots"}) == DEFAULT_BODY_LIMIT
    assert any("lots" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"AzureWebJobs_users_Disabled": "true"}, True),
        ({"AzureWebJobs_users_Disabled": "True"}, True),
        ({"AzureWebJobs_users_Disabled": "1"}, True),
        ({"AzureWebJobs_users_Disabled": " true "}, True),
        ({"AzureWebJobs_users_Disabled": "false"}, False),
        ({"AzureWebJobs_users_Disabled": "0"}, False),
        ({"AzureWebJobs_users_Disabled": ""}, False),
        ({"AzureWebJobs_user_Disabled": "true"}, False),  # another function
        ({}, False),
    ],
)
def test_is_disabled(environ: Mapping[str, str], expected: bool) -> None:
    """``AzureWebJobs_<name>_Disabled`` = ``true``/``1`` disables one function.

    Source: Microsoft Learn *How to disable functions in Azure Functions* (azure-notes §6.2).
    """
    assert is_disabled("users", environ) is expected


def test_the_dotted_disabled_form_works_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """``AzureWebJobs.<name>.Disabled`` is honoured, with a warning to use underscores (``functions_host.config``)."""
    caplog.set_level(logging.WARNING, logger="functions_host")
    assert is_disabled("users", {"AzureWebJobs.users.Disabled": "true"})
    assert any("AzureWebJobs_users_Disabled" in record.getMessage() for record in caplog.records)


# --- timer schedules (functions_host.timers) ----------------------------------------------------


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_every_ten_seconds() -> None:
    """``*/10 * * * * *``: seconds 0, 10, ... 50; the next occurrence is strictly after ``moment``.

    Source: NCRONTAB, six fields (Microsoft Learn *Timer trigger for Azure Functions*;
    ``NCrontab.CrontabSchedule.GetNextOccurrence``).
    """
    schedule = Schedule.parse("*/10 * * * * *")
    assert schedule.seconds == frozenset(range(0, 60, 10))
    assert schedule.next_after(at("2026-12-05T12:00:05")) == at("2026-12-05T12:00:10")
    assert schedule.next_after(at("2026-12-05T12:00:10")) == at("2026-12-05T12:00:20")
    assert schedule.next_after(at("2026-12-05T12:00:09.999")) == at("2026-12-05T12:00:10")
    assert schedule.next_after(at("2026-12-31T23:59:55")) == at("2027-01-01T00:00:00")


def test_weekdays_at_nine() -> None:
    """``0 0 9 * * 1-5``: 09:00:00 Monday to Friday, UTC (``functions_host.timers``)."""
    schedule = Schedule.parse("0 0 9 * * 1-5")
    friday = at("2026-12-04T10:00:00")
    assert friday.strftime("%A") == "Friday"
    assert schedule.next_after(friday) == at("2026-12-07T09:00:00")  # Monday
    assert schedule.next_after(at("2026-12-07T08:59:59")) == at("2026-12-07T09:00:00")
    assert schedule.next_after(at("2026-12-07T09:00:00")) == at("2026-12-08T09:00:00")


def test_day_of_week_zero_is_sunday() -> None:
    """Day-of-week ``0`` is Sunday (``NCrontab.CrontabFieldImpl.DayOfWeek``: 0-6, Sunday first)."""
    assert Schedule.parse("0 0 12 * * 0").next_after(at("2026-12-04T00:00:00")) == at("2026-12-06T12:00:00")


def test_day_of_week_seven_is_refused_as_ncrontab_does() -> None:
    """NCrontab's day-of-week field is 0-6 (``CrontabFieldImpl.DayOfWeek``); 7 is above its maximum."""
    with pytest.raises(ValueError, match="day-of-week"):
        Schedule.parse("0 0 12 * * 7")


def test_day_and_day_of_week_must_both_match() -> None:
    """``0 0 0 13 * 5`` is Friday the 13th only: NCrontab ANDs day and day-of-week (unlike Vixie cron).

    Source: ``NCrontab.CrontabSchedule.TryGetNextOccurrence`` checks the day of week after the date.
    """
    assert Schedule.parse("0 0 0 13 * 5").next_after(at("2026-12-05T00:00:00")) == at("2027-08-13T00:00:00")


def test_lists_ranges_and_steps() -> None:
    """``a,b``, ``a-b``, ``a-b/n`` and ``a/n`` (from ``a`` to the field's maximum), as NCrontab parses them."""
    schedule = Schedule.parse("5/15 0,30 8-18/5 1 * *")
    assert schedule.seconds == frozenset({5, 20, 35, 50})
    assert schedule.minutes == frozenset({0, 30})
    assert schedule.hours == frozenset({8, 13, 18})
    assert schedule.days == frozenset({1})
    assert schedule.next_after(at("2026-12-05T00:00:00")) == at("2027-01-01T08:00:05")


def test_a_day_missing_from_a_month_is_skipped() -> None:
    """``0 0 0 30 * *`` skips February (``NCrontab``: the day must exist in the month)."""
    assert Schedule.parse("0 0 0 30 * *").next_after(at("2027-01-31T00:00:00")) == at("2027-03-30T00:00:00")


def test_a_schedule_that_never_occurs_is_an_error() -> None:
    """31 February has no occurrence: ``next_after`` says so instead of looping (``functions_host.timers``)."""
    with pytest.raises(ValueError, match="no occurrence"):
        Schedule.parse("0 0 0 31 2 *").next_after(at("2026-12-05T00:00:00"))


@pytest.mark.parametrize(
    "expression",
    [
        "0 9 * * 1-5",  # five fields: the host requires six (IncludingSeconds)
        "0 0 9 * * 1-5 2027",  # seven
        "",
        "60 * * * * *",
        "* 60 * * * *",
        "* * 24 * * *",
        "* * * 0 * *",
        "* * * 32 * *",
        "* * * * 0 *",
        "* * * * 13 *",
        "* * * * * 8",
        "0 30 9 * Jan Mon",  # names: not implemented here
        "0 0 L * * *",  # not NCRONTAB
    ],
)
def test_invalid_schedules_are_refused(expression: str) -> None:
    """Six fields, each within its range (``NCrontab.CrontabSchedule.TryParse``; ``functions_host.timers``)."""
    with pytest.raises(ValueError, match="NCRONTAB"):
        Schedule.parse(expression)


def test_a_reversed_range_is_swapped_as_ncrontab_does() -> None:
    """``NCrontab.CrontabField.Accumulate``: if start > end, the two are swapped."""
    assert Schedule.parse("0 0 9 * * 5-1").weekdays == frozenset({1, 2, 3, 4, 5})


@pytest.mark.parametrize("past_due", [False, True])
def test_the_timer_datum_decodes_to_a_timer_request(past_due: bool) -> None:
    """The timer input, decoded by ``azure.functions``' ``TimerRequestConverter`` (``functions_host.timers``)."""
    timer: func.TimerRequest = TimerRequestConverter.decode(_timer_datum(past_due), trigger_metadata={})
    assert timer.past_due is past_due
