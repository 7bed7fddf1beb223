"""Directories: one deployment, a Tenant URL and credentials per application or customer (issue 17).

A directory is a tenant segment of the table's keys (DESIGN §8: every PartitionKey starts with
``<tenant>|``), so directories share nothing but the table: every read and write of a
directory's repository stays within its own partitions. The default directory is the
deployment's ``SCIM_TENANT`` (``default``) at ``/scim/v2`` with the ``SCIM_*`` credentials,
unchanged. Each named directory has its Tenant URL ``https://<host>/scim/<name>/v2``, its own
Secret Token digests (two during a rotation), and optionally an Entra tenant id for Entra-issued
JWTs, a schema-extension file and a change-feed queue.

The registry is kept in the same table, in the partition ``~directories`` (outside every
tenant's partitions: names are ``[a-z0-9-]``, which sort below ``~``), one row per directory, so
adding one takes effect on every instance within :data:`CACHE_SECONDS` without a redeploy. Only
digests of tokens are stored; a new token is shown once, by the command that makes it.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from scim.config import Settings, token_digest

__all__ = [
    "CACHE_SECONDS",
    "MAX_CACHED",
    "RESERVED_NAMES",
    "Directory",
    "DirectoryError",
    "DirectoryRegistry",
    "DirectoryStore",
    "check_name",
    "settings_for",
]

CACHE_SECONDS = 10.0
"""How long an instance trusts what it read of the registry (a change reaches every instance within it)."""

RESERVED_NAMES = frozenset({"v2", "health", "admin", "runtime", "default", "scim", "api"})
"""Names a directory cannot take: path segments of the endpoint and the host, and the default tenant."""

MAX_CACHED = 1024
"""Registry answers kept per instance: requests for random names cannot grow the cache without bound."""

_NAME = re.compile(r"[a-z][a-z0-9-]{1,38}[a-z0-9]")


class DirectoryError(ValueError):
    """A directory operation cannot be done; the message says why and what to do."""


def check_name(name: str, default_tenant: str = "default") -> str:
    """The directory name, lower-cased, if it can be one (3-40 of ``a-z0-9-``, a letter first).

    Raises:
        DirectoryError: The name is malformed or reserved.
    """
    value = name.strip().lower()
    if not _NAME.fullmatch(value):
        raise DirectoryError(
            f"{name!r} is not a directory name: 3-40 lower-case letters, digits and '-', starting with a "
            "letter and not ending with '-'"
        )
    if value in RESERVED_NAMES or value == default_tenant:
        raise DirectoryError(
            f"{value!r} is reserved (it is a path segment of the endpoint or the default directory)"
        )
    return value


@dataclass(frozen=True)
class Directory:
    """One named directory as the registry holds it (never a token, only digests)."""

    name: str
    token_digests: tuple[bytes, ...] = field(default=(), repr=False)
    entra_tenant_id: str = ""
    schema_file: str = ""
    change_queue: str = ""
    disabled: bool = False
    created: str = ""
    etag: str = field(default="", compare=False)

    def to_row(self) -> dict[str, Any]:
        """The registry row's properties (besides its keys)."""
        return {
            "tokens": ",".join(digest.hex() for digest in self.token_digests),
            "tenant_id": self.entra_tenant_id,
            "schema_file": self.schema_file,
            "queue": self.change_queue,
            "disabled": self.disabled,
            "created": self.created,
        }

    @classmethod
    def from_row(cls, name: str, row: dict[str, Any], etag: str) -> Directory:
        """A directory from its registry row."""
        tokens = str(row.get("tokens") or "")
        return cls(
            name=name,
            token_digests=tuple(bytes.fromhex(item) for item in tokens.split(",") if item),
            entra_tenant_id=str(row.get("tenant_id") or ""),
            schema_file=str(row.get("schema_file") or ""),
            change_queue=str(row.get("queue") or ""),
            disabled=bool(row.get("disabled")),
            created=str(row.get("created") or ""),
            etag=etag,
        )


class DirectoryStore(Protocol):
    """Where the registry rows live (``scim.storage.tables.TableRepository`` implements it)."""

    async def read_directories(self) -> list[tuple[str, dict[str, Any], str]]:
        """Every registry row: ``(name, properties, etag)``."""
        ...

    async def read_directory(self, name: str) -> tuple[dict[str, Any], str] | None:
        """One registry row, or None."""
        ...

    async def write_directory(self, name: str, row: dict[str, Any], etag: str | None) -> str:
        """Create (``etag`` None; fails if it exists) or replace (if the row still has ``etag``)."""
        ...

    async def delete_directory(self, name: str, etag: str) -> None:
        """Delete the registry row if it still has ``etag``."""
        ...


class DirectoryRegistry:
    """Reads (cached for :data:`CACHE_SECONDS`) and changes the registry of directories."""

    def __init__(
        self,
        store: DirectoryStore,
        *,
        ttl: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, Directory | None]] = {}

    async def get(self, name: str) -> Directory | None:
        """The directory called ``name`` (None when there is none), as read at most ``ttl`` seconds ago."""
        now = self._clock()
        cached = self._cache.get(name)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        found = await self._store.read_directory(name)
        directory = Directory.from_row(name, found[0], found[1]) if found is not None else None
        self._cache.pop(name, None)
        while len(self._cache) >= MAX_CACHED:
            del self._cache[next(iter(self._cache))]  # the oldest answer
        self._cache[name] = (now, directory)
        return directory

    async def list(self) -> list[Directory]:
        """Every directory, by name (read now, not cached)."""
        rows = await self._store.read_directories()
        return sorted((Directory.from_row(n, row, etag) for n, row, etag in rows), key=lambda d: d.name)

    async def add(
        self, name: str, *, entra_tenant_id: str = "", schema_file: str = "", change_queue: str = ""
    ) -> tuple[Directory, str]:
        """Create a directory with a new Secret Token; returns it and the token (shown once, never stored).

        Raises:
            DirectoryError: The name is not valid or already taken.
        """
        token = secrets.token_urlsafe(32)
        directory = Directory(
            name=name,
            token_digests=(token_digest(token),),
            entra_tenant_id=entra_tenant_id,
            schema_file=schema_file,
            change_queue=change_queue,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        etag = await self._store.write_directory(name, directory.to_row(), None)
        self._cache.pop(name, None)
        return replace(directory, etag=etag), token

    async def rotate_token(self, name: str, *, finish: bool = False) -> tuple[Directory, str | None]:
        """Start a rotation (a new token, the current one still accepted) or ``finish`` it.

        A rotation is two steps, as with ``SCIM_BEARER_TOKEN_NEXT``: the new token is accepted at
        once next to the current one; paste it into Entra, then ``finish`` drops the old one.

        Raises:
            DirectoryError: There is no such directory, no rotation to finish, or one in progress.
        """
        directory = await self._existing(name)
        if finish:
            if len(directory.token_digests) < 2:
                raise DirectoryError(f"directory {name!r} has no rotation in progress")
            changed = replace(directory, token_digests=directory.token_digests[:1])
            token = None
        else:
            if len(directory.token_digests) > 1:
                # Which of the two Entra sends is unknown: a third token would drop one of them.
                raise DirectoryError(
                    f"directory {name!r} is already rotating its token: finish that rotation first "
                    "(`scim directory rotate-token NAME --finish`)"
                )
            token = secrets.token_urlsafe(32)
            changed = replace(directory, token_digests=(token_digest(token), directory.token_digests[0]))
        etag = await self._store.write_directory(name, changed.to_row(), directory.etag)
        self._cache.pop(name, None)
        return replace(changed, etag=etag), token

    async def set_disabled(self, name: str, disabled: bool) -> Directory:
        """Disable (every request 401, data kept) or enable a directory.

        Raises:
            DirectoryError: There is no such directory.
        """
        directory = await self._existing(name)
        changed = replace(directory, disabled=disabled)
        etag = await self._store.write_directory(name, changed.to_row(), directory.etag)
        self._cache.pop(name, None)
        return replace(changed, etag=etag)

    async def forget(self, name: str) -> None:
        """Delete the registry row (the directory's data is deleted separately, first).

        Raises:
            DirectoryError: There is no such directory.
        """
        directory = await self._existing(name)
        await self._store.delete_directory(name, directory.etag)
        self._cache.pop(name, None)

    async def _existing(self, name: str) -> Directory:
        found = await self._store.read_directory(name)
        if found is None:
            raise DirectoryError(f"there is no directory {name!r} (`scim directory list` shows them)")
        return Directory.from_row(name, found[0], found[1])


def settings_for(base: Settings, directory: Directory) -> Settings:
    """The endpoint settings of a named directory: the deployment's, with the directory's own parts.

    Storage, limits and the table are the deployment's; the tenant segment, the credentials, the
    Entra tenant (and its issuer and keys), the schema file and the change-feed queue are the
    directory's (its schema file and queue default to the deployment's).
    """
    tenant_id = directory.entra_tenant_id
    public = base.public_base_url
    if public.endswith("/v2"):
        public = f"{public[: -len('/v2')]}/{directory.name}/v2"
    return replace(
        base,
        tenant=directory.name,
        token_digests=directory.token_digests,
        weak_tokens=(),
        entra_tenant_id=tenant_id,
        jwt_issuer=f"https://sts.windows.net/{tenant_id}/" if tenant_id else "",
        jwks_url=f"https://login.microsoftonline.com/{tenant_id}/discovery/keys" if tenant_id else "",
        public_base_url=public,
        schema_file=directory.schema_file or base.schema_file,
        change_queue=directory.change_queue or base.change_queue,
    )
