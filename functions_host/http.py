"""HTTP request to the runtime's ``http`` Datum, and the returned Datum back to HTTP, as the host does.

The .NET host converts each request into an ``RpcHttp`` message for the worker and each reply
back. The rules below are the host's, each with its source (the host's ``RpcMessageConversion
Extensions``/``HttpRequestExtensions`` and Kestrel; azure-notes §6.2 unless marked):

- **method**: as sent; **url**: scheme, host, the path as Kestrel decodes it (``%2F`` kept) and
  the query string exactly as sent (``GetDisplayUrl``);
- **headers**: names lower-cased; a repeated header arrives once, its values joined with ``,``
  (``StringValues.ToString``);
- **query**: keys compared case-insensitively (ASP.NET's query collection), repeated keys joined
  with ``,``, ``+`` and percent escapes decoded, and a key whose value is empty is **dropped**
  (the worker does not announce nullable types, so the host skips empty strings);
- **params**: the route parameters;
- **body**: forwarded only when ``Content-Length > 0`` (Azure/azure-functions-host#4926, #7930):
  a chunked request (``Transfer-Encoding``, no length) reaches the function with an empty body.
  The body goes as raw bytes whatever its content type (``RawHttpBodyBytes``);
- **response**: the status code and headers as the function set them (``Content-Type`` verbatim;
  ``Set-Cookie`` headers, which ``azure.functions`` moves into ``cookies``, sent back as headers;
  ``azure.functions`` itself adds ``text/plain; charset=utf-8`` when none is set), the body as
  bytes. A function that returned a ``str`` answers 200 with ``text/plain; charset=utf-8`` and
  one that returned nothing 204 [I: from the worker's converters, not a run of the real host].
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote_plus

from functions_host.routing import routing_path
from functions_host.worker import Datum

__all__ = ["HostResponse", "body_expected", "query_values", "request_datum", "response_from_datum"]


@dataclass(frozen=True)
class HostResponse:
    """What the host writes back: status, headers in order, body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def query_values(raw_query: str) -> dict[str, str]:
    """The query as the function sees it: case-insensitive keys, repeats joined, empty values dropped."""
    collected: dict[str, tuple[str, list[str]]] = {}
    for part in raw_query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        name = unquote_plus(key, errors="replace")
        _first, values = collected.setdefault(name.lower(), (name, []))
        values.append(unquote_plus(value, errors="replace"))
    joined = {first: ",".join(values) for first, values in collected.values()}
    return {name: value for name, value in joined.items() if value}


def header_values(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names lower-cased; the server has already joined repeated headers with ``,``."""
    values: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        values[key] = f"{values[key]},{value}" if key in values else value
    return values


def body_expected(content_length: int | None) -> bool:
    """Whether the host reads and forwards the body: only when ``Content-Length > 0``."""
    return content_length is not None and content_length > 0


def request_datum(
    *,
    method: str,
    scheme: str,
    host: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    route_params: Mapping[str, str],
    body: bytes,
) -> Datum:
    """The ``http`` Datum the runtime's ``HttpRequestConverter`` decodes into ``func.HttpRequest``."""
    url = f"{scheme}://{host}{routing_path(raw_path)}" + (f"?{raw_query}" if raw_query else "")
    return Datum(
        type="http",
        value={
            "method": Datum(method, "string"),
            "url": Datum(url, "string"),
            "headers": {name: Datum(value, "string") for name, value in header_values(headers).items()},
            "query": {name: Datum(value, "string") for name, value in query_values(raw_query).items()},
            "params": {name: Datum(value, "string") for name, value in route_params.items()},
            "body": Datum(body, "bytes"),
        },
    )


def response_from_datum(datum: Datum | None) -> HostResponse:
    """The HTTP response for what the function returned (``HttpResponseConverter``'s Datum).

    Raises:
        TypeError: the Datum is of a kind the host cannot send (the host answers 500).
    """
    if datum is None or datum.type is None:
        return HostResponse(204, [], b"")
    if datum.type == "string":
        return HostResponse(200, [("Content-Type", "text/plain; charset=utf-8")], str(datum.value).encode())
    if datum.type != "http":
        raise TypeError(f"a function returned a {datum.type!r} Datum, not an HTTP response")
    value = datum.value
    headers = [
        (name, str(header.value))
        for name, header in value["headers"].items()
        if name.lower() != "content-length"
    ]
    for cookie in value.get("cookies") or ():  # azure.functions moves Set-Cookie headers here
        headers.extend(("Set-Cookie", morsel.OutputString()) for morsel in cookie.values())
    body = value["body"].value if value.get("body") is not None else b""
    if isinstance(body, str):
        body = body.encode()
    return HostResponse(int(value["status_code"].value), headers, bytes(body or b""))
