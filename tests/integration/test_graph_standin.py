"""The Graph v1.0 and identity-platform stand-in (tools.graph_standin), driven over real HTTPS.

Tokens come from msal itself (device code, client secret, certificate) the way the admin CLI gets
them; Graph calls go through ``requests`` with the stand-in's CA certificate. validateCredentials and
provisionOnDemand call a small SCIM server started here (and, once, the project's dev server), so
what the stand-in reports is what a SCIM endpoint really answered.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jwt
import msal
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.conftest import TOKEN
from tools.graph_standin import (
    DEFAULT_TENANT_DOMAIN,
    USER_RULE_ID,
    DirectoryUser,
    GraphStandIn,
    ServicePrincipal,
)

pytestmark = pytest.mark.integration

GRAPH = "https://graph.microsoft.com"
SCOPES = [
    f"{GRAPH}/Application.Read.All",
    f"{GRAPH}/Synchronization.ReadWrite.All",
    f"{GRAPH}/AuditLog.Read.All",
]
ALL = ["Application.Read.All", "Synchronization.ReadWrite.All", "AuditLog.Read.All", "User.Read.All"]
SCIM_TOKEN = "scim-secret-token-for-the-fake-endpoint"
CONTOSO = "e5b2c7a1-4f3d-4b8e-9a6c-1d2f3e4a5b6c"
NORTHWIND = "2a4c6e8f-1b3d-4f5a-8c7e-9d0b1a2c3e4f"
ADA = "0b7e3f6a-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
GRACE = "1c8f4a7b-2d3e-4f6a-9b0c-1d2e3f4a5b6c"
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
JOB_ID = re.compile(r"^scim\.[0-9a-f]{32}\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


# --- a small SCIM endpoint ------------------------------------------------------------------------------


@dataclass
class FakeScim:
    """Users by id; every request seen. ``/scim`` behaves, ``/broken`` answers 200 without a ListResponse."""

    base_url: str
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen: list[dict[str, Any]] = field(default_factory=list)

    def tenant_url(self, flavour: str = "scim") -> str:
        return f"{self.base_url}/{flavour}"


class _ScimHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeScim

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, document: Any = None) -> None:
        body = b"" if document is None else json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/scim+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query))
        self.fake.seen.append(
            {
                "method": self.command,
                "path": parts.path,
                "raw_query": parts.query,
                "query": query,
                "body": body,
                "headers": {k.lower(): v for k, v in self.headers.items()},
            }
        )
        if self.headers.get("Authorization") != f"Bearer {SCIM_TOKEN}":
            self._answer(401, {"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "401"})
        elif parts.path.startswith("/broken"):
            self._answer(200, {"hello": "not SCIM"})
        elif self.command == "GET":
            wanted = re.fullmatch(r'userName eq "(.*)"', query.get("filter", ""))
            found = [
                u for u in self.fake.users.values() if wanted and u["userName"].lower() == wanted[1].lower()
            ]
            self._answer(
                200,
                {
                    "schemas": [LIST_RESPONSE],
                    "totalResults": len(found),
                    "Resources": found,
                    "startIndex": 1,
                    "itemsPerPage": len(found),
                },
            )
        elif self.command == "POST":
            user = {**body, "id": f"scim-{uuid.uuid4().hex[:8]}"}
            self.fake.users[user["id"]] = user
            self._answer(201, user)
        else:  # PATCH /scim/Users/{id}
            user = self.fake.users[parts.path.rsplit("/", 1)[1]]
            for operation in body["Operations"]:
                user[operation["path"]] = operation["value"]
            self._answer(200, user)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()


@pytest.fixture(scope="module")
def scim() -> Iterator[FakeScim]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ScimHandler)
    fake = FakeScim(f"http://127.0.0.1:{server.server_address[1]}")
    _ScimHandler.fake = fake
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join()


# --- the stand-in and helpers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def standin() -> Iterator[GraphStandIn]:
    with GraphStandIn(page_size=2, on_demand_rate=None) as running:
        yield running


@pytest.fixture(autouse=True)
def no_leftover_faults(standin: GraphStandIn) -> Iterator[None]:
    yield
    standin.fail_next.clear()
    standin.premium = True


@pytest.fixture
def session(standin: GraphStandIn) -> Iterator[requests.Session]:
    with requests.Session() as opened:
        opened.verify = standin.ca_file
        opened.trust_env = (
            False  # else REQUESTS_CA_BUNDLE, when set, overrides Session.verify (requests quirk)
        )
        yield opened


@pytest.fixture(scope="module")
def admin_token(standin: GraphStandIn) -> str:
    return standin.issue_token(ALL, kind="delegated", client_id=standin.client_id)


@pytest.fixture(scope="module")
def job(standin: GraphStandIn, admin_token: str) -> dict[str, Any]:
    with requests.Session() as opened:
        opened.verify, opened.trust_env = standin.ca_file, False
        created = opened.post(
            f"{standin.graph_url}/servicePrincipals/{CONTOSO}/synchronization/jobs",
            json={"templateId": "scim"},
            headers={"Authorization": f"Bearer {admin_token}"},
        )
    assert created.status_code == 201, created.text
    return dict(created.json())


def call(
    session: requests.Session, standin: GraphStandIn, method: str, path: str, token: str | None, **kwargs: Any
) -> requests.Response:
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    url = path if path.startswith("https://") else f"{standin.graph_url}/{path.lstrip('/')}"
    return session.request(method, url, headers=headers, **kwargs)


def error_of(response: requests.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message", "innerError"} <= set(body["error"]), body
    assert body["error"]["innerError"]["request-id"] == response.headers["request-id"]
    return dict(body["error"])


def save_secrets(
    session: requests.Session, standin: GraphStandIn, token: str, tenant_url: str, secret: str
) -> None:
    response = call(
        session,
        standin,
        "PUT",
        f"servicePrincipals/{CONTOSO}/synchronization/secrets",
        token,
        json={
            "value": [{"key": "BaseAddress", "value": tenant_url}, {"key": "SecretToken", "value": secret}]
        },
    )
    assert response.status_code == 204, response.text


def provision(
    session: requests.Session, standin: GraphStandIn, token: str, job_id: str, user_id: str
) -> requests.Response:
    body = {
        "parameters": [
            {"ruleId": USER_RULE_ID, "subjects": [{"objectId": user_id, "objectTypeName": "User"}]}
        ]
    }
    return call(
        session,
        standin,
        "POST",
        f"servicePrincipals/{CONTOSO}/synchronization/jobs/{job_id}/provisionOnDemand",
        token,
        json=body,
    )


def certificate_pem() -> tuple[str, str, bytes]:
    """A private key and a self-signed certificate (PEM), and the certificate's SHA-1 thumbprint hex."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "scim-admin-tests")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode(), cert.fingerprint(hashes.SHA1())  # noqa: S303 - msal's x5t is a SHA-1 thumbprint


# --- the authority --------------------------------------------------------------------------------------


def test_openid_configuration_points_at_the_stand_in(
    standin: GraphStandIn, session: requests.Session
) -> None:
    by_id = session.get(f"{standin.authority}/v2.0/.well-known/openid-configuration").json()
    by_domain = session.get(
        f"{standin.authority_host}/{DEFAULT_TENANT_DOMAIN}/v2.0/.well-known/openid-configuration"
    ).json()
    base = f"{standin.authority_host}/{standin.tenant_id}"
    assert by_id["token_endpoint"] == f"{base}/oauth2/v2.0/token"
    assert by_id["device_authorization_endpoint"] == f"{base}/oauth2/v2.0/devicecode"
    assert by_id["issuer"] == f"{base}/v2.0"
    assert by_domain["token_endpoint"] == by_id["token_endpoint"]  # a domain resolves to the tenant id
    keys = session.get(by_id["jwks_uri"]).json()["keys"]
    assert keys and keys[0]["kty"] == "RSA"


def test_unknown_tenants_answer_like_the_identity_platform(
    standin: GraphStandIn, session: requests.Session
) -> None:
    unknown = session.get(f"{standin.authority_host}/{uuid.uuid4()}/v2.0/.well-known/openid-configuration")
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "invalid_tenant"
    assert unknown.json()["error_codes"] == [90002]
    assert unknown.json()["error_description"].startswith("AADSTS90002: Tenant '")
    malformed = session.get(f"{standin.authority_host}/not-a-tenant/v2.0/.well-known/openid-configuration")
    assert malformed.json()["error_codes"] == [900023]


def test_msal_reports_an_unknown_tenant(standin: GraphStandIn, session: requests.Session) -> None:
    with pytest.raises(ValueError, match="Unable to get authority configuration") as raised:
        msal.PublicClientApplication(
            standin.client_id,
            authority=f"{standin.authority_host}/fabrikam.example",
            instance_discovery=False,
            http_client=session,
        )
    assert "AADSTS90002" in str(raised.value.__context__)


def test_instance_discovery_is_not_served(standin: GraphStandIn, session: requests.Session) -> None:
    assert session.get(f"{standin.authority_host}/common/discovery/instance").status_code == 404


def test_device_code_flow_through_msal(standin: GraphStandIn, session: requests.Session) -> None:
    app = msal.PublicClientApplication(
        standin.client_id, authority=standin.authority, instance_discovery=False, http_client=session
    )
    flow = app.initiate_device_flow(scopes=SCOPES)
    assert len(flow["user_code"]) == 8 and flow["interval"] == 1
    assert flow["message"].startswith("To sign in, use a web browser to open the page ")
    assert flow["user_code"] in flow["message"]
    threading.Timer(0.5, standin.approve_device_code, args=(flow["user_code"],)).start()
    result = app.acquire_token_by_device_flow(flow)

    assert result.get("token_type") == "Bearer", result
    claims = result["id_token_claims"]
    assert claims["preferred_username"] == standin.admin.userPrincipalName
    assert claims["tid"] == standin.tenant_id and claims["aud"] == standin.client_id
    polls = [r.form for r in standin.requests if r.path.endswith("/oauth2/v2.0/token") and r.form]
    assert polls[-1]["grant_type"] == "urn:ietf:params:oauth:grant-type:device_code"
    issued = standin.tokens[result["access_token"]]
    assert issued.kind == "delegated"
    assert issued.permissions == {
        "Application.Read.All",
        "Synchronization.ReadWrite.All",
        "AuditLog.Read.All",
    }
    listed = call(session, standin, "GET", "servicePrincipals", result["access_token"])
    assert listed.status_code == 200

    # The id_token is signed with the key published at jwks_uri.
    jwks = session.get(f"{standin.authority}/discovery/v2.0/keys").json()
    key = jwt.PyJWK(jwks["keys"][0]).key
    verified = jwt.decode(result["id_token"], key, algorithms=["RS256"], audience=standin.client_id)
    assert verified["oid"] == standin.admin.id

    # The refresh token renews silently (msal's acquire_token_silent with force_refresh).
    account = app.get_accounts()[0]
    renewed = app.acquire_token_silent(SCOPES, account=account, force_refresh=True)
    assert renewed and renewed["access_token"] != result["access_token"]


def test_device_code_is_pending_until_approved(standin: GraphStandIn, session: requests.Session) -> None:
    started = session.post(
        f"{standin.authority}/oauth2/v2.0/devicecode",
        data={"client_id": standin.client_id, "scope": f"{GRAPH}/Application.Read.All openid"},
    ).json()
    token_url = f"{standin.authority}/oauth2/v2.0/token"
    poll = {
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        "client_id": standin.client_id,
        "device_code": started["device_code"],
    }
    pending = session.post(token_url, data=poll)
    assert pending.status_code == 400
    assert pending.json()["error"] == "authorization_pending"
    standin.approve_device_code()
    granted = session.post(token_url, data={**poll, "grant_type": "device_code"})
    assert granted.status_code == 200 and granted.json()["scope"] == f"{GRAPH}/Application.Read.All openid"
    again = session.post(token_url, data=poll)
    assert again.json()["error"] == "invalid_grant"


def test_device_code_needs_a_known_public_client(standin: GraphStandIn, session: requests.Session) -> None:
    url = f"{standin.authority}/oauth2/v2.0/devicecode"
    unknown = session.post(url, data={"client_id": str(uuid.uuid4()), "scope": "User.Read"})
    assert unknown.status_code == 400 and unknown.json()["error_codes"] == [700016]
    confidential = session.post(url, data={"client_id": standin.secret_client_id, "scope": "User.Read"})
    assert confidential.status_code == 401 and confidential.json()["error_codes"] == [7000218]


def test_client_secret_through_msal(standin: GraphStandIn, session: requests.Session) -> None:
    app = msal.ConfidentialClientApplication(
        standin.secret_client_id,
        client_credential=standin.client_secret,
        authority=standin.authority,
        instance_discovery=False,
        http_client=session,
    )
    result = app.acquire_token_for_client(scopes=[f"{GRAPH}/.default"])
    assert "access_token" in result, result
    assert "scope" not in result or result["scope"]  # app-only answers carry no scope
    issued = standin.tokens[result["access_token"]]
    assert issued.kind == "application" and "Synchronization.ReadWrite.All" in issued.permissions
    assert (
        call(session, standin, "GET", f"servicePrincipals/{CONTOSO}", result["access_token"]).status_code
        == 200
    )


def test_a_wrong_secret_is_aadsts7000215(standin: GraphStandIn, session: requests.Session) -> None:
    app = msal.ConfidentialClientApplication(
        standin.secret_client_id,
        client_credential="not-the-secret",
        authority=standin.authority,
        instance_discovery=False,
        http_client=session,
    )
    result = app.acquire_token_for_client(scopes=[f"{GRAPH}/.default"])
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert result["error_description"].startswith("AADSTS7000215: ")


@pytest.mark.parametrize("form", ["thumbprint", "public_certificate"])
def test_certificate_credentials_through_msal(
    standin: GraphStandIn, session: requests.Session, form: str
) -> None:
    key_pem, cert_pem, sha1 = certificate_pem()
    credential = (
        {"private_key": key_pem, "thumbprint": sha1.hex()}
        if form == "thumbprint"
        else {"private_key": key_pem, "public_certificate": cert_pem}  # what the CLI passes: PS256, x5t#S256
    )
    app = msal.ConfidentialClientApplication(
        standin.secret_client_id,
        client_credential=credential,
        authority=standin.authority,
        instance_discovery=False,
        http_client=session,
    )
    result = app.acquire_token_for_client(scopes=[f"{standin.authority_host}/.default"])
    assert "access_token" in result, result
    assertion = [r.form for r in standin.requests if r.form and "client_assertion" in r.form][-1][
        "client_assertion"
    ]
    header = jwt.get_unverified_header(assertion)
    assert ("x5t" if form == "thumbprint" else "x5t#S256") in header


def test_an_assertion_for_another_audience_is_refused(
    standin: GraphStandIn, session: requests.Session
) -> None:
    key_pem, _, sha1 = certificate_pem()
    now = int(datetime.now(UTC).timestamp())
    claims = {
        "aud": "https://login.microsoftonline.com/x/oauth2/v2.0/token",
        "iss": standin.secret_client_id,
        "sub": standin.secret_client_id,
        "exp": now + 600,
        "nbf": now,
        "jti": str(uuid.uuid4()),
    }
    assertion = jwt.encode(
        claims, key_pem, algorithm="RS256", headers={"x5t": jwt.utils.base64url_encode(sha1).decode()}
    )
    answer = session.post(
        f"{standin.authority}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": standin.secret_client_id,
            "scope": f"{GRAPH}/.default",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
    )
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"
    assert answer.json()["error_codes"] == [700023]


def test_client_credentials_need_a_default_scope(standin: GraphStandIn, session: requests.Session) -> None:
    answer = session.post(
        f"{standin.authority}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": standin.secret_client_id,
            "client_secret": standin.client_secret,
            "scope": f"{GRAPH}/Application.Read.All",
        },
    )
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_scope"


# --- Graph: authentication, permissions, request shapes -------------------------------------------------


def test_graph_requires_a_bearer_token(standin: GraphStandIn, session: requests.Session) -> None:
    recorded = len(standin.requests)
    answer = call(
        session, standin, "GET", "servicePrincipals", None, headers={"client-request-id": "abc-123"}
    )
    assert answer.status_code == 401
    assert error_of(answer)["code"] == "InvalidAuthenticationToken"
    assert answer.headers["client-request-id"] == "abc-123"
    assert answer.json()["error"]["innerError"]["client-request-id"] == "abc-123"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer ")
    assert (
        error_of(call(session, standin, "GET", "servicePrincipals", "made-up"))["code"]
        == "InvalidAuthenticationToken"
    )
    assert len(standin.requests) == recorded  # refused before being recorded


def test_requests_are_recorded_with_their_authorization(
    standin: GraphStandIn, session: requests.Session, admin_token: str
) -> None:
    call(session, standin, "GET", f"servicePrincipals/{CONTOSO}", admin_token, params={"$select": "id"})
    last = standin.requests[-1]
    assert (last.method, last.path, last.query) == (
        "GET",
        f"/v1.0/servicePrincipals/{CONTOSO}",
        {"$select": "id"},
    )
    assert last.headers["authorization"] == f"Bearer {admin_token}"


def test_a_missing_permission_is_403(standin: GraphStandIn, session: requests.Session) -> None:
    reader = standin.issue_token(["Application.Read.All"])
    jobs = call(session, standin, "GET", f"servicePrincipals/{CONTOSO}/synchronization/jobs", reader)
    assert jobs.status_code == 403
    assert error_of(jobs) | {"innerError": None} == {
        "code": "Authorization_RequestDenied",
        "message": "Insufficient privileges to complete the operation.",
        "innerError": None,
    }
    logs = call(session, standin, "GET", "auditLogs/provisioning", reader)
    assert logs.status_code == 403 and error_of(logs)["code"] == "Authentication_MSGraphPermissionMissing"


def test_unknown_ids_segments_and_methods(
    standin: GraphStandIn, session: requests.Session, admin_token: str
) -> None:
    missing = call(session, standin, "GET", f"servicePrincipals/{uuid.uuid4()}", admin_token)
    assert missing.status_code == 404 and error_of(missing)["code"] == "Request_ResourceNotFound"
    segment = call(session, standin, "GET", "servicePrincipalz", admin_token)
    assert segment.status_code == 400 and error_of(segment)["code"] == "BadRequest"
    method = call(session, standin, "DELETE", f"servicePrincipals/{CONTOSO}", admin_token)
    assert method.status_code == 405


def test_get_user_by_upn_with_select(
    standin: GraphStandIn, session: requests.Session, admin_token: str
) -> None:
    found = call(
        session,
        standin,
        "GET",
        f"users/ada@{DEFAULT_TENANT_DOMAIN}",
        admin_token,
        params={"$select": "id,userPrincipalName,displayName,accountEnabled"},
    )
    assert found.status_code == 200
    assert {k: v for k, v in found.json().items() if k != "@odata.context"} == {
        "id": ADA,
        "userPrincipalName": f"ada@{DEFAULT_TENANT_DOMAIN}",
        "displayName": "Ada Lovelace",
        "accountEnabled": True,
    }
    without = call(session, standin, "GET", f"users/{ADA}", standin.issue_token(["Application.Read.All"]))
    assert without.status_code == 403


def test_filter_service_principals_by_display_name(
    standin: GraphStandIn, session: requests.Session, admin_token: str
) -> None:
    quoted = ServicePrincipal(id=str(uuid.uuid4()), appId=str(uuid.uuid4()), displayName="O'Brien's SCIM")
    standin.service_principals.append(quoted)
    try:
        found = call(
            session,
            standin,
            "GET",
            "servicePrincipals",
            admin_token,
            params={"$filter": "displayName eq 'o''brien''s scim'"},
        ).json()
        assert [sp["id"] for sp in found["value"]] == [quoted.id]  # '' is a quote; comparison ignores case
        assert found["@odata.context"].endswith("/$metadata#servicePrincipals")
        by_app = call(
            session,
            standin,
            "GET",
            "servicePrincipals",
            admin_token,
            params={"$filter": f"appId eq '{quoted.appId}'"},
        ).json()
        assert [sp["id"] for sp in by_app["value"]] == [quoted.id]
    finally:
        standin.service_principals.remove(quoted)
    bad = call(
        session,
        standin,
        "GET",
        "servicePrincipals",
        admin_token,
        params={"$filter": "startswith(displayName,'Contoso')"},
    )
    assert bad.status_code == 400
    assert error_of(bad)["message"].startswith("Invalid filter clause")
    unsupported = call(
        session, standin, "GET", "servicePrincipals", admin_token, params={"$orderby": "displayName"}
    )
    assert unsupported.status_code == 400


def test_paging_follows_next_link_verbatim(
    standin: GraphStandIn, session: requests.Session, admin_token: str
) -> None:
    expected = sorted((e["activityDateTime"] for e in standin.provisioning_logs), reverse=True)
    page = call(session, standin, "GET", "auditLogs/provisioning", admin_token, params={"$top": "3"}).json()
    seen: list[str] = []
    links: list[str] = []
    while True:
        assert len(page["value"]) <= 2  # page_size wins over a larger $top
        seen += [entry["activityDateTime"] for entry in page["value"]]
        if "@odata.nextLink" not in page:
            break
        links.append(page["@odata.nextLink"])
        page = call(session, standin, "GET", links[-1], admin_token).json()
    assert seen == expected and len(links) >= 3
    assert links[0].startswith(f"{standin.graph_url}/auditLogs/provisioning?") and "$skiptoken=" in links[0]
    tampered = call(session, standin, "GET", links[0].replace("$top=3", "$top=2"), admin_token)
    assert tampered.status_code == 400 and error_of(tampered)["code"] == "BadRequest"


def test_provisioning_logs_filters(
    standin: GraphStandIn, session: requests.Session, admin_token: str
) -> None:
    def ask(expression: str) -> requests.Response:
        return call(
            session,
            standin,
            "GET",
            "auditLogs/provisioning",
            admin_token,
            params={"$filter": expression, "$top": "999"},
        )

    def everything(expression: str) -> list[dict[str, Any]]:
        page = ask(expression).json()
        entries = list(page["value"])
        while "@odata.nextLink" in page:
            page = call(session, standin, "GET", page["@odata.nextLink"], admin_token).json()
            entries += page["value"]
        return entries

    since = (datetime.now(UTC) - timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ")
    failures = everything(
        f"servicePrincipal/id eq '{CONTOSO}' and activityDateTime ge {since} and provisioningStatusInfo/status eq 'failure'"
    )
    assert failures and all(e["provisioningStatusInfo"]["status"] == "failure" for e in failures)
    assert all(e["activityDateTime"] >= since for e in failures)
    codes = {e["provisioningStatusInfo"]["errorInformation"]["errorCode"] for e in failures}
    assert "SystemForCrossDomainIdentityManagementServiceIncompatible" in codes
    by_name = everything("sourceIdentity/displayName eq 'Grace Hopper'")
    assert by_name and {e["sourceIdentity"]["id"] for e in by_name} == {GRACE}
    assert everything(f"sourceIdentity/id eq '{ADA}' and activityDateTime le 2000-01-01T00:00:00Z") == []
    assert ask("provisioningStatusInfo/status eq 'exploded'").status_code == 400
    assert ask("jobId ne 'x'").status_code == 400
    standin.premium = False
    refused = ask(f"servicePrincipal/id eq '{CONTOSO}'")
    assert refused.status_code == 403
    assert error_of(refused)["code"] == "Authentication_RequestFromNonPremiumTenantOrB2CTenant"


# --- synchronization ------------------------------------------------------------------------------------


def test_templates_and_a_new_job(
    standin: GraphStandIn, session: requests.Session, admin_token: str, job: dict[str, Any]
) -> None:
    templates = call(
        session, standin, "GET", f"servicePrincipals/{CONTOSO}/synchronization/templates", admin_token
    ).json()
    assert [(t["id"], t["factoryTag"], t["default"]) for t in templates["value"]] == [("scim", "scim", True)]
    assert JOB_ID.match(job["id"]) and job["id"].split(".")[1] == standin.tenant_id.replace("-", "")
    assert job["templateId"] == "scim"
    assert job["schedule"]["state"] == "Disabled" and job["status"]["code"] in {"NotConfigured", "NotRun"}
    assert {
        "countSuccessiveCompleteFailures",
        "escrowsPruned",
        "lastExecution",
        "quarantine",
        "progress",
        "steadyStateFirstAchievedTime",
        "synchronizedEntryCountByType",
        "troubleshootingUrl",
    } <= set(job["status"])
    listed = call(
        session, standin, "GET", f"servicePrincipals/{CONTOSO}/synchronization/jobs", admin_token
    ).json()
    assert job["id"] in [j["id"] for j in listed["value"]]
    schema = call(
        session,
        standin,
        "GET",
        f"servicePrincipals/{CONTOSO}/synchronization/jobs/{job['id']}/schema",
        admin_token,
    ).json()
    rule = schema["synchronizationRules"][0]
    assert rule["id"] == USER_RULE_ID and rule["objectMappings"][0]["sourceObjectName"] == "User"
    again = call(
        session,
        standin,
        "POST",
        f"servicePrincipals/{CONTOSO}/synchronization/jobs",
        admin_token,
        json={"templateId": "scim"},
    )
    assert again.status_code == 409


def test_create_job_checks_the_request_shape(
    standin: GraphStandIn, session: requests.Session, admin_token: str
) -> None:
    path = f"servicePrincipals/{CONTOSO}/synchronization/jobs"
    extra = call(session, standin, "POST", path, admin_token, json={"templateId": "scim", "schedule": {}})
    assert extra.status_code == 400 and "schedule" in error_of(extra)["message"]
    wrong_type = call(session, standin, "POST", path, admin_token, json={"templateId": 7})
    assert wrong_type.status_code == 400 and error_of(wrong_type)["code"] == "BadRequest"
    not_json = call(
        session,
        standin,
        "POST",
        path,
        admin_token,
        data='{"templateId": "scim"}',
        headers={"Content-Type": "text/plain"},
    )
    assert not_json.status_code == 415
    unknown = call(
        session,
        standin,
        "POST",
        f"servicePrincipals/{NORTHWIND}/synchronization/jobs",
        admin_token,
        json={"templateId": "scim"},
    )
    assert unknown.status_code == 400  # Northwind Portal has no provisioning template


def test_secrets_start_pause_and_quarantine(
    standin: GraphStandIn, session: requests.Session, admin_token: str, job: dict[str, Any], scim: FakeScim
) -> None:
    bad_key = call(
        session,
        standin,
        "PUT",
        f"servicePrincipals/{CONTOSO}/synchronization/secrets",
        admin_token,
        json={"value": [{"key": "TenantUrl", "value": "x"}]},
    )
    assert bad_key.status_code == 400
    save_secrets(session, standin, admin_token, scim.tenant_url(), SCIM_TOKEN)
    assert standin.secrets[CONTOSO] == {"BaseAddress": scim.tenant_url(), "SecretToken": SCIM_TOKEN}
    job_path = f"servicePrincipals/{CONTOSO}/synchronization/jobs/{job['id']}"
    assert call(session, standin, "GET", job_path, admin_token).json()["status"]["code"] == "NotRun"
    assert call(session, standin, "POST", f"{job_path}/start", admin_token, json={}).status_code == 204
    started = call(session, standin, "GET", job_path, admin_token).json()
    assert (started["schedule"]["state"], started["status"]["code"], started["schedule"]["interval"]) == (
        "Active",
        "Active",
        "PT40M",
    )
    assert call(session, standin, "POST", f"{job_path}/pause", admin_token).status_code == 204
    assert call(session, standin, "GET", job_path, admin_token).json()["status"]["code"] == "Paused"
    assert (
        call(session, standin, "POST", f"{job_path}/pause", admin_token, json={"now": True}).status_code
        == 400
    )
    standin.quarantine_job(job["id"])
    quarantined = call(session, standin, "GET", job_path, admin_token).json()["status"]
    assert (
        quarantined["code"] == "Quarantine"
        and quarantined["quarantine"]["reason"] == "EncounteredQuarantineException"
    )
    assert call(session, standin, "POST", f"{job_path}/start", admin_token, json={}).status_code == 204
    assert call(session, standin, "GET", job_path, admin_token).json()["status"]["quarantine"] is None
    missing = call(
        session, standin, "GET", f"servicePrincipals/{CONTOSO}/synchronization/jobs/scim.nope", admin_token
    )
    assert missing.status_code == 404


def test_validate_credentials_really_calls_the_endpoint(
    standin: GraphStandIn, session: requests.Session, admin_token: str, job: dict[str, Any], scim: FakeScim
) -> None:
    path = f"servicePrincipals/{CONTOSO}/synchronization/jobs/{job['id']}/validateCredentials"

    def validate(tenant_url: str, secret: str) -> requests.Response:
        credentials = [{"key": "BaseAddress", "value": tenant_url}, {"key": "SecretToken", "value": secret}]
        body = {"useSavedCredentials": False, "templateId": "scim", "credentials": credentials}
        return call(session, standin, "POST", path, admin_token, json=body)

    before = len(scim.seen)
    assert validate(scim.tenant_url(), SCIM_TOKEN).status_code == 204
    probe = scim.seen[before]
    assert (probe["method"], probe["path"]) == ("GET", "/scim/Users")
    assert re.fullmatch(r'userName eq "[0-9a-f-]{36}@contoso\.example"', probe["query"]["filter"])
    assert probe["raw_query"].startswith("filter=userName+eq+%22")  # form-encoded, as Entra sends it
    assert probe["headers"]["authorization"] == f"Bearer {SCIM_TOKEN}"

    refused = validate(scim.tenant_url(), "wrong-token")
    assert refused.status_code == 400
    assert error_of(refused)["code"] == "SystemForCrossDomainIdentityManagementCredentialValidationFailure"
    assert "401 Unauthorized" in error_of(refused)["message"]
    not_scim = validate(scim.tenant_url("broken"), SCIM_TOKEN)
    assert error_of(not_scim)["code"] == "SystemForCrossDomainIdentityManagementServiceIncompatible"
    unreachable = validate("http://127.0.0.1:9/scim", SCIM_TOKEN)
    assert (
        error_of(unreachable)["code"]
        == "SystemForCrossDomainIdentityManagementCredentialValidationUnavailable"
    )
    unknown_key = call(
        session,
        standin,
        "POST",
        path,
        admin_token,
        json={"credentials": [{"key": "TenantUrl", "value": "x"}]},
    )
    assert unknown_key.status_code == 400
    save_secrets(session, standin, admin_token, scim.tenant_url(), SCIM_TOKEN)
    saved = call(session, standin, "POST", path, admin_token, json={"useSavedCredentials": True})
    assert saved.status_code == 204


def test_provision_on_demand_creates_then_skips_then_updates(
    standin: GraphStandIn, session: requests.Session, admin_token: str, job: dict[str, Any], scim: FakeScim
) -> None:
    user = DirectoryUser(
        str(uuid.uuid4()),
        f"katherine@{DEFAULT_TENANT_DOMAIN}",
        "Katherine Johnson",
        f"katherine@{DEFAULT_TENANT_DOMAIN}",
    )
    standin.users.append(user)
    save_secrets(session, standin, admin_token, scim.tenant_url(), SCIM_TOKEN)
    logged = len(standin.provisioning_logs)

    created = provision(session, standin, admin_token, job["id"], user.id)
    assert created.status_code == 200, created.text
    key, value = json.loads(created.json()["key"]), json.loads(created.json()["value"])
    assert key == {"result": "Success", "details": {}}
    assert value["action"] == "Create"
    assert [s["type"] for s in value["provisioningSteps"]] == ["Import", "Scoping", "Matching", "Export"]
    posted = [s for s in scim.seen if s["method"] == "POST"][-1]
    assert posted["headers"]["content-type"] == "application/scim+json; charset=utf-8"
    assert (
        posted["body"]["userName"] == user.userPrincipalName and posted["body"]["externalId"] == "katherine"
    )
    assert posted["body"]["emails"] == [{"primary": True, "type": "work", "value": user.mail}]
    entry = standin.provisioning_logs[logged]
    assert entry["provisioningAction"] == "create" and entry["provisioningStatusInfo"] == {
        "status": "success",
        "errorInformation": None,
    }
    assert (
        entry["targetIdentity"]["id"] == value["targetIdentity"]["id"]
        and entry["targetIdentity"]["id"] in scim.users
    )
    assert entry["servicePrincipal"] == {"id": CONTOSO, "displayName": "Contoso SCIM"}
    assert entry["initiatedBy"]["initiatorType"] == "user"
    assert [s["provisioningStepType"] for s in entry["provisioningSteps"]] == [
        "import",
        "scoping",
        "matching",
        "export",
    ]

    skipped = json.loads(provision(session, standin, admin_token, job["id"], user.id).json()["key"])
    assert skipped["result"] == "Skipped" and skipped["details"]["errorCode"] == "RedundantExport"

    user.displayName = "Katherine G. Johnson"
    updated = json.loads(provision(session, standin, admin_token, job["id"], user.id).json()["value"])
    assert updated["action"] == "Update"
    patched = [s for s in scim.seen if s["method"] == "PATCH"][-1]
    assert patched["body"]["Operations"] == [
        {"op": "Replace", "path": "displayName", "value": "Katherine G. Johnson"}
    ]


def test_provision_on_demand_reports_endpoint_failures(
    standin: GraphStandIn, session: requests.Session, admin_token: str, job: dict[str, Any], scim: FakeScim
) -> None:
    save_secrets(session, standin, admin_token, scim.tenant_url(), "wrong-token")
    try:
        failed = provision(session, standin, admin_token, job["id"], ADA)
        key = json.loads(failed.json()["key"])
        assert failed.status_code == 200 and key["result"] == "Failure"
        assert (
            key["details"]["errorCode"] == "SystemForCrossDomainIdentityManagementCredentialValidationFailure"
        )
        entry = standin.provisioning_logs[-1]
        assert entry["provisioningStatusInfo"]["status"] == "failure"
        assert entry["provisioningStatusInfo"]["errorInformation"]["errorCategory"] == "nonServiceFailure"
    finally:
        save_secrets(session, standin, admin_token, scim.tenant_url(), SCIM_TOKEN)
    assert provision(session, standin, admin_token, job["id"], str(uuid.uuid4())).status_code == 400
    wrong_rule = call(
        session,
        standin,
        "POST",
        f"servicePrincipals/{CONTOSO}/synchronization/jobs/{job['id']}/provisionOnDemand",
        admin_token,
        json={"parameters": [{"ruleId": "nope", "subjects": [{"objectId": ADA, "objectTypeName": "User"}]}]},
    )
    assert wrong_rule.status_code == 400


def test_provision_on_demand_is_rate_limited(scim: FakeScim) -> None:
    with GraphStandIn(on_demand_rate=(2, 60.0)) as limited, requests.Session() as opened:
        opened.verify, opened.trust_env = limited.ca_file, False
        token = limited.issue_token(ALL)
        created = call(
            opened,
            limited,
            "POST",
            f"servicePrincipals/{CONTOSO}/synchronization/jobs",
            token,
            json={"templateId": "scim"},
        )
        save_secrets(opened, limited, token, scim.tenant_url(), SCIM_TOKEN)
        answers = [provision(opened, limited, token, created.json()["id"], ADA) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert error_of(answers[2])["code"] == "TooManyRequests" and int(answers[2].headers["Retry-After"]) >= 1


# --- fault injection ------------------------------------------------------------------------------------


def test_injected_throttling_carries_retry_after(
    standin: GraphStandIn, session: requests.Session, admin_token: str
) -> None:
    standin.fail_next[("GET", r"/servicePrincipals$")] = (429, "TooManyRequests", {"Retry-After": "1"})
    throttled = call(session, standin, "GET", "servicePrincipals", admin_token)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "1"
    assert error_of(throttled)["code"] == "TooManyRequests"
    assert call(session, standin, "GET", "servicePrincipals", admin_token).status_code == 200  # once only
    standin.fail_next[("*", r"/synchronization/jobs")] = (503, "serviceNotAvailable", {})
    unavailable = call(
        session, standin, "GET", f"servicePrincipals/{CONTOSO}/synchronization/jobs", admin_token
    )
    assert unavailable.status_code == 503 and error_of(unavailable)["code"] == "serviceNotAvailable"


def test_injected_failures_reach_the_token_endpoint(standin: GraphStandIn, session: requests.Session) -> None:
    standin.fail_next[("POST", r"/oauth2/v2.0/token$")] = (
        503,
        "temporarily_unavailable",
        {"Retry-After": "2"},
    )
    answer = session.post(f"{standin.authority}/oauth2/v2.0/token", data={"grant_type": "client_credentials"})
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "2"


# --- end to end with this project's SCIM endpoint -------------------------------------------------------


def test_test_connection_and_provisioning_against_the_dev_server(
    standin: GraphStandIn,
    session: requests.Session,
    admin_token: str,
    job: dict[str, Any],
    http_base_url: str,
) -> None:
    job_path = f"servicePrincipals/{CONTOSO}/synchronization/jobs/{job['id']}"
    credentials = [{"key": "BaseAddress", "value": http_base_url}, {"key": "SecretToken", "value": TOKEN}]
    tested = call(
        session,
        standin,
        "POST",
        f"{job_path}/validateCredentials",
        admin_token,
        json={"credentials": credentials},
    )
    assert tested.status_code == 204, tested.text
    save_secrets(session, standin, admin_token, http_base_url, TOKEN)
    try:
        user = DirectoryUser(
            str(uuid.uuid4()), f"dorothy.{uuid.uuid4().hex[:6]}@{DEFAULT_TENANT_DOMAIN}", "Dorothy Vaughan"
        )
        standin.users.append(user)
        first = provision(session, standin, admin_token, job["id"], user.id)
        assert json.loads(first.json()["key"])["result"] == "Success", first.json()
        user.accountEnabled = False
        second = json.loads(provision(session, standin, admin_token, job["id"], user.id).json()["value"])
        assert second["action"] == "Update" and second["statusInfo"]["status"] == "Success", second
        found = requests.get(
            f"{http_base_url}/Users",
            params={"filter": f'userName eq "{user.userPrincipalName}"'},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        ).json()
        assert found["Resources"][0]["active"] is False
    finally:
        standin.secrets.pop(CONTOSO, None)
