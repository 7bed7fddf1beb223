"""Settings: read once from the environment by the adapters, then injected.

Nothing else in ``scim/`` reads ``os.environ``; tests build :class:`Settings`
directly. Secrets are kept only as SHA-256 digests so that a stray ``repr``
or log line can never print a token. Every room reads its settings from here. It may import
nothing from ``scim``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["WEAK_TOKEN_CHARS", "ConfigurationError", "Settings", "check_connection_string", "token_digest"]

_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")


class ConfigurationError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def token_digest(token: str) -> bytes:
    """SHA-256 of a bearer token, the only form in which tokens are kept."""
    return hashlib.sha256(token.encode("utf-8")).digest()


_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def _token(environ: Mapping[str, str], name: str) -> str:
    """A Secret Token setting; an unresolved Key Vault reference is refused, never accepted as a token.

    App Service passes the reference text itself (``@Microsoft.KeyVault(...)``)
    when it cannot resolve it — e.g. while role assignments propagate after a
    first deploy —, and that text must not become a valid credential.
    """
    value = environ.get(name, "").strip()
    if value.startswith("@Microsoft.KeyVault("):
        raise ConfigurationError(
            f"{name} is an unresolved Key Vault reference: give the app's identity the "
            "'Key Vault Secrets User' role on the secret and restart the app"
        )
    return value


def _https_endpoint(environ: Mapping[str, str], name: str) -> str:
    """``SCIM_STORAGE_*_ENDPOINT``: token credentials only travel over HTTPS."""
    value = environ.get(name, "").strip().rstrip("/")
    if value and not value.lower().startswith("https://"):
        raise ConfigurationError(f"{name} must be an https:// URL")
    return value


_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

WEAK_TOKEN_CHARS = 32
"""A Secret Token shorter than this is accepted with a loud warning (``token new`` makes 43)."""


def _connection_pairs(value: str, name: str) -> dict[str, str]:
    """The ``key=value`` pairs of a connection string, keys lower-cased."""
    pairs: dict[str, str] = {}
    for part in value.split(";"):
        if not part.strip():
            continue
        key, sep, item = part.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(
                f"{name} is malformed: expected key=value pairs separated by ';' "
                "(copy it from the storage account's Access keys page, or from `make run`'s output)"
            )
        pairs[key.strip().lower()] = item.strip()
    return pairs


def check_connection_string(value: str, name: str = "SCIM_STORAGE_CONNECTION_STRING") -> None:
    """Refuse a storage connection string the SDK would fail on later, at the first request.

    The rules of an Azure Storage connection string (Microsoft Learn: *Configure Azure Storage
    connection strings*): ``key=value`` pairs separated by ``;``; either
    ``UseDevelopmentStorage=true``, or an account (``AccountName`` and a base64 ``AccountKey``)
    or a ``SharedAccessSignature``; a table endpoint, given as ``TableEndpoint`` (an http(s)
    URL) or derived from ``AccountName`` (and ``EndpointSuffix``). The message names the
    setting and the broken part, never the value (it holds a secret).

    Raises:
        ConfigurationError: The value breaks one of these rules.
    """
    pairs = _connection_pairs(value, name)
    if pairs.get("usedevelopmentstorage", "").lower() == "true":
        return
    if not pairs:
        raise ConfigurationError(f"{name} is empty")
    key = pairs.get("accountkey")
    if key is not None:
        if not pairs.get("accountname"):
            raise ConfigurationError(f"{name} has an AccountKey but no AccountName")
        try:
            base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError(f"{name}: AccountKey is not base64; copy the key again") from None
    elif not pairs.get("sharedaccesssignature"):
        raise ConfigurationError(f"{name} has neither AccountKey nor SharedAccessSignature: no credential")
    endpoint = pairs.get("tableendpoint")
    if endpoint is not None:
        parts = urlsplit(endpoint)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname or " " in endpoint:
            raise ConfigurationError(f"{name}: TableEndpoint must be an http(s) URL")
    elif not pairs.get("accountname"):
        raise ConfigurationError(f"{name} has no TableEndpoint and no AccountName to derive it from")


def _jwks_url(environ: Mapping[str, str], tenant_id: str) -> str:
    """``SCIM_JWKS_URL``: the keys that decide who is Entra must come over https.

    Plain ``http://`` would let anyone on the path substitute their own signing
    keys; it is accepted only for a loopback host (a local stand-in in tests).
    """
    value = environ.get("SCIM_JWKS_URL", "").strip()
    if not value:
        return f"https://login.microsoftonline.com/{tenant_id}/discovery/keys" if tenant_id else ""
    parts = urlsplit(value)
    try:
        host = parts.hostname
    except ValueError:
        host = None
    scheme = parts.scheme.lower()
    if not host or scheme not in ("https", "http"):
        raise ConfigurationError(f"SCIM_JWKS_URL must be an https:// URL, got {value[:120]!r}")
    if scheme == "http" and host.lower() not in _LOOPBACK_HOSTS:
        raise ConfigurationError(
            "SCIM_JWKS_URL must be an https:// URL: over plain http:// anyone on the network path "
            "could substitute the signing keys (http:// is allowed only for 127.0.0.1, localhost, ::1)"
        )
    return value


def _sha256_digests(environ: Mapping[str, str]) -> list[bytes]:
    """``SCIM_BEARER_TOKEN_SHA256``: comma-separated hex SHA-256 digests of accepted tokens.

    Lets app settings hold no plaintext secret (``token check`` prints the digest).
    """
    digests = []
    for text in environ.get("SCIM_BEARER_TOKEN_SHA256", "").split(","):
        text = text.strip().lower()
        if not text:
            continue
        if not re.fullmatch(r"[0-9a-f]{64}", text):
            raise ConfigurationError("SCIM_BEARER_TOKEN_SHA256 must hold 64-hex-digit SHA-256 digests")
        digests.append(bytes.fromhex(text))
    return digests


def _int(environ: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, got {value}")
    return value


def _queue_name(environ: Mapping[str, str]) -> str:
    """``SCIM_CHANGE_QUEUE``: a queue name (3-63 of a-z 0-9 -), or ``off`` for no change feed."""
    name = environ.get("SCIM_CHANGE_QUEUE", "scim-changes").strip()
    if name.lower() in {"", "off", "none"}:
        return ""
    if not re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", name):
        raise ConfigurationError("SCIM_CHANGE_QUEUE must be 3-63 of a-z 0-9 and single hyphens (or off)")
    return name


@dataclass(frozen=True)
class Settings:
    """Everything the SCIM service needs to know about its deployment.

    Attributes:
        storage_connection_string: Azure Storage (or Azurite) connection string.
        storage_table_endpoint: Table endpoint for identity-based access
            (``https://<acct>.table.core.windows.net``, DefaultAzureCredential);
            used when no connection string is set.
        storage_uses_proxy: Whether an ``HTTPS_PROXY``-style variable is set: only
            then does the storage client read proxy settings from the environment
            (reading them costs about a sixth of a request's CPU).
        table_name: The one Table Storage table holding every SCIM row.
        tenant: Tenant segment of every PartitionKey (DESIGN §5.8).
        token_digests: SHA-256 digests of the accepted bearer tokens: the
            current Secret Token and, during a rotation, the next one.
        public_base_url: The SCIM base URL clients use (``https://host/scim/v2``);
            when empty, it is derived from each request's URL.
        entra_tenant_id: When set, Entra-issued JWTs of this tenant are accepted
            (the Secret Token left blank in Entra).
        jwt_audiences: Accepted ``aud`` values of those JWTs.
        jwt_issuer: Required ``iss`` (default ``https://sts.windows.net/<tenant>/``).
        jwks_url: Where the tenant's signing keys are published.
        max_page_size: Largest ``count`` served in one ListResponse
            (``filter.maxResults`` in /ServiceProviderConfig).
        max_scan: Most resources a filter that no index can answer may examine.
        max_body_bytes: Largest request body accepted (413 above it).
        directory_concurrency: Requests one directory may have in progress in one instance; more
            get 429 with ``Retry-After`` (issue 17: one noisy directory cannot starve the others).
        change_queue: Azure Storage Queue the change feed is published to
            (``scim.feed.relay``); empty: changes are kept in the audit trail only.
        storage_queue_endpoint: Queue endpoint for identity-based access
            (default: the table endpoint's account, ``.queue.``).
        audit_retention_days: Days the audit trail keeps a change (0: forever).
        schema_file: The operator's schema-extension file (``scim.model.schemafile``);
            relative to the app's folder; empty: built-in schemas only.
        unknown_attributes: ``reject`` (400 naming the attribute) or ``ignore``
            (dropped, and reported in the log and the audit record).
    """

    storage_connection_string: str = field(default="", repr=False)
    storage_table_endpoint: str = ""
    storage_uses_proxy: bool = False
    table_name: str = "scim"
    tenant: str = "default"
    token_digests: tuple[bytes, ...] = field(default=(), repr=False)
    weak_tokens: tuple[str, ...] = ()
    """Names of the token settings shorter than :data:`WEAK_TOKEN_CHARS` (warned about, not refused)."""
    public_base_url: str = ""
    entra_tenant_id: str = ""
    jwt_audiences: tuple[str, ...] = ("8adf8e6e-67b2-4cf2-a259-e3dc5476c621",)
    jwt_issuer: str = ""
    jwks_url: str = ""
    max_page_size: int = 200
    max_scan: int = 10_000
    max_body_bytes: int = 1_048_576
    directory_concurrency: int = 32
    change_queue: str = "scim-changes"
    storage_queue_endpoint: str = ""
    audit_retention_days: int = 365
    schema_file: str = ""
    unknown_attributes: str = "reject"

    def check_serving(self) -> None:
        """Refuse to serve with settings that cannot work.

        Raises:
            ConfigurationError: No storage, or no credential, is configured, or the connection
                string is malformed.
        """
        if not self.storage_connection_string and not self.storage_table_endpoint:
            raise ConfigurationError(
                "Neither SCIM_STORAGE_CONNECTION_STRING nor SCIM_STORAGE_TABLE_ENDPOINT is set: "
                "the endpoint has no storage."
            )
        if self.storage_connection_string:
            check_connection_string(self.storage_connection_string)
        if not self.token_digests and not self.entra_tenant_id:
            raise ConfigurationError(
                "SCIM_BEARER_TOKEN is not set (nor SCIM_BEARER_TOKEN_SHA256 or SCIM_ENTRA_TENANT_ID): "
                "the endpoint accepts no credential."
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from ``SCIM_*`` variables (see docs/configuration.md).

        Raises:
            ConfigurationError: A variable is malformed.
        """
        tokens = [_token(environ, name) for name in ("SCIM_BEARER_TOKEN", "SCIM_BEARER_TOKEN_NEXT")]
        table_name = environ.get("SCIM_TABLE_NAME", "").strip() or "scim"
        if not _TABLE_NAME.match(table_name):
            raise ConfigurationError(
                "SCIM_TABLE_NAME must be 3-63 letters and digits, starting with a letter"
            )
        tenant = environ.get("SCIM_TENANT", "").strip() or "default"
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", tenant):
            raise ConfigurationError("SCIM_TENANT must be 1-64 of A-Z a-z 0-9 _ -")
        digests = [token_digest(t) for t in tokens if t] + _sha256_digests(environ)
        tenant_id = environ.get("SCIM_ENTRA_TENANT_ID", "").strip()
        if tenant_id and not re.fullmatch(r"[0-9a-fA-F-]{36}", tenant_id):
            raise ConfigurationError("SCIM_ENTRA_TENANT_ID must be the tenant's GUID")
        unknown = environ.get("SCIM_UNKNOWN_ATTRIBUTES", "").strip().lower() or "reject"
        if unknown not in ("reject", "ignore"):
            raise ConfigurationError(f"SCIM_UNKNOWN_ATTRIBUTES must be reject or ignore, got {unknown!r}")
        audiences = tuple(a.strip() for a in environ.get("SCIM_JWT_AUDIENCE", "").split(",") if a.strip())
        return cls(
            storage_connection_string=environ.get("SCIM_STORAGE_CONNECTION_STRING", "").strip(),
            storage_table_endpoint=_https_endpoint(environ, "SCIM_STORAGE_TABLE_ENDPOINT"),
            storage_uses_proxy=any(
                environ.get(name)
                for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")
            ),
            table_name=table_name,
            tenant=tenant,
            token_digests=tuple(digests),
            weak_tokens=tuple(
                name
                for name, token in zip(("SCIM_BEARER_TOKEN", "SCIM_BEARER_TOKEN_NEXT"), tokens, strict=True)
                if token and len(token) < WEAK_TOKEN_CHARS
            ),
            entra_tenant_id=tenant_id,
            jwt_audiences=audiences or cls.jwt_audiences,
            jwt_issuer=environ.get("SCIM_JWT_ISSUER", "").strip()
            or (f"https://sts.windows.net/{tenant_id}/" if tenant_id else ""),
            jwks_url=_jwks_url(environ, tenant_id),
            public_base_url=environ.get("SCIM_PUBLIC_BASE_URL", "").strip().rstrip("/"),
            max_page_size=_int(environ, "SCIM_MAX_PAGE_SIZE", cls.max_page_size),
            max_scan=_int(environ, "SCIM_MAX_SCAN", cls.max_scan),
            max_body_bytes=_int(environ, "SCIM_MAX_BODY_BYTES", cls.max_body_bytes),
            directory_concurrency=_int(environ, "SCIM_DIRECTORY_CONCURRENCY", cls.directory_concurrency),
            change_queue=_queue_name(environ),
            storage_queue_endpoint=_https_endpoint(environ, "SCIM_STORAGE_QUEUE_ENDPOINT")
            or _https_endpoint(environ, "SCIM_STORAGE_TABLE_ENDPOINT").replace(".table.", ".queue."),
            audit_retention_days=_int(
                environ, "SCIM_AUDIT_RETENTION_DAYS", cls.audit_retention_days, minimum=0
            ),
            schema_file=environ.get("SCIM_SCHEMA_FILE", "").strip(),
            unknown_attributes=unknown,
        )
