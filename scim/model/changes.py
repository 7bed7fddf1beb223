"""Changes: each committed write as one record — the change-feed event and the audit entry.

A :class:`Change` is written by the storage module **in the same transaction**
as the change it describes (an *outbox* row beside the resource row), so a
change is never committed without its record and a record never describes a
change that did not commit. ``scim.feed.relay`` later publishes the event to a queue
and keeps the record as the audit entry.

Ordering: every committed write of a resource increments its ``meta.version``
counter by exactly one, under the resource row's ETag (``scim.service.operations``), and
its record carries that number as ``sequence``. A consumer therefore knows the
order of a resource's events and sees a gap when one is missing.

Who: the request that made the change is known here through a context
variable set by ``scim.web.api`` once the caller is authenticated (the principal
names the credential — ``secret-token-1`` or ``-2`` (the accepted tokens in
settings order), or ``entra-app:<appid>`` — never the token).

The event is a CloudEvents 1.0 structured JSON document (``docs/change-feed.md``)
with ``type`` ``scim.change.v1``: the ``v1`` is the schema version of ``data``.
"""

from __future__ import annotations

import json
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "EVENT_TYPE",
    "Actor",
    "Change",
    "changed_attributes",
    "current_actor",
    "timestamp",
]

EVENT_TYPE = "scim.change.v1"
"""CloudEvents ``type`` of every event; a breaking change of ``data`` gets a new one."""

OPERATIONS = ("create", "replace", "patch", "delete", "members")

NON_SENSITIVE = frozenset({"active", "userName", "displayName", "externalId"})
"""Attributes whose old and new values the audit entry keeps (others: names only)."""

_IGNORED = frozenset({"id", "meta", "schemas", "members", "groups"})


def timestamp(moment: datetime) -> str:
    """A sortable UTC time with microseconds: change records, audit keys, a group's membership time."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Actor:
    """Who made a change: the credential's name and the request id (never a secret)."""

    principal: str = "system"
    request_id: str = ""


SYSTEM = Actor()
"""The actor of changes made outside a request (repairs, tests)."""

current_actor: ContextVar[Actor] = ContextVar("scim_actor", default=SYSTEM)
"""The actor of the request being served (set by ``scim.web.api`` after authentication)."""


def _flatten(document: dict[str, Any]) -> dict[str, Any]:
    """Top-level attributes, with extension schemas' attributes as ``<urn>:<name>``."""
    flat: dict[str, Any] = {}
    for name, value in document.items():
        if name in _IGNORED:
            continue
        if name.startswith("urn:") and isinstance(value, dict):
            for sub, sub_value in value.items():
                flat[f"{name}:{sub}"] = sub_value
        else:
            flat[name] = value
    return flat


def changed_attributes(
    before: dict[str, Any] | None, after: dict[str, Any] | None
) -> tuple[tuple[str, ...], dict[str, list[Any]]]:
    """The names of the attributes that differ, and ``[old, new]`` of the non-sensitive ones."""
    old, new = _flatten(before or {}), _flatten(after or {})
    names = tuple(sorted(n for n in old.keys() | new.keys() if old.get(n) != new.get(n)))
    values = {n: [old.get(n), new.get(n)] for n in names if n in NON_SENSITIVE}
    return names, values


@dataclass(frozen=True)
class Change:
    """One committed change of one resource (see the module docstring).

    ``resource`` is the resource after the change as served (groups without
    ``members``), ``None`` for a delete or a membership change; ``added`` and
    ``removed`` are the member ids of a ``members`` change.
    """

    kind: str
    resource_id: str
    operation: str
    sequence: int
    time: str
    resource: dict[str, Any] | None = None
    attributes: tuple[str, ...] = ()
    values: dict[str, list[Any]] = field(default_factory=dict)
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    actor: Actor = field(default_factory=Actor)
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    truncated: bool = False
    """The resource was too large to keep in the record: consumers read it with a GET."""
    ignored: tuple[str, ...] = ()
    """Undeclared attributes the request carried and the endpoint ignored (``ignore`` mode)."""

    @classmethod
    def of(
        cls,
        kind: str,
        resource_id: str,
        operation: str,
        sequence: int,
        time: str,
        *,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
        added: tuple[str, ...] = (),
        removed: tuple[str, ...] = (),
        ignored: tuple[str, ...] = (),
    ) -> Change:
        """A change by the current request's actor, with the attributes that differ."""
        names, values = changed_attributes(before, after) if operation != "members" else ((), {})
        resource = None if after is None else {k: v for k, v in after.items() if k != "members"}
        return cls(
            kind, resource_id, operation, sequence, time, resource, names, values, added, removed,
            current_actor.get(), ignored=ignored,
        )  # fmt: skip

    def without_resource(self) -> Change:
        """A copy without the resource's values (for records over the row size limit)."""
        return replace(self, resource=None, truncated=True)

    @property
    def version(self) -> str:
        """The resource's ``meta.version`` after the change (RFC 7644 §3.14)."""
        return f'W/"{self.sequence}"'

    def to_json(self) -> str:
        """The stored form (outbox and audit rows); shallow, so the resource is never copied."""
        stored = {f.name: getattr(self, f.name) for f in fields(self)}
        stored["actor"] = {"principal": self.actor.principal, "request_id": self.actor.request_id}
        return json.dumps(stored, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Change:
        """Read the stored form back."""
        data = json.loads(text)
        data["actor"] = Actor(**data["actor"])
        data["attributes"] = tuple(data["attributes"])
        data["added"], data["removed"] = tuple(data["added"]), tuple(data["removed"])
        data["ignored"] = tuple(data.get("ignored", ()))
        return cls(**data)

    def event(self, source: str, *, include_resource: bool = True) -> dict[str, Any]:
        """The CloudEvents 1.0 structured event (``docs/change-feed.md``).

        ``include_resource=False`` leaves the resource out (``resource`` null,
        ``truncated`` true) for a queue message that would exceed its size limit.
        """
        data: dict[str, Any] = {
            "resourceType": self.kind,
            "id": self.resource_id,
            "operation": self.operation,
            "sequence": self.sequence,
            "version": self.version,
            "attributes": list(self.attributes),
        }
        if self.operation == "members":
            data["members"] = {"added": list(self.added), "removed": list(self.removed)}
            data["lastModified"] = self.time  # the group's meta.lastModified after the change
        elif self.operation != "delete":
            whole = include_resource and not self.truncated
            data["resource"] = self.resource if whole else None
            if not whole:
                data["truncated"] = True
        return {
            "specversion": "1.0",
            "id": self.event_id,
            "source": source,
            "type": EVENT_TYPE,
            "subject": f"{self.kind}s/{self.resource_id}",
            "time": self.time,
            "datacontenttype": "application/json",
            "sequence": f"{self.sequence:012d}",
            "data": data,
        }

    def audit(self, *, published: bool) -> dict[str, Any]:
        """The audit entry: who, what, when — attribute values only for non-sensitive ones."""
        entry: dict[str, Any] = {
            "time": self.time,
            "actor": self.actor.principal,
            "requestId": self.actor.request_id,
            "operation": self.operation,
            "resourceType": self.kind,
            "id": self.resource_id,
            "version": self.sequence,
            "attributes": list(self.attributes),
            "values": self.values,
            "outcome": "success",
            "eventId": self.event_id,
            "published": published,
        }
        if self.ignored:
            entry["ignored"] = list(self.ignored)
        if self.operation == "members":
            entry["membersAdded"], entry["membersRemoved"] = len(self.added), len(self.removed)
        return entry
