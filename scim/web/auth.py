"""Authentication of Entra's provisioning requests (Entra SCIM tutorial, "Authorization").

Two ways in, both as ``Authorization: Bearer <token>``:

* **Secret Token** — what the admin typed in the provisioning page, sent
  verbatim. Kept only as SHA-256 digests (settings may even hold just the
  digest), compared with :func:`hmac.compare_digest` against every accepted
  digest without short-circuiting, so timing reveals neither the token nor
  which slot (current or next) matched.
* **Entra-issued JWT** — when the Secret Token is left blank, Entra sends its
  own token: RS256, ``iss`` = ``https://sts.windows.net/<tenant>/``, ``aud`` =
  ``8adf8e6e-67b2-4cf2-a259-e3dc5476c621`` for every non-gallery app. The
  audience is shared by all tenants, so the issuer (and ``tid``) are pinned to
  the configured tenant. Keys come from a :class:`KeySource` (``scim.web.jwks``
  fetches the tenant's signing keys and refreshes on an unknown ``kid``).

Tokens are never logged; errors never echo them.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from scim.config import token_digest
from scim.model.errors import UnauthorizedError

__all__ = ["Authenticator", "JwtPolicy", "KeySource", "authenticate", "bearer_token"]

ENTRA_SCIM_AUDIENCE = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"
"""The ``aud`` of Entra's provisioning tokens for every non-gallery app."""


_NOT_ACCEPTED = (
    "The bearer token is not accepted. Check the Secret Token in the Entra "
    "provisioning settings against SCIM_BEARER_TOKEN."
)


def bearer_token(authorization: str | None) -> str:
    """Extract the token of an RFC 6750 §2.1 ``Bearer`` credential.

    Raises:
        UnauthorizedError: The header is missing or uses another scheme.
    """
    if not authorization:
        raise UnauthorizedError(
            "The request has no Authorization header; send 'Authorization: Bearer <Secret Token>'."
        )
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise UnauthorizedError(
            "The Authorization header must use the Bearer scheme: 'Bearer <Secret Token>'."
        )
    return token


def _secret_slot(token: str, accepted: Sequence[bytes]) -> int | None:
    """The index of the accepted digest the token matches, compared in constant time."""
    presented = token_digest(token)
    slot: int | None = None
    for index, digest in enumerate(accepted):
        if hmac.compare_digest(presented, digest):
            slot = index
    return slot


def authenticate(authorization: str | None, accepted: Sequence[bytes]) -> None:
    """Accept the request if its bearer token is one of the accepted Secret Tokens.

    Raises:
        UnauthorizedError: No token, or a token that matches none of them.
    """
    if _secret_slot(bearer_token(authorization), accepted) is None:
        raise UnauthorizedError(_NOT_ACCEPTED)


class KeySource(Protocol):
    """Where the signing keys of Entra-issued tokens come from."""

    async def key(self, kid: str) -> Any | None:
        """The public key with this ``kid``, or None when the tenant's current key set lacks it.

        Raises:
            ServiceUnavailableError: The key set cannot be fetched (or is empty):
                a 503, never a 401, since Entra takes 401 for bad credentials.
        """
        ...


@dataclass(frozen=True)
class JwtPolicy:
    """What an Entra-issued token must say to be accepted."""

    tenant_id: str
    issuer: str
    audiences: tuple[str, ...] = (ENTRA_SCIM_AUDIENCE,)
    leeway_seconds: int = 60
    """Clock skew tolerated on ``exp`` and ``nbf``."""


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


class Authenticator:
    """Secret Tokens and, optionally, Entra-issued JWTs."""

    def __init__(
        self, digests: Sequence[bytes], *, policy: JwtPolicy | None = None, keys: KeySource | None = None
    ) -> None:
        self._digests = tuple(digests)
        self._policy = policy
        self._keys = keys

    async def authenticate(self, authorization: str | None) -> str:
        """Return who is calling: ``secret-token-1``/``-2`` or ``entra-app:<appid>``.

        Raises:
            UnauthorizedError: No acceptable credential.
            ServiceUnavailableError: The tenant's signing keys cannot be fetched.
        """
        token = bearer_token(authorization)
        slot = _secret_slot(token, self._digests)
        if slot is not None:
            return f"secret-token-{slot + 1}"
        if self._policy is not None and self._keys is not None and _looks_like_jwt(token):
            return await self._verify_jwt(token, self._policy, self._keys)
        raise UnauthorizedError(_NOT_ACCEPTED)

    async def _verify_jwt(self, token: str, policy: JwtPolicy, keys: KeySource) -> str:
        # Imported here: PyJWT and cryptography cost cold-start time that only
        # JWT mode (Secret Token left blank in Entra) needs.
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise UnauthorizedError("The bearer token is not a well-formed JWT.") from None
        if header.get("alg") != "RS256" or not isinstance(header.get("kid"), str):
            raise UnauthorizedError("The JWT must be signed with RS256 and name its key (kid).")
        key = await keys.key(header["kid"])
        if key is None:
            raise UnauthorizedError("The JWT is signed with a key the tenant does not publish.")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=list(policy.audiences),
                issuer=policy.issuer,
                leeway=policy.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as error:
            raise UnauthorizedError(f"The JWT is not accepted: {error}.") from None
        tenant = claims.get("tid")
        if tenant is not None and str(tenant).lower() != policy.tenant_id.lower():
            raise UnauthorizedError("The JWT was issued for another tenant.")
        return f"entra-app:{claims.get('appid') or claims.get('azp') or 'unknown'}"
