"""Example consumer of the change feed: keeps a SQLite copy of the directory up to date.

Reads the events (``docs/change-feed.md``) from the Azure Storage Queue the
endpoint publishes to — or, with ``--stdin``, JSON lines from
``python -m scim feed replay`` — and applies them to a SQLite file:

    users(id, version, resource)      groups(id, version, resource)
    members(group_id, user_id)        seen(event_id)

What every consumer of the feed must do, shown here:

- **Deduplicate** on the event ``id``: delivery is at least once.
- **Order** a resource's events by ``data.sequence`` (1, 2, 3, … per resource):
  an event at or below the stored version is a duplicate or stale and is
  dropped; one that skips a version waits until the missing one arrives (the
  queue does not guarantee order; the message becomes visible again).
- A user delete removes the user from every group; a group delete removes its
  memberships. ``members`` events are deltas; other events carry the resource.
- A ``truncated`` event (a resource too large for a queue message) is fetched
  with a GET when ``--tenant-url`` and ``SCIM_BEARER_TOKEN`` are given.

Usage::

    python examples/feed_consumer.py --db copy.sqlite --once           # drain the queue, then exit
    python examples/feed_consumer.py --db copy.sqlite --watch          # keep consuming
    python -m scim feed replay --since 7d | python examples/feed_consumer.py --db copy.sqlite --stdin
    python examples/feed_consumer.py --db copy.sqlite --dump           # print the copy as JSON

The queue comes from ``SCIM_STORAGE_CONNECTION_STRING`` (or, identity-based,
``SCIM_STORAGE_QUEUE_ENDPOINT`` with ``DefaultAzureCredential`` and the role
*Storage Queue Data Message Processor*) and ``SCIM_CHANGE_QUEUE`` (default
``scim-changes``), as for the endpoint. Without either storage setting, or when
the queue cannot be read, it prints one ``error:`` line and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, version INTEGER NOT NULL, resource TEXT);
CREATE TABLE IF NOT EXISTS groups (id TEXT PRIMARY KEY, version INTEGER NOT NULL, resource TEXT);
CREATE TABLE IF NOT EXISTS members (group_id TEXT, user_id TEXT, PRIMARY KEY (group_id, user_id));
CREATE TABLE IF NOT EXISTS seen (event_id TEXT PRIMARY KEY);
"""
TABLES = {"User": "users", "Group": "groups"}


class Copy:
    """The SQLite copy and the rules to apply an event to it."""

    def __init__(self, path: str, *, tenant_url: str | None = None, token: str | None = None) -> None:
        self.db = sqlite3.connect(path)
        self.db.executescript(SCHEMA)
        self.tenant_url, self.token = tenant_url, token

    def version(self, kind: str, resource_id: str) -> int:
        """The version of the resource in the copy (0 if never seen)."""
        row = self.db.execute(f"SELECT version FROM {TABLES[kind]} WHERE id = ?", (resource_id,)).fetchone()  # noqa: S608
        return int(row[0]) if row else 0

    def apply(self, event: dict[str, Any]) -> str:
        """Apply one event; ``applied``, ``duplicate`` (or stale) or ``early`` (a version is missing)."""
        if self.db.execute("SELECT 1 FROM seen WHERE event_id = ?", (event["id"],)).fetchone():
            return "duplicate"
        data = event["data"]
        kind, resource_id, sequence = data["resourceType"], data["id"], int(data["sequence"])
        current = self.version(kind, resource_id)
        if sequence <= current:
            return "duplicate"
        if sequence > current + 1:
            return "early"
        with self.db:  # one SQLite transaction per event
            self._apply(kind, resource_id, sequence, data)
            self.db.execute("INSERT INTO seen VALUES (?)", (event["id"],))
        return "applied"

    def _apply(self, kind: str, resource_id: str, sequence: int, data: dict[str, Any]) -> None:
        table = TABLES[kind]
        operation = data["operation"]
        if operation == "delete":
            tombstone = f"UPDATE {table} SET version = ?, resource = NULL WHERE id = ?"  # noqa: S608 - fixed names
            self.db.execute(tombstone, (sequence, resource_id))
            column = "user_id" if kind == "User" else "group_id"
            self.db.execute(f"DELETE FROM members WHERE {column} = ?", (resource_id,))  # noqa: S608
            return
        if operation == "members":
            row = self.db.execute("SELECT resource FROM groups WHERE id = ?", (resource_id,)).fetchone()
            group = json.loads(row[0]) if row and row[0] else {}
            group.setdefault("meta", {})["lastModified"] = data["lastModified"]
            self.db.execute(
                "UPDATE groups SET version = ?, resource = ? WHERE id = ?",
                (sequence, json.dumps(group), resource_id),
            )
            deleted = {u for (u,) in self.db.execute("SELECT id FROM users WHERE resource IS NULL")}
            self.db.executemany(  # a user deleted meanwhile is no member (its delete may arrive first)
                "INSERT OR IGNORE INTO members VALUES (?, ?)",
                [(resource_id, u) for u in data["members"]["added"] if u not in deleted],
            )
            self.db.executemany(
                "DELETE FROM members WHERE group_id = ? AND user_id = ?",
                [(resource_id, u) for u in data["members"]["removed"]],
            )
            return
        resource = data.get("resource")
        if resource is None:  # truncated: too large for a queue message
            resource = self._fetch(kind, resource_id)
        if kind == "Group" and operation != "create":
            row = self.db.execute("SELECT resource FROM groups WHERE id = ?", (resource_id,)).fetchone()
            kept = json.loads(row[0]).get("meta", {}).get("lastModified", "") if row and row[0] else ""
            if kept > resource.get("meta", {}).get("lastModified", ""):  # a later membership change
                resource["meta"]["lastModified"] = kept
        self.db.execute(
            f"INSERT INTO {table} (id, version, resource) VALUES (?, ?, ?) "  # noqa: S608
            "ON CONFLICT(id) DO UPDATE SET version = excluded.version, resource = excluded.resource",
            (resource_id, sequence, json.dumps(resource)),
        )

    def _fetch(self, kind: str, resource_id: str) -> dict[str, Any]:
        if not (self.tenant_url and self.token):
            raise SystemExit(
                f"{kind} {resource_id} was too large for the queue: give --tenant-url to fetch it"
            )
        request = urllib.request.Request(  # noqa: S310 - the operator's Tenant URL
            f"{self.tenant_url}/{kind}s/{resource_id}", headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            resource: dict[str, Any] = json.load(response)
        for name in ("groups", "members"):
            resource.pop(name, None)
        resource.get("meta", {}).pop("location", None)
        resource.get("meta", {}).pop("version", None)
        return resource

    def dump(self) -> dict[str, Any]:
        """The copy: live users and groups (with member ids), by id."""
        members: dict[str, list[str]] = {}
        for group_id, user_id in self.db.execute("SELECT group_id, user_id FROM members ORDER BY user_id"):
            members.setdefault(group_id, []).append(user_id)
        copy: dict[str, Any] = {"Users": {}, "Groups": {}}
        for resource_id, version, text in self.db.execute("SELECT id, version, resource FROM users"):
            if text:
                copy["Users"][resource_id] = {"version": version, "resource": json.loads(text)}
        for resource_id, version, text in self.db.execute("SELECT id, version, resource FROM groups"):
            if text:
                copy["Groups"][resource_id] = {
                    "version": version, "resource": json.loads(text), "members": members.get(resource_id, []),
                }  # fmt: skip
        return copy


def consume(copy: Copy, events: Iterable[tuple[dict[str, Any], Any]], ack: Any) -> tuple[int, int]:
    """Apply events, acknowledging each applied or duplicate one; (applied, still waiting)."""
    early: list[tuple[dict[str, Any], Any]] = []
    applied = 0
    for event, handle in events:
        outcome = copy.apply(event)
        if outcome == "early":
            early.append((event, handle))
            continue
        applied += outcome == "applied"
        ack(handle)
        progressed = True
        while progressed:  # an applied event may unblock held ones
            progressed = False
            for held in list(early):
                if copy.apply(held[0]) != "early":
                    early.remove(held)
                    ack(held[1])
                    applied, progressed = applied + 1, True
    return applied, len(early)


def queue_events(queue: Any) -> Iterator[tuple[dict[str, Any], Any]]:
    """Every message currently visible, with its handle (not deleted until acknowledged)."""
    while True:
        batch = list(queue.receive_messages(max_messages=32, visibility_timeout=60))
        if not batch:
            return
        for message in batch:
            yield json.loads(message.content), message


def main(argv: list[str] | None = None) -> int:
    """Run the consumer (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", required=True, help="SQLite file of the copy")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--once", action="store_true", help="drain the queue, then exit")
    source.add_argument("--watch", action="store_true", help="keep consuming (Ctrl-C stops)")
    source.add_argument("--stdin", action="store_true", help="read JSON lines (python -m scim feed replay)")
    source.add_argument("--dump", action="store_true", help="print the copy as JSON and exit")
    parser.add_argument("--tenant-url", help="to fetch resources too large for a queue message")
    arguments = parser.parse_args(argv)
    connection = os.environ.get("SCIM_STORAGE_CONNECTION_STRING", "").strip()
    endpoint = os.environ.get("SCIM_STORAGE_QUEUE_ENDPOINT", "").strip()  # https://<account>.queue.core...
    if not (arguments.dump or arguments.stdin or connection or endpoint):
        return fail(
            "set SCIM_STORAGE_CONNECTION_STRING (or, identity-based, SCIM_STORAGE_QUEUE_ENDPOINT) "
            "to read the change queue, or give --stdin or --dump"
        )
    copy = Copy(arguments.db, tenant_url=arguments.tenant_url, token=os.environ.get("SCIM_BEARER_TOKEN"))
    if arguments.dump:
        print(json.dumps(copy.dump(), indent=2, sort_keys=True))
        return 0
    if arguments.stdin:
        lines = ((json.loads(line), None) for line in sys.stdin if line.strip())
        applied, waiting = consume(copy, lines, lambda _: None)
        print(f"applied {applied} event(s); {waiting} wait for a missing version", file=sys.stderr)
        return 0
    from azure.core.exceptions import AzureError

    name = os.environ.get("SCIM_CHANGE_QUEUE", "scim-changes")
    try:
        queue = open_queue(name, connection, endpoint)
        while True:
            applied, waiting = consume(copy, queue_events(queue), queue.delete_message)
            if applied or waiting:
                print(f"applied {applied} event(s); {waiting} wait for a missing version", file=sys.stderr)
            if not arguments.watch:
                return 0
            time.sleep(2)
    except ValueError as error:  # the SDK's "Connection string is either blank or malformed."
        return fail(f"SCIM_STORAGE_CONNECTION_STRING: {error}")
    except AzureError as error:
        lines = str(error).strip().splitlines() or [type(error).__name__]
        return fail(f"cannot read queue {name}: {lines[0][:200]}")
    except KeyboardInterrupt:  # how --watch is stopped
        return 0


def fail(message: str) -> int:
    """One ``error:`` line on stderr; exit status 2 (bad or unusable settings)."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def open_queue(name: str, connection: str, endpoint: str) -> Any:
    """The queue client: by connection string, else by identity (``DefaultAzureCredential``)."""
    from azure.core.exceptions import HttpResponseError, ResourceExistsError
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

    codecs: dict[str, Any] = {
        "message_encode_policy": TextBase64EncodePolicy(),
        "message_decode_policy": TextBase64DecodePolicy(),
    }
    if connection:
        queue = QueueClient.from_connection_string(connection, name, **codecs)
    else:  # identity-based: Storage Queue Data Message Processor on the queue (az login, managed identity)
        from azure.identity import DefaultAzureCredential

        queue = QueueClient(endpoint, name, credential=DefaultAzureCredential(), **codecs)
    try:
        queue.create_queue()  # the relay creates it on its first event; a consumer may start first
    except (ResourceExistsError, HttpResponseError):
        pass  # exists, or no right to create it (identity-based: the deployment created it)
    return queue


if __name__ == "__main__":
    sys.exit(main())
