"""The listening side of the host: a threaded HTTP server that routes to the worker.

Host rules applied here (azure-notes §6.2; the routing and conversion rules are in
:mod:`functions_host.routing` and :mod:`functions_host.http`):

- **503** with an empty body while the host starts (the listener is up before the worker has
  indexed the app) and after a failed start;
- **404** with an empty body when no route matches the path and method, HEAD and OPTIONS
  included (no method falls back to another);
- a body whose ``Content-Length`` exceeds ``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT`` fails inside the
  host with an empty **500**, not 413 (Azure/azure-functions-host#10519, open): the function is
  not invoked. Keep the limit comfortably above the app's own so the app's 413 is what clients see;
- a function that raises, or whose invocation exceeds host.json ``functionTimeout``, gives an
  empty **500** (the runtime logs the traceback);
- an invalid ``Host`` header is a **400** (Kestrel), and an absolute-form request target
  (``GET http://host/path``) is routed by its path (RFC 9112 §3.2.2);
- host.json ``customHeaders`` are added to every response, 404, 500 and 503 included (a header
  the function set itself is kept);
- a request that announces a body without a length (``Transfer-Encoding: chunked``) is routed
  with an empty body, as the host does (``Content-Length`` is ignored beside ``Transfer-Encoding``,
  RFC 9112 §6.3); an invalid ``Content-Length`` is a 400 (Kestrel). Every connection is closed after
  one response, so an unread body is never parsed as a next request.

Not done here (the real host's, not needed to run this app locally): function keys and
authorization levels, EasyAuth, ``/admin`` routes, HTTP streaming (bodies are read whole),
throttling (``maxConcurrentRequests``), HSTS. werkzeug's server drops request headers whose name
contains ``_`` (Kestrel keeps them).

Only the method, the path without the query string (control characters escaped, cut at 120
characters), the status and the duration are logged, to the ``functions_host`` logger: never
headers or query strings, which may carry secrets. Slow clients (slowloris) are cut off: headers
must arrive within :data:`HEADER_TIMEOUT_S`, every socket read waits at most
:data:`READ_TIMEOUT_S`, and the body must arrive within :data:`BODY_TIMEOUT_S` (else 408).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from werkzeug.exceptions import ClientDisconnected
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from functions_host.config import HostConfig, body_size_limit, is_disabled
from functions_host.http import HostResponse, body_expected, request_datum, response_from_datum
from functions_host.routing import RouteTable, routing_path
from functions_host.timers import Schedule, run_timer
from functions_host.worker import FunctionMetadata, InvocationFailedError, Worker, load_worker

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "BODY_TIMEOUT_S",
    "HEADER_TIMEOUT_S",
    "READ_TIMEOUT_S",
    "FunctionsHost",
    "Listener",
]

logger = logging.getLogger("functions_host")

HEADER_TIMEOUT_S = 10.0
"""Seconds a client has to send the request line and all headers (slowloris guard)."""

READ_TIMEOUT_S = 30.0
"""Seconds one socket read may wait (an idle connection is closed after this)."""

BODY_TIMEOUT_S = 60.0
"""Seconds a client has to send the whole body (408 after that)."""

_READ_CHUNK = 65_536
_LOG_PATH_CHARS = 120


def _printable(value: str, limit: int = _LOG_PATH_CHARS) -> str:
    """``value`` safe for one log line: control characters escaped, cut at ``limit`` characters."""
    cut = len(value) - limit
    text = value[:limit] if cut > 0 else value
    escaped = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return f"{escaped}…(+{cut:,} chars)" if cut > 0 else escaped


class _RefusedError(Exception):
    """The request is answered without invoking a function."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class FunctionsHost:
    """A WSGI application serving a function app through ``azure-functions-runtime``.

    Args:
        app_dir: The folder with ``function_app.py`` and ``host.json``.
        environ: The app settings (``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT``,
            ``AzureWebJobs_<name>_Disabled``); default ``os.environ`` at :meth:`start`.

    Answers 503 until :meth:`start` has indexed the app.
    """

    def __init__(self, app_dir: str | Path, environ: Mapping[str, str] | None = None) -> None:
        self.app_dir = Path(app_dir).resolve()
        self.config = HostConfig.read(self.app_dir / "host.json")
        self._environ = environ
        self.body_limit = body_size_limit(environ if environ is not None else os.environ)
        self.worker: Worker | None = None
        self.routes: RouteTable | None = None
        self.timers: list[tuple[FunctionMetadata, Schedule, bool]] = []
        self._timer_tasks: list[concurrent.futures.Future[None]] = []
        self.started = threading.Event()

    # --- start-up --------------------------------------------------------------------------

    def start(self) -> None:
        """Index the app through the runtime and build the route table; then requests are served.

        Raises:
            functions_host.worker.IndexingError: the runtime refused the app.
            functions_host.routing.HostStartupError: a route uses template syntax this host does not
                implement. (A function the real host would refuse is logged as in error and not
                routed; the others are served, as in Azure.)
            ValueError: a timer schedule cannot be parsed.
        """
        environ = self._environ if self._environ is not None else os.environ
        self.body_limit = body_size_limit(environ)
        worker = load_worker(self.app_dir)
        enabled = [function for function in worker.functions if not is_disabled(function.name, environ)]
        http = [(f.name, f.trigger, f) for f in enabled if f.trigger.get("type") == "httpTrigger"]
        routes = RouteTable(http, self.config.route_prefix)
        for name, reason in routes.errors.items():
            logger.error("function %s is in error and not served: %s", name, reason)
        timers = [
            (f, Schedule.parse(str(f.trigger.get("schedule", ""))), bool(f.trigger.get("runOnStartup")))
            for f in enabled
            if f.trigger.get("type") == "timerTrigger"
        ]
        self.worker, self.routes, self.timers = worker, routes, timers
        self.started.set()

    def start_timers(self) -> None:
        """Run every enabled timer trigger on its schedule, on the worker's event loop."""
        worker = self._running_worker()
        for function, schedule, on_startup in self.timers:
            future = asyncio.run_coroutine_threadsafe(
                run_timer(worker, function, schedule, on_startup), worker.loop
            )
            self._timer_tasks.append(future)
            logger.info("%-24s timer   %s (UTC)", function.name, schedule.expression)

    def stop_timers(self) -> None:
        """Cancel the timer loops (a run in progress is cancelled too)."""
        for future in self._timer_tasks:
            future.cancel()
        self._timer_tasks.clear()

    def _running_worker(self) -> Worker:
        if self.worker is None:
            raise RuntimeError("the host has not started")
        return self.worker

    # --- requests --------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Serve one WSGI request."""
        started = time.perf_counter()
        raw_path = _request_path(environ)
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        try:
            response = self._dispatch(environ, method, raw_path)
        except _RefusedError as refused:
            response = HostResponse(refused.status, [], b"")
        headers = self._with_custom_headers(response.headers)
        headers.append(("Content-Length", str(len(response.body))))
        elapsed_ms = (time.perf_counter() - started) * 1000
        logger.info(
            "%s %s %d %.1fms", _printable(method, 16), _printable(raw_path), response.status, elapsed_ms
        )
        start_response(f"{response.status} {_reason(response.status)}", headers)
        return [response.body]

    def _with_custom_headers(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        present = {name.lower() for name, _ in headers}
        extra = [
            (name, value) for name, value in self.config.custom_headers.items() if name.lower() not in present
        ]
        return [*headers, *extra]

    def _dispatch(self, environ: WSGIEnvironment, method: str, raw_path: str) -> HostResponse:
        host = _host(environ)  # Kestrel refuses a bad Host before the host sees the request
        if not self.started.is_set() or self.routes is None or self.worker is None:
            raise _RefusedError(503)
        found = self.routes.resolve(method, routing_path(raw_path))
        if found is None:
            raise _RefusedError(404)
        route, route_params = found
        body = self._read_body(environ)
        datum = request_datum(
            method=method,
            scheme=str(environ.get("wsgi.url_scheme", "http")),
            host=host,
            raw_path=raw_path,
            raw_query=str(environ.get("QUERY_STRING", "")),
            headers=_request_headers(environ),
            route_params=route_params,
            body=body,
        )
        timeout = self.config.function_timeout.total_seconds()
        try:
            invocation = self.worker.invoke(route.function, [(route.argument_name, datum)], timeout=timeout)
            return response_from_datum(invocation.return_value)
        except InvocationFailedError:
            return HostResponse(500, [], b"")  # the runtime has logged the traceback
        except TimeoutError:
            logger.error(
                "%s exceeded functionTimeout (%s)", route.function_name, self.config.function_timeout
            )
            return HostResponse(500, [], b"")
        except TypeError as error:
            logger.error("%s: %s", route.function_name, error)
            return HostResponse(500, [], b"")

    def _read_body(self, environ: WSGIEnvironment) -> bytes:
        """The body when ``Content-Length > 0``, else empty (the host's rule).

        Raises:
            _RefusedError: 500 above ``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT`` (unread); 408 for a client
                that stalls or misses the body deadline.
        """
        length = _content_length(environ)
        if length is None or not body_expected(length):
            return b""
        if length is not None and length > self.body_limit:
            logger.warning(
                "request body of %d bytes is over FUNCTIONS_REQUEST_BODY_SIZE_LIMIT (%d)",
                length,
                self.body_limit,
            )
            raise _RefusedError(500)
        stream = environ["wsgi.input"]
        chunks: list[bytes] = []
        remaining = length
        try:
            while remaining > 0:
                chunk = stream.read(min(_READ_CHUNK, remaining))
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
        except (TimeoutError, ClientDisconnected, OSError):
            raise _RefusedError(408) from None
        if remaining > 0:
            raise _RefusedError(408)
        return b"".join(chunks)


def _content_length(environ: WSGIEnvironment) -> int | None:
    """The body length the host goes by, or ``None`` when the request has none.

    With ``Transfer-Encoding`` present, ``Content-Length`` is ignored (RFC 9112 §6.3), so the
    request counts as having no length and its body is not forwarded.

    Raises:
        _RefusedError: 400 for a ``Content-Length`` that is not a non-negative integer (Kestrel's
            "Invalid content length").
    """
    raw = str(environ.get("CONTENT_LENGTH", "")).strip()
    if environ.get("HTTP_TRANSFER_ENCODING") or not raw:
        return None
    if not raw.isdigit():
        raise _RefusedError(400)
    return int(raw)


_HOST_HEADER = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.\-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?"
)


def _request_path(environ: WSGIEnvironment) -> str:
    """The request target's path, undecoded; an absolute-form target (``http://h/p``) gives its path.

    RFC 9112 §3.2.2: a server must accept the absolute form; Kestrel routes it by its path.
    """
    target = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO") or "/")
    if target[:8].lower().startswith(("http://", "https://")):
        target = "/" + target.split("://", 1)[1].partition("/")[2]
    return target.split("?", 1)[0] or "/"


def _host(environ: WSGIEnvironment) -> str:
    """The Host header the function's URL is built from; 400 unless it is a plain ``host[:port]``.

    Kestrel refuses a request whose Host is not a valid authority without user information
    (RFC 9112 §3.2, RFC 3986 §3.2; ``BadRequest_InvalidHostHeader``), so no path, query,
    ``@`` or control character can reach the function's ``url``.

    Raises:
        _RefusedError: 400 for an invalid Host.
    """
    host = str(environ.get("HTTP_HOST", ""))
    if not host:
        return f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '80')}"
    if not _HOST_HEADER.fullmatch(host):
        raise _RefusedError(400)
    return host


def _request_headers(environ: WSGIEnvironment) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = str(value)
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            headers[key.replace("_", "-").lower()] = str(value)
    return headers


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


# --- serving -------------------------------------------------------------------------------


class _RequestHandler(WSGIRequestHandler):
    """werkzeug's handler without its access log (it would print query strings), with timeouts.

    ``timeout`` bounds each socket read; :attr:`header_timeout` bounds the request line and
    headers together, and :attr:`body_timeout` the body, so a client trickling one byte at a
    time (slowloris) is cut off: a timer shuts the socket's read side (the response can still
    be written); headers cut short get a 408 here, a body cut short a 408 from the host.
    """

    timeout = READ_TIMEOUT_S
    header_timeout = HEADER_TIMEOUT_S
    body_timeout = BODY_TIMEOUT_S

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log nothing: :class:`FunctionsHost` logs each request without the query string."""

    def handle_one_request(self) -> None:
        """Read one request with the header deadline armed until the headers are complete.

        Every connection is closed after one response: a body the host left unread (chunked,
        too large, refused) can then never be parsed as a next request.
        """
        self._headers_lock = threading.Lock()
        self._headers_done = False
        self._headers_late = False
        self._timers = [self._start_timer(self.header_timeout, self._cut_off_headers)]
        try:
            super().handle_one_request()
        finally:
            self.close_connection = True
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


class Listener:
    """The host's HTTP listener, bound at construction (a busy port fails here, before start-up).

    Args:
        host: The application to serve.
        address: Interface to listen on.
        port: TCP port; 0 picks a free one.

    Raises:
        OSError: the address cannot be bound (``errno.EADDRINUSE`` for a busy port).
    """

    def __init__(
        self,
        host: FunctionsHost,
        address: str = "127.0.0.1",
        port: int = 7071,
        *,
        header_timeout: float = HEADER_TIMEOUT_S,
        read_timeout: float = READ_TIMEOUT_S,
        body_timeout: float = BODY_TIMEOUT_S,
    ) -> None:
        handler = _handler(header_timeout, read_timeout, body_timeout)
        # Bound here, not by werkzeug: werkzeug answers a busy port with a message and sys.exit().
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as bound:
            bound.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            bound.bind((address, port))
            bound.listen(128)
            self.server: BaseWSGIServer = make_server(
                address, port, host, threaded=True, request_handler=handler, fd=bound.fileno()
            )  # werkzeug serves a duplicate of the socket
        self.url = _base_url(address, self.server.port)
        self._thread: threading.Thread | None = None

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown` or Ctrl-C."""
        with contextlib.suppress(KeyboardInterrupt):
            self.server.serve_forever(poll_interval=0.05)

    def start_thread(self) -> None:
        """Serve from a daemon thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="functions-host", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join()
        self.server.server_close()


@contextlib.contextmanager
def serve_in_thread(
    host: FunctionsHost, address: str = "127.0.0.1", port: int = 0, **timeouts: float
) -> Iterator[str]:
    """Start ``host`` (if not started), serve it from a thread and yield its base URL."""
    listener = Listener(host, address, port, **timeouts)
    listener.start_thread()
    try:
        if not host.started.is_set():
            host.start()
        yield listener.url
    finally:
        listener.shutdown()
