"""The /Groups service: RFC 7644 operations with members kept as edges.

Members never live in the group row (DESIGN §5): a group of 50,000 members is
as cheap to read with ``excludedAttributes=members`` as an empty one, and a
membership PATCH writes only the edges it names. PATCH operations on
``members`` are taken out of the PatchOp here and applied through
``scim.service.membership``; every other operation goes through scim2-models.

Member-operation semantics (RFC 7644 §3.5.2, with Entra's forms):

* ``add`` ``members`` [values] — add them (adding a member twice is a no-op);
* ``remove`` ``members`` [values] — remove only those (Entra's form; an
  RFC-literal reading would remove everyone: MicrosoftDocs/azure-docs#30826);
* ``remove`` ``members[value eq "id"]`` — remove that one (``aadOptscim062020``);
* ``remove`` ``members`` without a value — remove all (RFC 7644 §3.5.2.2);
* ``replace`` ``members`` [values] — the members become exactly those;
* path-less ``add``/``replace`` with a ``members`` key — as with the path.

Member ids that match no user are skipped (logged), never stored; a member
sent with ``type: Group`` is refused (400): nested groups are not provisioned
by Entra (entra-scim-behavior §11) and a group must never become a user membership.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scim.model import entra
from scim.model.changes import Change
from scim.model.errors import (
    ConflictError,
    InvalidPathError,
    InvalidSyntaxError,
    InvalidValueError,
    NotFoundError,
    PreconditionFailedError,
)
from scim.model.limits import MAX_INDEXED_CHARS, check_member_count, check_patch_size
from scim.model.resources import GROUP, ResourceKind
from scim.service.membership import MemberRecord, Membership
from scim.service.operations import WRITE_ATTEMPTS, ResourceService, back_off, check_precondition
from scim.storage.repository import Repository, StoredResource

__all__ = ["GroupService", "MemberChanges", "split_member_operations"]

_PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
_SELECTED_MEMBER = re.compile(r'^\s*members\s*\[\s*value\s+eq\s+"((?:[^"\\]|\\.)*)"\s*\]\s*$', re.IGNORECASE)
_CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:group:"


@dataclass
class MemberChanges:
    """The net effect of a PATCH's member operations, in order."""

    add: dict[str, str | None] = field(default_factory=dict)
    """Member id → ``display`` sent with it (kept on the edge, RFC 7643 §4.2)."""
    remove: dict[str, None] = field(default_factory=dict)
    clear: bool = False

    def __bool__(self) -> bool:
        return bool(self.add or self.remove or self.clear)

    def adding(self, members: list[tuple[str, str | None]]) -> None:
        """Apply an ``add`` of (id, display) pairs."""
        for member, display in members:
            self.remove.pop(member, None)
            self.add[member] = display

    def removing(self, ids: list[str]) -> None:
        """Apply a ``remove`` of ``ids``."""
        for member in ids:
            self.add.pop(member, None)
            self.remove[member] = None

    def clearing(self) -> None:
        """Apply a ``remove`` of every member."""
        self.add.clear()
        self.remove.clear()
        self.clear = True


def _is_members(name: Any) -> bool:
    return isinstance(name, str) and name.strip().lower().removeprefix(_CORE_GROUP) == "members"


def _members(value: Any) -> list[tuple[str, str | None]]:
    """The (id, display) of a ``members`` value: ``[{"value": id, ...}, ...]`` (or one object)."""
    items = value if isinstance(value, list) else [value]
    members = []
    for item in items:
        member = item.get("value") if isinstance(item, dict) else None
        if not isinstance(member, str) or not member:
            raise InvalidValueError('Each member must be an object with a string "value" (the member id).')
        if isinstance(item, dict) and str(item.get("type", "")).lower() == "group":
            raise InvalidValueError(
                f"Member {member} is a Group: nested groups are not supported (Entra does not provision "
                "them); only users can be members."
            )
        display = item.get("display")
        if isinstance(display, str) and len(display) > MAX_INDEXED_CHARS:
            raise InvalidValueError(f"A member display is longer than {MAX_INDEXED_CHARS:,} characters.")
        members.append((member, display if isinstance(display, str) else None))
    check_member_count(len(members))
    return members


def _ids(members: list[tuple[str, str | None]]) -> list[str]:
    return [member for member, _ in members]


def _member_operation(op: str, path: Any, value: Any, changes: MemberChanges) -> bool:
    """Apply one operation to ``changes`` if it targets members; say whether it did."""
    if isinstance(path, str) and (selected := _SELECTED_MEMBER.match(path)):
        if op != "remove":
            raise InvalidPathError(f'"{op}" cannot target a filtered members path; use path "members".')
        changes.removing([selected.group(1).replace('\\"', '"')])
        return True
    if isinstance(path, str) and path.strip().lower().removeprefix(_CORE_GROUP).startswith("members"):
        if not _is_members(path):
            raise InvalidPathError(f'Unsupported members path {path!r}; use "members".')
        if op == "add":
            changes.adding(_members(value))
        elif op == "replace":
            changes.clearing()
            changes.adding(_members(value) if value is not None else [])
        elif value is None:
            changes.clearing()
        else:
            changes.removing(_ids(_members(value)))
        return True
    return False


def split_member_operations(body: Any) -> tuple[dict[str, Any], MemberChanges]:
    """Split a normalised PatchOp into its non-member operations and its member changes.

    Raises:
        InvalidSyntaxError: ``Operations`` is missing or not a list.
        InvalidValueError / InvalidPathError: A member operation is malformed.
    """
    if not isinstance(body, dict):
        raise InvalidSyntaxError("The body must be a PatchOp JSON object.")
    key = next((k for k in body if k.lower() == "operations"), None)
    operations = body.get(key) if key else None
    if not isinstance(operations, list) or not operations:
        raise InvalidValueError('A PatchOp needs a non-empty "Operations" list.')
    check_patch_size(body)
    changes = MemberChanges()
    others: list[Any] = []
    for operation in operations:
        op = operation.get("op") if isinstance(operation, dict) else None
        if not isinstance(op, str):
            others.append(operation)
            continue
        op = op.lower()
        path, value = operation.get("path"), operation.get("value")
        if path is None and isinstance(value, dict) and op in ("add", "replace"):
            members = [k for k in value if _is_members(k)]
            for name in members:
                _member_operation(op, "members", value[name], changes)
            rest = {k: v for k, v in value.items() if k not in members}
            if rest:
                others.append({**operation, "value": rest})
            continue
        if not _member_operation(op, path, value, changes):
            others.append(operation)
    return {**body, "schemas": body.get("schemas", [_PATCH_OP]), "Operations": others}, changes


def _take_members(body: Any) -> tuple[Any, list[tuple[str, str | None]] | None]:
    """Split a POST/PUT body into the group without members and its (id, display) members."""
    if not isinstance(body, dict):
        return body, None
    names = [k for k in body if _is_members(k)]
    if not names:
        return body, None
    value = body[names[0]]
    members = _members(value) if value not in (None, []) else []
    return {k: v for k, v in body.items() if k not in names}, members


def _entry(member: str, display: str | None) -> dict[str, str]:
    entry = {"value": member, "type": "User"}
    if display is not None:
        entry["display"] = display
    return entry


class GroupService(ResourceService):
    """Groups, with members as edges (see module docstring)."""

    def __init__(
        self,
        repository: Repository,
        *,
        membership: Membership,
        kind: ResourceKind = GROUP,
        **options: Any,
    ) -> None:
        super().__init__(kind, repository, **options)
        self._membership = membership

    async def expand(self, stored: StoredResource, wanted: Callable[[str], bool]) -> StoredResource:
        """Add ``members`` (1 round trip per 1,000) unless the response excludes them."""
        if "members" in stored.document or not wanted("members"):
            return stored
        members = await self._membership.members(stored.id)
        if not members:
            return stored
        entries = [_entry(member, display) for member, display in members]
        return dataclasses.replace(stored, document={**stored.document, "members": entries})

    def _filter_needs_expansion(self, text: str) -> bool:
        return "members" in text.lower()

    async def create(self, body: Any) -> StoredResource:
        """RFC 7644 §3.3: create the group, then add any members it was posted with."""
        group_body, members = _take_members(body)
        stored = await super().create(group_body)
        if not members:  # known empty: the response needs no read of member edges
            return dataclasses.replace(stored, document={**stored.document, "members": []})
        wanted = dict(members)
        group, skipped = await self._membership.change(stored, add=wanted, record=self._recorder(stored.id))
        added = [_entry(m, display) for m, display in wanted.items() if m not in skipped]
        return dataclasses.replace(group, document={**stored.document, "members": added})

    async def replace(self, resource_id: str, body: Any, *, if_match: str | None = None) -> StoredResource:
        """RFC 7644 §3.5.1: replace the attributes, and the members with those given (none if absent)."""
        group_body, members = _take_members(body)
        stored = await super().replace(resource_id, group_body, if_match=if_match)
        changes = MemberChanges()
        changes.clearing()
        changes.adding(members or [])
        return await self._change_members(resource_id, changes, if_match=None, current=stored)

    async def patch(self, resource_id: str, body: Any, *, if_match: str | None = None) -> StoredResource:
        """RFC 7644 §3.5.2: attribute operations via scim2-models, member operations as edges."""
        attributes, changes = split_member_operations(entra.normalize_patch(body))
        stored: StoredResource | None = None
        if attributes["Operations"]:
            stored = await super().patch(resource_id, attributes, if_match=if_match)
            if_match = None  # the precondition held for this request's first write
        if not changes:
            return stored if stored is not None else await self.get(resource_id)
        check_member_count(len(changes.add) + len(changes.remove))
        return await self._change_members(resource_id, changes, if_match=if_match, current=stored)

    async def _change_members(
        self,
        resource_id: str,
        changes: MemberChanges,
        *,
        if_match: str | None,
        current: StoredResource | None,
    ) -> StoredResource:
        """Apply member changes, re-reading the group when another writer got in first."""
        for attempt in range(WRITE_ATTEMPTS):
            if attempt:
                await back_off(attempt)
                current = None
            if current is None:
                current = await self.get(resource_id)
            if current.deleting:
                raise NotFoundError(f"Group {resource_id} is being deleted.")
            check_precondition(current, if_match)
            add, remove = dict(changes.add), list(changes.remove)
            if changes.clear:
                existing = dict(await self._membership.members(resource_id))
                remove = [m for m in existing if m not in add]
                add = {m: d for m, d in add.items() if m not in existing or existing[m] != d}
            if not add and not remove:
                return current
            try:
                group, _ = await self._membership.change(
                    current,
                    add=add,
                    remove=remove,
                    # "the members become exactly these" was computed from the members read
                    # after `current`: it holds only if no member write came in between
                    conditional=if_match is not None or changes.clear,
                    record=self._recorder(resource_id),
                )
            except PreconditionFailedError:
                if if_match is not None:
                    raise
                continue
            return dataclasses.replace(current, etag=group.etag, version=group.version)
        raise ConflictError(f"The group was changed by concurrent requests {WRITE_ATTEMPTS} times; retry.")

    def _recorder(self, group_id: str) -> MemberRecord:
        """The change record of one batch of member changes (``scim.model.changes``: ``members``)."""

        def record(version: int, added: tuple[str, ...], removed: tuple[str, ...], modified: str) -> Change:
            return Change.of(
                self.kind.name, group_id, "members", version, modified, added=added, removed=removed
            )

        return record

    async def _before_delete(self, current: StoredResource) -> StoredResource:
        """Flag the group *deleting*, then remove every membership (order: ``scim.service.membership``).

        The flag is written conditionally on the ETag the DELETE checked
        (``If-Match``), so a DELETE that answers 412 has removed nothing, and
        from then on member writes see the group as gone: the DELETE wins.
        """
        flagged = await self._repository.mark_deleting(self.kind.name, current)
        members = await self._membership.prepare_group_deletion(flagged)
        if members:
            await self._repository.delete_member_edges((current.id, m) for m in members)
            await self._membership.finish_group_deletion(current.id, members)
        return flagged
