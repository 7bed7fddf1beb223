"""The signing keys of an Entra tenant, fetched from its JWKS document and cached.

Used by ``scim.auth`` for Entra-issued tokens. Keys are fetched on first use
(never at import), cached, and fetched again when a token names an unknown
``kid`` (key rotation) — at most once per :data:`MIN_REFETCH`, so a flood of
forged ``kid``s cannot turn into a flood of requests to Entra. The cache is
also refreshed after :data:`MAX_AGE`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import jwt

from scim.errors import ServiceUnavailableError

__all__ = ["MAX_AGE", "MIN_REFETCH", "JwksKeys"]

log = logging.getLogger(__name__)

MIN_REFETCH = 30.0
"""Seconds between two fetches triggered by unknown ``kid``s."""

MAX_AGE = 6 * 3600.0
"""Seconds after which the cached key set is fetched again."""


class JwksKeys:
    """A :class:`scim.auth.KeySource` over a JWKS URL."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self._url = url
        self._timeout = timeout
        self._keys: dict[str, Any] = {}
        self._fetched_at = -MIN_REFETCH * 2
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> Any | None:
        """The key named ``kid``, fetching the key set when it is unknown or stale."""
        now = time.monotonic()
        stale = now - self._fetched_at > MAX_AGE
        if kid in self._keys and not stale:
            return self._keys[kid]
        async with self._lock:
            if (kid not in self._keys or stale) and time.monotonic() - self._fetched_at >= MIN_REFETCH:
                await self._fetch()
        return self._keys.get(kid)

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            timeout = aiohttp.ClientTimeout(total=self._timeout)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(self._url) as response:
                response.raise_for_status()
                document = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            log.warning("Could not fetch the tenant's signing keys: %s", type(error).__name__)
            if not self._keys:
                raise ServiceUnavailableError(
                    "The tenant's signing keys cannot be fetched; retry later."
                ) from error
            return
        keys = {}
        for entry in document.get("keys", []) if isinstance(document, dict) else []:
            try:
                keys[str(entry["kid"])] = jwt.PyJWK(entry).key
            except (KeyError, jwt.PyJWTError):
                continue  # a key type we cannot use: skip it, keep the others
        self._keys = keys
        log.info("Fetched %d signing key(s) of the tenant", len(keys))
