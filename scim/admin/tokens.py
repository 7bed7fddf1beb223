"""Secret Tokens: make one, and check an endpoint the way Entra's *Test Connection* does.

Entra's *Test Connection* (and the start of every cycle and every provision on
demand) sends ``GET /Users?filter=userName eq "<random>"`` with the Secret Token
and expects 200 with an empty ListResponse; anything else fails the test, and
during cycles quarantines the job (entra-scim-behavior.md, "probe"). Entra only
calls HTTPS URLs (TLS 1.2+) with a certificate it trusts.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from scim.config import token_digest

LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"

#: 32 random bytes: 256 bits, 43 URL-safe characters (Entra accepts any printable token).
TOKEN_BYTES = 32


@dataclass(frozen=True)
class NewToken:
    """A fresh Secret Token and the digest the endpoint can hold instead of it."""

    token: str

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the token, for ``SCIM_BEARER_TOKEN_SHA256``."""
        return token_digest(self.token).hex()


def new_token() -> NewToken:
    """A strong Secret Token from the operating system's CSPRNG."""
    return NewToken(secrets.token_urlsafe(TOKEN_BYTES))


@dataclass(frozen=True)
class Check:
    """One verdict of ``token check``: passed or not, and what to do if not."""

    name: str
    passed: bool
    detail: str
    hint: str = ""


def _probe_url(tenant_url: str) -> str:
    return f"{tenant_url.rstrip('/')}/Users"


def _probe(session: requests.Session, tenant_url: str, token: str) -> tuple[requests.Response, float]:
    name = f"probe-{uuid.uuid4()}@example.invalid"
    started = time.perf_counter()
    response = session.get(
        _probe_url(tenant_url),
        params={"filter": f'userName eq "{name}"'},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/scim+json"},
        timeout=30,
    )
    return response, (time.perf_counter() - started) * 1000


def _scim_detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("detail", "")) if isinstance(body, dict) else ""


def _verdict(response: requests.Response, elapsed_ms: float) -> Check:
    status = response.status_code
    if status == 200:
        try:
            body = response.json()
        except ValueError:
            body = None
        if (
            isinstance(body, dict)
            and LIST_RESPONSE in body.get("schemas", [])
            and body.get("totalResults") == 0
        ):
            return Check("probe", True, f"200 with an empty ListResponse in {elapsed_ms:.0f} ms")
        return Check("probe", False, "200 but not an empty ListResponse", "the URL is not a SCIM base URL.")
    hints = {
        401: "the endpoint rejected the token: paste the value of SCIM_BEARER_TOKEN (or its _NEXT), or set "
        "SCIM_BEARER_TOKEN_SHA256 to the digest `token new` printed.",
        403: "the endpoint (or a proxy in front of it) refused the caller.",
        404: "wrong path: the Tenant URL ends in /scim/v2 (no /api, no trailing slash).",
        500: "the endpoint is misconfigured: read its `detail` and its log.",
        503: "the endpoint cannot reach its storage: check the storage settings and GET /scim/health.",
    }
    detail = f"{status} {response.reason}" + (f": {_scim_detail(response)}" if _scim_detail(response) else "")
    return Check(
        "probe", False, detail, hints.get(status, "Entra needs 200 with an empty ListResponse here.")
    )


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
"""Hosts a plain ``http://`` Tenant URL may name (``make run``): the token never leaves the machine."""


def _transport_check(tenant_url: str) -> Check:
    """HTTPS, or plain HTTP to a loopback host; anything else is refused before a token is sent."""
    parts = urlsplit(tenant_url)
    try:
        host = (parts.hostname or "").lower()
    except ValueError:
        host = ""
    if parts.scheme.lower() == "https" and host:
        return Check("https", True, "HTTPS")
    if parts.scheme.lower() == "http" and host in LOOPBACK_HOSTS:
        return Check("https", True, "plain HTTP to a loopback host (fine for local trials)")
    return Check(
        "https",
        False,
        "refused to send the Secret Token: only https:// (or http:// to 127.0.0.1, localhost, ::1) "
        "keeps it off the wire in clear text",
        "Entra only calls https:// Tenant URLs: put TLS in front (see docs/deploy-*.md) and check that URL.",
    )


def check_endpoint(session: requests.Session, tenant_url: str, token: str) -> list[Check]:
    """What Entra's Test Connection would conclude about ``tenant_url`` and ``token``, and more.

    Beyond Entra's probe: the Tenant URL's form (HTTPS, no trailing slash) and
    that a wrong token is refused with 401 (an endpoint accepting any token
    passes Entra's test too, and should not). A plain ``http://`` URL to any
    host but the loopback is refused *before* the token is sent (RFC 6750 §5.3:
    bearer tokens only over TLS); nothing is probed then.
    """
    transport = _transport_check(tenant_url)
    checks: list[Check] = [transport]
    if not transport.passed:
        return checks
    if tenant_url.endswith("/"):
        checks.append(
            Check("url", False, "ends with '/'", "remove the trailing slash: Entra appends /Users.")
        )
    try:
        response, elapsed = _probe(session, tenant_url, token)
        checks.append(_verdict(response, elapsed))
        wrong, _ = _probe(session, tenant_url, "wrong-" + secrets.token_urlsafe(16))
        refused = wrong.status_code == 401
        checks.append(
            Check(
                "wrong token refused",
                refused,
                f"a wrong token got {wrong.status_code}",
                "" if refused else "the endpoint must answer 401 to a wrong token.",
            )
        )
    except requests.exceptions.SSLError as error:
        checks.append(
            Check(
                "probe",
                False,
                f"TLS failed ({error.__class__.__name__})",
                "the certificate must chain to a "
                "trusted root and match the host name; for a private CA set REQUESTS_CA_BUNDLE.",
            )
        )
    except requests.RequestException as error:
        checks.append(
            Check(
                "probe",
                False,
                f"could not connect ({error.__class__.__name__})",
                "check the host name and port, and that the endpoint is running.",
            )
        )
    return checks
