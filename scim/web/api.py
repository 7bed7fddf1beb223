"""The HTTP face of the service, transport-neutral (RFC 7644 §3).

``function_app.py`` (Azure Functions), the local Functions host and the tests all call
these handlers with a plain :class:`Request` and get a plain :class:`Response`.
This module authenticates, parses query strings and headers, picks status
codes, and is the one place where errors become RFC 7644 §3.12 bodies
(:func:`error_response`). It never imports Azure Functions or the storage SDK.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError
from scim2_models import Context, ResponseParameters

from scim.config import Settings
from scim.logs import printable
from scim.model.changes import Actor, current_actor
from scim.model.discovery import Discovery
from scim.model.errors import (
    InternalError,
    InvalidFilterError,
    InvalidSyntaxError,
    InvalidValueError,
    LengthRequiredError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    ScimError,
    TooManyRequestsError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
)
from scim.model.messages import describe
from scim.model.resources import ResourceKind, build_kinds
from scim.model.schemafile import DeclaredSchemas
from scim.service.groups import GroupService
from scim.service.membership import Membership
from scim.service.operations import ListResult, Query, ResourceService, matches_if_match, off_loop, version_of
from scim.service.users import UserService
from scim.storage.repository import Repository, StoredResource
from scim.web.auth import Authenticator, JwtPolicy, KeySource, authenticate
from scim.web.bulk import BulkLimits, Dispatch, SubResponse, process_bulk

__all__ = ["Request", "Response", "ScimApi", "error_response"]

log = logging.getLogger("scim.api")

SCIM_JSON = "application/scim+json"
_LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
BULK_MAX_OPERATIONS = 100
"""Operations per /Bulk request (``bulk.maxOperations``)."""
_JSON_TYPES = {"application/scim+json", "application/json"}


@dataclass(frozen=True)
class Request:
    """An HTTP request as the SCIM core sees it.

    ``headers`` keys are lower-case; ``query`` values are already URL-decoded
    (``+`` is a space, as in Entra's ``filter=userName+eq+%22…%22``).
    """

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    route: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """A header value by case-insensitive name."""
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class Response:
    """An HTTP response: status, headers and an encoded body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        """The decoded JSON body (for tests and tools)."""
        return json.loads(self.body) if self.body else None


def _json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(status, {"Content-Type": SCIM_JSON, **(headers or {})}, body)


def error_response(error: ScimError) -> Response:
    """The RFC 7644 §3.12 error body for ``error`` — the only such mapping."""
    return _json_response(error.status, error.to_body(), error.headers)


Handler = Callable[[Request], Awaitable[Response]]


class ScimApi:
    """Handlers for each SCIM route template, bound to settings and storage."""

    def __init__(
        self,
        settings: Settings,
        repository: Repository,
        *,
        keys: KeySource | None = None,
        declared: DeclaredSchemas | None = None,
        uniform_refusals: bool = False,
    ) -> None:
        self._settings = settings
        self._uniform_refusals = uniform_refusals
        self._in_progress = 0
        policy = None
        if settings.entra_tenant_id:
            policy = JwtPolicy(settings.entra_tenant_id, settings.jwt_issuer, settings.jwt_audiences)
        self._authenticator = Authenticator(settings.token_digests, policy=policy, keys=keys)
        membership = Membership(repository)
        limits: dict[str, Any] = {
            "max_page_size": settings.max_page_size,
            "max_scan": settings.max_scan,
            "unknown_attributes": settings.unknown_attributes,
        }
        user, group = build_kinds(declared)
        self._users = UserService(repository, membership=membership, kind=user, **limits)
        self._groups = GroupService(repository, membership=membership, kind=group, **limits)
        self._discovery = Discovery(
            (user, group),
            max_results=settings.max_page_size,
            bulk=(BULK_MAX_OPERATIONS, settings.max_body_bytes),
        )

    # -- plumbing ----------------------------------------------------------

    async def _guard(self, request: Request, route: str, handler: Handler) -> Response:
        """Authenticate, run, and turn every failure into a SCIM error; log one structured line.

        The request id is the client's ``x-ms-request-id``/``X-Request-Id`` when it
        sends one (so a line in Entra's provisioning logs can be found here), else new.

        The credential is checked first, so nothing about the request (its size, the directory's
        load) is answered to a client without one. Then the body limit, then the directory's
        share of requests in progress (``SCIM_DIRECTORY_CONCURRENCY``: 429 beyond it, issue 17).
        With ``uniform_refusals`` (named directories), every refused credential gets the answer an
        unknown token gets, so a refusal never tells which directories exist or how they sign in.
        """
        started = time.perf_counter()
        request_id = _request_id(request)
        principal, scim_type = "-", None
        try:
            principal = await self._authenticate(request)
            if len(request.body) > self._settings.max_body_bytes:
                raise PayloadTooLargeError(
                    f"The body is {len(request.body):,} bytes; the limit is "
                    f"{self._settings.max_body_bytes:,}."
                )
            if self._in_progress >= self._settings.directory_concurrency:
                raise TooManyRequestsError(retry_after=1)
            self._in_progress += 1
            actor = current_actor.set(Actor(principal, request_id))  # for the change records
            try:
                response = await handler(request)
            finally:
                current_actor.reset(actor)
                self._in_progress -= 1
        except ScimError as error:
            response, scim_type = error_response(error), error.scim_type
        except Exception:
            method = printable(request.method)  # issue 14 item 8: client text reaching a log line
            log.exception("Unhandled error in %s %s (request_id=%s)", method, route, request_id)
            response = error_response(InternalError())
        elapsed = round((time.perf_counter() - started) * 1000, 1)
        # Never log headers, bodies or query strings: they carry tokens and personal data.
        fields = {
            "request_id": request_id,
            "method": printable(request.method),
            "route": route,
            "status": response.status,
            "scim_type": scim_type,
            "latency_ms": elapsed,
            "principal": principal,
        }
        level = logging.WARNING if response.status >= 500 else logging.INFO
        # The text carries the id too: under the Functions host only the message reaches the logs.
        message = "%s %s -> %d in %.1f ms (request_id=%s, principal=%s)"
        arguments = (printable(request.method), route, response.status, elapsed, request_id, principal)
        log.log(level, message, *arguments, extra={"scim": fields})
        return Response(response.status, {**response.headers, "X-Request-Id": request_id}, response.body)

    async def _authenticate(self, request: Request) -> str:
        """The credential's name; with uniform refusals, any refusal is an unknown token's."""
        authorization = request.header("authorization")
        try:
            return await self._authenticator.authenticate(authorization)
        except UnauthorizedError as refused:
            if not self._uniform_refusals:
                raise
            log.info("Credential refused: %s", refused.detail)  # the reason stays in the log
            authenticate(authorization, ())  # raises exactly what an unknown token gets
            raise  # pragma: no cover - authenticate with nothing accepted always raises

    def _base_url(self, request: Request) -> str:
        """The SCIM base URL for ``meta.location`` and ``Location`` (RFC 7643 §3.1).

        ``SCIM_PUBLIC_BASE_URL`` when set (the only trusted source). Otherwise the
        request's own URL, whose host comes from the client's ``Host`` header, so
        it is used only when it is a plain RFC 3986 §3.2.2 ``host[:port]`` (DNS
        name, IPv4 or bracketed IPv6; no userinfo, path, control characters;
        at most 255 characters) and the path prefix is made of path-safe
        characters. Anything else gets the relative base ``/scim/v2`` (a valid
        URI-reference, RFC 9110 §10.2.2): a hostile ``Host`` is never reflected.
        """
        if self._settings.public_base_url:
            return self._settings.public_base_url
        try:
            parts = urlsplit(request.url)
        except ValueError:
            return "/scim/v2"
        marker = parts.path.lower().find("/v2")
        base_path = parts.path[: marker + 3] if marker >= 0 else "/scim/v2"
        if not re.fullmatch(r"(/[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,63}){0,3}/v2", base_path):
            base_path = "/scim/v2"
        label = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
        host = rf"{label}(?:\.{label})*\.?|\[[0-9A-Fa-f:.]{{2,45}}\]"
        netloc_ok = len(parts.netloc) <= 255 and re.fullmatch(rf"(?:{host})(?::[0-9]{{1,5}})?", parts.netloc)
        if parts.scheme not in ("http", "https") or not netloc_ok:
            return base_path
        return f"{parts.scheme}://{parts.netloc}{base_path}"

    # -- resources ---------------------------------------------------------

    async def users(self, request: Request) -> Response:
        """``/Users``: GET lists and filters (§3.4.2), POST creates (§3.3)."""
        return await self._guard(request, "/Users", self._collection(self._users))

    async def user(self, request: Request) -> Response:
        """``/Users/{id}``: GET (§3.4.1), PUT (§3.5.1), PATCH (§3.5.2), DELETE (§3.6)."""
        return await self._guard(request, "/Users/{id}", self._item(self._users))

    async def groups(self, request: Request) -> Response:
        """``/Groups``: GET lists and filters (§3.4.2), POST creates (§3.3)."""
        return await self._guard(request, "/Groups", self._collection(self._groups))

    async def group(self, request: Request) -> Response:
        """``/Groups/{id}``: GET, PUT, PATCH (204: member lists are never echoed), DELETE."""
        return await self._guard(request, "/Groups/{id}", self._item(self._groups))

    async def bulk(self, request: Request) -> Response:
        """``POST /Bulk`` (RFC 7644 §3.7): each operation runs through the same handlers."""

        async def handle(request: Request) -> Response:
            if request.method != "POST":
                raise MethodNotAllowedError(allow=("POST",))
            limits = BulkLimits(BULK_MAX_OPERATIONS, self._settings.max_body_bytes)
            dispatch = self._bulk_dispatcher(request)
            status, payload = await process_bulk(_json_body(request), len(request.body), dispatch, limits)
            return _json_response(status, payload)

        return await self._guard(request, "/Bulk", handle)

    def _bulk_dispatcher(self, outer: Request) -> Dispatch:
        """Run one bulk operation as a request to ``/Users``, ``/Groups`` or an item of them."""
        base_url = self._base_url(outer)

        async def dispatch(method: str, path: str, data: Any, headers: Mapping[str, str]) -> SubResponse:
            segments = [segment for segment in path.split("/") if segment]
            service = self._users if segments[0] == "Users" else self._groups
            inner = Request(
                method=method,
                url=f"{base_url}{path}",
                headers={"content-type": SCIM_JSON, **{k.lower(): v for k, v in headers.items()}},
                route={"id": segments[1]} if len(segments) > 1 else {},
                body=json.dumps(data).encode("utf-8") if data is not None else b"",
            )
            handler = self._item(service) if len(segments) > 1 else self._collection(service)
            try:
                response = await handler(inner)
            except ScimError as error:
                response = error_response(error)
            return SubResponse(response.status, response.json(), response.headers)

        return dispatch

    async def users_search(self, request: Request) -> Response:
        """``POST /Users/.search`` (RFC 7644 §3.4.3)."""
        return await self._guard(request, "/Users/.search", lambda r: self._search(self._users, r))

    async def groups_search(self, request: Request) -> Response:
        """``POST /Groups/.search`` (RFC 7644 §3.4.3)."""
        return await self._guard(request, "/Groups/.search", lambda r: self._search(self._groups, r))

    async def root_search(self, request: Request) -> Response:
        """``POST /.search`` across resource types (RFC 7644 §3.4.3).

        The filter is applied to each type; an attribute a type does not have
        makes the filter false for it (§3.4.2.1). Results list users, then
        groups; index paging only. Each type is queried for its share of the
        page only, so no more rows are read than the page needs plus the scan
        bound, and only the resources returned are expanded (members, groups)
        and rendered (``count: 0`` renders nothing).
        """

        async def handle(request: Request) -> Response:
            if request.method != "POST":
                raise MethodNotAllowedError(allow=("POST",))
            body = _json_body(request)
            if not isinstance(body, dict):
                raise InvalidSyntaxError("The body must be a SearchRequest JSON object.")
            if any(key.lower() == "cursor" for key in body):
                raise InvalidValueError(
                    "Cursor pagination is not offered at the root /.search; use startIndex."
                )
            return await self._search_everywhere(request, body)

        return await self._guard(request, "/.search", handle)

    async def _search_everywhere(self, request: Request, body: dict[str, Any]) -> Response:
        queries: list[tuple[ResourceService, Query]] = []
        errors: list[InvalidFilterError] = []
        services: tuple[ResourceService, ...] = (self._users, self._groups)
        for service in services:
            try:
                queries.append((service, service.parse_query(body)))
            except InvalidFilterError as error:
                errors.append(error)
        if not queries:
            raise errors[0]
        start, count = queries[0][1].start_index, queries[0][1].count
        base_url, total = self._base_url(request), 0
        page: list[dict[str, Any]] = []
        for searched, query in queries:
            # This type's share of the page: what the earlier types did not cover.
            share = dataclasses.replace(query, start_index=max(start - total, 1), count=count - len(page))
            result = await searched.query(share)
            total += result.total or 0
            wanted = _wanted(searched.kind, query.request)
            for stored in await searched.expand_all(result.resources, wanted):
                page.append(await self._render(searched, stored, base_url, query.request))
        return _json_response(200, _list_payload(ListResult([], total, start), page))

    def _collection(self, service: ResourceService) -> Handler:
        async def handle(request: Request) -> Response:
            if request.method == "GET":
                return await self._query(service, request)
            if request.method == "POST":
                stored = await service.create(_json_body(request))
                return await self._resource_response(service, request, stored, status=201, location=True)
            raise MethodNotAllowedError(allow=("GET", "POST"))

        return handle

    def _item(self, service: ResourceService) -> Handler:
        async def handle(request: Request) -> Response:
            resource_id = request.route.get("id", "")
            if_match = request.header("if-match")
            if request.method == "GET":
                stored = await service.get(resource_id)
                if_none_match = request.header("if-none-match")
                if if_none_match and matches_if_match(if_none_match, version_of(stored)):
                    return Response(304, {"ETag": version_of(stored)})
                return await self._resource_response(service, request, stored)
            if request.method == "PUT":
                stored = await service.replace(resource_id, _json_body(request), if_match=if_match)
                return await self._resource_response(service, request, stored)
            if request.method == "PATCH":
                stored = await service.patch(resource_id, _json_body(request), if_match=if_match)
                if service.kind.name == "Group" and _response_parameters(service.kind, request.query) is None:
                    # Entra expects 204 for group PATCHes and must never get the member list.
                    return Response(204, {"ETag": version_of(stored)})
                return await self._resource_response(service, request, stored)
            if request.method == "DELETE":
                await service.delete(resource_id, if_match=if_match)
                return Response(204)
            raise MethodNotAllowedError(allow=("GET", "PUT", "PATCH", "DELETE"))

        return handle

    async def _query(self, service: ResourceService, request: Request) -> Response:
        query = service.parse_query(_query_parameters(request.query))
        return await self._list_response(service, request, query)

    async def _search(self, service: ResourceService, request: Request) -> Response:
        """RFC 7644 §3.4.3: a query sent as a SearchRequest body (POST ``/.search``)."""
        if request.method != "POST":
            raise MethodNotAllowedError(allow=("POST",))
        body = _json_body(request)
        if not isinstance(body, dict):
            raise InvalidSyntaxError("The body must be a SearchRequest JSON object.")
        return await self._list_response(service, request, service.parse_query(body))

    async def _list_response(self, service: ResourceService, request: Request, query: Query) -> Response:
        result: ListResult = await service.query(query)
        base_url = self._base_url(request)
        page = await service.expand_all(result.resources, _wanted(service.kind, query.request))
        resources = [await self._render(service, stored, base_url, query.request) for stored in page]
        return _json_response(200, _list_payload(result, resources))

    async def _render(
        self,
        service: ResourceService,
        stored: StoredResource,
        base_url: str,
        parameters: ResponseParameters[Any] | None,
    ) -> dict[str, Any]:
        """The resource as served: expanded, with ``meta.location``/``version``, attributes selected."""
        stored = await service.expand(stored, _wanted(service.kind, parameters))
        document = _with_references(dict(stored.document), base_url)
        meta = dict(document.get("meta") or {})
        meta["location"] = f"{base_url}{service.kind.endpoint}/{stored.id}"
        meta["version"] = version_of(stored)
        document["meta"] = meta
        selected = parameters is not None and bool(parameters.attributes or parameters.excluded_attributes)
        if not selected and not service.kind.hidden:
            return document
        return await off_loop(_selected, service.kind, document, parameters)

    async def _resource_response(
        self,
        service: ResourceService,
        request: Request,
        stored: StoredResource,
        *,
        status: int = 200,
        location: bool = False,
    ) -> Response:
        parameters = _response_parameters(service.kind, request.query)
        document = await self._render(service, stored, self._base_url(request), parameters)
        headers = {"ETag": version_of(stored)}
        if location:
            headers["Location"] = f"{self._base_url(request)}{service.kind.endpoint}/{stored.id}"
        return _json_response(status, document, headers)

    # -- discovery (RFC 7644 §4) -------------------------------------------

    async def service_provider_config(self, request: Request) -> Response:
        """``/ServiceProviderConfig``."""

        async def handle(request: Request) -> Response:
            _require_get(request)
            return _json_response(200, self._discovery.service_provider_config(self._base_url(request)))

        return await self._guard(request, "/ServiceProviderConfig", handle)

    async def resource_types(self, request: Request) -> Response:
        """``/ResourceTypes`` and ``/ResourceTypes/{id}``."""

        async def handle(request: Request) -> Response:
            _require_get(request)
            documents = self._discovery.resource_types(self._base_url(request))
            return _one_or_list(documents, request.route.get("id"), "ResourceType")

        return await self._guard(request, "/ResourceTypes", handle)

    async def schemas(self, request: Request) -> Response:
        """``/Schemas`` and ``/Schemas/{id}``."""

        async def handle(request: Request) -> Response:
            _require_get(request)
            documents = self._discovery.schemas(self._base_url(request))
            return _one_or_list(documents, request.route.get("id"), "Schema")

        return await self._guard(request, "/Schemas", handle)

    async def unknown_endpoint(self, request: Request) -> Response:
        """Any path no SCIM route serves: 404 (RFC 7644 §3.12); 405 for a ``GET /.search``."""

        async def handle(request: Request) -> Response:
            path = urlsplit(request.url).path
            if path.rstrip("/").lower().endswith("/.search"):
                raise MethodNotAllowedError(allow=("POST",))
            raise NotFoundError(f"No SCIM endpoint at {path}.")

        return await self._guard(request, "(unknown)", handle)


def _selected(
    kind: ResourceKind, document: dict[str, Any], parameters: ResponseParameters[Any] | None
) -> dict[str, Any]:
    """The document with ``attributes``/``excludedAttributes`` applied (§3.9; CPU: off the loop)."""
    resource = kind.model.model_validate(document)
    return resource.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE, response_parameters=parameters)


def _list_payload(result: ListResult, resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A ListResponse (RFC 7644 §3.4.2; RFC 9865 §2 for ``nextCursor``)."""
    payload: dict[str, Any] = {"schemas": [_LIST_RESPONSE]}
    if result.total is not None:
        payload["totalResults"] = result.total
    if result.start_index is not None:
        payload["startIndex"] = result.start_index
    payload["itemsPerPage"] = len(resources)
    if result.next_cursor is not None:
        payload["nextCursor"] = result.next_cursor
    payload["Resources"] = resources
    return payload


def _wanted(kind: ResourceKind, parameters: ResponseParameters[Any] | None) -> Callable[[str], bool]:
    """Whether the response will carry a top-level attribute, per §3.9 (``returned: default``)."""
    core = str(kind.model.__schema__).lower() + ":"

    def names(paths: list[Any] | None) -> set[str]:
        return {str(p).lower().removeprefix(core).split(".")[0] for p in paths or []}

    selected = names(parameters.attributes) if parameters else set()
    excluded = names(parameters.excluded_attributes) if parameters else set()
    if selected:
        return lambda name: name.lower() in selected
    return lambda name: name.lower() not in excluded


_REFERENCES = {"members": "/Users/", "groups": "/Groups/"}


def _with_references(document: dict[str, Any], base_url: str) -> dict[str, Any]:
    """Add ``$ref`` URIs to ``members`` and ``groups`` entries (RFC 7643 §4.1.2, §4.2)."""
    for attribute, endpoint in _REFERENCES.items():
        entries = document.get(attribute)
        if isinstance(entries, list):
            document[attribute] = [
                {**entry, "$ref": f"{base_url}{endpoint}{entry['value']}"} for entry in entries
            ]
    return document


def _request_id(request: Request) -> str:
    """The caller's request id when it is a plausible one, else a new one."""
    for header in ("x-ms-request-id", "x-request-id", "client-request-id"):
        value = request.header(header)
        if value and len(value) <= 64 and all(c.isalnum() or c in "-_." for c in value):
            return value
    return uuid.uuid4().hex


def _require_get(request: Request) -> None:
    if request.method != "GET":
        raise MethodNotAllowedError(allow=("GET",))


def _one_or_list(documents: list[dict[str, Any]], wanted: str | None, what: str) -> Response:
    if wanted:
        for document in documents:
            if str(document.get("id", "")).lower() == wanted.lower():
                return _json_response(200, document)
        raise NotFoundError(f"No {what} with id {wanted!r}.")
    payload = {
        "schemas": [_LIST_RESPONSE],
        "totalResults": len(documents),
        "startIndex": 1,
        "itemsPerPage": len(documents),
        "Resources": documents,
    }
    return _json_response(200, payload)


def _json_body(request: Request) -> Any:
    """Decode a JSON body; 415 for a non-JSON media type, 400 invalidSyntax for bad JSON.

    A body announced by ``Transfer-Encoding`` that arrived empty was dropped by the Functions
    host (it forwards bodies only with ``Content-Length > 0``): 411, saying to send the length.
    """
    if not request.body and request.header("transfer-encoding"):
        raise LengthRequiredError()
    content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
    if content_type and content_type not in _JSON_TYPES:
        raise UnsupportedMediaTypeError(
            f"Content-Type {content_type!r} is not supported; use application/scim+json."
        )
    if not request.body.strip():
        raise InvalidSyntaxError("The request has no body; send a SCIM JSON document.")
    try:
        body = json.loads(
            request.body, parse_int=_json_integer, parse_float=_json_decimal, parse_constant=_json_constant
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidSyntaxError(f"The body is not valid JSON: {error}.") from error
    except RecursionError:  # nesting deeper than the parser's stack
        raise InvalidSyntaxError(f"The body nests JSON deeper than {MAX_JSON_DEPTH} levels.") from None
    _check_json_text(body)
    return body


MAX_JSON_DEPTH = 32
"""Deepest nesting of a JSON body: SCIM documents nest about 6 levels (a Bulk operation's data
with an extension's complex attribute); a bound keeps every later walk of the body shallow."""

_MAX_INTEGER = 2**63 - 1
"""RFC 7643 §2.3.4 integers are kept within 64 bits: Table Storage's Int64, and what JSON peers
read exactly (RFC 8259 §6); a longer literal is refused before Python converts it (its int
max-str-digits limit would otherwise fail a 5,000-digit literal with a ValueError)."""


def _json_integer(text: str) -> int:
    """``parse_int`` of :func:`_json_body`: 400 for an integer outside 64 bits (RFC 7643 §2.3.4)."""
    if len(text.lstrip("-")) > len(str(_MAX_INTEGER)) or abs(int(text)) > _MAX_INTEGER:
        raise InvalidValueError(
            f"The body holds an integer of {len(text.lstrip('-')):,} digits; "
            f"integers must lie within ±{_MAX_INTEGER:,} (RFC 7643 §2.3.4)."
        )
    return int(text)


def _json_decimal(text: str) -> float:
    """``parse_float`` of :func:`_json_body`: 400 for a number too large for a double (RFC 7643 §2.3.3)."""
    value = float(text)
    if value in (float("inf"), float("-inf")):
        shown = text if len(text) <= 40 else f"{text[:40]}…"
        raise InvalidValueError(
            f"The body holds the number {shown}, beyond the range of a decimal (RFC 7643 §2.3.3)."
        )
    return value


def _json_constant(text: str) -> Any:
    """``parse_constant`` of :func:`_json_body`: ``NaN`` and ``Infinity`` are not JSON (RFC 8259 §6)."""
    raise InvalidSyntaxError(f"The body holds {text}, which is not a JSON number (RFC 8259 §6).")


def _check_json_text(value: Any) -> None:
    """400 for nesting deeper than :data:`MAX_JSON_DEPTH` or a string that is not Unicode text.

    Iterative, so a hostile body cannot exhaust the stack here; every later
    walk (the Bulk request's ``bulkId`` references, PATCH values, validation)
    then sees at most :data:`MAX_JSON_DEPTH` levels.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                # "\ud800" is valid JSON but not Unicode text: it could be neither stored nor sent back.
                raise InvalidSyntaxError(
                    "The body contains an unpaired UTF-16 surrogate (\\uD800-\\uDFFF)."
                ) from None
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise InvalidSyntaxError(f"The body nests JSON deeper than {MAX_JSON_DEPTH} levels.")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


_QUERY_NAMES = {
    "filter": "filter",
    "startindex": "startIndex",
    "count": "count",
    "attributes": "attributes",
    "excludedattributes": "excludedAttributes",
    "sortby": "sortBy",
    "sortorder": "sortOrder",
    "cursor": "cursor",
}


def _query_parameters(query: Mapping[str, str]) -> dict[str, Any]:
    """The SCIM query parameters (§3.4.2, §3.9), names matched case-insensitively.

    Unknown parameters (such as Entra's ``aadOptscim062020`` flag) are ignored.
    """
    parameters: dict[str, Any] = {}
    for name, value in query.items():
        canonical = _QUERY_NAMES.get(name.lower())
        if canonical is None:
            continue
        if canonical in ("startIndex", "count"):
            try:
                parameters[canonical] = int(value)
            except ValueError:
                raise InvalidValueError(f"{canonical} must be an integer, got {value!r}.") from None
        else:
            parameters[canonical] = value
    return parameters


def _response_parameters(kind: ResourceKind, query: Mapping[str, str]) -> ResponseParameters[Any] | None:
    """``attributes``/``excludedAttributes`` of a single-resource request (§3.9)."""
    selected = {
        _QUERY_NAMES[name.lower()]: value
        for name, value in query.items()
        if name.lower() in ("attributes", "excludedattributes") and value
    }
    if not selected:
        return None
    try:
        return ResponseParameters[kind.model].model_validate(selected)  # type: ignore[name-defined]
    except ValueError as error:  # in SCIM words, never pydantic's text and links (issue 16, item 3)
        reason = describe(error.errors()) if isinstance(error, ValidationError) else f"{error}."
        raise InvalidValueError(f"attributes/excludedAttributes are not valid: {reason}") from error
