"""Serve an Azure Functions Python v2 ``func.FunctionApp`` over HTTP the way the Functions host does.

For machines without Azure Functions Core Tools (see azure-notes §2). :class:`HostEmulator` is a
WSGI application that routes requests to the app's HTTP triggers as the host does:

- templates are ``<routePrefix>/<route>`` (``routePrefix`` from host.json, default ``api``),
  matched case-insensitively with the ASP.NET route syntax the host uses: literal segments
  (``.search`` included), ``{p}``, ``{p?}``, ``{p=default}``, ``{*p}`` and the constraints ``int``,
  ``long``, ``guid``, ``alpha`` and ``regex(...)``; any other constraint is refused at construction;
- routes are tried in function-name order and the first one whose template **and** method
  constraint match wins; a literal segment does *not* beat a parameter (azure-notes §1.2);
- ``async def`` functions run on one long-lived event loop owned by the emulator, as in the Python
  worker, so clients bound to a loop (``azure.data.tables.aio``) survive across requests
  (azure-notes §5.7); ``def`` functions run in the server's request thread;
- no matching route gives an empty 404 (also when a template matches but its methods exclude the
  verb: the host answers so too as far as we know [I]); a body over the limit gives an empty 413,
  and a function that raises an empty 500 (the traceback is logged).

Honest limits:

- no auth-level enforcement (function keys are never checked; Core Tools does not check them either);
- no host middleware: no HSTS, ``customHeaders``, throttling or URL-length limit;
- no ``/admin`` routes and no ``context`` argument injection;
- the ordering quirk is reproduced only as "sorted by function name" (case-insensitively, then
  ordinally) [I: the exact comparison the host uses was not verified];
- no HTTP streaming: the request body is read whole, the response is sent whole;
- query parameters with repeated keys keep the last value;
- a percent-encoded ``/`` (``%2F``) in the path is decoded before matching (ASP.NET keeps it).

Only the method, the path without the query string (control characters escaped and cut at 120
characters by :func:`scim.logs.printable`, so a path cannot forge or flood log lines), the status
and the duration are logged, to the ``tools.devserver`` logger: never headers or query strings,
which may carry secrets.

Slow clients (slowloris) are cut off: the request line and headers must arrive within
:data:`HEADER_TIMEOUT_S` (else 408 and the connection is closed), every socket read waits at most
:data:`READ_TIMEOUT_S`, and the body must arrive within :data:`BODY_TIMEOUT_S` (else 408). A body
whose ``Content-Length`` exceeds the limit is refused before any of it is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar
from urllib.parse import quote

import azure.functions as func
from azure.functions.decorators.function_app import Function
from azure.functions.decorators.http import HttpTrigger
from azure.functions.decorators.timer import TimerTrigger
from azure.functions.timer import TimerRequest
from werkzeug.datastructures import Headers
from werkzeug.exceptions import ClientDisconnected
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from scim.logs import printable

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "BODY_SIZE_LIMIT_SETTING",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_ROUTE_PREFIX",
    "HostEmulator",
    "Route",
    "read_route_prefix",
    "request_body_limit",
    "serve",
    "serve_in_thread",
]

logger = logging.getLogger("tools.devserver")

DEFAULT_ROUTE_PREFIX = "api"
"""The host's route prefix when host.json sets none."""

DEFAULT_MAX_BODY_BYTES = 104_857_600
"""The host's default request body limit (100 MB, azure-notes §1.5)."""

BODY_SIZE_LIMIT_SETTING = "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"
"""The app setting the host reads its body limit from, in bytes."""

HEADER_TIMEOUT_S = 10.0
"""Seconds a client has to send the request line and all headers (slowloris guard)."""

READ_TIMEOUT_S = 30.0
"""Seconds one socket read may wait (an idle connection is closed after this)."""

BODY_TIMEOUT_S = 60.0
"""Seconds a client has to send the whole body (408 after that)."""

_T = TypeVar("_T")
_READ_CHUNK = 65_536
_CLOSE_TIMEOUT_S = 10.0


def read_route_prefix(host_json: Path) -> str:
    """Return ``extensions.http.routePrefix`` from a host.json file.

    Returns ``"api"`` when the key is absent; an empty string is a valid value meaning no prefix.

    Raises:
        OSError: the file cannot be read.
        ValueError: the file is not JSON, or the prefix is not a string.
    """
    document: object = json.loads(host_json.read_text(encoding="utf-8"))
    prefix = _member(_member(_member(document, "extensions"), "http"), "routePrefix")
    if prefix is None:
        return DEFAULT_ROUTE_PREFIX
    if not isinstance(prefix, str):
        raise ValueError(f"{host_json}: extensions.http.routePrefix must be a string, not {prefix!r}")
    return prefix


def _member(value: object, key: str) -> object:
    return value.get(key) if isinstance(value, dict) else None


def request_body_limit(environ: Mapping[str, str]) -> int:
    """Return the body limit the host would apply: ``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT`` or 100 MB.

    Raises:
        ValueError: the setting is not a positive integer.
    """
    raw = environ.get(BODY_SIZE_LIMIT_SETTING, "").strip()
    if not raw:
        return DEFAULT_MAX_BODY_BYTES
    try:
        limit = int(raw)
    except ValueError:
        raise ValueError(f"{BODY_SIZE_LIMIT_SETTING}={raw!r} is not an integer number of bytes") from None
    if limit <= 0:
        raise ValueError(f"{BODY_SIZE_LIMIT_SETTING}={raw!r} must be positive")
    return limit


# --- route templates ---------------------------------------------------------------------------

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_INTEGER = re.compile(r"[+-]?[0-9]+")
_GUID_D = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# Guid.TryParse accepts the N, D, B and P formats (the X format is not emulated).
_GUID = re.compile(rf"[0-9a-f]{{32}}|{_GUID_D}|\{{{_GUID_D}\}}|\({_GUID_D}\)", re.IGNORECASE)
_ALPHA = re.compile(r"[a-z]+", re.IGNORECASE | re.ASCII)
_CONSTRAINT = re.compile(r"(?P<name>[A-Za-z]+)(?:\((?P<arg>.*)\))?", re.DOTALL)
_EMULATED = "int, long, guid, alpha, regex(...)"


@dataclass(frozen=True)
class _Parameter:
    name: str
    group: str
    checks: tuple[Callable[[str], bool], ...]
    default: str | None


def _integer_check(bounds: tuple[int, int]) -> Callable[[str], bool]:
    low, high = bounds
    return lambda value: _INTEGER.fullmatch(value) is not None and low <= int(value) <= high


def _constraint_check(spec: str, template: str) -> Callable[[str], bool]:
    """Return the predicate for one route constraint such as ``int`` or ``regex(^a+$)``."""
    match = _CONSTRAINT.fullmatch(spec)
    name = match["name"].lower() if match else ""
    arg = match["arg"] if match else None
    if name in ("int", "long") and arg is None:
        return _integer_check(_INT32 if name == "int" else _INT64)
    if name == "guid" and arg is None:
        return lambda value: _GUID.fullmatch(value) is not None
    if name == "alpha" and arg is None:
        return lambda value: _ALPHA.fullmatch(value) is not None
    if name == "regex" and arg:
        try:
            # ASP.NET's RegexRouteConstraint is unanchored and case-insensitive.
            pattern = re.compile(arg, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"route {template!r}: bad regex constraint {arg!r}: {exc}") from None
        return lambda value: pattern.search(value) is not None
    raise ValueError(f"route {template!r}: constraint {spec!r} is not emulated (emulated: {_EMULATED})")


def _split_parameter(text: str) -> tuple[list[str], str | None]:
    """Split ``name:c1:c2(arg)=default`` at top-level ``:`` and ``=``.

    As in ASP.NET, a constraint argument runs to the first ``)`` followed by ``:``, ``=`` or the
    end, so a regex may contain ``:``, ``=`` and parentheses.
    """
    parts: list[str] = []
    current = ""
    index = 0
    while index < len(text):
        char = text[index]
        if char == "(":
            end = index
            while True:
                end = text.find(")", end + 1)
                if end == -1:
                    raise ValueError(f"unbalanced parenthesis in {text!r}")
                if end + 1 == len(text) or text[end + 1] in ":=":
                    break
            current += text[index : end + 1]
            index = end + 1
            continue
        if char == "=":
            parts.append(current)
            return parts, text[index + 1 :]
        if char == ":":
            parts.append(current)
            current = ""
        else:
            current += char
        index += 1
    parts.append(current)
    return parts, None


def _compile_template(template: str) -> tuple[re.Pattern[str], tuple[_Parameter, ...]]:
    """Compile a route template to an anchored, case-insensitive regex and its parameters.

    Raises:
        ValueError: the template uses syntax or a constraint this emulator does not implement.
    """
    segments = template.split("/") if template else []
    pattern = "^"
    parameters: list[_Parameter] = []
    seen: set[str] = set()
    for position, segment in enumerate(segments):
        if not segment:
            raise ValueError(f"route {template!r}: empty segment")
        if "{" not in segment and "}" not in segment:
            pattern += "/" + re.escape(segment)
            continue
        if not (segment.startswith("{") and segment.endswith("}")) or segment.startswith("{{"):
            raise ValueError(f"route {template!r}: complex segment {segment!r} is not emulated")
        inner = segment[1:-1].replace("{{", "{").replace("}}", "}")
        catch_all = inner.startswith("*")
        inner = inner.lstrip("*")
        optional = inner.endswith("?")
        inner = inner.removesuffix("?")
        parts, default = _split_parameter(inner)
        name = parts[0]
        if not name or any(char in name for char in "{}/?*=:()"):
            raise ValueError(f"route {template!r}: bad parameter name in {segment!r}")
        if name.casefold() in seen:
            raise ValueError(f"route {template!r}: parameter {name!r} appears twice")
        seen.add(name.casefold())
        checks = tuple(_constraint_check(spec, template) for spec in parts[1:])
        group = f"p{len(parameters)}"
        parameters.append(_Parameter(name, group, checks, default))
        if catch_all:
            if position != len(segments) - 1:
                raise ValueError(f"route {template!r}: a catch-all must be the last segment")
            pattern += f"(?:/(?P<{group}>.*))?"
        elif optional or default is not None:
            pattern += f"(?:/(?P<{group}>[^/]+))?"
        else:
            pattern += f"/(?P<{group}>[^/]+)"
    # ASP.NET routing tolerates one trailing slash [I: assumed for the Functions host].
    return re.compile(pattern + "/?$", re.IGNORECASE), tuple(parameters)


def _join_template(prefix: str, route: str) -> str:
    return "/".join(part for part in (prefix.strip("/"), route.strip("/")) if part)


@dataclass(frozen=True)
class Route:
    """One HTTP trigger as the emulator routes it.

    Attributes:
        function_name: The function's name, which decides the order routes are tried in.
        template: The full template matched against the path, ``<routePrefix>/<route>``.
        methods: Upper-case methods the trigger accepts, or ``None`` for every method.
        is_async: Whether the user function is a coroutine function.
    """

    function_name: str
    template: str
    methods: frozenset[str] | None
    is_async: bool
    handler: Callable[..., Any] = field(repr=False, compare=False)
    argument_name: str = field(repr=False, compare=False)
    _pattern: re.Pattern[str] = field(repr=False, compare=False)
    _parameters: tuple[_Parameter, ...] = field(repr=False, compare=False)

    def allows(self, method: str) -> bool:
        """Tell whether the trigger's method constraint admits ``method``."""
        return self.methods is None or method.upper() in self.methods

    def match_path(self, path: str) -> dict[str, str] | None:
        """Return the route parameters if ``path`` matches the template and its constraints.

        Optional parameters that are absent are left out, unless they declare a default.
        """
        match = self._pattern.match(path)
        if match is None:
            return None
        values: dict[str, str] = {}
        for parameter in self._parameters:
            value = match[parameter.group] or parameter.default
            if value is None:
                continue
            if not all(check(value) for check in parameter.checks):
                return None
            values[parameter.name] = value
        return values


def _method_name(method: object) -> str:
    value = method.value if isinstance(method, func.HttpMethod) else method
    return str(value).upper()


def _build_route(function: Function, route_prefix: str) -> Route | None:
    trigger = function.get_trigger()
    if not function.is_http_function() or not isinstance(trigger, HttpTrigger):
        return None
    handler = function.get_user_function()
    name = function.get_function_name() or handler.__name__
    template = _join_template(route_prefix, trigger.route or name)
    pattern, parameters = _compile_template(template)
    methods = None if trigger.methods is None else frozenset(_method_name(m) for m in trigger.methods)
    return Route(
        function_name=name,
        template=template,
        methods=methods,
        is_async=inspect.iscoroutinefunction(handler),
        handler=handler,
        argument_name=trigger.name,
        _pattern=pattern,
        _parameters=parameters,
    )


# --- the WSGI application -----------------------------------------------------------------------


class _Response(Response):
    """A werkzeug response that adds no Content-Type of its own (the host's 404 has none)."""

    default_mimetype = None


def _empty(status: int) -> Response:
    return _Response(b"", status=status)


class HostEmulator:
    """A WSGI application that serves a ``func.FunctionApp``'s HTTP triggers like the host.

    Args:
        app: The function app. ``app.get_functions()`` is called once, here: a second call on
            the same app raises ``ValueError``, so pass ``functions=`` instead when the list was
            already computed (and then no ``app``).
        route_prefix: host.json's ``extensions.http.routePrefix`` (see :func:`read_route_prefix`).
        max_body_bytes: Request bodies longer than this get a 413 (refused from the
            ``Content-Length`` alone, before any of the body is read); ``None`` means no
            limit (:func:`serve` then applies the host's ``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT``).
        functions: The result of an earlier ``app.get_functions()``.
        too_large: The response for a body over the limit (default: the host's empty 413).

    A path that matches a template but not its methods, and no other route, gets an empty 404,
    which is what the real host answers too as far as we know [I]. Call :meth:`close` (or use
    the emulator as a context manager) to stop the event loop of ``async def`` functions.

    Raises:
        TypeError: neither or both of ``app`` and ``functions`` were given.
        ValueError: a route template uses syntax or a constraint that is not emulated.
    """

    def __init__(
        self,
        app: func.FunctionApp | None = None,
        *,
        route_prefix: str,
        max_body_bytes: int | None = None,
        functions: Iterable[Function] | None = None,
        too_large: func.HttpResponse | None = None,
    ) -> None:
        if app is not None and functions is None:
            functions = app.get_functions()
        elif app is not None or functions is None:
            raise TypeError("pass either a FunctionApp or functions=app.get_functions()")
        functions = list(functions)
        # Timer triggers (NCRONTAB schedules are not parsed): see start_timers().
        self.timers: list[tuple[str, Callable[..., Any], str]] = []
        for function in functions:
            trigger = function.get_trigger()
            if isinstance(trigger, TimerTrigger):
                name = function.get_function_name() or trigger.name
                self.timers.append((name, function.get_user_function(), trigger.name))
        routes = (_build_route(function, route_prefix) for function in functions)
        # The host tries routes in function-name order (azure-notes §1.2).
        self.routes: tuple[Route, ...] = tuple(
            sorted(
                (route for route in routes if route is not None),
                key=lambda route: (route.function_name.casefold(), route.function_name),
            )
        )
        self.route_prefix = route_prefix
        self.max_body_bytes = max_body_bytes
        self.too_large = too_large
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._loop_lock = threading.Lock()
        self._closed = False

    def resolve(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """Return the first route (in function-name order) matching ``path`` and ``method``."""
        for route in self.routes:
            params = route.match_path(path)
            if params is not None and route.allows(method):
                return route, params
        return None

    def run_coroutine(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coroutine`` on the emulator's event loop (started on first use) and wait.

        Useful to prepare state on the loop the functions will use, e.g. creating a table with
        the same ``aio`` client.

        Raises:
            RuntimeError: the emulator is closed.
        """
        try:
            loop = self._ensure_loop()
        except BaseException:
            coroutine.close()  # never awaited: close it so no RuntimeWarning escapes
            raise
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    def start_timers(self, interval: float) -> None:
        """Run every timer trigger each ``interval`` seconds on the functions' event loop.

        The real host runs them on their NCRONTAB schedule (and one instance at a
        time); the emulator runs them at a fixed interval, which is what local use
        needs. A failing run is logged and the next one happens anyway.
        """
        loop = self._ensure_loop()
        for name, handler, argument in self.timers:
            asyncio.run_coroutine_threadsafe(self._tick(name, handler, argument, interval), loop)
            logger.info("%-22s timer, every %g s (schedule not emulated)", name, interval)

    async def _tick(self, name: str, handler: Callable[..., Any], argument: str, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                result = handler(**{argument: TimerRequest()})
                if inspect.iscoroutine(result):
                    await result
            except Exception:
                logger.exception("timer function %s failed", name)

    def close(self) -> None:
        """Cancel leftover tasks, stop the event loop and close it. Idempotent."""
        with self._loop_lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._loop_thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(_drain(), loop).result(timeout=_CLOSE_TIMEOUT_S)
        except Exception:
            logger.warning("event loop did not shut down cleanly", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=_CLOSE_TIMEOUT_S)
        if not thread.is_alive():
            loop.close()

    def __enter__(self) -> Self:
        """Return the emulator; :meth:`close` runs on exit."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the emulator."""
        self.close()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Serve one WSGI request."""
        started = time.perf_counter()
        request = Request(environ)
        response = self._dispatch(request)
        elapsed_ms = (time.perf_counter() - started) * 1000
        method, path = printable(request.method, 16), printable(request.path)
        logger.info("%s %s %d %.1fms", method, path, response.status_code, elapsed_ms)
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        found = self.resolve(request.method, request.path)
        if found is None:
            return _empty(404)
        route, route_params = found
        try:
            body = self._read_body(request)
        except _BodyRefusedError as refused:
            return refused.response
        http_request = func.HttpRequest(
            request.method,
            _request_url(request),
            headers=dict(request.headers.items()),
            params=dict(request.args.items(multi=True)),  # repeated keys: the last one wins
            route_params=route_params,
            body=body,
        )
        try:
            return _to_wsgi_response(self._invoke(route, http_request))
        except Exception:
            logger.exception("function %s failed", route.function_name)
            return _empty(500)

    def _invoke(self, route: Route, request: func.HttpRequest) -> object:
        result = route.handler(**{route.argument_name: request})
        if inspect.iscoroutine(result):
            return self.run_coroutine(result)
        return result

    def _read_body(self, request: Request) -> bytes:
        """Read the whole body.

        Raises:
            _BodyRefusedError: 413 when ``Content-Length`` (checked before reading) or the
                bytes read exceed the limit; 408 when the client stalls or misses the body
                deadline (the server's handler then cuts the read side: a short read).
        """
        limit = self.max_body_bytes
        if limit is not None and (request.content_length or 0) > limit:
            raise _BodyRefusedError(self._too_large_response())
        chunks: list[bytes] = []
        size = 0
        try:
            while chunk := request.stream.read(_READ_CHUNK):
                size += len(chunk)
                if limit is not None and size > limit:
                    raise _BodyRefusedError(self._too_large_response())
                chunks.append(chunk)
        except (TimeoutError, ClientDisconnected):
            raise _BodyRefusedError(_closing(_empty(408))) from None
        return b"".join(chunks)

    def _too_large_response(self) -> Response:
        response = _to_wsgi_response(self.too_large) if self.too_large is not None else _empty(413)
        return _closing(response)

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._loop_lock:
            if self._closed:
                raise RuntimeError("the HostEmulator is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=_run_loop, args=(loop,), name="devserver-loop", daemon=True)
                thread.start()
                self._loop, self._loop_thread = loop, thread
            return self._loop


class _BodyRefusedError(Exception):
    """The body was not read: too large, or too slow; carries the response to send."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def _closing(response: Response) -> Response:
    """``response`` with ``Connection: close``: the rest of the body is not read for the next request."""
    response.headers["Connection"] = "close"
    return response


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


async def _drain() -> None:
    """Cancel the loop's other tasks and shut down its async generators and executor."""
    loop = asyncio.get_running_loop()
    tasks = [task for task in asyncio.all_tasks(loop) if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await loop.shutdown_asyncgens()
    await loop.shutdown_default_executor()


def _request_url(request: Request) -> str:
    """Return the full request URL with the query string exactly as the client sent it."""
    path = quote(request.root_path + request.path, safe="/:@!$&'()*+,;=~")
    query = request.query_string.decode("latin-1")
    return request.host_url.rstrip("/") + path + (f"?{query}" if query else "")


def _to_wsgi_response(result: object) -> Response:
    """Map what a function returned to a werkzeug response, as the Python worker does.

    Raises:
        TypeError: the function returned something the worker cannot send.
    """
    if isinstance(result, func.HttpResponse):
        headers = Headers()
        for key, value in result.headers.items():
            if key.lower() != "content-length":  # recomputed from the body
                headers.add(key, value)
        if "content-type" not in headers:
            mimetype: str = result.mimetype
            text = mimetype.startswith("text/")
            headers["Content-Type"] = f"{mimetype}; charset={result.charset}" if text else mimetype
        status: int = result.status_code
        body: bytes = result.get_body()
        return _Response(body, status=status, headers=headers)
    # [I] The two cases below follow the worker's converters, not a run of the real host.
    if result is None:
        return _empty(204)
    if isinstance(result, str):
        return _Response(result.encode(), status=200, content_type="text/plain; charset=utf-8")
    raise TypeError(f"a function returned {type(result).__name__}, not func.HttpResponse")


# --- serving ------------------------------------------------------------------------------------


class _RequestHandler(WSGIRequestHandler):
    """werkzeug's handler without its access log (it would print query strings), with timeouts.

    ``timeout`` bounds each socket read; :attr:`header_timeout` bounds the request line and
    headers together, and :attr:`body_timeout` the body, so a client trickling one byte at a
    time (slowloris) is cut off: a timer shuts the socket's read side (the response can still
    be written); headers cut short get a 408 here, a body cut short a 408 from the emulator.
    """

    timeout = READ_TIMEOUT_S
    header_timeout = HEADER_TIMEOUT_S
    body_timeout = BODY_TIMEOUT_S

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log nothing: :class:`HostEmulator` logs each request without the query string."""

    def handle_one_request(self) -> None:
        """Read one request with the header deadline armed until the headers are complete."""
        self._headers_lock = threading.Lock()
        self._headers_done = False
        self._headers_late = False
        self._timers = [self._start_timer(self.header_timeout, self._cut_off_headers)]
        try:
            super().handle_one_request()
        finally:
            for timer in self._timers:
                timer.cancel()

    def parse_request(self) -> bool:
        """Parse the headers; refuse with 408 if the deadline cut them off."""
        parsed = super().parse_request()
        with self._headers_lock:
            self._headers_done = True
            late = self._headers_late
        if late:
            self.close_connection = True
            self.send_error(408, "Request header timeout")
            return False
        self._timers.append(self._start_timer(self.body_timeout, self._cut_off_reads))
        return parsed

    @staticmethod
    def _start_timer(seconds: float, action: Callable[[], None]) -> threading.Timer:
        timer = threading.Timer(seconds, action)
        timer.daemon = True
        timer.start()
        return timer

    def _cut_off_headers(self) -> None:
        with self._headers_lock:
            if self._headers_done:
                return
            self._headers_late = True
        self._cut_off_reads()

    def _cut_off_reads(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RD)  # wakes the blocked read with end-of-file


def _handler(header_timeout: float, read_timeout: float, body_timeout: float) -> type[_RequestHandler]:
    attributes = {"header_timeout": header_timeout, "timeout": read_timeout, "body_timeout": body_timeout}
    return type("_TimedRequestHandler", (_RequestHandler,), attributes)


def _base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextlib.contextmanager
def serve_in_thread(
    emulator: HostEmulator,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    header_timeout: float = HEADER_TIMEOUT_S,
    read_timeout: float = READ_TIMEOUT_S,
    body_timeout: float = BODY_TIMEOUT_S,
) -> Iterator[str]:
    """Serve ``emulator`` from a daemon thread and yield its base URL, ``http://HOST:PORT``.

    ``port=0`` picks a free port. The server is shut down on exit; the emulator is not closed
    (its owner closes it).
    """
    handler = _handler(header_timeout, read_timeout, body_timeout)
    server = make_server(host, port, emulator, threaded=True, request_handler=handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="devserver", daemon=True
    )
    thread.start()
    try:
        yield _base_url(host, server.port)
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def serve(
    emulator: HostEmulator,
    host: str = "127.0.0.1",
    port: int = 7071,
    *,
    on_shutdown: Callable[[], Coroutine[Any, Any, None]] | None = None,
    timer_interval: float | None = None,
) -> None:
    """Serve ``emulator`` with a threaded werkzeug server until Ctrl-C, then close both.

    With ``timer_interval``, timer triggers run every that many seconds (:meth:`HostEmulator.start_timers`).

    When the emulator has no body limit, the host's is applied: ``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT``
    or 100 MB. ``on_shutdown`` runs on the functions' event loop before it closes (e.g. to close
    an ``aio`` client bound to that loop).
    """
    if emulator.max_body_bytes is None:
        emulator.max_body_bytes = request_body_limit(os.environ)
    server = make_server(host, port, emulator, threaded=True, request_handler=_RequestHandler)
    try:
        for route in emulator.routes:
            methods = ",".join(sorted(route.methods)) if route.methods is not None else "*"
            logger.info("%-22s %s /%s", route.function_name, methods, route.template)
        if timer_interval is not None:
            emulator.start_timers(timer_interval)
        logger.info("serving on %s (Ctrl-C to stop)", _base_url(host, server.port))
        server.serve_forever()  # werkzeug returns from this on KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if on_shutdown is not None:
            try:
                emulator.run_coroutine(on_shutdown())
            except Exception:
                logger.warning("shutdown hook failed", exc_info=True)
        emulator.close()
