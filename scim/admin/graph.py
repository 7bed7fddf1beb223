"""A small Microsoft Graph v1.0 REST client: errors, throttling and paging done once.

Graph facts this module implements (Microsoft Learn, *Microsoft Graph error
responses*, *throttling guidance*, *paging*):

- errors are ``{"error": {"code", "message", "innerError": {"request-id", "date"}}}``;
  the ``request-id`` is what Microsoft support asks for, so it is kept;
- a throttled request (429) carries ``Retry-After`` in seconds and was not
  processed, so it is safe to send again after waiting; 503/504 are retried too,
  but only for requests that are safe to repeat;
- a collection answers one page at a time; ``@odata.nextLink`` is an absolute
  URL to follow verbatim until it is absent.

The bearer token is only ever sent to the configured Graph origin: a
``nextLink`` pointing elsewhere is refused rather than followed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

Progress = Callable[[str], None]

#: HTTP methods Graph documents as safe to repeat after a 503/504.
_IDEMPOTENT = frozenset({"GET", "PUT", "DELETE"})
_RETRIABLE = frozenset({429, 503, 504})


@dataclass(frozen=True)
class Need:
    """What a Graph call needs: the permission, and who may hold it.

    ``delegated`` is the scope an admin consents to at sign-in, ``roles`` the
    Entra directory roles that carry the operation for a signed-in user, and
    ``application`` the application permission for unattended use.
    """

    delegated: str
    application: str
    roles: str


class GraphError(Exception):
    """A failed Graph call, with what the operator should do about it."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        request_id: str | None = None,
        hint: str = "",
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.hint = hint

    def explain(self) -> str:
        """The error as the command line prints it: what, then what to do."""
        lines = [f"Microsoft Graph answered {self.status} {self.code}: {self.message}"]
        if self.hint:
            lines.append(f"What to do: {self.hint}")
        if self.request_id:
            lines.append(f"(request-id {self.request_id}, for Microsoft support)")
        return "\n".join(lines)


def hint_for(status: int, code: str, need: Need | None) -> str:
    """Plain advice for a Graph failure (status and error code)."""
    if status == 403 and code == "Authentication_RequestFromNonPremiumTenantOrB2CTenant":
        return "provisioning logs need a Microsoft Entra ID P1 or P2 licence in this tenant."
    if status == 403 and need is not None:
        return (
            f"the token lacks {need.delegated}. Signed in as a person (device code): be at least "
            f"{need.roles}, and consent to {need.delegated}. As an application (--client-secret or "
            f"--client-certificate): grant the application permission {need.application} to the "
            "app registration and grant admin consent, then sign in again."
        )
    if status == 401:
        return "the Graph token was refused: sign in again (`python -m scim entra login`) and check --tenant."
    if status == 404:
        return "check the id or name you gave, and that it belongs to this tenant (--tenant)."
    if status == 429:
        return (
            "Microsoft Graph is throttling this tenant or app: wait a few minutes and run the command again."
        )
    if status >= 500:
        return "Microsoft Graph is failing on its side: retry later; give Microsoft support the request-id."
    return ""


def _error_of(response: requests.Response, need: Need | None) -> GraphError:
    code, message, request_id = "UnknownError", response.reason or "", response.headers.get("request-id")
    try:
        error = response.json().get("error", {})
    except ValueError:
        error = {}
    if isinstance(error, Mapping):
        code = str(error.get("code") or code)
        message = str(error.get("message") or message)
        inner = error.get("innerError")
        if isinstance(inner, Mapping) and inner.get("request-id"):
            request_id = str(inner["request-id"])
    return GraphError(
        response.status_code,
        code,
        message,
        request_id=request_id,
        hint=hint_for(response.status_code, code, need),
    )


def _retry_after(response: requests.Response, attempt: int) -> float:
    """Seconds to wait: the server's ``Retry-After``, else exponential backoff."""
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return float(min(2**attempt, 32))


class GraphClient:
    """Graph v1.0 over one ``requests`` session, with a token from ``token()``."""

    def __init__(
        self,
        base_url: str,
        token: Callable[[], str],
        session: requests.Session,
        *,
        progress: Progress = lambda _: None,
        attempts: int = 5,
        max_wait: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 60.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._origin = urlsplit(self.base_url)[:2]
        self._token = token
        self._session = session
        self._progress = progress
        self._attempts = attempts
        self._max_wait = max_wait
        self._sleep = sleep
        self._timeout = timeout

    def get(self, path: str, need: Need, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        """``GET`` a single entity (or one page) as JSON."""
        return self._json(self._send("GET", path, need, params=params))

    def post(self, path: str, need: Need, body: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """``POST`` an action or a new entity; ``None`` for 204 No Content."""
        return self._json_or_none(self._send("POST", path, need, body=body if body is not None else {}))

    def put(self, path: str, need: Need, body: Mapping[str, Any]) -> None:
        """``PUT`` a replacement (Graph answers 204 No Content)."""
        self._send("PUT", path, need, body=body)

    def pages(
        self, path: str, need: Need, params: Mapping[str, str] | None = None, *, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every item of a collection, following ``@odata.nextLink`` (at most ``limit``)."""
        page = self.get(path, need, params)
        seen = 0
        while True:
            for item in page.get("value", []):
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield item
            link = page.get("@odata.nextLink")
            if not link or (limit is not None and seen >= limit):
                return
            page = self._json(self._send("GET", str(link), need))

    def _url(self, path: str) -> str:
        if path.startswith(("https://", "http://")):
            if urlsplit(path)[:2] != self._origin:
                raise GraphError(0, "UnexpectedNextLink", f"Graph sent a link to another origin: {path}")
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def _send(
        self,
        method: str,
        path: str,
        need: Need,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> requests.Response:
        url = self._url(path)
        for attempt in range(1, self._attempts + 1):
            try:
                response = self._session.request(
                    method,
                    url,
                    params=params,
                    json=body,
                    headers={"Authorization": f"Bearer {self._token()}", "Accept": "application/json"},
                    timeout=self._timeout,
                )
            except requests.RequestException as error:
                raise GraphError(
                    0,
                    "ConnectionFailed",
                    f"could not reach {self.base_url}: {error.__class__.__name__}",
                    hint="check --graph-url, your proxy settings (HTTPS_PROXY) and, behind TLS inspection, "
                    "REQUESTS_CA_BUNDLE.",
                ) from error
            if response.status_code < 400:
                return response
            retriable = response.status_code == 429 or method in _IDEMPOTENT
            if response.status_code not in _RETRIABLE or not retriable or attempt == self._attempts:
                raise _error_of(response, need)
            wait = min(_retry_after(response, attempt), self._max_wait)
            self._progress(
                f"Graph answered {response.status_code} to {method} {urlsplit(url).path}; "
                f"retrying in {wait:g} s (attempt {attempt + 1} of {self._attempts})"
            )
            self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _json(response: requests.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError as error:
            raise GraphError(
                response.status_code, "NotJson", "Graph answered a body that is not JSON"
            ) from error
        if not isinstance(data, dict):
            raise GraphError(response.status_code, "NotAnObject", "Graph answered JSON that is not an object")
        return data

    def _json_or_none(self, response: requests.Response) -> dict[str, Any] | None:
        if response.status_code == 204 or not response.content:
            return None
        return self._json(response)
