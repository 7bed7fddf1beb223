"""``scim directory …``: manage named directories from the command line, and ``--directory NAME``.

A named directory (:mod:`scim.storage.directories`, issue 17) has its own Tenant URL
``https://<host>/scim/<name>/v2`` and Secret Token; its registry row lives in the
endpoint's own table, so what these commands change reaches every instance of the
endpoint within :data:`scim.storage.directories.CACHE_SECONDS`, without a redeploy:

- ``add NAME`` creates one and prints its Tenant URL and a new Secret Token, once
  (only the token's SHA-256 digest is stored);
- ``list`` shows every directory and its state;
- ``rotate-token NAME`` makes a new token accepted next to the current one;
  ``--finish`` then drops the old one (the two steps of ``SCIM_BEARER_TOKEN_NEXT``);
- ``disable NAME`` / ``enable NAME``: every request to its Tenant URL gets 401 (data kept), or not;
- ``remove NAME`` disables it, waits until every instance has seen that, deletes all
  its rows, then its registry row, and says how many rows it deleted.

:func:`directory_option` adds ``--directory NAME`` to ``check``, ``audit``, ``feed`` and
``export``/``import``; :func:`settings_of` (called once, by ``scim.__main__``) turns it into
that directory's settings (:func:`scim.storage.directories.settings_for`).

Layering: this module reaches storage only through ``scim.storage.tables``; it imports no Azure SDK
and reads no environment variable (``SCIM_PUBLIC_BASE_URL`` arrives in :class:`Settings`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from scim.admin.cli import table
from scim.config import Settings
from scim.model.errors import ConflictError
from scim.model.schemafile import load_schema_file
from scim.storage.directories import (
    CACHE_SECONDS,
    Directory,
    DirectoryError,
    DirectoryRegistry,
    check_name,
    settings_for,
)
from scim.storage.tables import TableRepository, open_repository

__all__ = [
    "PLACEHOLDER_HOST",
    "add_commands",
    "directory_option",
    "run",
    "settings_of",
    "tenant_url",
]

PLACEHOLDER_HOST = "https://<your-host>"
"""The host printed in a Tenant URL when neither ``--base-url`` nor ``SCIM_PUBLIC_BASE_URL`` names it."""

PROGRESS_EVERY_S = 2.0
"""Seconds between two ``... N rows deleted`` lines of ``remove``."""

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_QUEUE = re.compile(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]")
"""Queue names (Microsoft Learn, *Naming queues and metadata*): 3-63 of a-z 0-9, single hyphens."""


def _out(text: str) -> None:
    """A result line on stdout."""
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    """Progress, advice or an error line on stderr."""
    sys.stdout.flush()
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# -- Tenant URL ---------------------------------------------------------------------------------


def tenant_url(name: str, *, base_url: str = "", public_base_url: str = "") -> str:
    """The Tenant URL of directory ``name``: ``<host>/scim/<name>/v2``.

    ``base_url`` (``--base-url``) is the endpoint's host, e.g. ``https://scim.example.com``; a
    default directory's Tenant URL (``…/scim/v2``) is accepted too. Without it, the host comes
    from ``public_base_url`` (``SCIM_PUBLIC_BASE_URL``, the default directory's
    ``https://host/scim/v2``: its ``/v2`` becomes ``/<name>/v2``, as
    :func:`scim.storage.directories.settings_for` derives it); without either, :data:`PLACEHOLDER_HOST`.
    """
    for given in (base_url, public_base_url):
        url = given.strip().rstrip("/")
        if not url:
            continue
        if url.endswith("/v2"):
            return f"{url[: -len('/v2')]}/{name}/v2"
        return f"{url}/scim/{name}/v2"
    return f"{PLACEHOLDER_HOST}/scim/{name}/v2"


# -- argument types ------------------------------------------------------------------------------


def _guid(text: str) -> str:
    value = text.strip()
    if not _GUID.fullmatch(value):
        raise argparse.ArgumentTypeError(f"not a tenant id (a GUID): {text!r}")
    return value.lower()


def _queue(text: str) -> str:
    value = text.strip()
    if not _QUEUE.fullmatch(value):
        raise argparse.ArgumentTypeError(f"not a queue name (3-63 of a-z 0-9 and single hyphens): {text!r}")
    return value


def directory_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--directory NAME`` to ``check``, ``audit``, ``feed relay``/``replay``, ``export``, ``import``."""
    parser.add_argument(
        "--directory",
        metavar="NAME",
        help="act on this named directory (scim directory list); default: the default directory",
    )


# -- settings of --directory ---------------------------------------------------------------------


async def _open_existing(settings: Settings) -> TableRepository:
    # Imported here: scim.admin.changelog imports this module (for directory_option).
    from scim.admin.changelog import open_existing

    return await open_existing(settings)


async def _find(settings: Settings, name: str) -> Directory:
    """The registered directory ``name``.

    Raises:
        DirectoryError: ``name`` cannot be a directory, or there is none of that name.
        MissingTableError: The table does not exist (so no directory does).
    """
    name = check_name(name, settings.tenant)
    repository = await _open_existing(settings)
    try:
        directory = await DirectoryRegistry(repository).get(name)
    finally:
        await repository.close()
    if directory is None:
        raise DirectoryError(
            f"there is no directory {name!r} in table {settings.table_name} "
            "(`scim directory list` shows them)"
        )
    return directory


def settings_of(settings: Settings, arguments: argparse.Namespace) -> Settings:
    """The settings a storage command acts with: the default directory's, or ``--directory NAME``'s.

    The one place where ``check``, ``audit``, ``feed`` and ``export``/``import`` switch directory:
    the named directory's tenant segment, queue and schema file
    (:func:`scim.storage.directories.settings_for`). Naming the default directory (``SCIM_TENANT``) is
    the same as naming none. A disabled directory can still be checked, exported and audited.

    Raises:
        DirectoryError: The name is malformed or reserved, or no such directory is registered.
    """
    name = getattr(arguments, "directory", None)
    if name is None or name.strip().lower() == settings.tenant:
        return settings
    return settings_for(settings, asyncio.run(_find(settings, name)))


# -- the directory commands ----------------------------------------------------------------------


async def _add(settings: Settings, arguments: argparse.Namespace) -> int:
    name = check_name(arguments.name, settings.tenant)
    if arguments.schema_file:
        load_schema_file(arguments.schema_file)  # SchemaFileError: one line, nothing created
    repository = open_repository(settings)
    try:
        await repository.ensure_table()  # a deployment that has served nothing yet has no table
        registry = DirectoryRegistry(repository)
        try:
            directory, token = await registry.add(
                name,
                entra_tenant_id=arguments.entra_tenant_id or "",
                schema_file=arguments.schema_file or "",
                change_queue=arguments.queue or "",
            )
        except ConflictError:
            _err(f"error: a directory named {name!r} already exists (`scim directory list` shows it)")
            return 1
    finally:
        await repository.close()
    url = tenant_url(name, base_url=arguments.base_url or "", public_base_url=settings.public_base_url)
    if arguments.json:
        _out(json.dumps({"name": directory.name, "tenantUrl": url, "secretToken": token}))
    else:
        _out(f"Directory {directory.name} added.")
        _out(f"Tenant URL:    {url}")
        _out(f"Secret Token:  {token}")
    _err(
        "The Secret Token is shown now only and will not be shown again (only its digest is stored): "
        "paste both into the app's Provisioning > Admin Credentials in Entra."
    )
    if url.startswith(PLACEHOLDER_HOST):
        _err(
            "Replace <your-host> with the endpoint's host (or pass --base-url, or set SCIM_PUBLIC_BASE_URL)."
        )
    _err(f"The directory takes effect within {CACHE_SECONDS:g} s on every instance of the endpoint.")
    return 0


def _row(directory: Directory) -> dict[str, Any]:
    return {
        "name": directory.name,
        "state": "disabled" if directory.disabled else "enabled",
        "rotationInProgress": len(directory.token_digests) > 1,
        "tokens": len(directory.token_digests),
        "entraTenantId": directory.entra_tenant_id,
        "schemaFile": directory.schema_file,
        "queue": directory.change_queue,
        "created": directory.created,
    }


async def _list(settings: Settings, arguments: argparse.Namespace) -> int:
    repository = await _open_existing(settings)
    try:
        directories = await DirectoryRegistry(repository).list()
    finally:
        await repository.close()
    rows = [_row(directory) for directory in directories]
    if arguments.json:
        for row in rows:
            _out(json.dumps(row))
        return 0
    if not rows:
        _err(f"No directories in table {settings.table_name}: `scim directory add NAME` creates one.")
        return 0
    _out(
        table(
            ["name", "state", "rotation", "entra tenant", "schema file", "queue", "created"],
            [
                [
                    row["name"],
                    row["state"],
                    "in progress (2 tokens)" if row["rotationInProgress"] else "-",
                    row["entraTenantId"] or "-",
                    row["schemaFile"] or "(deployment's)",
                    row["queue"] or "(deployment's)",
                    row["created"],
                ]
                for row in rows
            ],
        )
    )
    _err(f"{len(rows)} directory(ies).")
    return 0


async def _rotate(settings: Settings, arguments: argparse.Namespace) -> int:
    name = check_name(arguments.name, settings.tenant)
    repository = await _open_existing(settings)
    try:
        registry = DirectoryRegistry(repository)
        current = await registry.get(name)
        if current is not None and len(current.token_digests) > 1 and not arguments.finish:
            # A second rotation would keep the unused new token and drop the one Entra still sends.
            raise DirectoryError(
                f"directory {name!r} has a rotation in progress: paste its new token into Entra, then run "
                f"`scim directory rotate-token {name} --finish` before starting another"
            )
        _, token = await registry.rotate_token(name, finish=arguments.finish)
    finally:
        await repository.close()
    if token is None:
        _out(f"Rotation of directory {name} finished: only its new Secret Token is accepted.")
        _err(f"The old token is refused within {CACHE_SECONDS:g} s on every instance of the endpoint.")
        return 0
    if arguments.json:
        _out(json.dumps({"name": name, "secretToken": token}))
    else:
        _out(f"New Secret Token of directory {name}:  {token}")
    _err(
        "It is shown now only and will not be shown again (only its digest is stored). The current token "
        "stays accepted next to it: paste the new one into Entra, then run "
        f"`scim directory rotate-token {name} --finish`. "
        f"The new token is accepted within {CACHE_SECONDS:g} s on every instance of the endpoint."
    )
    return 0


async def _set_disabled(settings: Settings, arguments: argparse.Namespace) -> int:
    name = check_name(arguments.name, settings.tenant)
    disabled = arguments.action == "disable"
    repository = await _open_existing(settings)
    try:
        await DirectoryRegistry(repository).set_disabled(name, disabled)
    finally:
        await repository.close()
    if disabled:
        _out(f"Directory {name} disabled: every request to its Tenant URL gets 401; its data is kept.")
    else:
        _out(f"Directory {name} enabled: its Tenant URL serves requests again.")
    _err(f"This takes effect within {CACHE_SECONDS:g} s on every instance of the endpoint.")
    return 0


class _DeleteProgress:
    """``... N rows deleted`` on stderr, at most every :data:`PROGRESS_EVERY_S` (none for a quick delete)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._due = clock() + PROGRESS_EVERY_S

    def __call__(self, deleted: int) -> None:
        now = self._clock()
        if now >= self._due:
            self._due = now + PROGRESS_EVERY_S
            _err(f"... {deleted:,} rows deleted")


def _confirmed(name: str, answers: IO[str]) -> bool:
    _err(
        f"This deletes directory {name} and all its data (users, groups, memberships, pending changes "
        f"and the audit trail); it cannot be undone (`scim export --directory {name} --audit` first "
        "keeps a copy)."
    )
    sys.stderr.write(f"Type the directory's name ({name}) to confirm: ")
    sys.stderr.flush()
    return answers.readline().strip() == name


async def _remove(settings: Settings, arguments: argparse.Namespace) -> int:
    """Confirm, disable, wait out the registry cache, delete every row of the directory, forget it.

    ``TableRepository.delete_directory_rows`` leaves rows written meanwhile: an instance that read
    the registry before the directory was disabled may serve it for up to
    :data:`~scim.storage.directories.CACHE_SECONDS`, so the delete starts after that, and a second pass
    takes what a request still in flight wrote. Interrupted, the directory stays disabled and a
    new ``remove`` finishes the job.
    """
    name = check_name(arguments.name, settings.tenant)
    if not arguments.yes and not sys.stdin.isatty():
        raise DirectoryError(
            f"remove asks to confirm by typing the directory's name, but stdin is not a terminal: pass --yes "
            f"to remove directory {name!r} without asking"
        )
    repository = await _open_existing(settings)
    try:
        registry = DirectoryRegistry(repository)
        directory = await registry.get(name)
        if directory is None:
            raise DirectoryError(f"there is no directory {name!r} (`scim directory list` shows them)")
        if not arguments.yes and not _confirmed(name, sys.stdin):
            _err("error: the name typed does not match: nothing was changed")
            return 1
        if not directory.disabled:
            await registry.set_disabled(name, True)
        # Until every instance has re-read the registry, one may still write to the directory.
        _err(f"Disabled directory {name}; waiting {CACHE_SECONDS:g} s until every instance refuses it ...")
        await asyncio.sleep(CACHE_SECONDS)
        _err(f"Deleting the rows of directory {name} ...")
        rows = repository.for_tenant(name)
        progress = _DeleteProgress()
        deleted = await rows.delete_directory_rows(progress)
        deleted += await rows.delete_directory_rows()  # a request still in flight at the first pass
        await registry.forget(name)
    finally:
        await repository.close()
    _out(f"Removed directory {name}: {deleted:,} rows deleted.")
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``directory`` and its actions on the ``python -m scim`` sub-parsers."""
    directory = commands.add_parser(
        "directory", help="add, list, rotate the token of, disable or remove named directories"
    )
    actions = directory.add_subparsers(dest="action", required=True)
    adding = actions.add_parser("add", help="create a directory: prints its Tenant URL and Secret Token once")
    adding.add_argument("name", help="3-40 of a-z 0-9 and '-', starting with a letter")
    adding.add_argument(
        "--entra-tenant-id", type=_guid, metavar="ID", help="also accept Entra-issued JWTs of this tenant"
    )
    adding.add_argument(
        "--schema-file", metavar="PATH", help="its schema extensions (default: SCIM_SCHEMA_FILE's)"
    )
    adding.add_argument(
        "--queue", type=_queue, metavar="NAME", help="its change-feed queue (default: the deployment's)"
    )
    adding.add_argument(
        "--base-url",
        metavar="URL",
        help="the endpoint's host, e.g. https://scim.example.com (for the Tenant URL)",
    )
    adding.add_argument("--json", action="store_true", help="print name, tenantUrl and secretToken as JSON")
    listing = actions.add_parser("list", help="every directory and its state")
    listing.add_argument("--json", action="store_true", help="one JSON object per directory")
    rotating = actions.add_parser("rotate-token", help="new Secret Token (the old one stays until --finish)")
    rotating.add_argument("name")
    rotating.add_argument("--finish", action="store_true", help="stop accepting the old token")
    rotating.add_argument("--json", action="store_true", help="print name and secretToken as JSON")
    for action, text in (("disable", "refuse every request (401), keep the data"), ("enable", "serve again")):
        actions.add_parser(action, help=text).add_argument("name")
    removing = actions.add_parser("remove", help="disable, delete all its data, then forget it")
    removing.add_argument("name")
    removing.add_argument("--yes", action="store_true", help="do not ask to confirm by typing the name")


def run(settings: Settings, arguments: argparse.Namespace) -> int:
    """Run a ``directory`` command; the exit status.

    Exit status 1 for a name already taken or a removal not confirmed (one ``error:`` line
    here); a :class:`~scim.storage.directories.DirectoryError` (a malformed or reserved name, no such
    directory, no rotation to finish, ``remove`` without a terminal or ``--yes``) and storage
    errors reach ``scim.__main__``, which prints its one ``error:`` line (exit status 2).
    """
    handlers = {
        "add": _add,
        "list": _list,
        "rotate-token": _rotate,
        "disable": _set_disabled,
        "enable": _set_disabled,
        "remove": _remove,
    }
    return asyncio.run(handlers[arguments.action](settings, arguments))
