"""Microsoft Graph tokens with msal: device code for a person, client credentials for automation.

- **Device code** (OAuth 2.0 device authorization grant, RFC 8628; Microsoft
  identity platform *device code flow*): an admin at a terminal opens the
  verification page on any device and types the code. Delegated scopes, so Graph
  also applies the admin's directory roles. The refresh token is kept in a
  token cache file (mode 0600) so the next command signs in silently.
- **Client credentials** (*OAuth 2.0 client credentials flow*): an app
  registration with a client secret or a certificate (PEM with the private key,
  or PFX) and application permissions, for pipelines. Nothing is persisted.

The authority (``https://login.microsoftonline.com`` or a national cloud's) and
the Graph URL are settings. msal's instance discovery is off: it would send the
authority to ``login.microsoftonline.com`` to be validated, which fails for a
national cloud's or a stand-in's; msal reads the authority's own
``/v2.0/.well-known/openid-configuration`` instead.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msal  # type: ignore[import-untyped]
import requests

from scim.admin.advice import ActionableError

#: *Microsoft Graph Command Line Tools*, Microsoft's public client for scripts;
#: any public client registered in the tenant can be used instead (--client-id).
DEFAULT_CLIENT_ID = "14d82eec-204b-4c2f-b7e8-296a70dab67e"
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
DEFAULT_GRAPH_URL = "https://graph.microsoft.com/v1.0"

#: Delegated permissions the commands use (least privilege per Graph API page).
DELEGATED_SCOPES = (
    "Application.Read.All",
    "Synchronization.ReadWrite.All",
    "AuditLog.Read.All",
    "User.Read.All",
)

#: AADSTS error numbers → what the operator should do.
_AADSTS_HINTS = {
    90002: "the tenant was not found: give --tenant as the tenant id (a GUID) or a verified domain of it.",
    900023: "the tenant is not valid: give --tenant as the tenant id (a GUID) or a verified domain of it.",
    700016: "this client id is not an application in that tenant: check --client-id and --tenant "
    "(an app registered in another tenant must be consented to here first).",
    7000215: "the client secret is wrong or was deleted: create a new secret on the app registration.",
    7000222: "the client secret has expired: create a new secret on the app registration.",
    700027: "the certificate is not the one uploaded to the app registration (or it expired): upload its "
    "public part under Certificates & secrets.",
    65001: "the permissions were never consented: an admin must grant consent for "
    + ", ".join(DELEGATED_SCOPES)
    + " (or, for an app, its application permissions).",
    50076: "multi-factor authentication is required: use the device code sign-in and complete MFA.",
    53003: "a Conditional Access policy blocked the sign-in: ask your identity team, or sign in from a "
    "compliant device.",
    7000218: "the app registration is not a public client: set SCIM_GRAPH_CLIENT_SECRET or "
    "--client-certificate, or enable 'Allow public client flows' on it for device code.",
}


class LoginError(ActionableError):
    """Signing in to the identity platform failed; ``hint`` says what to do."""

    prefix = "Sign-in failed: "


@dataclass(frozen=True)
class LoginSettings:
    """Where and as whom to sign in."""

    tenant: str
    authority_host: str = DEFAULT_AUTHORITY
    graph_url: str = DEFAULT_GRAPH_URL
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str | None = None
    client_certificate: Path | None = None
    certificate_password: str | None = None
    cache_path: Path | None = None
    scopes: tuple[str, ...] = DELEGATED_SCOPES
    """Delegated permissions to sign in with (``connect --create`` adds Application.ReadWrite.All)."""

    @property
    def authority(self) -> str:
        """The authority URL msal signs in against: ``<host>/<tenant>``."""
        return f"{self.authority_host.rstrip('/')}/{self.tenant}"

    @property
    def graph_resource(self) -> str:
        """The Graph origin that scopes are qualified with, e.g. ``https://graph.microsoft.com``."""
        scheme, netloc, *_ = urlsplit(self.graph_url)
        return f"{scheme}://{netloc}"

    @property
    def unattended(self) -> bool:
        """Client credentials (a secret or a certificate) rather than a person signing in."""
        return bool(self.client_secret or self.client_certificate)


def _hint_of(result: Mapping[str, Any]) -> str:
    for number in result.get("error_codes") or []:
        if number in _AADSTS_HINTS:
            return _AADSTS_HINTS[number]
    if result.get("error") in {"authorization_declined", "expired_token", "bad_verification_code"}:
        return "the sign-in was declined or not completed in time: run the command again."
    return ""


def _client_credential(settings: LoginSettings) -> str | dict[str, Any]:
    if settings.client_secret:
        return settings.client_secret
    path = settings.client_certificate
    if path is None or not path.is_file():
        raise LoginError(
            f"certificate file {path} does not exist", "give a PEM (key and certificate) or a PFX file."
        )
    if path.suffix.lower() in {".pfx", ".p12"}:
        credential: dict[str, Any] = {"private_key_pfx_path": str(path)}
    else:
        pem = path.read_text()
        if "PRIVATE KEY-----" not in pem or "BEGIN CERTIFICATE-----" not in pem:
            raise LoginError(
                f"{path} must hold both the private key and the certificate (PEM)",
                "concatenate the key and the certificate into one file, or give the PFX.",
            )
        credential = {"private_key": pem, "public_certificate": pem}
    if settings.certificate_password:
        credential["passphrase"] = settings.certificate_password
    return credential


class Login:
    """Access tokens for Graph, acquired once and renewed before they expire."""

    def __init__(
        self,
        settings: LoginSettings,
        session: requests.Session,
        *,
        progress: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.settings = settings
        self._session = session
        self._progress = progress
        self._cache = msal.SerializableTokenCache()
        self._token: str | None = None
        self._expires = 0.0
        if settings.cache_path is not None and settings.cache_path.is_file() and not settings.unattended:
            self._load_cache(settings.cache_path)

    def _load_cache(self, path: Path) -> None:
        """Read the token cache; a corrupt one is ignored with a warning (signing in again replaces it)."""
        try:
            text = path.read_text(encoding="utf-8")
            document = json.loads(text) if text.strip() else {}
            if not isinstance(document, dict) or not all(isinstance(v, dict) for v in document.values()):
                raise ValueError("not an msal token cache")
            self._cache.deserialize(text)
        except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            self._cache = msal.SerializableTokenCache()
            self._progress(
                f"warning: ignoring the unreadable token cache {path} ({error.__class__.__name__}); "
                "signing in again will replace it"
            )

    def token(self) -> str:
        """A valid access token for Graph (signing in when needed)."""
        if self._token is None or time.time() > self._expires - 120:
            result = self._acquire()
            self._token = str(result["access_token"])
            self._expires = time.time() + float(result.get("expires_in", 3600))
        return self._token

    def sign_out(self) -> bool:
        """Forget the cached sign-in; True if there was one."""
        path = self.settings.cache_path
        if path is not None and path.is_file():
            path.unlink()
            return True
        return False

    def _application(self) -> Any:
        common: dict[str, Any] = {
            "authority": self.settings.authority,
            "http_client": self._session,
            "instance_discovery": False,
            "token_cache": self._cache,
        }
        try:
            if self.settings.unattended:
                return msal.ConfidentialClientApplication(
                    self.settings.client_id, client_credential=_client_credential(self.settings), **common
                )
            return msal.PublicClientApplication(self.settings.client_id, **common)
        except ValueError as error:  # msal: the authority's discovery document failed
            raise LoginError(
                f"could not read the authority {self.settings.authority} ({error})",
                "check --tenant (the tenant id or a verified domain) and --authority.",
            ) from error
        except requests.RequestException as error:
            raise LoginError(
                f"could not reach {self.settings.authority_host} ({error.__class__.__name__})",
                "check --authority, your proxy (HTTPS_PROXY) and, behind TLS inspection, REQUESTS_CA_BUNDLE.",
            ) from error

    def _acquire(self) -> dict[str, Any]:
        app = self._application()
        if self.settings.unattended:
            self._progress(f"Signing in as application {self.settings.client_id} ...")
            result = app.acquire_token_for_client(scopes=[f"{self.settings.graph_resource}/.default"])
        else:
            result = self._delegated(app)
        if "access_token" not in result:
            raise LoginError(
                str(result.get("error_description") or result.get("error") or "no token"), _hint_of(result)
            )
        self._save()
        return dict(result)

    def _delegated(self, app: Any) -> Any:
        scopes = [f"{self.settings.graph_resource}/{scope}" for scope in self.settings.scopes]
        accounts = app.get_accounts()
        if accounts:
            result = app.acquire_token_silent(scopes, account=accounts[0])
            if result and "access_token" in result:
                return result
        flow = app.initiate_device_flow(scopes=scopes)
        if "user_code" not in flow:
            raise LoginError(
                str(flow.get("error_description") or "device code request failed"), _hint_of(flow)
            )
        self._progress(str(flow["message"]))
        self._progress(
            f"Waiting for the sign-in (the code expires in {int(flow.get('expires_in', 900)) // 60} min) ..."
        )
        return app.acquire_token_by_device_flow(flow)

    def _save(self) -> None:
        path = self.settings.cache_path
        if path is None or self.settings.unattended or not self._cache.has_state_changed:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(self._cache.serialize())
        path.chmod(0o600)  # also when the file existed with wider permissions
