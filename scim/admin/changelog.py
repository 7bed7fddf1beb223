"""The ``audit`` and ``feed`` commands of ``python -m scim``: read the audit trail, run and replay the feed.

- ``audit`` lists recorded changes (who, what, when) as a table or JSON lines,
  filtered by time, resource type and id, actor, operation and attribute — e.g.
  *who disabled this user, and when*:
  ``python -m scim audit --resource <id> --attribute active``;
  ``audit prune`` deletes records older than ``SCIM_AUDIT_RETENTION_DAYS``.
- ``feed relay`` runs the relay once (or ``--watch`` every few seconds) — what the
  timer trigger does in Azure.
- ``feed replay`` re-sends the recorded events since a point in time, in order,
  to a queue (``--queue``, e.g. one for a consumer that fell behind) or to stdout
  as JSON lines. Replayed events keep their ids: consumers deduplicate as usual.

Storage settings come from the same ``SCIM_*`` variables as the endpoint. A table
that does not exist is an error (:class:`MissingTableError`), not an empty
directory: reads alone never create it, so a mistyped ``SCIM_TABLE_NAME`` would
otherwise look like a clean, empty trail.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from scim.admin.cli import parse_time, table, time_argument
from scim.admin.directories import directory_option
from scim.config import ConfigurationError, Settings
from scim.feed.relay import KINDS, Relay, message_of, source_of
from scim.model.changes import OPERATIONS, Change, timestamp
from scim.model.errors import ScimError
from scim.storage.repository import Repository
from scim.storage.tables import TableRepository, open_repository

__all__ = [
    "MissingTableError",
    "QueueUnavailableError",
    "add_commands",
    "open_existing",
    "run",
    "storage_location",
]

DEVELOPMENT_TABLE_ENDPOINT = "http://127.0.0.1:10002/devstoreaccount1"
"""Where ``UseDevelopmentStorage=true`` points (Microsoft Learn: *Configure Azure Storage connection
strings*, "Connect to the emulator account using the shortcut")."""


class MissingTableError(ConfigurationError):
    """The table the settings name does not exist at the storage they name."""


class QueueUnavailableError(Exception):
    """``feed replay --queue``: the queue refused or could not be reached; the message says which and why."""


def storage_location(settings: Settings) -> tuple[str, str]:
    """The table endpoint the settings reach, and the setting that names it; never a secret.

    From the connection string: its ``TableEndpoint``, the emulator's for
    ``UseDevelopmentStorage=true``, else the one derived from ``AccountName``
    and ``EndpointSuffix`` (Microsoft Learn: *Configure Azure Storage
    connection strings*); without one, ``SCIM_STORAGE_TABLE_ENDPOINT``.
    """
    if not settings.storage_connection_string:
        return settings.storage_table_endpoint, "SCIM_STORAGE_TABLE_ENDPOINT"
    pairs: dict[str, str] = {}
    for part in settings.storage_connection_string.split(";"):
        key, _, value = part.partition("=")
        pairs[key.strip().lower()] = value.strip()
    if pairs.get("usedevelopmentstorage", "").lower() == "true":
        endpoint = DEVELOPMENT_TABLE_ENDPOINT
    elif pairs.get("tableendpoint"):
        endpoint = pairs["tableendpoint"]
    else:
        scheme = pairs.get("defaultendpointsprotocol") or "https"
        suffix = pairs.get("endpointsuffix") or "core.windows.net"
        endpoint = f"{scheme}://{pairs.get('accountname', '')}.table.{suffix}"
    return endpoint.rstrip("/"), "SCIM_STORAGE_CONNECTION_STRING"


async def open_existing(settings: Settings) -> TableRepository:
    """The settings' repository, once one round trip has shown that its table exists.

    Raises:
        MissingTableError: The table does not exist (the message names the table and where).
        ScimError: Storage failed (unreachable, refused the credentials…); the cause is chained.
    """
    repository = open_repository(settings)
    try:
        exists = await repository.table_exists()
    except BaseException:
        await repository.close()
        raise
    if not exists:
        await repository.close()
        endpoint, setting = storage_location(settings)
        raise MissingTableError(
            f"table {settings.table_name} does not exist at {endpoint} ({setting}): check SCIM_TABLE_NAME; "
            "the endpoint creates its table on the first write, so one that has served none has no table yet"
        )
    return repository


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def recorded(
    repository: Repository, *, since: str, until: str, kinds: Sequence[str] = KINDS
) -> list[tuple[Change, bool]]:
    """Every recorded change in the time range, oldest first (ties in version order)."""
    found = [
        item for kind in kinds async for item in repository.audit_records(kind, since=since, until=until)
    ]
    return sorted(found, key=lambda item: (item[0].time, item[0].resource_id, item[0].sequence))


def _matches(change: Change, arguments: argparse.Namespace) -> bool:
    return (
        (not arguments.resource or change.resource_id == arguments.resource)
        and (not arguments.actor or arguments.actor in change.actor.principal)
        and (not arguments.operation or change.operation == arguments.operation)
        and (not arguments.attribute or arguments.attribute in change.attributes)
    )


def _changed(change: Change) -> str:
    if change.operation == "members":
        return f"members +{len(change.added)} -{len(change.removed)}"
    parts = [
        f"{name}: {json.dumps(change.values[name][0])}→{json.dumps(change.values[name][1])}"
        if name in change.values and change.operation not in ("create", "delete")
        else name
        for name in change.attributes
    ]
    text = ", ".join(parts)
    return text if len(text) <= 80 else text[:77] + "..."


def _window(arguments: argparse.Namespace) -> tuple[str, str]:
    since = timestamp(parse_time(arguments.since))
    until = timestamp(parse_time(arguments.until)) if arguments.until else "~"
    return since, until


async def audit(settings: Settings, arguments: argparse.Namespace) -> int:
    """List recorded changes."""
    repository = await open_existing(settings)
    try:
        since, until = _window(arguments)
        kinds = [arguments.type] if arguments.type else list(KINDS)
        items = await recorded(repository, since=since, until=until, kinds=kinds)
    finally:
        await repository.close()
    items = [(c, p) for c, p in items if _matches(c, arguments)]
    if arguments.json:
        for change, published in items:
            print(json.dumps(change.audit(published=published)))
        return 0
    if not items:
        _err(f"No recorded change since {arguments.since} for these filters.")
        return 0
    rows = [
        [c.time[:23] + "Z", c.actor.principal, c.operation, c.kind, c.resource_id, str(c.sequence),
         _changed(c), c.actor.request_id, "yes" if p else "pending"]
        for c, p in items
    ]  # fmt: skip
    print(
        table(
            ["time", "actor", "operation", "type", "id", "version", "changed", "request id", "published"],
            rows,
        )
    )
    _err(f"{len(items)} change(s).")
    return 0


async def prune(settings: Settings, arguments: argparse.Namespace) -> int:
    """Delete audit records older than the retention."""
    days = arguments.days if arguments.days is not None else settings.audit_retention_days
    if not days:
        _err("Retention is 0 (keep forever): nothing to prune.")
        return 0
    repository = await open_existing(settings)
    try:
        pruned = await Relay(repository, None, source=source_of(settings.tenant), retention_days=days).prune()
    finally:
        await repository.close()
    print(f"Pruned {pruned} audit record(s) older than {days} days.")
    return 0


async def relay(settings: Settings, arguments: argparse.Namespace) -> int:
    """Run the relay once, or every ``--watch`` seconds until Ctrl-C."""
    from scim.storage.queue import open_publisher

    repository = open_repository(settings)
    publisher = open_publisher(settings)
    where = f"queue {settings.change_queue}" if publisher else "no queue (SCIM_CHANGE_QUEUE=off): audit only"
    if arguments.watch:  # once, the report line follows at once (and an error is the only line)
        _err(f"Relaying changes of table {settings.table_name} to {where} every {arguments.watch:g} s ...")
    feed = Relay(
        repository, publisher, source=source_of(settings.tenant), retention_days=settings.audit_retention_days
    )
    try:
        while True:
            report = await feed.drain()
            _err(
                f"{datetime.now(UTC):%H:%M:%S} published {report.published}, recorded {report.recorded}, "
                f"waiting {report.waiting}, pruned {report.pruned}"
                + ("" if arguments.watch else f" (table {settings.table_name}, {where})")
            )
            if not arguments.watch:
                return 1 if report.waiting else 0
            await asyncio.sleep(arguments.watch)
    finally:
        await repository.close()
        if publisher is not None:
            await publisher.close()


async def replay(settings: Settings, arguments: argparse.Namespace) -> int:
    """Re-send recorded events since a time, oldest first, to a queue or stdout."""
    repository = await open_existing(settings)
    try:
        since, until = _window(arguments)
        items = await recorded(repository, since=since, until=until)
    finally:
        await repository.close()
    source = source_of(settings.tenant)
    if not arguments.queue:
        for change, _ in items:
            print(message_of(change, source))
    else:
        from scim.storage.queue import open_publisher

        publisher = open_publisher(dataclasses.replace(settings, change_queue=arguments.queue))
        assert publisher is not None  # noqa: S101 - a queue name was given
        try:
            for position, (change, _) in enumerate(items, 1):
                await publisher.send(message_of(change, source))
                if position % 100 == 0:
                    _err(f"... {position} of {len(items)} events replayed")
        except ScimError as error:
            cause = error.__cause__
            why = f" ({str(cause).strip().splitlines()[0][:200]})" if cause is not None and str(cause) else ""
            raise QueueUnavailableError(
                f"{error.detail.rstrip('.')}{why}: {position - 1} of {len(items)} event(s) were replayed "
                f"to queue {arguments.queue}; check SCIM_STORAGE_CONNECTION_STRING (its QueueEndpoint) "
                "or SCIM_STORAGE_QUEUE_ENDPOINT"
            ) from error
        finally:
            await publisher.close()
    _err(
        f"Replayed {len(items)} event(s) since {since}"
        + (f" to queue {arguments.queue}." if arguments.queue else ".")
    )
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``audit`` and ``feed`` on the ``python -m scim`` sub-parsers."""
    auditing = commands.add_parser("audit", help="who changed what, when (the audit trail)")
    auditing.add_argument("action", nargs="?", choices=["list", "prune"], default="list")
    auditing.add_argument(
        "--since", default="7d", type=time_argument, help="30m, 24h, 7d or an ISO time (default 7d)"
    )
    auditing.add_argument("--until", type=time_argument, help="ISO time or 30m/24h/7d ago")
    auditing.add_argument("--type", choices=KINDS, help="resource type")
    auditing.add_argument("--resource", metavar="ID", help="resource id")
    auditing.add_argument("--actor", help="credential name, e.g. secret-token-1 or entra-app:<appid>")
    auditing.add_argument("--operation", choices=OPERATIONS)
    auditing.add_argument("--attribute", metavar="NAME", help="changes of this attribute, e.g. active")
    auditing.add_argument(
        "--days", type=int, help="prune: retention in days (default SCIM_AUDIT_RETENTION_DAYS)"
    )
    auditing.add_argument("--json", action="store_true", help="one JSON object per change")
    directory_option(auditing)

    feed = commands.add_parser("feed", help="run the change-feed relay, or replay recorded events")
    actions = feed.add_subparsers(dest="action", required=True)
    relaying = actions.add_parser("relay", help="publish pending changes (once, or --watch)")
    relaying.add_argument("--watch", type=float, metavar="SECONDS", help="keep relaying every SECONDS")
    replaying = actions.add_parser("replay", help="re-send recorded events since a time, in order")
    replaying.add_argument("--since", required=True, type=time_argument, help="30m, 24h, 7d or an ISO time")
    replaying.add_argument("--until", type=time_argument, help="ISO time or 30m/24h/7d ago")
    replaying.add_argument("--queue", help="send to this queue (else JSON lines on stdout)")
    for parser in (relaying, replaying):
        directory_option(parser)


def run(settings: Settings, arguments: argparse.Namespace) -> int:
    """Run an ``audit`` or ``feed`` command.

    Ctrl-C is how ``feed relay --watch`` is stopped (exit status 0); it interrupts
    any other command (``KeyboardInterrupt`` reaches ``scim.__main__.cli``: 130).
    """
    if arguments.command == "audit":
        handler = prune if arguments.action == "prune" else audit
    else:
        handler = relay if arguments.action == "relay" else replay
    try:
        return asyncio.run(handler(settings, arguments))
    except KeyboardInterrupt:
        if handler is relay and arguments.watch:
            _err("Stopped.")
            return 0
        raise
