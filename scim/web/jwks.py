"""The signing keys of an Entra tenant, fetched from its JWKS document and cached.

Used by ``scim.web.auth`` for Entra-issued tokens. Keys are fetched on first use
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

from scim.model.errors import ServiceUnavailableError

__all__ = ["MAX_AGE", "MIN_REFETCH", "JwksKeys"]

log = logging.getLogger(__name__)

MIN_REFETCH = 30.0
"""Seconds between two fetches triggered by unknown ``kid``s."""

MAX_AGE = 6 * 3600.0
"""Seconds after which the cached key set is fetched again."""


_UNAVAILABLE = "The tenant's signing keys could not be fetched ({reason}); retry later."


class JwksKeys:
    """A :class:`scim.web.auth.KeySource` over a JWKS URL.

    Unknown ``kid`` answers (Entra treats 401 as bad credentials and may
    quarantine the provisioning job, so the distinction matters):

    * ``None`` (→ 401) only when the last fetch succeeded and returned a
      non-empty key set that does not hold the ``kid``;
    * :class:`~scim.model.errors.ServiceUnavailableError` (→ 503 with ``Retry-After``)
      when the last fetch failed or returned no usable key — also for the
      :data:`MIN_REFETCH` seconds after such a fetch, while no new fetch is made.

    A key already cached keeps verifying tokens while a refresh fails.
    """

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self._url = url
        self._timeout = timeout
        self._keys: dict[str, Any] = {}
        self._fetched_at = -MIN_REFETCH * 2
        self._failure: str | None = "not fetched yet"
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> Any | None:
        """The key named ``kid``, fetching the key set when it is unknown or stale.

        Raises:
            ServiceUnavailableError: The key set could not be fetched, or is empty.
        """
        now = time.monotonic()
        stale = now - self._fetched_at > MAX_AGE
        if kid in self._keys and not stale:
            return self._keys[kid]
        async with self._lock:
            if (kid not in self._keys or stale) and time.monotonic() - self._fetched_at >= MIN_REFETCH:
                await self._fetch()
        if kid in self._keys:
            return self._keys[kid]
        if self._failure is not None:
            raise ServiceUnavailableError(_UNAVAILABLE.format(reason=self._failure))
        return None

    async def _fetch(self) -> None:
        """Fetch the key set; on failure keep the last good keys and remember why."""
        self._fetched_at = time.monotonic()
        try:
            timeout = aiohttp.ClientTimeout(total=self._timeout)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(self._url) as response:
                response.raise_for_status()
                document = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            log.warning("Could not fetch the tenant's signing keys: %s", type(error).__name__)
            self._failure = f"{type(error).__name__} from the JWKS URL"
            return
        keys = _usable_keys(document)
        if not keys:
            log.warning("The tenant's JWKS document holds no usable signing key")
            self._failure = "the JWKS document holds no usable key"
            return
        self._keys = keys
        self._failure = None
        log.info("Fetched %d signing key(s) of the tenant", len(keys))


def _usable_keys(document: Any) -> dict[str, Any]:
    """RFC 7517 §5: the ``keys`` of a JWK Set, by ``kid``; entries we cannot use are skipped."""
    entries = document.get("keys") if isinstance(document, dict) else None
    keys: dict[str, Any] = {}
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        try:
            keys[entry["kid"]] = jwt.PyJWK(entry).key
        except (jwt.PyJWTError, ValueError, TypeError):
            continue  # a key type we cannot use: skip it, keep the others
    return keys
