"""Bearer-token authentication of Entra's provisioning requests.

Entra sends the *Secret Token* of the provisioning page verbatim as
``Authorization: Bearer <token>`` (Entra SCIM tutorial, "Authorization").
Tokens are compared as SHA-256 digests with :func:`hmac.compare_digest`, against
every accepted digest without short-circuiting, so timing reveals neither the
token nor which slot (current or next) matched. Tokens are never logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from scim.config import token_digest
from scim.errors import UnauthorizedError

__all__ = ["authenticate", "bearer_token"]


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


def authenticate(authorization: str | None, accepted: Sequence[bytes]) -> None:
    """Accept the request if its bearer token is one of the accepted tokens.

    Args:
        authorization: The ``Authorization`` header value, if any.
        accepted: SHA-256 digests of the current and next Secret Tokens.

    Raises:
        UnauthorizedError: No token, or a token that matches none of them.
    """
    presented = token_digest(bearer_token(authorization))
    matched = False
    for digest in accepted:
        matched |= hmac.compare_digest(presented, digest)
    if not matched:
        raise UnauthorizedError(
            "The bearer token is not accepted. Check the Secret Token in the Entra "
            "provisioning settings against SCIM_BEARER_TOKEN."
        )
