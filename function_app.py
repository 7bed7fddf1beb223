"""Azure Functions (Python v2) triggers: one per SCIM route template.

A thin table: each trigger converts the Functions request into a
transport-neutral :class:`scim.web.api.Request` and back. All SCIM behaviour lives
in ``scim/``. Routes are relative to host.json's ``routePrefix`` ("scim"), so
the Entra Tenant URL is ``https://<host>/scim/v2``. Triggers are anonymous:
Entra can only send ``Authorization: Bearer``, which ``scim.web.api`` checks.
Methods are explicit on every route (the host tries routes in function-name
order and would let a method-less route shadow another; azure-notes §1.2).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import azure.functions as func

from scim.config import Settings
from scim.runtime import Runtime
from scim.web.api import Request, Response

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
"""Discovery routes take every method so that the wrong ones get a SCIM 405, not the host's 404."""
runtime = Runtime(lambda: Settings.from_env(os.environ), root=os.path.dirname(os.path.abspath(__file__)))


def to_request(req: func.HttpRequest) -> Request:
    """The transport-neutral view of a Functions request."""
    return Request(
        method=req.method.upper(),
        url=req.url,
        headers={name.lower(): value for name, value in req.headers.items()},
        query=dict(req.params),
        route=dict(req.route_params),
        body=req.get_body() or b"",
    )


def to_http_response(response: Response) -> func.HttpResponse:
    """The Functions response for a core response."""
    return func.HttpResponse(body=response.body, status_code=response.status, headers=response.headers)


async def _call(route: str, req: func.HttpRequest) -> func.HttpResponse:
    return to_http_response(await runtime.handle(route, to_request(req)))


@app.route(route="v2/Users", methods=ALL_METHODS)
async def users(req: func.HttpRequest) -> func.HttpResponse:
    """GET lists/filters, POST creates; other methods get a SCIM 405."""
    return await _call("users", req)


@app.route(route="v2/Users/{id}", methods=["GET", "PUT", "PATCH", "DELETE"])
async def user(req: func.HttpRequest) -> func.HttpResponse:
    """GET, PUT, PATCH, DELETE one user."""
    return await _call("user", req)


@app.route(route="v2/Groups", methods=ALL_METHODS)
async def groups(req: func.HttpRequest) -> func.HttpResponse:
    """GET lists/filters, POST creates; other methods get a SCIM 405."""
    return await _call("groups", req)


@app.route(route="v2/Groups/{id}", methods=["GET", "PUT", "PATCH", "DELETE"])
async def group(req: func.HttpRequest) -> func.HttpResponse:
    """GET, PUT, PATCH (204), DELETE one group."""
    return await _call("group", req)


@app.route(route="v2/Users/.search", methods=["POST"])
async def users_search(req: func.HttpRequest) -> func.HttpResponse:
    """RFC 7644 §3.4.3 search of users (the {id} route takes no POST, so no collision)."""
    return await _call("users_search", req)


@app.route(route="v2/Groups/.search", methods=["POST"])
async def groups_search(req: func.HttpRequest) -> func.HttpResponse:
    """RFC 7644 §3.4.3 search of groups."""
    return await _call("groups_search", req)


@app.route(route="v2/.search", methods=["POST"])
async def root_search(req: func.HttpRequest) -> func.HttpResponse:
    """RFC 7644 §3.4.3 search across resource types."""
    return await _call("root_search", req)


@app.route(route="v2/Bulk", methods=["POST"])
async def bulk(req: func.HttpRequest) -> func.HttpResponse:
    """RFC 7644 §3.7 bulk operations."""
    return await _call("bulk", req)


@app.route(route="v2/ServiceProviderConfig", methods=ALL_METHODS)
async def service_provider_config(req: func.HttpRequest) -> func.HttpResponse:
    """RFC 7644 §4 service provider configuration (405 for other methods)."""
    return await _call("service_provider_config", req)


@app.route(route="v2/ResourceTypes/{id?}", methods=ALL_METHODS)
async def resource_types(req: func.HttpRequest) -> func.HttpResponse:
    """RFC 7644 §4 resource types, all or one."""
    return await _call("resource_types", req)


@app.route(route="v2/Schemas/{id?}", methods=ALL_METHODS)
async def schemas(req: func.HttpRequest) -> func.HttpResponse:
    """RFC 7644 §4 schemas, all or one."""
    return await _call("schemas", req)


@app.route(route="health", methods=["GET"])
def health(req: func.HttpRequest) -> func.HttpResponse:
    """``GET /scim/health``: liveness for the TLS proxy and the orchestrator (no auth, no storage)."""
    return to_http_response(runtime.health())


# The host tries routes in function-name order, not by specificity (azure-notes
# §1.2), so this catch-all is named to sort after every other trigger.
@app.timer_trigger(schedule="*/10 * * * * *", arg_name="timer", run_on_startup=False, use_monitor=False)
async def change_feed_relay(timer: func.TimerRequest) -> None:
    """Every 10 s: publish committed changes to the change-feed queue, then keep them as audit (scim.feed)."""
    await runtime.relay_once()


@app.route(route="v2/{*path}", methods=ALL_METHODS)
async def zz_unknown_endpoint(req: func.HttpRequest) -> func.HttpResponse:
    """Any other path under the SCIM base: a SCIM 404 (501 for /.search) body."""
    return await _call("unknown_endpoint", req)


# Named directories (issue 17): every SCIM route again under /scim/<directory>/v2, served by that
# directory's API (scim.runtime). One row per route: (route name, template under v2/, methods).
DIRECTORY_ROUTES = [
    ("users", "Users", ALL_METHODS),
    ("user", "Users/{id}", ["GET", "PUT", "PATCH", "DELETE"]),
    ("groups", "Groups", ALL_METHODS),
    ("group", "Groups/{id}", ["GET", "PUT", "PATCH", "DELETE"]),
    ("users_search", "Users/.search", ["POST"]),
    ("groups_search", "Groups/.search", ["POST"]),
    ("root_search", ".search", ["POST"]),
    ("bulk", "Bulk", ["POST"]),
    ("service_provider_config", "ServiceProviderConfig", ALL_METHODS),
    ("resource_types", "ResourceTypes/{id?}", ALL_METHODS),
    ("schemas", "Schemas/{id?}", ALL_METHODS),
]


def _directory_trigger(route: str) -> Callable[[func.HttpRequest], Awaitable[func.HttpResponse]]:
    async def trigger(req: func.HttpRequest) -> func.HttpResponse:
        return await _call(route, req)

    trigger.__name__ = trigger.__qualname__ = f"directory_{route}"
    trigger.__doc__ = f"``{route}`` of a named directory, under /scim/<directory>/v2."
    return trigger


for _route, _template, _methods in DIRECTORY_ROUTES:
    app.route(route="{directory}/v2/" + _template, methods=_methods)(_directory_trigger(_route))


# Named zz_ like the default catch-all: tried after every other directory route.
@app.route(route="{directory}/v2/{*path}", methods=ALL_METHODS)
async def zz_directory_unknown_endpoint(req: func.HttpRequest) -> func.HttpResponse:
    """Any other path under a directory's SCIM base: a SCIM 404 (501 for /.search) body."""
    return await _call("unknown_endpoint", req)
