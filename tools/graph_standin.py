"""A local stand-in for Microsoft Graph v1.0 and the Microsoft identity platform, over real HTTPS.

Microsoft Graph and ``login.microsoftonline.com`` cannot be reached from CI, so the admin command line
(``scim.admin``) is tested, and demonstrated, against this stand-in. :class:`GraphStandIn` serves on
``https://127.0.0.1:PORT``, with a self-signed certificate it generates (``ca_file``):

- the **authority** that ``msal`` (1.39, ``instance_discovery=False``) uses with
  ``authority=https://127.0.0.1:PORT/<tenant>``: OpenID discovery, the device authorization endpoint and
  the token endpoint (device code, client credentials with a secret or a certificate assertion, refresh);
- the slice of **Graph v1.0** the CLI calls: service principals, users, synchronization templates, jobs,
  secrets, validateCredentials, schema, provisionOnDemand, start, pause, and ``/auditLogs/provisioning``.

*validateCredentials* and *provisionOnDemand* are real: like Entra's provisioning service they call the
SCIM endpoint named by the ``BaseAddress`` credential (probe, match by ``userName``, then ``POST`` or
``PATCH`` /Users) with the ``SecretToken`` as bearer, and report what it answered.

Fidelity. Shapes follow the Graph v1.0 reference pages named in each handler's docstring, and the
authority follows what msal sends and reads (msal 1.39 ``authority.py``, ``oauth2cli/oauth2.py``,
``application.py``). Where the reference is silent, status codes, error codes and messages are
*modelled* on what Entra is reported to return, and marked ``[modelled]``; the live service may differ.
Short server strings that clients and people match on are kept as Entra and Graph are reported to send
them (``Access token is empty.``, ``Insufficient privileges to complete the operation.``, the first
sentence of an ``AADSTSnnnn`` description); longer messages are written for this stand-in.

Honest limits:

- access tokens are opaque strings, not JWTs (only the id_token is a signed JWT); a client assertion's
  signature is not verified (its header, ``aud``, ``iss``, ``sub`` and lifetime are);
- ``$filter`` supports only the clauses the CLI sends (see :func:`_parse_log_filter`), ``$orderby``,
  ``$count``, ``$search`` and ``$expand`` are refused with 400, and ``$select`` is applied to users only;
- provisionOnDemand provisions one ``User`` subject with the default attribute mappings; groups, scoping
  filters, manager references and custom mappings are not modelled; start/pause change state only (no
  provisioning cycles run);
- directory roles of a signed-in admin are not checked (delegated tokens carry scopes only), and
  ``Application.ReadWrite.OwnedBy`` is not accepted (owners are not modelled).

Test hooks: ``requests`` (every request, recorded after authentication), ``fail_next`` (one-shot
injected failures), :meth:`GraphStandIn.approve_device_code`, :meth:`GraphStandIn.issue_token`,
:meth:`GraphStandIn.quarantine_job` and ``premium``. ``python -m tools.graph_standin`` runs a seeded
demo tenant in the foreground.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import hashlib
import hmac
import html
import http
import json
import logging
import re
import secrets
import shutil
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tools.certs import write_loopback_certificate

__all__ = [
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_PUBLIC_CLIENT_ID",
    "DEFAULT_SECRET_CLIENT_ID",
    "DEFAULT_TENANT_DOMAIN",
    "DEFAULT_TENANT_ID",
    "DirectoryUser",
    "GraphStandIn",
    "IssuedToken",
    "RecordedRequest",
    "ServicePrincipal",
    "main",
]

logger = logging.getLogger("tools.graph_standin")

DEFAULT_TENANT_ID = "7c3e8f52-1b4d-4a6e-9f0c-2d5b8a1e6c39"
"""The demo tenant's id."""

DEFAULT_TENANT_DOMAIN = "contoso.example"
"""The demo tenant's verified domain (also usable in the authority URL)."""

DEFAULT_PUBLIC_CLIENT_ID = "3f9a6c21-8e4b-4d7a-b2c5-0e1f6a9d4b87"
"""A public client (``Allow public client flows``): device code sign-in."""

DEFAULT_SECRET_CLIENT_ID = "b8d4e2a7-6c1f-4e93-a5b0-7f2c9e1d3a64"  # noqa: S105 - a client id
"""A confidential client: client credentials with :data:`DEFAULT_CLIENT_SECRET` or any certificate."""

DEFAULT_CLIENT_SECRET = "Sx8Q~standin.demo-secret_not.for.production"  # noqa: S105 - a public demo value
"""The confidential client's secret (a demo value, printed by ``python -m tools.graph_standin``)."""

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_RESOURCE = "https://graph.microsoft.com"
NON_GALLERY_TEMPLATE_ID = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"
"""``applicationTemplateId`` of *Integrate any other application* (and the audience of Entra's SCIM JWT)."""

USER_RULE_ID = "5a7f21c4-9e3b-4d8a-b6f0-1c2e3d4a5b6c"
"""The id of the ``scim`` template's synchronization rule (an invented, stable value)."""

ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

DELEGATED_CONSENT = frozenset(
    {
        "Application.Read.All",
        "Application.ReadWrite.All",
        "Synchronization.ReadWrite.All",
        "AuditLog.Read.All",
        "User.Read.All",
    }
)
"""Delegated permissions an admin consented to for the public client (a token gets those it asks for)."""

APPLICATION_ROLES = DELEGATED_CONSENT
"""Application permissions granted (with admin consent) to the confidential client."""

SYNCHRONIZATION_SECRETS = frozenset(
    "None UserName Password SecretToken AppKey BaseAddress ClientIdentifier ClientSecret SingleSignOnType "
    "Sandbox Url Domain ConsumerKey ConsumerSecret TokenKey TokenExpiration Oauth2AccessToken "
    "Oauth2AccessTokenCreationTime Oauth2RefreshToken SyncAll InstanceName Oauth2ClientId Oauth2ClientSecret "
    "CompanyId UpdateKeyOnSoftDelete SynchronizationSchedule SystemOfRecord SandboxName EnforceDomain "
    "SyncNotificationSettings SkipOutOfScopeDeletions Oauth2AuthorizationCode Oauth2RedirectUri "
    "ApplicationTemplateIdentifier Oauth2TokenExchangeUri Oauth2AuthorizationUri AuthenticationType Server "
    "PerformInboundEntitlementGrants HardDeletesEnabled SyncAgentCompatibilityKey SyncAgentADContainer "
    "ValidateDomain TestReferences ConnectionString".split()
)
"""The ``synchronizationSecret`` enumeration (Graph: synchronizationSecretKeyStringValuePair)."""

# Permissions that satisfy each operation: the least privileged one, then the higher ones (Graph API pages).
READ_APPS = frozenset({"Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All"})
WRITE_APPS = frozenset({"Application.ReadWrite.All"})
READ_USERS = frozenset(
    {"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
)
READ_SYNC = frozenset({"Synchronization.Read.All", "Synchronization.ReadWrite.All"})
WRITE_SYNC = frozenset({"Synchronization.ReadWrite.All"})
READ_AUDIT = frozenset({"AuditLog.Read.All"})

_RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
_PERMISSION_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*(\.[A-Za-z0-9]+)+$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_DEVICE_CODE_GRANTS = frozenset({"urn:ietf:params:oauth:grant-type:device_code", "device_code"})
_JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_USER_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_GRAPH_JSON = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
)
_OAUTH_JSON = "application/json; charset=utf-8"
_DELEGATED_LIFETIME = 3600
_APPLICATION_LIFETIME = 3599
_DEVICE_CODE_LIFETIME = 900
_SCIM_TIMEOUT_S = 10.0
_DISABLED_INTERVAL = (
    "P10675199DT2H48M5.4775807S"  # TimeSpan.MaxValue: a new job's interval (Create job example)
)
_NEVER = "0001-01-01T00:00:00Z"


# --- data ------------------------------------------------------------------------------------------------


@dataclass
class DirectoryUser:
    """A user of the stand-in's directory (Graph v1.0: user resource), as provisioning reads it."""

    id: str
    userPrincipalName: str  # noqa: N815 - Graph property name
    displayName: str  # noqa: N815 - Graph property name
    mail: str | None = None
    accountEnabled: bool = True  # noqa: N815 - Graph property name

    @property
    def mail_nickname(self) -> str:
        """``mailNickname``: the UPN's local part."""
        return self.userPrincipalName.split("@", 1)[0]

    @property
    def given_name(self) -> str:
        """``givenName``: the display name's first word."""
        return self.displayName.split(" ", 1)[0]

    @property
    def surname(self) -> str:
        """``surname``: the display name after its first word (or the whole name)."""
        parts = self.displayName.split(" ", 1)
        return parts[1] if len(parts) > 1 else parts[0]

    def to_graph(self) -> dict[str, Any]:
        """The Graph ``user`` properties the stand-in knows."""
        return {
            "id": self.id,
            "userPrincipalName": self.userPrincipalName,
            "displayName": self.displayName,
            "givenName": self.given_name,
            "surname": self.surname,
            "mail": self.mail,
            "mailNickname": self.mail_nickname,
            "accountEnabled": self.accountEnabled,
            "businessPhones": [],
            "jobTitle": None,
            "mobilePhone": None,
            "officeLocation": None,
            "preferredLanguage": None,
        }


_USER_DEFAULT_PROPERTIES = (
    "businessPhones displayName givenName jobTitle mail mobilePhone officeLocation preferredLanguage "
    "surname userPrincipalName id"
).split()
"""What ``GET /users/{id}`` returns without ``$select`` (Graph v1.0: Get user, default properties)."""


@dataclass
class ServicePrincipal:
    """An enterprise app (Graph v1.0: servicePrincipal resource) and its provisioning templates."""

    id: str
    appId: str  # noqa: N815 - Graph property name
    displayName: str  # noqa: N815 - Graph property name
    tags: list[str] = field(default_factory=list)
    template_ids: tuple[str, ...] = ("scim",)
    application_template_id: str | None = NON_GALLERY_TEMPLATE_ID
    visible_at: float = 0.0
    """``time.monotonic()`` from which reads see it (directory replication after a create)."""

    def to_graph(self) -> dict[str, Any]:
        """The servicePrincipal properties the stand-in serves."""
        return {
            "id": self.id,
            "appId": self.appId,
            "displayName": self.displayName,
            "appDisplayName": self.displayName,
            "servicePrincipalType": "Application",
            "accountEnabled": True,
            "applicationTemplateId": self.application_template_id,
            "appOwnerOrganizationId": None,
            "preferredSingleSignOnMode": None,
            "servicePrincipalNames": [self.appId],
            "tags": list(self.tags),
        }


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the stand-in received it (``json`` for JSON bodies, ``form`` for form posts)."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    headers: dict[str, str]
    form: dict[str, str] | None = None


@dataclass
class IssuedToken:
    """An access token the authority issued: who holds it and which Graph permissions it carries."""

    value: str
    kind: str  # "delegated" or "application"
    client_id: str
    permissions: frozenset[str]
    expires_at: float
    user: DirectoryUser | None = None


@dataclass
class _DeviceCode:
    device_code: str
    user_code: str
    client_id: str
    scopes: list[str]
    expires_at: float
    approved_by: DirectoryUser | None = None
    redeemed: bool = False


@dataclass
class _RefreshGrant:
    client_id: str
    user: DirectoryUser
    scopes: list[str]


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Incoming:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    request_id: str
    client_request_id: str


@dataclass(frozen=True)
class _GraphCall:
    incoming: _Incoming
    token: IssuedToken
    options: dict[str, str]
    body: Any


class _GraphError(Exception):
    """A Graph error answer: ``{"error": {"code", "message", "innerError"}}`` with a status."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


class _AuthorityError(Exception):
    """An OAuth 2.0 error answer of the identity platform, with its ``AADSTS`` number."""

    def __init__(self, status: int, error: str, number: int, description: str) -> None:
        super().__init__(f"{error}: AADSTS{number}: {description}")
        self.status = status
        self.error = error
        self.number = number
        self.description = description


# --- small helpers ---------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    """An ISO 8601 UTC timestamp with ``Z`` and 7 fractional digits, as Graph writes them."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def _iso_seconds(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json_bytes(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def _json_reply(status: int, document: Any, content_type: str = _GRAPH_JSON) -> _Reply:
    return _Reply(status, _json_bytes(document), content_type)


def _decode_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A JWT's header and claims, without verifying anything (``ValueError`` when malformed)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("a JWT has three parts")
    header, claims = (json.loads(_b64url_decode(part)) for part in parts[:2])
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("JWT header and claims must be JSON objects")
    return header, claims


def _odata_string(literal: str) -> str:
    """The value of an OData string literal ``'...'`` (``''`` is an escaped quote)."""
    return literal[1:-1].replace("''", "'")


def _split_and(expression: str) -> list[str]:
    """``a and b and c`` split on the ``and`` operator, ignoring ``and`` inside string literals."""
    clauses, start, quoted, index = [], 0, False, 0
    lowered = expression.lower()
    while index < len(expression):
        char = expression[index]
        if char == "'":
            quoted = not quoted
        elif not quoted and lowered.startswith(" and ", index):
            clauses.append(expression[start:index])
            index += 5
            start = index
            continue
        index += 1
    clauses.append(expression[start:])
    return [_strip_parentheses(clause.strip()) for clause in clauses]


def _strip_parentheses(clause: str) -> str:
    while clause.startswith("(") and clause.endswith(")"):
        clause = clause[1:-1].strip()
    return clause


# --- request shapes --------------------------------------------------------------------------------------

Check = Callable[[Any, str], None]
"""Validates a JSON value at a path; raises ``_GraphError`` (400 BadRequest) when it does not fit."""


def _bad_request(message: str) -> _GraphError:
    return _GraphError(400, "BadRequest", message)


def _resource_not_found(name: str) -> _GraphError:
    """Graph's 404 for a directory object (Request_ResourceNotFound)."""
    message = (
        f"Resource '{name}' does not exist or one of its queried reference-property objects are not present."
    )
    return _GraphError(404, "Request_ResourceNotFound", message)


def _string(value: Any, where: str) -> None:
    if not isinstance(value, str):
        raise _bad_request(f"Cannot convert the value at '{where}' to the expected type 'Edm.String'.")


def _boolean(value: Any, where: str) -> None:
    if not isinstance(value, bool):
        raise _bad_request(f"Cannot convert the value at '{where}' to the expected type 'Edm.Boolean'.")


def _one_of(choices: frozenset[str], type_name: str) -> Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, str) or value not in choices:
            raise _bad_request(f"The value {json.dumps(value)} at '{where}' is not a valid '{type_name}'.")

    return check


def _array(item: Check) -> Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, list):
            raise _bad_request(f"The value at '{where}' must be a JSON array.")
        for index, element in enumerate(value):
            item(element, f"{where}[{index}]")

    return check


def _object(fields: Mapping[str, tuple[Check, bool]], owner: str, *, action: bool = False) -> Check:
    """An object with exactly these properties (``name: (check, required)``); ``@odata.*`` keys pass."""

    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _bad_request(f"The value at '{where or 'the request body'}' must be a JSON object.")
        for name, element in value.items():
            if name.startswith("@"):
                continue
            if name not in fields:
                raise _bad_request(
                    f"The parameter '{name}' in the request payload is not a valid parameter for the "
                    f"operation '{owner}'."
                    if action
                    else f"Property '{name}' does not exist as a declared property or extension property "
                    f"of '{owner}'."
                )
            fields[name][0](element, f"{where}.{name}" if where else name)
        for name, (_, required) in fields.items():
            if required and name not in value:
                raise _bad_request(f"The required property '{name}' of '{owner}' is missing.")

    return check


_SECRET_PAIR = _object(
    {
        "key": (_one_of(SYNCHRONIZATION_SECRETS, "microsoft.graph.synchronizationSecret"), True),
        "value": (_string, True),
    },
    "microsoft.graph.synchronizationSecretKeyStringValuePair",
)
_CREATE_JOB = _object({"templateId": (_string, True)}, "microsoft.graph.synchronizationJob")
_PUT_SECRETS = _object({"value": (_array(_SECRET_PAIR), True)}, "secrets", action=True)
_VALIDATE_CREDENTIALS = _object(
    {
        "useSavedCredentials": (_boolean, False),
        "credentials": (_array(_SECRET_PAIR), False),
        "templateId": (_string, False),
        "applicationIdentifier": (_string, False),
    },
    "validateCredentials",
    action=True,
)
_SUBJECT = _object(
    {
        "objectId": (_string, True),
        "objectTypeName": (_one_of(frozenset({"User", "Group", "user", "group"}), "objectTypeName"), True),
        "links": (
            _object({"members": (_array(lambda _v, _w: None), False)}, "synchronizationLinkedObjects"),
            False,
        ),
    },
    "microsoft.graph.synchronizationJobSubject",
)
_PROVISION_ON_DEMAND = _object(
    {
        "parameters": (
            _array(
                _object(
                    {"ruleId": (_string, True), "subjects": (_array(_SUBJECT), True)},
                    "microsoft.graph.synchronizationJobApplicationParameters",
                )
            ),
            True,
        )
    },
    "provisionOnDemand",
    action=True,
)
_INSTANTIATE = _object({"displayName": (_string, True)}, "instantiate", action=True)
_START = _object({}, "start", action=True)
_PAUSE = _object({}, "pause", action=True)


# --- TLS and signing keys --------------------------------------------------------------------------------


class _Signer:
    """The authority's RS256 signing key: id_tokens are signed, and the key is published at ``jwks_uri``."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = self._key.public_key().public_numbers()
        self._n = _b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big"))
        self.kid = _b64url(hashlib.sha256(self._n.encode()).digest()[:20])

    def sign(self, claims: Mapping[str, Any]) -> str:
        """A compact JWS (RS256) of ``claims``."""
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        signing_input = f"{_b64url(_json_bytes(header))}.{_b64url(_json_bytes(claims))}"
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"

    def jwks(self, issuer: str) -> dict[str, Any]:
        """The JSON Web Key Set document."""
        key = {"kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid, "n": self._n, "e": "AQAB"}
        return {"keys": [{**key, "issuer": issuer}]}


# --- the HTTP server -------------------------------------------------------------------------------------


class _TLSServer(ThreadingHTTPServer):
    """A threading HTTP server that does the TLS handshake in each connection's own thread."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], standin: GraphStandIn, context: ssl.SSLContext) -> None:
        self.standin = standin
        self.ssl_context = context
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Wrap the accepted socket in TLS, then serve it."""
        request.settimeout(10.0)
        try:
            connection = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as error:
            logger.debug("TLS handshake with %s failed: %s", client_address, error)
            return
        try:
            super().finish_request(connection, client_address)
        finally:
            connection.close()


class _Handler(BaseHTTPRequestHandler):
    """Reads a request, hands it to the stand-in, writes its reply (HTTP/1.1, keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "GraphStandIn/1.0"
    timeout = 30
    server: _TLSServer

    def do_GET(self) -> None:
        """Serve a GET."""
        self._serve()

    def do_POST(self) -> None:
        """Serve a POST."""
        self._serve()

    def do_PUT(self) -> None:
        """Serve a PUT."""
        self._serve()

    def do_PATCH(self) -> None:
        """Serve a PATCH."""
        self._serve()

    def do_DELETE(self) -> None:
        """Serve a DELETE."""
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Log to ``tools.graph_standin`` at debug level instead of stderr."""
        logger.debug("%s %s", self.address_string(), format % args)

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        parts = urllib.parse.urlsplit(self.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        request_id = str(uuid.uuid4())
        incoming = _Incoming(
            method=self.command,
            path=urllib.parse.unquote(parts.path),
            query=dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True)),
            headers=headers,
            body=body,
            request_id=request_id,
            client_request_id=headers.get("client-request-id") or request_id,
        )
        self._send(incoming, self.server.standin._dispatch(incoming))

    def _send(self, incoming: _Incoming, reply: _Reply) -> None:
        self.send_response(reply.status)
        headers = {
            "request-id": incoming.request_id,
            "client-request-id": incoming.client_request_id,
            "x-ms-request-id": incoming.request_id,
            "Cache-Control": "no-store",
            **reply.headers,
        }
        if reply.content_type:
            headers["Content-Type"] = reply.content_type
        if reply.status != 204:
            headers["Content-Length"] = str(len(reply.body))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if reply.status != 204:
            self.wfile.write(reply.body)


# --- the stand-in ----------------------------------------------------------------------------------------


class GraphStandIn:
    """Microsoft Graph v1.0 and the identity platform for one tenant, served on ``https://127.0.0.1``.

    State is public so tests can arrange and inspect it: ``users``, ``service_principals``, ``jobs``
    (service principal id → job id → synchronizationJob), ``secrets`` (service principal id → key →
    value), ``provisioning_logs`` (provisioningObjectSummary documents), ``tokens`` and ``requests``.
    ``fail_next[(method, path_regex)] = (status, code, headers)`` makes the next matching request fail
    once with a Graph error (``method`` may be ``"*"``; the regex is searched in the path).
    """

    def __init__(
        self,
        *,
        tenant_id: str = DEFAULT_TENANT_ID,
        domain: str = DEFAULT_TENANT_DOMAIN,
        client_id: str = DEFAULT_PUBLIC_CLIENT_ID,
        secret_client_id: str = DEFAULT_SECRET_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        granted_scopes: frozenset[str] = DELEGATED_CONSENT,
        granted_roles: frozenset[str] = APPLICATION_ROLES,
        page_size: int = 2,
        replication_delay: float = 1.0,
        premium: bool = True,
        seed: bool = True,
        port: int = 0,
        auto_approve_after: float | None = None,
        on_demand_rate: tuple[int, float] | None = (5, 10.0),
        announce: Callable[[str], None] | None = None,
    ) -> None:
        self.tenant_id = tenant_id
        self.domain = domain
        self.client_id = client_id
        self.secret_client_id = secret_client_id
        self.client_secret = client_secret
        self.granted_scopes = granted_scopes
        self.granted_roles = granted_roles
        self.page_size = page_size
        self.replication_delay = replication_delay
        self.premium = premium
        self.port = port
        self.auto_approve_after = auto_approve_after
        self.on_demand_rate = on_demand_rate
        self.announce = announce
        self.admin = DirectoryUser(
            id="9f8e7d6c-5b4a-4321-8fed-cba987654321",
            userPrincipalName=f"admin@{domain}",
            displayName="Contoso Admin",
            mail=f"admin@{domain}",
        )
        self.users: list[DirectoryUser] = []
        self.service_principals: list[ServicePrincipal] = []
        self.jobs: dict[str, dict[str, dict[str, Any]]] = {}
        self.secrets: dict[str, dict[str, str]] = {}
        self.provisioning_logs: list[dict[str, Any]] = []
        self.tokens: dict[str, IssuedToken] = {}
        self.requests: list[RecordedRequest] = []
        self.fail_next: dict[tuple[str, str], tuple[int, str, dict[str, str]]] = {}
        self._device_codes: dict[str, _DeviceCode] = {}
        self._refresh_tokens: dict[str, _RefreshGrant] = {}
        self._on_demand_calls: dict[str, deque[float]] = {}
        self._lock = threading.RLock()
        self._skiptoken_key = secrets.token_bytes(32)
        self._timers: list[threading.Timer] = []
        self._server: _TLSServer | None = None
        self._thread: threading.Thread | None = None
        self._directory: Path | None = None
        self._signer: _Signer | None = None
        self._authority = _Authority(self)
        self._graph = _Graph(self)
        if seed:
            _seed_demo_tenant(self)

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Make the certificate and signing key, and serve HTTPS on ``127.0.0.1`` (default: a free port)."""
        if self._server is not None:
            return self
        self._directory = Path(tempfile.mkdtemp(prefix="graph-standin-"))
        cert_path, key_path = write_loopback_certificate(self._directory, "graph-standin")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert_path, key_path)
        self._signer = _Signer()
        self._server = _TLSServer(("127.0.0.1", self.port), self, context)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="graph-standin",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and delete the certificate directory."""
        for timer in self._timers:
            timer.cancel()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
        self._server = self._thread = self._directory = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    # -- addresses ---------------------------------------------------------------------------------------

    @property
    def authority_host(self) -> str:
        """``https://127.0.0.1:PORT``: the login host (msal's authority is this plus ``/<tenant>``)."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def authority(self) -> str:
        """The authority URL of the tenant, ``https://127.0.0.1:PORT/<tenant id>``."""
        return f"{self.authority_host}/{self.tenant_id}"

    @property
    def graph_url(self) -> str:
        """``https://127.0.0.1:PORT/v1.0``."""
        return f"{self.authority_host}/v1.0"

    @property
    def ca_file(self) -> str:
        """The PEM certificate to trust (``REQUESTS_CA_BUNDLE`` or ``verify=``); set by :meth:`start`.

        ``requests`` lets a ``REQUESTS_CA_BUNDLE`` already in the environment override ``Session.verify``;
        point the variable at this file, or set ``Session.trust_env = False``.
        """
        if self._directory is None:
            raise RuntimeError("the stand-in is not started")
        return str(self._directory / "graph-standin-ca.pem")

    @property
    def signer(self) -> _Signer:
        """The id_token signing key (exists once started)."""
        if self._signer is None:
            raise RuntimeError("the stand-in is not started")
        return self._signer

    # -- test hooks --------------------------------------------------------------------------------------

    def approve_device_code(self, user_code: str | None = None) -> None:
        """Mark a pending device code as approved by the signed-in admin (``None``: the latest one)."""
        with self._lock:
            pending = [code for code in self._device_codes.values() if not code.redeemed]
            if user_code is not None:
                pending = [code for code in pending if code.user_code == user_code.strip().upper()]
            if not pending:
                raise KeyError(f"no pending device code {user_code or ''}".strip())
            pending[-1].approved_by = self.admin

    def issue_token(
        self,
        permissions: Iterable[str],
        *,
        kind: str = "application",
        client_id: str | None = None,
        lifetime: float = _DELEGATED_LIFETIME,
    ) -> str:
        """An access token carrying exactly ``permissions``, without a sign-in (for tests)."""
        issued = self._new_token(
            kind=kind,
            client_id=client_id or self.secret_client_id,
            permissions=frozenset(permissions),
            user=self.admin if kind == "delegated" else None,
            lifetime=lifetime,
        )
        return issued.value

    def quarantine_job(
        self,
        job_id: str,
        *,
        reason: str = "EncounteredQuarantineException",
        code: str = "SystemForCrossDomainIdentityManagementCredentialValidationUnavailable",
        message: str = "The SCIM endpoint could not be reached with the saved credentials.",
    ) -> None:
        """Put a job in quarantine after a failed cycle (Graph v1.0: synchronizationQuarantine resource)."""
        job = self._find_job(job_id)
        began = _now()
        error = {"code": code, "message": message, "tenantActionable": True}
        with self._lock:
            job["status"]["code"] = "Quarantine"
            job["status"]["countSuccessiveCompleteFailures"] += 1
            job["status"]["lastExecution"] = _task_execution(began, "Failed", error)
            job["status"]["quarantine"] = {
                "currentBegan": _iso(began),
                "nextAttempt": _iso(began + timedelta(hours=6)),
                "reason": reason,
                "seriesBegan": _iso(began),
                "seriesCount": 1,
                "error": error,
            }

    # -- internals shared by the authority and Graph -----------------------------------------------------

    def _find_job(self, job_id: str) -> dict[str, Any]:
        for jobs in self.jobs.values():
            if job_id in jobs:
                return jobs[job_id]
        raise KeyError(job_id)

    def _new_token(
        self,
        *,
        kind: str,
        client_id: str,
        permissions: frozenset[str],
        user: DirectoryUser | None,
        lifetime: float,
    ) -> IssuedToken:
        issued = IssuedToken(
            value=secrets.token_urlsafe(48),
            kind=kind,
            client_id=client_id,
            permissions=permissions,
            expires_at=time.time() + lifetime,
            user=user,
        )
        with self._lock:
            self.tokens[issued.value] = issued
        return issued

    def _record(self, incoming: _Incoming, form: dict[str, str] | None = None) -> None:
        document: Any = None
        if incoming.body and "json" in incoming.headers.get("content-type", ""):
            with contextlib.suppress(ValueError):
                document = json.loads(incoming.body)
        recorded = RecordedRequest(
            method=incoming.method,
            path=incoming.path,
            query=dict(incoming.query),
            json=document,
            headers=dict(incoming.headers),
            form=form,
        )
        with self._lock:
            self.requests.append(recorded)

    def _injected_fault(self, incoming: _Incoming) -> _GraphError | None:
        """The failure ``fail_next`` holds for this request, removed once used."""
        with self._lock:
            for key in list(self.fail_next):
                method, pattern = key
                if method not in ("*", incoming.method.upper()) or not re.search(pattern, incoming.path):
                    continue
                status, code, headers = self.fail_next.pop(key)
                return _GraphError(status, code, _injected_message(status), headers)
        return None

    def _dispatch(self, incoming: _Incoming) -> _Reply:
        """Route a request to Graph, the authority or the device login page."""
        try:
            if incoming.path == "/v1.0" or incoming.path.startswith("/v1.0/"):
                return self._graph.handle(incoming)
            if incoming.path.rstrip("/") == "/devicelogin":
                return self._device_login_page(incoming)
            return self._authority.handle(incoming)
        except Exception:
            logger.exception("the stand-in failed on %s %s", incoming.method, incoming.path)
            error = _GraphError(500, "generalException", "The stand-in failed; see its log.")
            return self._graph.error_reply(incoming, error)

    def _device_login_page(self, incoming: _Incoming) -> _Reply:
        """A tiny page where a person can approve a device code (what ``verification_uri`` points to)."""
        self._record(incoming)
        message = "Enter the code shown by the application."
        if incoming.method == "POST":
            form = dict(urllib.parse.parse_qsl(incoming.body.decode("utf-8", "replace")))
            try:
                self.approve_device_code(form.get("user_code", ""))
                message = f"Signed in as {self.admin.userPrincipalName}. You can close this window."
            except KeyError:
                message = "That code is not valid or has expired."
        page = (
            "<!doctype html><title>Sign in (Graph stand-in)</title>"
            f"<p>{html.escape(message)}</p><form method=post action=/devicelogin>"
            "<input name=user_code autofocus><button>Next</button></form>"
        )
        return _Reply(200, page.encode(), "text/html; charset=utf-8")

    def _auto_approve(self, user_code: str) -> None:
        with contextlib.suppress(KeyError):
            self.approve_device_code(user_code)
            if self.announce is not None:
                self.announce(
                    f"[stand-in] device code {user_code} approved as {self.admin.userPrincipalName}"
                )

    def _schedule_auto_approval(self, user_code: str) -> None:
        if self.auto_approve_after is None:
            return
        timer = threading.Timer(self.auto_approve_after, self._auto_approve, args=(user_code,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()


def _injected_message(status: int) -> str:
    if status == 429:
        return "Too many requests. Wait the number of seconds in Retry-After, then send the request again."
    if status == 503:
        return "The service is temporarily unavailable. Send the request again later."
    if status == 403:
        return "Insufficient privileges to complete the operation."
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "The request failed."


def _task_execution(began: datetime, state: str, error: dict[str, Any] | None) -> dict[str, Any]:
    """A synchronizationTaskExecution (Graph v1.0: synchronizationTaskExecution resource)."""
    return {
        "activityIdentifier": str(uuid.uuid4()),
        "countEntitled": 0,
        "countEntitledForProvisioning": 0,
        "countEscrowed": 0,
        "countEscrowedRaw": 0,
        "countExported": 0,
        "countExports": 0,
        "countImported": 0,
        "countImportedDeltas": 0,
        "countImportedReferenceDeltas": 0,
        "error": error,
        "state": state,
        "timeBegan": _iso(began),
        "timeEnded": _iso(began + timedelta(seconds=12)),
    }


# --- the authority ---------------------------------------------------------------------------------------


class _Authority:
    """The Microsoft identity platform (v2.0 endpoints) for one tenant, as msal uses it."""

    def __init__(self, standin: GraphStandIn) -> None:
        self.standin = standin

    def handle(self, incoming: _Incoming) -> _Reply:
        """Serve discovery, device authorization and token requests; 404 for anything else."""
        segments = [segment for segment in incoming.path.split("/") if segment]
        form = self._form(incoming) if incoming.method == "POST" else None
        self.standin._record(incoming, form)
        fault = self.standin._injected_fault(incoming)
        if fault is not None:
            return self.standin._graph.error_reply(incoming, fault)
        endpoint = tuple(segments[1:])
        handlers: dict[tuple[str, tuple[str, ...]], Callable[[_Incoming, str, dict[str, str]], _Reply]] = {
            ("GET", ("v2.0", ".well-known", "openid-configuration")): self.openid_configuration,
            ("GET", ("discovery", "v2.0", "keys")): self.keys,
            ("POST", ("oauth2", "v2.0", "devicecode")): self.device_authorization,
            ("POST", ("oauth2", "v2.0", "token")): self.token,
        }
        handler = handlers.get((incoming.method, endpoint)) if segments else None
        if handler is None:
            # Includes GET /common/discovery/instance: msal must not ask for it (instance_discovery=False).
            return _json_reply(
                404, {"error": "not_found", "error_description": "No such endpoint."}, _OAUTH_JSON
            )
        try:
            return handler(incoming, segments[0], form or {})
        except _AuthorityError as error:
            return self.error_reply(incoming, error)

    @staticmethod
    def _form(incoming: _Incoming) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(incoming.body.decode("utf-8", "replace"), keep_blank_values=True))

    def error_reply(self, incoming: _Incoming, error: _AuthorityError) -> _Reply:
        """The identity platform's error document: error, AADSTS description, error_codes, ids, timestamp."""
        stamp = _now().strftime("%Y-%m-%d %H:%M:%SZ")
        description = (
            f"AADSTS{error.number}: {error.description} Trace ID: {incoming.request_id} "
            f"Correlation ID: {incoming.client_request_id} Timestamp: {stamp}"
        )
        document = {
            "error": error.error,
            "error_description": description,
            "error_codes": [error.number],
            "timestamp": stamp,
            "trace_id": incoming.request_id,
            "correlation_id": incoming.client_request_id,
            "error_uri": f"{self.standin.authority_host}/error?code={error.number}",
        }
        return _json_reply(error.status, document, _OAUTH_JSON)

    # -- tenants and endpoints -----------------------------------------------------------------------

    def resolve_tenant(self, segment: str) -> str:
        """The tenant id for an authority path segment (id, verified domain, ``common``, ``organizations``).

        Unknown ids and domains are AADSTS90002 and malformed ones AADSTS900023, as
        login.microsoftonline.com answers them [modelled on observed answers].
        """
        lowered = segment.lower()
        if lowered in {self.standin.tenant_id.lower(), self.standin.domain.lower()}:
            return self.standin.tenant_id
        if lowered in {"common", "organizations"}:
            return lowered
        if _GUID.match(segment) or "." in segment:
            raise _AuthorityError(
                400,
                "invalid_tenant",
                90002,
                f"Tenant '{segment}' not found. Check the tenant id or domain, and that you are signing in "
                "to the right cloud.",
            )
        raise _AuthorityError(
            400,
            "invalid_request",
            900023,
            f"Specified tenant identifier '{segment}' is neither a valid DNS name, nor a valid external "
            "domain.",
        )

    def endpoint(self, tenant: str, *path: str) -> str:
        """An absolute URL under the authority for ``tenant``."""
        return "/".join([self.standin.authority_host, tenant, *path])

    def openid_configuration(self, incoming: _Incoming, segment: str, form: dict[str, str]) -> _Reply:
        """The tenant's OpenID Provider metadata (``/v2.0/.well-known/openid-configuration``)."""
        tenant = self.resolve_tenant(segment)
        issuer_tenant = "{tenantid}" if tenant in {"common", "organizations"} else tenant
        document = {
            "token_endpoint": self.endpoint(tenant, "oauth2", "v2.0", "token"),
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": self.endpoint(tenant, "discovery", "v2.0", "keys"),
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": self.endpoint(issuer_tenant, "v2.0"),
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{self.standin.graph_url.rsplit('/', 1)[0]}/oidc/userinfo",
            "authorization_endpoint": self.endpoint(tenant, "oauth2", "v2.0", "authorize"),
            "device_authorization_endpoint": self.endpoint(tenant, "oauth2", "v2.0", "devicecode"),
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": self.endpoint(tenant, "oauth2", "v2.0", "logout"),
            "claims_supported": [
                *"sub iss cloud_instance_name cloud_instance_host_name cloud_graph_host_name".split(),
                *"msgraph_host aud exp iat auth_time acr nonce preferred_username name tid ver".split(),
                *"at_hash c_hash email".split(),
            ],
            "kerberos_endpoint": self.endpoint(tenant, "kerberos"),
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": urllib.parse.urlsplit(self.standin.graph_url).netloc,
            "rbac_url": "https://pas.windows.net",
        }
        return _json_reply(200, document, _OAUTH_JSON)

    def keys(self, incoming: _Incoming, segment: str, form: dict[str, str]) -> _Reply:
        """The signing keys of id_tokens (``jwks_uri``)."""
        tenant = self.resolve_tenant(segment)
        return _json_reply(200, self.standin.signer.jwks(self.endpoint(tenant, "v2.0")), _OAUTH_JSON)

    # -- device authorization ------------------------------------------------------------------------

    def device_authorization(self, incoming: _Incoming, segment: str, form: dict[str, str]) -> _Reply:
        """Start a device code sign-in (identity platform: OAuth 2.0 device authorization grant, RFC 8628)."""
        self.resolve_tenant(segment)
        client_id = _required(form, "client_id")
        self.require_public_client(client_id)
        scopes = _required(form, "scope").split()
        self.delegated_permissions(client_id, scopes)  # rejects unknown scopes now, as Entra does
        user_code = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(8))
        code = _DeviceCode(
            device_code=secrets.token_urlsafe(48),
            user_code=user_code,
            client_id=client_id,
            scopes=scopes,
            expires_at=time.time() + _DEVICE_CODE_LIFETIME,
        )
        with self.standin._lock:
            self.standin._device_codes[code.device_code] = code
        self.standin._schedule_auto_approval(user_code)
        verification_uri = f"{self.standin.authority_host}/devicelogin"
        document = {
            "user_code": user_code,
            "device_code": code.device_code,
            "verification_uri": verification_uri,
            "expires_in": _DEVICE_CODE_LIFETIME,
            "interval": 1,
            "message": (
                f"To sign in, use a web browser to open the page {verification_uri} and enter the code "
                f"{user_code} to authenticate."
            ),
        }
        return _json_reply(200, document, _OAUTH_JSON)

    def require_public_client(self, client_id: str) -> None:
        """Only the public client may use device code (the confidential one must authenticate)."""
        if client_id == self.standin.client_id:
            return
        if client_id == self.standin.secret_client_id:
            raise _no_client_credentials()
        raise self.unknown_client(client_id)

    def unknown_client(self, client_id: str) -> _AuthorityError:
        """AADSTS700016 (observed with ``error: unauthorized_client``)."""
        return _AuthorityError(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory "
            f"'{self.standin.domain}'. The application may not be registered or consented to in this tenant, "
            "or the request went to the wrong tenant.",
        )

    def delegated_permissions(
        self, client_id: str, scopes: Sequence[str]
    ) -> tuple[frozenset[str], list[str]]:
        """The Graph permissions a delegated token gets, and the scopes to echo back (consented ones only)."""
        granted: set[str] = set()
        echoed: list[str] = []
        for scope in scopes:
            if scope in _RESERVED_SCOPES:
                continue
            name = self.graph_permission(scope)
            names = (
                self.standin.granted_scopes if name == ".default" else {name} & self.standin.granted_scopes
            )
            if names:
                granted |= names
                echoed.append(scope)
        return frozenset(granted), echoed

    def graph_permission(self, scope: str) -> str:
        """The Graph permission of a scope: ``https://graph.microsoft.com/X``, ``<graph host>/X`` or ``X``."""
        resource, _, name = scope.rpartition("/")
        graph = {GRAPH_RESOURCE, GRAPH_APP_ID, self.standin.authority_host}
        if resource and resource.rstrip("/") not in graph:
            raise _AuthorityError(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant named "
                f"{self.standin.domain}.",
            )
        if name != ".default" and not _PERMISSION_NAME.match(name):
            raise _AuthorityError(
                400,
                "invalid_scope",
                70011,
                f"The provided value for the input parameter 'scope' is not valid. The scope {scope} is not "
                "valid.",
            )
        return name

    # -- token endpoint ------------------------------------------------------------------------------

    def token(self, incoming: _Incoming, segment: str, form: dict[str, str]) -> _Reply:
        """Redeem a grant (identity platform: ``/oauth2/v2.0/token``)."""
        tenant = self.resolve_tenant(segment)
        grant_type = _required(form, "grant_type")
        if grant_type in _DEVICE_CODE_GRANTS:
            return self.device_code_grant(tenant, form)
        if grant_type == "client_credentials":
            return self.client_credentials_grant(incoming, tenant, segment, form)
        if grant_type == "refresh_token":
            return self.refresh_token_grant(tenant, form)
        raise _AuthorityError(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant_type}'.",
        )

    def device_code_grant(self, tenant: str, form: dict[str, str]) -> _Reply:
        """Poll a device code: pending, expired, or the tokens once an admin approved it."""
        client_id = _required(form, "client_id")
        self.require_public_client(client_id)
        with self.standin._lock:
            code = self.standin._device_codes.get(_required(form, "device_code"))
            if code is None or code.client_id != client_id:
                raise _AuthorityError(400, "invalid_grant", 70000, "The provided device code is not valid.")
            if code.redeemed:
                raise _AuthorityError(400, "invalid_grant", 54005, "The device code was already redeemed.")
            if time.time() > code.expires_at:
                raise _AuthorityError(400, "expired_token", 70020, "The device code has expired.")
            user = code.approved_by
            if user is None:
                raise _AuthorityError(
                    400,
                    "authorization_pending",
                    70016,
                    "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                )
            code.redeemed = True
        return self.delegated_tokens(client_id, user, code.scopes, form)

    def delegated_tokens(
        self, client_id: str, user: DirectoryUser, scopes: list[str], form: dict[str, str]
    ) -> _Reply:
        """Access, refresh and id tokens for a signed-in user (and ``client_info`` when msal asks)."""
        permissions, echoed = self.delegated_permissions(client_id, scopes)
        issued = self.standin._new_token(
            kind="delegated",
            client_id=client_id,
            permissions=permissions,
            user=user,
            lifetime=_DELEGATED_LIFETIME,
        )
        refresh_token = secrets.token_urlsafe(64)
        with self.standin._lock:
            self.standin._refresh_tokens[refresh_token] = _RefreshGrant(client_id, user, scopes)
        document: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join([*echoed, *(s for s in scopes if s in _RESERVED_SCOPES)]),
            "expires_in": _DELEGATED_LIFETIME,
            "ext_expires_in": _DELEGATED_LIFETIME,
            "access_token": issued.value,
            "refresh_token": refresh_token,
            "id_token": self.id_token(client_id, user),
        }
        if form.get("client_info") == "1":
            client_info = {"uid": user.id, "utid": self.standin.tenant_id}
            document["client_info"] = _b64url(_json_bytes(client_info))
        return _json_reply(200, document, _OAUTH_JSON)

    def id_token(self, client_id: str, user: DirectoryUser) -> str:
        """A v2.0 id_token for ``user`` (msal reads iss, sub, aud, oid, tid, preferred_username)."""
        now = int(time.time())
        tenant = self.standin.tenant_id
        claims = {
            "aud": client_id,
            "iss": self.endpoint(tenant, "v2.0"),
            "iat": now,
            "nbf": now,
            "exp": now + _DELEGATED_LIFETIME,
            "name": user.displayName,
            "oid": user.id,
            "preferred_username": user.userPrincipalName,
            "rh": "0.standin.",
            "sub": _b64url(hashlib.sha256(f"{user.id}:{client_id}".encode()).digest()),
            "tid": tenant,
            "uti": _b64url(secrets.token_bytes(16)),
            "ver": "2.0",
        }
        return self.standin.signer.sign(claims)

    def refresh_token_grant(self, tenant: str, form: dict[str, str]) -> _Reply:
        """Redeem a refresh token for new tokens (the refresh token rotates)."""
        client_id = _required(form, "client_id")
        with self.standin._lock:
            grant = self.standin._refresh_tokens.pop(_required(form, "refresh_token"), None)
        if grant is None or grant.client_id != client_id:
            raise _AuthorityError(400, "invalid_grant", 70000, "The provided refresh token is not valid.")
        scopes = form["scope"].split() if form.get("scope") else grant.scopes
        return self.delegated_tokens(client_id, grant.user, scopes, form)

    def client_credentials_grant(
        self, incoming: _Incoming, tenant: str, segment: str, form: dict[str, str]
    ) -> _Reply:
        """An app-only token for the confidential client, authenticated by its secret or a certificate."""
        client_id, secret = self.client_authentication(incoming, form)
        if client_id == self.standin.client_id:
            raise _no_client_credentials()
        if client_id != self.standin.secret_client_id:
            raise self.unknown_client(client_id)
        if secret is not None:
            self.check_secret(client_id, secret)
        else:
            self.check_assertion(client_id, segment, form)
        self.check_default_scope(_required(form, "scope"))
        issued = self.standin._new_token(
            kind="application",
            client_id=client_id,
            permissions=self.standin.granted_roles,
            user=None,
            lifetime=_APPLICATION_LIFETIME,
        )
        document = {
            "token_type": "Bearer",
            "expires_in": _APPLICATION_LIFETIME,
            "ext_expires_in": _APPLICATION_LIFETIME,
            "access_token": issued.value,
        }
        return _json_reply(200, document, _OAUTH_JSON)

    @staticmethod
    def client_authentication(incoming: _Incoming, form: dict[str, str]) -> tuple[str, str | None]:
        """The client id and secret (``client_secret_basic`` or the form); secret ``None`` for assertions."""
        header = incoming.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            decoded = base64.b64decode(header[6:].strip()).decode("utf-8", "replace")
            user, _, password = decoded.partition(":")
            return urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(password)
        client_id = _required(form, "client_id")
        if "client_secret" in form:
            return client_id, form["client_secret"]
        if "client_assertion" not in form:
            raise _no_client_credentials()
        return client_id, None

    def check_secret(self, client_id: str, secret: str) -> None:
        """AADSTS7000215 for a wrong secret (``invalid_client``, 401)."""
        if not hmac.compare_digest(secret.encode(), self.standin.client_secret.encode()):
            raise _AuthorityError(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Send the value (not the id) of a secret added to app "
                f"'{client_id}'.",
            )

    def check_assertion(self, client_id: str, segment: str, form: dict[str, str]) -> None:
        """A certificate client assertion (RFC 7523): checked for shape and claims, not for its signature."""
        if form.get("client_assertion_type") != _JWT_BEARER:
            raise _AuthorityError(
                400, "invalid_request", 700001, f"client_assertion_type must be '{_JWT_BEARER}'."
            )
        try:
            header, claims = _decode_jwt(form["client_assertion"])
        except ValueError as error:
            raise _AuthorityError(
                401, "invalid_client", 50027, "JWT token is invalid or malformed."
            ) from error
        if header.get("alg") not in {"RS256", "PS256"} or not ({"x5t", "x5t#S256"} & header.keys()):
            raise _AuthorityError(
                401,
                "invalid_client",
                700027,
                "Client assertion must be signed with RS256 or PS256 and name its certificate in 'x5t' "
                "or 'x5t#S256'.",
            )
        self.check_assertion_claims(client_id, segment, claims)

    def check_assertion_claims(self, client_id: str, segment: str, claims: dict[str, Any]) -> None:
        """``aud`` is this token endpoint, ``iss`` = ``sub`` = client id, and the assertion is current."""
        audiences = {
            self.endpoint(segment, "oauth2", "v2.0", "token"),
            self.endpoint(self.standin.tenant_id, "oauth2", "v2.0", "token"),
        }
        if claims.get("aud") not in audiences:
            raise _AuthorityError(
                401,
                "invalid_client",
                700023,
                f"Client assertion audience claim must be one of {sorted(audiences)}.",
            )
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            raise _AuthorityError(
                401, "invalid_client", 700021, "Client assertion 'iss' and 'sub' must be the client id."
            )
        now = time.time()
        if not isinstance(claims.get("exp"), int | float) or claims["exp"] < now - 300:
            raise _AuthorityError(
                401, "invalid_client", 700024, "Client assertion is not within its valid time range."
            )
        if isinstance(claims.get("nbf"), int | float) and claims["nbf"] > now + 300:
            raise _AuthorityError(
                401, "invalid_client", 700024, "Client assertion is not within its valid time range."
            )

    def check_default_scope(self, scope: str) -> None:
        """Client credentials take one ``<resource>/.default`` scope, and the resource must be Graph."""
        scopes = scope.split()
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            raise _AuthorityError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows need one scope: "
                "the resource identifier (application ID URI) followed by /.default.",
            )
        self.graph_permission(scopes[0])


def _no_client_credentials() -> _AuthorityError:
    """AADSTS7000218: a confidential client sent neither a secret nor an assertion."""
    message = "The request body must contain the following parameter: 'client_assertion' or 'client_secret'."
    return _AuthorityError(401, "invalid_client", 7000218, message)


def _required(form: Mapping[str, str], name: str) -> str:
    value = form.get(name, "")
    if not value:
        raise _AuthorityError(
            400,
            "invalid_request",
            900144,
            f"The request body must contain the following parameter: '{name}'.",
        )
    return value


# --- Graph -----------------------------------------------------------------------------------------------

Handler = Callable[..., _Reply]
_DENIED = ("Authorization_RequestDenied", "Insufficient privileges to complete the operation.")


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    permissions: frozenset[str]
    shape: Check | None = None
    collection: bool = False
    body_optional: bool = False
    denied: tuple[str, str] = _DENIED


def _route(
    method: str,
    template: str,
    handler: Handler,
    permissions: frozenset[str],
    *,
    shape: Check | None = None,
    collection: bool = False,
    body_optional: bool = False,
    denied: tuple[str, str] = _DENIED,
) -> _Route:
    """A route; ``{name}`` in the template matches one path segment, passed to the handler as ``name``."""
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
    pattern = re.compile(f"^{regex}/?$", re.IGNORECASE)
    return _Route(method, pattern, handler, permissions, shape, collection, body_optional, denied)


_ODATA_OPTIONS = frozenset(
    {"filter", "top", "select", "skiptoken", "orderby", "count", "search", "expand", "skip"}
)


class _Graph:
    """Graph v1.0: authentication, routing, permissions, request shapes, paging, and the handlers."""

    def __init__(self, standin: GraphStandIn) -> None:
        self.standin = standin
        sp = "/servicePrincipals/{sp}"
        job = f"{sp}/synchronization/jobs/{{job}}"
        audit_denied = (
            "Authentication_MSGraphPermissionMissing",
            "Calling principal does not have required MSGraph permissions AuditLog.Read.All",
        )
        self.routes = [
            _route("GET", "/servicePrincipals", self.list_service_principals, READ_APPS, collection=True),
            _route("GET", sp, self.get_service_principal, READ_APPS),
            _route("GET", "/users/{user}", self.get_user, READ_USERS),
            _route(
                "POST",
                "/applicationTemplates/{template}/instantiate",
                self.instantiate,
                WRITE_APPS,
                shape=_INSTANTIATE,
            ),
            _route("GET", f"{sp}/synchronization/templates", self.list_templates, READ_SYNC, collection=True),
            _route("GET", f"{sp}/synchronization/jobs", self.list_jobs, READ_SYNC, collection=True),
            _route("POST", f"{sp}/synchronization/jobs", self.create_job, WRITE_SYNC, shape=_CREATE_JOB),
            _route("PUT", f"{sp}/synchronization/secrets", self.put_secrets, WRITE_SYNC, shape=_PUT_SECRETS),
            _route("GET", job, self.get_job, READ_SYNC),
            _route("GET", f"{job}/schema", self.get_schema, READ_SYNC),
            _route(
                "POST",
                f"{job}/validateCredentials",
                self.validate_credentials,
                WRITE_SYNC,
                shape=_VALIDATE_CREDENTIALS,
            ),
            _route(
                "POST",
                f"{job}/provisionOnDemand",
                self.provision_on_demand,
                WRITE_SYNC,
                shape=_PROVISION_ON_DEMAND,
            ),
            _route("POST", f"{job}/start", self.start_job, WRITE_SYNC, shape=_START, body_optional=True),
            _route("POST", f"{job}/pause", self.pause_job, WRITE_SYNC, shape=_PAUSE, body_optional=True),
            _route(
                "GET",
                "/auditLogs/provisioning",
                self.list_provisioning,
                READ_AUDIT,
                collection=True,
                denied=audit_denied,
            ),
        ]

    # -- pipeline ------------------------------------------------------------------------------------

    def handle(self, incoming: _Incoming) -> _Reply:
        """Authenticate, record, inject faults, route, authorize, validate, then run the handler."""
        try:
            token = self.authenticate(incoming)
            self.standin._record(incoming)
            fault = self.standin._injected_fault(incoming)
            if fault is not None:
                raise fault
            route, parameters = self.resolve(incoming)
            if not (token.permissions & route.permissions):
                raise _GraphError(403, *route.denied)
            options = self.options(route, incoming.query)
            body = self.body(route, incoming)
            return route.handler(_GraphCall(incoming, token, options, body), **parameters)
        except _GraphError as error:
            return self.error_reply(incoming, error)

    def error_reply(self, incoming: _Incoming, error: _GraphError) -> _Reply:
        """Graph's error document (Graph: Microsoft Graph error responses and resource types)."""
        document = {
            "error": {
                "code": error.code,
                "message": error.message,
                "innerError": {
                    "date": _now().strftime("%Y-%m-%dT%H:%M:%S"),
                    "request-id": incoming.request_id,
                    "client-request-id": incoming.client_request_id,
                },
            }
        }
        reply = _json_reply(error.status, document)
        reply.headers.update(error.headers)
        if error.status == 401:
            reply.headers["WWW-Authenticate"] = (
                f'Bearer realm="", authorization_uri="{self.standin.authority_host}/common/oauth2/'
                f'authorize", client_id="{GRAPH_APP_ID}"'
            )
        return reply

    def authenticate(self, incoming: _Incoming) -> IssuedToken:
        """The bearer token's grant; 401 InvalidAuthenticationToken when missing, unknown or expired."""
        scheme, _, value = incoming.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        issued = self.standin.tokens.get(value.strip())
        if issued is None:
            raise _GraphError(401, "InvalidAuthenticationToken", "Access token validation failure.")
        if time.time() >= issued.expires_at:
            raise _GraphError(
                401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."
            )
        return issued

    def resolve(self, incoming: _Incoming) -> tuple[_Route, dict[str, str]]:
        """The route for the path and method: 400 for an unknown segment, 405 for a wrong method."""
        path = incoming.path[len("/v1.0") :] or "/"
        matched = [(route, match) for route in self.routes if (match := route.pattern.match(path))]
        for route, match in matched:
            if route.method == incoming.method:
                return route, match.groupdict()
        if matched:
            raise _GraphError(
                405, "Request_BadRequest", "The HTTP method is not allowed for the request URI."
            )  # [modelled]
        segment = next((part for part in path.split("/") if part), "")
        raise _GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")

    def options(self, route: _Route, query: Mapping[str, str]) -> dict[str, str]:
        """OData system query options by name (``$`` optional, as in v1.0); unsupported ones are 400."""
        options: dict[str, str] = {}
        for name, value in query.items():
            bare = name.removeprefix("$").lower()
            if name.startswith("$") or bare in _ODATA_OPTIONS:
                options[bare] = value
        allowed = {"filter", "top", "select", "skiptoken"} if route.collection else {"select"}
        for name in options:
            if name not in allowed:
                raise _bad_request(f"Query option '${name}' is not supported for this request.")
        if "top" in options and (not options["top"].isdigit() or not 1 <= int(options["top"]) <= 999):
            raise _bad_request(f"Invalid value '{options['top']}' for query option '$top'.")
        return options

    def body(self, route: _Route, incoming: _Incoming) -> Any:
        """The JSON body, checked against the route's shape; 415 without a JSON media type."""
        if route.shape is None:
            return None
        if not incoming.body.strip():
            if route.body_optional:
                return {}
            raise _bad_request("Empty Payload. JSON content expected.")
        media_type = incoming.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            raise _GraphError(
                415,
                "UnsupportedMediaType",
                f"Content-Type '{media_type or '(none)'}' is not supported; use application/json.",
            )  # [modelled]
        try:
            document = json.loads(incoming.body)
        except ValueError as error:
            raise _bad_request(
                "Unable to read JSON request payload. Please ensure Content-Type header is set and "
                "payload is of valid JSON format."
            ) from error
        route.shape(document, "")
        return document

    # -- paging --------------------------------------------------------------------------------------

    def page(self, call: _GraphCall, items: list[dict[str, Any]], context: str) -> _Reply:
        """One page of ``items`` and an ``@odata.nextLink`` with a ``$skiptoken`` when more remain."""
        top = int(call.options["top"]) if "top" in call.options else self.standin.page_size
        size = max(1, min(self.standin.page_size, top))
        offset = self.skiptoken_offset(call) if "skiptoken" in call.options else 0
        document: dict[str, Any] = {"@odata.context": context, "value": items[offset : offset + size]}
        if offset + size < len(items):
            document["@odata.nextLink"] = self.next_link(call, offset + size)
        return _json_reply(200, document)

    def _token_scope(self, call: _GraphCall) -> str:
        return json.dumps([call.incoming.path.lower(), call.options.get("filter"), call.options.get("top")])

    def next_link(self, call: _GraphCall, offset: int) -> str:
        """The absolute URL of the next page: the same query, plus a ``$skiptoken`` bound to it."""
        payload = _b64url(_json_bytes({"o": offset, "q": self._token_scope(call)}))
        mac = _b64url(hmac.new(self.standin._skiptoken_key, payload.encode(), hashlib.sha256).digest()[:12])
        parameters = [(f"${name}", value) for name, value in call.options.items() if name != "skiptoken"]
        parameters.append(("$skiptoken", f"{payload}.{mac}"))
        query = "&".join(
            f"{name}={urllib.parse.quote(value, safe=chr(39) + ':/,()')}" for name, value in parameters
        )
        return f"{self.standin.authority_host}{call.incoming.path}?{query}"

    def skiptoken_offset(self, call: _GraphCall) -> int:
        """The offset a ``$skiptoken`` stands for; 400 when it was altered or belongs to another query."""
        payload, _, mac = call.options["skiptoken"].partition(".")
        expected = _b64url(
            hmac.new(self.standin._skiptoken_key, payload.encode(), hashlib.sha256).digest()[:12]
        )
        try:
            state = json.loads(_b64url_decode(payload)) if hmac.compare_digest(mac, expected) else None
        except ValueError:
            state = None
        if not isinstance(state, dict) or state.get("q") != self._token_scope(call):
            raise _bad_request("The $skiptoken is not valid for this query; follow @odata.nextLink as given.")
        return int(state["o"])

    def context(self, fragment: str) -> str:
        """An ``@odata.context`` URL."""
        return f"{self.standin.graph_url}/$metadata#{fragment}"

    # -- directory -----------------------------------------------------------------------------------

    def service_principal(self, sp_id: str) -> ServicePrincipal:
        """The service principal by object id; 404 Request_ResourceNotFound otherwise."""
        for candidate in self.standin.service_principals:
            if candidate.id.lower() == sp_id.lower() and candidate.visible_at <= time.monotonic():
                return candidate
        raise _resource_not_found(sp_id)

    def list_service_principals(self, call: _GraphCall) -> _Reply:
        """Graph v1.0: List servicePrincipals, with ``$filter=displayName eq '…'`` or ``appId eq '…'``."""
        items = [
            sp
            for sp in self.standin.service_principals
            if _service_principal_filter(call.options.get("filter"))(sp) and sp.visible_at <= time.monotonic()
        ]
        return self.page(call, [sp.to_graph() for sp in items], self.context("servicePrincipals"))

    def instantiate(self, call: _GraphCall, template: str) -> _Reply:
        """Graph v1.0: applicationTemplate: instantiate (201 applicationServicePrincipal).

        Only the non-gallery template ("Integrate any other application") is modelled. As in the
        directory, the new service principal becomes readable only after ``replication_delay``
        seconds; a client must wait for it.
        """
        if template != NON_GALLERY_TEMPLATE_ID:
            raise _resource_not_found(template)  # [modelled]: gallery templates are not served
        name = call.body["displayName"]
        app_id = str(uuid.uuid4())
        created = ServicePrincipal(
            id=str(uuid.uuid4()),
            appId=app_id,
            displayName=name,
            tags=[
                "WindowsAzureActiveDirectoryCustomSingleSignOnApplication",
                "WindowsAzureActiveDirectoryIntegratedApp",
            ],
            visible_at=time.monotonic() + self.standin.replication_delay,
        )
        with self.standin._lock:
            self.standin.service_principals.append(created)
        application = {"id": str(uuid.uuid4()), "appId": app_id, "displayName": name}
        return _json_reply(
            201,
            {
                "@odata.context": self.context("microsoft.graph.applicationServicePrincipal"),
                "application": application,
                "servicePrincipal": created.to_graph(),
            },
        )

    def get_service_principal(self, call: _GraphCall, sp: str) -> _Reply:
        """Graph v1.0: Get servicePrincipal."""
        found = self.service_principal(sp)
        return _json_reply(
            200, {"@odata.context": self.context("servicePrincipals/$entity"), **found.to_graph()}
        )

    def get_user(self, call: _GraphCall, user: str) -> _Reply:
        """Graph v1.0: Get user, by object id or userPrincipalName, with ``$select``."""
        wanted = user.lower()
        found = next(
            (u for u in self.standin.users if wanted in {u.id.lower(), u.userPrincipalName.lower()}), None
        )
        if found is None:
            raise _resource_not_found(user)
        select = [name.strip() for name in call.options.get("select", "").split(",") if name.strip()]
        properties = found.to_graph()
        names = select or _USER_DEFAULT_PROPERTIES
        fragment = f"users({','.join(select)})/$entity" if select else "users/$entity"
        return _json_reply(
            200, {"@odata.context": self.context(fragment), **{n: properties.get(n) for n in names}}
        )

    # -- synchronization -----------------------------------------------------------------------------

    def job(self, sp_id: str, job_id: str) -> tuple[ServicePrincipal, dict[str, Any]]:
        """The service principal and its job; 404 when either is unknown [modelled for the job]."""
        found = self.service_principal(sp_id)
        job = self.standin.jobs.get(found.id, {}).get(job_id)
        if job is None:
            raise _GraphError(
                404,
                "Request_ResourceNotFound",
                f"The synchronization job '{job_id}' does not exist for '{sp_id}'.",
            )
        return found, job

    def list_templates(self, call: _GraphCall, sp: str) -> _Reply:
        """Graph v1.0: List existing synchronization templates (synchronizationTemplate resource)."""
        found = self.service_principal(sp)
        items = [_template(found, template_id) for template_id in found.template_ids]
        return self.page(
            call, items, self.context(f"servicePrincipals('{found.id}')/synchronization/templates")
        )

    def list_jobs(self, call: _GraphCall, sp: str) -> _Reply:
        """Graph v1.0: List synchronization jobs."""
        found = self.service_principal(sp)
        items = [copy.deepcopy(job) for job in self.standin.jobs.get(found.id, {}).values()]
        return self.page(call, items, self.context(f"servicePrincipals('{found.id}')/synchronization/jobs"))

    def create_job(self, call: _GraphCall, sp: str) -> _Reply:
        """Graph v1.0: Create synchronizationJob (201; created disabled, from one of the app's templates)."""
        found = self.service_principal(sp)
        template_id = call.body["templateId"]
        if template_id not in found.template_ids:
            available = ", ".join(found.template_ids) or "none"
            raise _bad_request(
                f"The template '{template_id}' is not one of this application's ({available})."
            )  # [modelled]
        jobs = self.standin.jobs.setdefault(found.id, {})
        if any(job["templateId"] == template_id for job in jobs.values()):
            raise _GraphError(
                409, "Conflict", f"A synchronization job from template '{template_id}' already exists."
            )  # [modelled]
        job = _new_job(
            self.standin.tenant_id, template_id, configured=bool(self.standin.secrets.get(found.id))
        )
        with self.standin._lock:
            jobs[job["id"]] = job
        context = self.context(f"servicePrincipals('{found.id}')/synchronization/jobs/$entity")
        return _json_reply(201, {"@odata.context": context, **copy.deepcopy(job)})

    def get_job(self, call: _GraphCall, sp: str, job: str) -> _Reply:
        """Graph v1.0: Get synchronizationJob."""
        found, document = self.job(sp, job)
        context = self.context(f"servicePrincipals('{found.id}')/synchronization/jobs/$entity")
        return _json_reply(200, {"@odata.context": context, **copy.deepcopy(document)})

    def get_schema(self, call: _GraphCall, sp: str, job: str) -> _Reply:
        """Graph v1.0: Get synchronizationSchema (synchronizationRule, objectMapping resources)."""
        found, document = self.job(sp, job)
        context = self.context(
            f"servicePrincipals('{found.id}')/synchronization/jobs('{job}')/schema/$entity"
        )
        return _json_reply(200, {"@odata.context": context, **_schema(document["id"])})

    def put_secrets(self, call: _GraphCall, sp: str) -> _Reply:
        """Graph v1.0: Add synchronization secrets (``PUT …/synchronization/secrets``, 204)."""
        found = self.service_principal(sp)
        values = {pair["key"]: pair["value"] for pair in call.body["value"]}
        with self.standin._lock:
            self.standin.secrets[found.id] = values
            for job in self.standin.jobs.get(found.id, {}).values():
                if job["status"]["code"] == "NotConfigured" and values.get("BaseAddress"):
                    job["status"]["code"] = "NotRun"
        return _Reply(204)

    def start_job(self, call: _GraphCall, sp: str, job: str) -> _Reply:
        """Graph v1.0: synchronizationJob: start (204; a quarantine is cleared)."""
        _, document = self.job(sp, job)
        with self.standin._lock:
            document["schedule"].update(state="Active", interval="PT40M")
            document["status"].update(code="Active", quarantine=None)
        return _Reply(204)

    def pause_job(self, call: _GraphCall, sp: str, job: str) -> _Reply:
        """Graph v1.0: synchronizationJob: pause (204)."""
        _, document = self.job(sp, job)
        with self.standin._lock:
            document["schedule"]["state"] = "Paused"
            document["status"]["code"] = "Paused"
        return _Reply(204)

    def credentials_of(self, found: ServicePrincipal, body: Mapping[str, Any]) -> dict[str, str]:
        """The credentials to test: the saved secrets, or the ones in the body."""
        if body.get("useSavedCredentials"):
            saved = self.standin.secrets.get(found.id)
            if not saved:
                raise _bad_request("There are no saved credentials to validate.")  # [modelled]
            return dict(saved)
        return {pair["key"]: pair["value"] for pair in body.get("credentials", [])}

    def validate_credentials(self, call: _GraphCall, sp: str, job: str) -> _Reply:
        """Graph v1.0: synchronizationJob: validateCredentials — Entra's *Test Connection*, for real.

        The SCIM endpoint must answer the probe ``GET /Users?filter=userName eq "<random>"`` with 200 and a
        ListResponse; then 204. Otherwise 400, with a code [modelled] on Entra's: ``…CredentialValidation
        Unavailable`` (unreachable, or an unexpected status), ``…CredentialValidationFailure`` (401/403),
        ``…ServiceIncompatible`` (200 without a ListResponse); the message names the status it answered.
        """
        found, _ = self.job(sp, job)
        target = self.scim_target(self.credentials_of(found, call.body))
        probe_url, result = target.probe(self.standin.domain)
        problem = _probe_problem(probe_url, result)
        if problem is not None:
            raise _GraphError(400, *problem)
        return _Reply(204)

    def scim_target(self, credentials: Mapping[str, str]) -> _ScimTarget:
        """The SCIM endpoint of ``BaseAddress``, with ``SecretToken`` (or, when blank, an Entra-style JWT)."""
        base = credentials.get("BaseAddress", "").strip()
        scheme = urllib.parse.urlsplit(base).scheme.lower()
        if not base or scheme not in {"http", "https"}:
            raise _bad_request("BaseAddress (the Tenant URL) must be an http or https URL.")  # [modelled]
        token = credentials.get("SecretToken", "").strip() or self.entra_scim_token()
        return _ScimTarget(base, token, self.standin.ca_file)

    def entra_scim_token(self) -> str:
        """The JWT Entra sends when the Secret Token is blank (signed by the stand-in, so refused)."""
        now = int(time.time())
        claims = {
            "aud": NON_GALLERY_TEMPLATE_ID,
            "iss": f"https://sts.windows.net/{self.standin.tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "tid": self.standin.tenant_id,
        }
        return self.standin.signer.sign(claims)

    def provision_on_demand(self, call: _GraphCall, sp: str, job: str) -> _Reply:
        """Graph v1.0: synchronizationJob: provisionOnDemand — one user, really provisioned to the endpoint.

        Answers a stringKeyStringValuePair whose ``key`` and ``value`` are JSON strings, shaped as the
        reference's example 1 (``value`` holds ``provisioningSteps`` with ``type``/``status`` in Pascal
        case), and adds a provisioningObjectSummary to the provisioning logs.
        """
        found, document = self.job(sp, job)
        self.throttle_on_demand(document["id"])
        user = self.on_demand_subject(call.body)
        saved = self.standin.secrets.get(found.id) or {}
        if not saved.get("BaseAddress"):
            raise _bad_request("The job has no saved credentials; save BaseAddress and SecretToken first.")
        outcome = _Provisioner(self.scim_target(saved), user, self.standin.domain).run()
        summary = _log_entry(self.standin, found, document["id"], user, outcome, _initiator(call.token))
        with self.standin._lock:
            self.standin.provisioning_logs.append(summary)
        key, value = _on_demand_answer(outcome, user, found, self.standin.tenant_id)
        answer = {
            "@odata.context": self.context("microsoft.graph.stringKeyStringValuePair"),
            "key": json.dumps(key),
            "value": json.dumps(value),
        }
        return _json_reply(200, answer)

    def throttle_on_demand(self, job_id: str) -> None:
        """The documented provisionOnDemand rate limit (5 requests per 10 seconds, per job here): 429."""
        if self.standin.on_demand_rate is None:
            return
        limit, window = self.standin.on_demand_rate
        now = time.monotonic()
        with self.standin._lock:
            calls = self.standin._on_demand_calls.setdefault(job_id, deque())
            while calls and calls[0] <= now - window:
                calls.popleft()
            if len(calls) >= limit:
                wait = max(1, int(calls[0] + window - now + 0.999))
                raise _GraphError(429, "TooManyRequests", _injected_message(429), {"Retry-After": str(wait)})
            calls.append(now)

    def on_demand_subject(self, body: Mapping[str, Any]) -> DirectoryUser:
        """The one User subject of the request, and the rule it names (the job schema's rule)."""
        parameters = body["parameters"]
        if len(parameters) != 1 or len(parameters[0]["subjects"]) != 1:
            raise _bad_request("Give exactly one parameter with one subject (the stand-in's limit).")
        rule_id = parameters[0]["ruleId"]
        if rule_id not in {USER_RULE_ID, f"{USER_RULE_ID}#V2"}:
            raise _bad_request(
                f"The rule '{rule_id}' is not a synchronization rule of this job."
            )  # [modelled]
        subject = parameters[0]["subjects"][0]
        if subject["objectTypeName"].lower() != "user":
            raise _bad_request("The stand-in provisions users on demand, not groups.")
        user = next((u for u in self.standin.users if u.id.lower() == subject["objectId"].lower()), None)
        if user is None:
            raise _bad_request(
                f"The object '{subject['objectId']}' of type 'User' was not found in Microsoft Entra ID."
            )  # [modelled]
        return user

    # -- provisioning logs ---------------------------------------------------------------------------

    def list_provisioning(self, call: _GraphCall) -> _Reply:
        """Graph v1.0: List provisioningObjectSummary (``/auditLogs/provisioning``), newest first."""
        if not self.standin.premium:
            raise _GraphError(
                403,
                "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                "Neither tenant is B2C or tenant doesn't have premium license",
            )
        keep = _parse_log_filter(call.options.get("filter"))
        with self.standin._lock:
            entries = [copy.deepcopy(entry) for entry in self.standin.provisioning_logs if keep(entry)]
        entries.sort(key=lambda entry: str(entry["activityDateTime"]), reverse=True)
        return self.page(call, entries, self.context("auditLogs/provisioning"))


# --- filters ---------------------------------------------------------------------------------------------

_SP_CLAUSE = re.compile(r"^(displayName|appId)\s+eq\s+('(?:[^']|'')*')$", re.IGNORECASE)
_LOG_CLAUSE = re.compile(r"^([A-Za-z/]+)\s+(eq|ge|le|gt|lt)\s+('(?:[^']|'')*'|[0-9TZ:.+\-]+)$")
_LOG_STRING_PROPERTIES = {
    "servicePrincipal/id": ("servicePrincipal", "id"),
    "sourceIdentity/id": ("sourceIdentity", "id"),
    "sourceIdentity/displayName": ("sourceIdentity", "displayName"),
    "provisioningStatusInfo/status": ("provisioningStatusInfo", "status"),
}
_COMPARE: dict[str, Callable[[datetime, datetime], bool]] = {
    "eq": lambda a, b: a == b,
    "ge": lambda a, b: a >= b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "lt": lambda a, b: a < b,
}


def _invalid_filter(detail: str) -> _GraphError:
    return _bad_request(f"Invalid filter clause: {detail}")


def _service_principal_filter(expression: str | None) -> Callable[[ServicePrincipal], bool]:
    """``displayName eq '…'`` or ``appId eq '…'`` (directory string comparisons ignore case)."""
    if expression is None:
        return lambda _: True
    match = _SP_CLAUSE.match(expression.strip())
    if match is None:
        raise _invalid_filter(f"'{expression}' is not supported; use displayName eq '…' or appId eq '…'.")
    value = _odata_string(match.group(2)).casefold()
    if match.group(1).lower() == "appid":
        return lambda sp: sp.appId.casefold() == value
    return lambda sp: sp.displayName.casefold() == value


def _parse_log_filter(expression: str | None) -> Callable[[dict[str, Any]], bool]:
    """A predicate for the provisioning logs' ``$filter``: clauses joined by ``and``.

    Supported clauses: ``servicePrincipal/id``, ``sourceIdentity/id``, ``sourceIdentity/displayName`` and
    ``provisioningStatusInfo/status`` ``eq '…'``; ``activityDateTime`` ``eq|ge|le|gt|lt`` a timestamp.

    Comparisons are case sensitive, as the List provisioningObjectSummary page says.
    """
    if expression is None or not expression.strip():
        return lambda _: True
    predicates = [_log_clause(clause) for clause in _split_and(expression.strip())]
    return lambda entry: all(predicate(entry) for predicate in predicates)


def _log_clause(clause: str) -> Callable[[dict[str, Any]], bool]:
    match = _LOG_CLAUSE.match(clause)
    if match is None:
        raise _invalid_filter(f"'{clause}' is not supported.")
    name, operator, literal = match.groups()
    if name == "activityDateTime":
        try:
            bound = datetime.fromisoformat(literal)
        except ValueError as error:
            raise _invalid_filter(f"'{literal}' is not a DateTimeOffset.") from error
        compare = _COMPARE[operator]
        return lambda entry: compare(datetime.fromisoformat(str(entry["activityDateTime"])), bound)
    if name not in _LOG_STRING_PROPERTIES or operator != "eq" or not literal.startswith("'"):
        raise _invalid_filter(f"'{clause}' is not supported.")
    value = _odata_string(literal)
    if name == "provisioningStatusInfo/status" and value not in {"success", "warning", "failure", "skipped"}:
        raise _invalid_filter(f"'{value}' is not a provisioningResult (success, warning, failure, skipped).")
    outer, inner = _LOG_STRING_PROPERTIES[name]
    return lambda entry: str((entry.get(outer) or {}).get(inner)) == value


# --- synchronization documents ---------------------------------------------------------------------------


def _template(found: ServicePrincipal, template_id: str) -> dict[str, Any]:
    """A synchronizationTemplate (Graph v1.0: synchronizationTemplate resource; ``schema`` not expanded)."""
    return {
        "id": template_id,
        "applicationId": found.appId,
        "default": True,
        "description": "Provision users and groups to an application that supports SCIM 2.0.",
        "discoverable": True,
        "factoryTag": template_id,
        "metadata": [
            {"key": "IsOAuthEnabled", "value": "false"},
            {"key": "IsSynchronizationAgentAssignmentRequired", "value": "false"},
            {"key": "IsSynchronizationAgentRequired", "value": "false"},
            {"key": "IsSynchronizationInPreview", "value": "false"},
            {"key": "OAuthEnabled", "value": "false"},
        ],
    }


def _new_job(tenant_id: str, template_id: str, *, configured: bool) -> dict[str, Any]:
    """A new synchronizationJob, disabled (Graph v1.0: Create synchronizationJob; synchronizationStatus)."""
    return {
        "id": f"{template_id}.{tenant_id.replace('-', '')}.{uuid.uuid4()}",
        "templateId": template_id,
        "schedule": {"expiration": None, "interval": _DISABLED_INTERVAL, "state": "Disabled"},
        "status": {
            "code": "NotRun" if configured else "NotConfigured",
            "countSuccessiveCompleteFailures": 0,
            "escrowsPruned": False,
            "lastExecution": None,
            "lastSuccessfulExecution": None,
            "lastSuccessfulExecutionWithExports": None,
            "progress": [],
            "quarantine": None,
            "steadyStateFirstAchievedTime": _NEVER,
            "steadyStateLastAchievedTime": _NEVER,
            "synchronizedEntryCountByType": [],
            "troubleshootingUrl": None,
        },
        "synchronizationJobSettings": [
            {"name": "AzureIngestionAttributeOptimization", "value": "False"},
            {"name": "LookaheadQueryEnabled", "value": "False"},
            {"name": "QuarantineTooManyDeletesThreshold", "value": "500"},
        ],
    }


def _attribute(
    source: str, target: str, *, matching: int = 0, expression: str | None = None
) -> dict[str, Any]:
    """An attributeMapping from a source attribute (Graph v1.0: attributeMapping resource)."""
    return {
        "defaultValue": None,
        "exportMissingReferences": False,
        "flowBehavior": "FlowWhenChanged",
        "flowType": "Always",
        "matchingPriority": matching,
        "source": {
            "expression": expression or f"[{source}]",
            "name": source,
            "parameters": [],
            "type": "Function" if expression else "Attribute",
        },
        "targetAttributeName": target,
    }


def _schema(job_id: str) -> dict[str, Any]:
    """The job's synchronizationSchema: one rule, Microsoft Entra ID → ``customappsso`` (users and groups)."""
    users = {
        "name": "Provision Microsoft Entra ID Users",
        "enabled": True,
        "flowTypes": "Add, Update, Delete",
        "metadata": [],
        "scope": None,
        "sourceObjectName": "User",
        "targetObjectName": ENTERPRISE_USER,
        "attributeMappings": [
            _attribute("userPrincipalName", "userName", matching=1),
            _attribute(
                "IsSoftDeleted",
                "active",
                expression='Switch([IsSoftDeleted], , "False", "True", "True", "False")',
            ),
            _attribute("displayName", "displayName"),
            _attribute("mail", 'emails[type eq "work"].value'),
            _attribute("givenName", "name.givenName"),
            _attribute("surname", "name.familyName"),
            _attribute("mailNickname", "externalId"),
        ],
    }
    groups = {
        "name": "Provision Microsoft Entra ID Groups",
        "enabled": True,
        "flowTypes": "Add, Update, Delete",
        "metadata": [],
        "scope": None,
        "sourceObjectName": "Group",
        "targetObjectName": CORE_GROUP,
        "attributeMappings": [
            _attribute("displayName", "displayName", matching=1),
            _attribute("objectId", "externalId"),
            _attribute("members", "members"),
        ],
    }
    rule = {
        "id": USER_RULE_ID,
        "name": "USER_OUTBOUND_USER",
        "editable": True,
        "priority": 1,
        "metadata": [],
        "sourceDirectoryName": "Azure Active Directory",
        "targetDirectoryName": "customappsso",
        "objectMappings": [users, groups],
    }
    directories = [
        {"id": "AAD", "name": "Azure Active Directory", "objects": [{"name": "User"}, {"name": "Group"}]},
        {
            "id": "customappsso",
            "name": "customappsso",
            "objects": [{"name": ENTERPRISE_USER}, {"name": CORE_GROUP}],
        },
    ]
    return {
        "id": job_id,
        "version": "Date:" + _iso_seconds(_now()),
        "synchronizationRules": [rule],
        "directories": directories,
    }


# --- the SCIM side ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _HttpResult:
    status: int
    reason: str
    body: bytes

    def document(self) -> Any:
        """The JSON body, or ``None`` when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def phrase(self) -> str:
        """``401 Unauthorized``."""
        try:
            return f"{self.status} {http.HTTPStatus(self.status).phrase}"
        except ValueError:
            return f"{self.status} {self.reason}".strip()


class _UnreachableError(Exception):
    """The SCIM endpoint could not be reached (refused, name not found, TLS, timeout)."""

    def __init__(self, url: str, reason: str, *, timed_out: bool) -> None:
        super().__init__(reason)
        self.url = url
        self.reason = reason
        self.timed_out = timed_out


class _ScimTarget:
    """The SCIM endpoint named by ``BaseAddress``, called the way Entra's provisioning service calls it.

    Requests carry ``Authorization: Bearer <SecretToken>``; filters are form-encoded
    (``filter=userName+eq+%22…%22``); bodies are ``application/scim+json`` (entra-scim-behavior.md §1).
    """

    def __init__(self, base_address: str, token: str, ca_file: str) -> None:
        parts = urllib.parse.urlsplit(base_address.strip())
        self.base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        self.base_query = parts.query
        self.token = token
        context = ssl.create_default_context()
        with contextlib.suppress(OSError, ssl.SSLError):
            context.load_verify_locations(ca_file)
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )

    def url(self, path: str, query: Mapping[str, str] | None = None) -> str:
        """``BaseAddress`` + ``path``, keeping any query of the Tenant URL (e.g. ``aadOptscim062020``)."""
        encoded = urllib.parse.urlencode(dict(query or {}))
        combined = "&".join(part for part in (self.base_query, encoded) if part)
        return f"{self.base}{path}" + (f"?{combined}" if combined else "")

    def send(self, method: str, url: str, document: Any = None) -> _HttpResult:
        """One request; HTTP errors are results, connection failures raise :class:`_UnreachableError`."""
        headers = {"Authorization": f"Bearer {self.token}", "User-Agent": "GraphStandIn-Provisioning/1.0"}
        data = None
        if document is not None:
            data = _json_bytes(document)
            headers["Content-Type"] = "application/scim+json; charset=utf-8"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - http(s) checked
        try:
            with self._opener.open(request, timeout=_SCIM_TIMEOUT_S) as response:
                return _HttpResult(response.status, str(response.reason), response.read())
        except urllib.error.HTTPError as error:
            try:
                return _HttpResult(error.code, str(error.reason), error.read())
            finally:
                error.close()
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            timed_out = isinstance(reason, TimeoutError) or isinstance(error, TimeoutError)
            raise _UnreachableError(url, str(reason), timed_out=timed_out) from error

    def find_users(self, user_name: str) -> tuple[str, _HttpResult]:
        """``GET /Users?filter=userName eq "<user_name>"``."""
        url = self.url("/Users", {"filter": f'userName eq "{user_name}"'})
        return url, self.send("GET", url)

    def probe(self, domain: str) -> tuple[str, _HttpResult | _UnreachableError]:
        """Test Connection's probe: a filter for a user that cannot exist (a random GUID)."""
        url = self.url("/Users", {"filter": f'userName eq "{uuid.uuid4()}@{domain}"'})
        try:
            return url, self.send("GET", url)
        except _UnreachableError as error:
            return url, error


def _is_list_response(document: Any) -> bool:
    schemas = document.get("schemas") if isinstance(document, dict) else None
    return isinstance(schemas, list) and LIST_RESPONSE in schemas


def _count(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _probe_problem(url: str, result: _HttpResult | _UnreachableError) -> tuple[str, str] | None:
    """Why Test Connection fails (code, message), or ``None`` when the probe got a ListResponse."""
    prefix = "Error validating credentials."
    if isinstance(result, _UnreachableError):
        what = "did not answer in time" if result.timed_out else f"could not be reached ({result.reason})"
        return (
            "SystemForCrossDomainIdentityManagementCredentialValidationUnavailable",
            f"{prefix} The SCIM endpoint {what} for GET {url}. Check the Tenant URL.",
        )
    if result.status in {401, 403}:
        return (
            "SystemForCrossDomainIdentityManagementCredentialValidationFailure",
            f"{prefix} The SCIM endpoint returned {result.phrase} for GET {url}. Check the Secret Token.",
        )
    if result.status != 200:
        return (
            "SystemForCrossDomainIdentityManagementCredentialValidationUnavailable",
            f"{prefix} The SCIM endpoint returned {result.phrase} for GET {url}; a filter that matches "
            "nothing must answer 200 with an empty ListResponse.",
        )
    if not _is_list_response(result.document()):
        return (
            "SystemForCrossDomainIdentityManagementServiceIncompatible",
            f"{prefix} The SCIM endpoint returned 200 OK for GET {url}, but not a SCIM ListResponse.",
        )
    return None


@dataclass(frozen=True)
class _Step:
    """One provisioning step, rendered for the logs (provisioningStep) and for provisionOnDemand's answer."""

    name: str
    kind: str  # import, scoping, matching, processing, referenceResolution, export
    status: str  # success, warning, failure, skipped
    description: str
    details: dict[str, str]
    timestamp: str

    def for_log(self) -> dict[str, Any]:
        """Graph v1.0: provisioningStep resource."""
        return {
            "name": self.name,
            "provisioningStepType": self.kind,
            "status": self.status,
            "description": self.description,
            "details": dict(self.details),
        }

    def for_on_demand(self) -> dict[str, Any]:
        """As in provisionOnDemand's example 1: ``type`` and ``status`` in Pascal case, and a timestamp."""
        return {
            "name": self.name,
            "type": self.kind[:1].upper() + self.kind[1:],
            "status": self.status.capitalize(),
            "description": self.description,
            "timestamp": self.timestamp,
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class _Failure:
    """A provisioningErrorInfo: error code, reason, and who must act (``nonServiceFailure``: the target)."""

    code: str
    reason: str
    category: str = "nonServiceFailure"
    recommended_action: str | None = None

    def for_log(self) -> dict[str, Any]:
        """Graph v1.0: provisioningErrorInfo resource."""
        return {
            "errorCode": self.code,
            "reason": self.reason,
            "additionalDetails": None,
            "errorCategory": self.category,
            "recommendedAction": self.recommended_action,
        }


@dataclass
class _Outcome:
    action: str = "other"  # create, update, other
    status: str = "success"  # success, failure, skipped
    steps: list[_Step] = field(default_factory=list)
    target_id: str = ""
    failure: _Failure | None = None
    skip_reason: str | None = None
    started: datetime = field(default_factory=_now)


_FAILURE_CODES = {
    401: "SystemForCrossDomainIdentityManagementCredentialValidationFailure",
    403: "SystemForCrossDomainIdentityManagementCredentialValidationFailure",
    404: "InvalidAnchor",
    409: "SystemForCrossDomainIdentityManagementServiceIncompatibleFiltering",
    429: "TooManyRequests",
}
"""Log error codes for SCIM answers: Entra's provisioning-log error table and reported codes [modelled]."""


def _failure_for(operation: str, result: _HttpResult | _UnreachableError) -> _Failure:
    if isinstance(result, _UnreachableError):
        code = "Timeout" if result.timed_out else "WebExceptionProtocolError"
        return _Failure(
            code, f"{operation} failed: the SCIM endpoint could not be reached ({result.reason})."
        )
    detail = ""
    document = result.document()
    if isinstance(document, dict) and document.get("detail"):
        detail = f" Detail: {document['detail']}"
    if result.status >= 500:
        code = "InternalServerError"
    else:
        code = _FAILURE_CODES.get(result.status, "SystemForCrossDomainIdentityManagementBadResponse")
    return _Failure(code, f"{operation} failed: the SCIM endpoint returned {result.phrase}.{detail}")


class _Provisioner:
    """One on-demand run for one user: import, scoping, probe, matching, then create, update or skip."""

    def __init__(self, target: _ScimTarget, user: DirectoryUser, domain: str) -> None:
        self.target = target
        self.user = user
        self.domain = domain
        self.outcome = _Outcome()

    def step(self, name: str, kind: str, status: str, description: str, **details: str) -> None:
        """Record a step."""
        self.outcome.steps.append(_Step(name, kind, status, description, dict(details), _iso(_now())))

    def fail(self, name: str, kind: str, failure: _Failure) -> _Outcome:
        """End the run with a failed step."""
        self.step(name, kind, "failure", failure.reason)
        self.outcome.status, self.outcome.failure = "failure", failure
        return self.outcome

    def run(self) -> _Outcome:
        """Provision the user; every SCIM exchange is a real HTTP request."""
        user = self.user
        self.step(
            "EntryImport",
            "import",
            "success",
            f"Retrieved User '{user.userPrincipalName}' from Azure Active Directory",
            objectId=user.id,
            accountEnabled=str(user.accountEnabled),
            displayName=user.displayName,
            mailNickname=user.mail_nickname,
            userPrincipalName=user.userPrincipalName,
        )
        self.step(
            "EntrySynchronizationScoping",
            "scoping",
            "success",
            "Evaluated whether the User is in scope with each scoping filter",
            IsActive=str(user.accountEnabled),
            Assigned="True",
            ScopeEvaluationResult="{}",
        )
        url, probe = self.target.probe(self.domain)
        problem = _probe_problem(url, probe)
        if problem is not None:
            return self.fail("EntryImport", "matching", _Failure(problem[0], problem[1]))
        try:
            url, found = self.target.find_users(user.userPrincipalName)
        except _UnreachableError as error:
            return self.fail("EntryImport", "matching", _failure_for("Matching", error))
        return self.after_matching(url, found)

    def after_matching(self, url: str, found: _HttpResult) -> _Outcome:
        """Create when nothing matched, update when one resource did, fail on anything else."""
        document = found.document()
        if found.status != 200:
            return self.fail("EntryImport", "matching", _failure_for(f"GET {url}", found))
        if not _is_list_response(document):
            reason = f"GET {url} returned 200 OK but not a SCIM ListResponse."
            return self.fail(
                "EntryImport",
                "matching",
                _Failure("SystemForCrossDomainIdentityManagementServiceIncompatible", reason),
            )
        resources = document.get("Resources") or []
        if len(resources) > 1 or _count(document.get("totalResults")) > 1:
            reason = f"More than one resource in customappsso has userName '{self.user.userPrincipalName}'."
            return self.fail("EntryImport", "matching", _Failure("DuplicateTargetEntries", reason))
        if not resources:
            self.step(
                "EntryImport",
                "matching",
                "success",
                f"No User matched '{self.user.userPrincipalName}' in customappsso",
            )
            return self.create()
        resource = resources[0] if isinstance(resources[0], dict) else {}
        self.step(
            "EntryImport",
            "matching",
            "success",
            f"Retrieved '{self.user.userPrincipalName}' from customappsso",
            id=str(resource.get("id", "")),
            userName=str(resource.get("userName", "")),
            active=str(resource.get("active", "")),
            displayName=str(resource.get("displayName", "")),
        )
        return self.update(resource)

    def create(self) -> _Outcome:
        """``POST /Users`` with the body Entra sends (TUT *Create User*, default mappings)."""
        user, outcome = self.user, self.outcome
        if not user.accountEnabled:
            return self.skip(
                "The User is disabled in Azure Active Directory and does not exist in customappsso."
            )
        outcome.action = "create"
        body: dict[str, Any] = {
            "schemas": [CORE_USER, ENTERPRISE_USER],
            "externalId": user.mail_nickname,
            "userName": user.userPrincipalName,
            "active": True,
            "displayName": user.displayName,
            "meta": {"resourceType": "User"},
            "name": {"formatted": user.displayName, "familyName": user.surname, "givenName": user.given_name},
            "roles": [],
        }
        if user.mail:
            body["emails"] = [{"primary": True, "type": "work", "value": user.mail}]
        url = self.target.url("/Users")
        try:
            result = self.target.send("POST", url, body)
        except _UnreachableError as error:
            return self.fail("EntryExportAdd", "export", _failure_for("Create", error))
        document = result.document()
        if result.status not in {200, 201}:
            return self.fail("EntryExportAdd", "export", _failure_for(f"POST {url}", result))
        if not isinstance(document, dict) or not document.get("id"):
            reason = f"POST {url} returned {result.phrase} without the new resource's id."
            return self.fail(
                "EntryExportAdd",
                "export",
                _Failure("SystemForCrossDomainIdentityManagementServiceIncompatible", reason),
            )
        outcome.target_id = str(document["id"])
        self.step(
            "EntryExportAdd",
            "export",
            "success",
            f"User '{user.userPrincipalName}' was created in customappsso",
            ReportableIdentifier=user.userPrincipalName,
            id=outcome.target_id,
        )
        return outcome

    def update(self, resource: dict[str, Any]) -> _Outcome:
        """``PATCH /Users/{id}`` with one ``Replace`` per differing attribute (default client), or skip."""
        user, outcome = self.user, self.outcome
        outcome.target_id = str(resource.get("id", ""))
        operations = []
        if resource.get("displayName") != user.displayName:
            operations.append({"op": "Replace", "path": "displayName", "value": user.displayName})
        if str(resource.get("active", "")).lower() != str(user.accountEnabled).lower():
            operations.append({"op": "Replace", "path": "active", "value": str(user.accountEnabled)})
        if not operations:
            outcome.skip_reason = "RedundantExport"
            return self.skip(
                f"User '{user.userPrincipalName}' already has the same values in Azure Active Directory and "
                "in customappsso; nothing needs to change.",
                SkipReason="RedundantExport",
            )
        outcome.action = "update"
        url = self.target.url(f"/Users/{urllib.parse.quote(outcome.target_id, safe='')}")
        try:
            result = self.target.send("PATCH", url, {"schemas": [PATCH_OP], "Operations": operations})
        except _UnreachableError as error:
            return self.fail("EntryExportUpdate", "export", _failure_for("Update", error))
        if result.status not in {200, 204}:
            return self.fail("EntryExportUpdate", "export", _failure_for(f"PATCH {url}", result))
        self.step(
            "EntryExportUpdate",
            "export",
            "success",
            f"User '{user.userPrincipalName}' was updated in customappsso",
            ReportableIdentifier=user.userPrincipalName,
        )
        return outcome

    def skip(self, description: str, **details: str) -> _Outcome:
        """End the run without exporting."""
        self.step("EntrySynchronizationSkip", "export", "skipped", description, **details)
        self.outcome.status = "skipped"
        self.outcome.skip_reason = self.outcome.skip_reason or "EntrySynchronizationSkipped"
        return self.outcome


# --- provisioning log entries ----------------------------------------------------------------------------


def _initiator(token: IssuedToken) -> dict[str, str]:
    """initiator: the signed-in admin, or the application that called provisionOnDemand."""
    if token.user is not None:
        return {"id": token.user.id, "displayName": token.user.displayName, "initiatorType": "user"}
    return {"id": token.client_id, "displayName": "Graph stand-in client", "initiatorType": "application"}


def _modified_properties(user: DirectoryUser) -> list[dict[str, Any]]:
    values = {
        "objectId": user.id,
        "accountEnabled": str(user.accountEnabled),
        "displayName": user.displayName,
        "mailNickname": user.mail_nickname,
        "userPrincipalName": user.userPrincipalName,
        "IsSoftDeleted": "False",
        "appRoleAssignments": "User",
    }
    return [{"displayName": name, "oldValue": None, "newValue": value} for name, value in values.items()]


def _log_entry(
    standin: GraphStandIn,
    found: ServicePrincipal,
    job_id: str,
    user: DirectoryUser,
    outcome: _Outcome,
    initiated_by: Mapping[str, str],
    *,
    at: datetime | None = None,
) -> dict[str, Any]:
    """A provisioningObjectSummary (Graph v1.0: provisioningObjectSummary, provisioningStatusInfo)."""
    ended = at or _now()
    duration = max(1, int((ended - outcome.started).total_seconds() * 1000)) if at is None else 1800
    return {
        "id": str(uuid.uuid4()),
        "activityDateTime": _iso_seconds(ended),
        "tenantId": standin.tenant_id,
        "jobId": job_id,
        "cycleId": str(uuid.uuid4()),
        "changeId": str(uuid.uuid4()),
        "provisioningAction": outcome.action,
        "durationInMilliseconds": duration,
        "initiatedBy": dict(initiated_by),
        "servicePrincipal": {"id": found.id, "displayName": found.displayName},
        "sourceSystem": {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "aad")),
            "displayName": "Azure Active Directory",
            "details": {},
        },
        "targetSystem": {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, found.id)),
            "displayName": found.displayName,
            "details": {
                "ApplicationId": found.appId,
                "ServicePrincipalId": found.id,
                "ServicePrincipalDisplayName": found.displayName,
            },
        },
        "sourceIdentity": {
            "id": user.id,
            "displayName": user.displayName,
            "identityType": "User",
            "details": {"UserPrincipalName": user.userPrincipalName},
        },
        "targetIdentity": {
            "id": outcome.target_id,
            "displayName": user.userPrincipalName if outcome.target_id else "",
            "identityType": ENTERPRISE_USER,
            "details": {},
        },
        "provisioningStatusInfo": {
            "status": outcome.status,
            "errorInformation": outcome.failure.for_log() if outcome.failure else None,
        },
        "provisioningSteps": [step.for_log() for step in outcome.steps],
        "modifiedProperties": _modified_properties(user),
    }


def _on_demand_answer(
    outcome: _Outcome, user: DirectoryUser, found: ServicePrincipal, tenant_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``key`` (result) and ``value`` (the run) of provisionOnDemand's answer, as in example 1."""
    result = outcome.status.capitalize()
    failure = outcome.failure
    if failure is not None:
        details: dict[str, Any] = {"errorCode": failure.code, "errorMessage": failure.reason}
    elif outcome.status == "skipped":
        details = {"errorCode": outcome.skip_reason, "errorMessage": outcome.steps[-1].description}
    else:
        details = {}
    status_info = {
        "status": result,
        "errorCode": failure.code if failure else None,
        "reason": failure.reason if failure else None,
        "additionalDetails": None,
        "errorCategory": failure.category if failure else None,
        "recommendedAction": failure.recommended_action if failure else None,
    }
    value = {
        "action": outcome.action.capitalize(),
        "changeId": str(uuid.uuid4()),
        "startTime": _iso(outcome.started),
        "endTime": _iso(_now()),
        "modifiedProperties": _modified_properties(user),
        "provisioningSteps": [step.for_on_demand() for step in outcome.steps],
        "reportableIdentifier": user.userPrincipalName,
        "statusInfo": status_info,
        "sourceIdentity": {"id": user.id, "type": "User", "displayName": user.displayName, "details": None},
        "sourceSystem": {"id": None, "name": "Azure Active Directory", "details": None},
        "targetIdentity": {
            "id": outcome.target_id or None,
            "type": ENTERPRISE_USER,
            "displayName": None,
            "details": None,
        },
        "targetSystem": {
            "id": None,
            "name": "customappsso",
            "details": {"ServicePrincipalId": found.id, "TenantId": tenant_id},
        },
    }
    return {"result": result, "details": details}, value


# --- the demo tenant -------------------------------------------------------------------------------------

CONTOSO_SCIM_SP_ID = "e5b2c7a1-4f3d-4b8e-9a6c-1d2f3e4a5b6c"
CONTOSO_SCIM_APP_ID = "9c1e4a7b-2d5f-4e8a-b3c6-7f0a1b2c3d4e"
NORTHWIND_SP_ID = "2a4c6e8f-1b3d-4f5a-8c7e-9d0b1a2c3e4f"
NORTHWIND_APP_ID = "6d8f0b2c-4e6a-4c8e-a0b2-c4d6e8f0a1b3"
_PREVIOUS_JOB_GUID = "0f3b7d21-6a4c-4e8f-9b1d-3c5e7a9b2d4f"


def _seed_demo_tenant(standin: GraphStandIn) -> None:
    """Two enterprise apps, three users, and a day of provisioning log entries (some failed)."""
    domain = standin.domain
    standin.service_principals = [
        ServicePrincipal(
            id=CONTOSO_SCIM_SP_ID,
            appId=CONTOSO_SCIM_APP_ID,
            displayName="Contoso SCIM",
            tags=[
                "WindowsAzureActiveDirectoryCustomSingleSignOnApplication",
                "WindowsAzureActiveDirectoryIntegratedApp",
            ],
        ),
        ServicePrincipal(
            id=NORTHWIND_SP_ID,
            appId=NORTHWIND_APP_ID,
            displayName="Northwind Portal",
            tags=["WindowsAzureActiveDirectoryIntegratedApp"],
            template_ids=(),
            application_template_id="229946b9-a9fb-45b8-9531-efa47453ac9e",
        ),
    ]
    standin.users = [
        DirectoryUser(
            "0b7e3f6a-1c2d-4e5f-8a9b-0c1d2e3f4a5b", f"ada@{domain}", "Ada Lovelace", f"ada@{domain}"
        ),
        DirectoryUser(
            "1c8f4a7b-2d3e-4f6a-9b0c-1d2e3f4a5b6c", f"grace@{domain}", "Grace Hopper", f"grace@{domain}"
        ),
        DirectoryUser(
            "2d9a5b8c-3e4f-4a7b-8c1d-2e3f4a5b6c7d", f"alan@{domain}", "Alan Turing", f"alan@{domain}"
        ),
    ]
    standin.provisioning_logs = _seed_logs(standin)


def _seed_logs(standin: GraphStandIn) -> list[dict[str, Any]]:
    contoso = standin.service_principals[0]
    ada, grace, alan = standin.users
    job_id = f"scim.{standin.tenant_id.replace('-', '')}.{_PREVIOUS_JOB_GUID}"
    system = {"id": "", "displayName": "Azure AD Provisioning Service", "initiatorType": "system"}
    now = _now().replace(microsecond=0)
    rows: list[tuple[timedelta, DirectoryUser, _Outcome]] = [
        (timedelta(hours=26), ada, _seeded("create", "success", "scim-ada")),
        (timedelta(hours=25), grace, _seeded("create", "success", "scim-grace")),
        (
            timedelta(hours=5),
            alan,
            _seeded(
                "create",
                "failure",
                "",
                _Failure(
                    "SystemForCrossDomainIdentityManagementServiceIncompatible",
                    "The SCIM endpoint's response could not be read: 'manager' was a string, not an object.",
                ),
            ),
        ),
        (
            timedelta(hours=3),
            grace,
            _seeded(
                "update",
                "failure",
                "scim-grace",
                _Failure(
                    "SystemForCrossDomainIdentityManagementBadResponse",
                    "PATCH /Users/scim-grace returned 400 Bad Request.",
                ),
            ),
        ),
        (
            timedelta(hours=2),
            alan,
            _seeded(
                "create",
                "failure",
                "",
                _Failure(
                    "DuplicateTargetEntries", "More than one resource in customappsso has userName 'alan'."
                ),
            ),
        ),
        (timedelta(minutes=50), ada, _seeded("update", "success", "scim-ada")),
        (timedelta(minutes=20), alan, _seeded("other", "skipped", "")),
    ]
    return [
        _log_entry(standin, contoso, job_id, user, outcome, system, at=now - age)
        for age, user, outcome in rows
    ]


def _seeded(action: str, status: str, target_id: str, failure: _Failure | None = None) -> _Outcome:
    """An outcome with the steps a cycle run would have logged."""
    stamp = _iso(_now())
    steps = [
        _Step(
            "EntryImportAdd",
            "import",
            "success",
            "Received User change of type (Add) from Azure Active Directory",
            {},
            stamp,
        ),
        _Step("EntrySynchronizationScoping", "scoping", "success", "User is in scope", {}, stamp),
    ]
    export = {"create": "EntryExportAdd", "update": "EntryExportUpdate"}.get(
        action, "EntrySynchronizationSkip"
    )
    if status == "skipped":
        steps.append(
            _Step(export, "export", "skipped", "The User is not assigned to the application.", {}, stamp)
        )
    else:
        steps.append(
            _Step(
                export, "export", status, failure.reason if failure else "Exported to customappsso", {}, stamp
            )
        )
    return _Outcome(action=action, status=status, steps=steps, target_id=target_id, failure=failure)


# --- command line ----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tools.graph_standin [--port N]``: serve the demo tenant until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.graph_standin",
        description="A local stand-in for Microsoft Graph v1.0 and the Microsoft identity platform.",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument(
        "--approve-after", type=float, default=2.0, help="seconds before device codes are approved"
    )
    arguments = parser.parse_args(argv)
    standin = GraphStandIn(port=arguments.port, auto_approve_after=arguments.approve_after, announce=print)
    with standin:
        print(f"Graph stand-in for tenant {standin.domain} ({standin.tenant_id})")
        print(f"  authority:        {standin.authority}")
        print(f"  Graph:            {standin.graph_url}")
        approval = f"device code, approved after {arguments.approve_after:g} s"
        print(f"  public client:    {standin.client_id} ({approval})")
        print(f"  secret client:    {standin.secret_client_id} secret {standin.client_secret}")
        print(f"  CA certificate:   {standin.ca_file}")
        apps = ", ".join(f"{sp.displayName} ({sp.id})" for sp in standin.service_principals)
        print(f"  enterprise apps:  {apps}")
        print(f"  users:            {', '.join(u.userPrincipalName for u in standin.users)}")
        print("\nSet these in the shell that runs python -m scim entra (or eval the export lines):")
        print(f"export SCIM_GRAPH_URL={standin.graph_url}")
        print(f"export SCIM_GRAPH_AUTHORITY={standin.authority_host}")
        print(f"export SCIM_GRAPH_TENANT={standin.tenant_id}")
        print(f"export SCIM_GRAPH_CLIENT_ID={standin.client_id}")
        print(f"export REQUESTS_CA_BUNDLE={standin.ca_file}")
        print("\nServing; Ctrl-C stops.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
