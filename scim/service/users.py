"""The /Users service: RFC 7644 operations plus the user side of membership.

``User.groups`` (RFC 7643 §4.1.2, read-only) is read from the reverse edges
stored beside the user's row, in the same single read as the user
(``scim.service.membership``). Deleting a user removes it from every group first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from scim.model.resources import USER, ResourceKind
from scim.service.membership import Membership
from scim.service.operations import ResourceService
from scim.storage.repository import Repository, ReverseEdge, StoredResource

__all__ = ["UserService"]


class UserService(ResourceService):
    """Users, with ``groups`` derived from membership edges."""

    def __init__(
        self,
        repository: Repository,
        *,
        membership: Membership,
        kind: ResourceKind = USER,
        **options: Any,
    ) -> None:
        super().__init__(kind, repository, **options)
        self._membership = membership

    async def expand(self, stored: StoredResource, wanted: Callable[[str], bool]) -> StoredResource:
        """Add ``groups`` (``value`` and ``type: direct``) when the response carries it."""
        if not wanted("groups") or "groups" in stored.document:
            return stored
        if not stored.edges_known:  # came from a pushed-down scan: read the edges
            stored = await self.get(stored.id)
        if not stored.edges:
            return stored
        groups = await self._membership.groups_of(stored)
        if not groups:
            return stored
        entries = [{"value": group_id, "type": "direct"} for group_id in sorted(groups)]
        return dataclasses.replace(stored, document={**stored.document, "groups": entries})

    async def expand_all(
        self, stored: list[StoredResource], wanted: Callable[[str], bool]
    ) -> list[StoredResource]:
        """Expand a page: the edges of users from a pushed-down scan are read 7 users per query."""
        unknown = [item.id for item in stored if not item.edges_known] if wanted("groups") else []
        if unknown:
            edges = await self._repository.reverse_edges(self.kind.name, unknown)
            stored = [
                dataclasses.replace(item, edges=edges[item.id], edges_known=True)
                if item.id in edges
                else item
                for item in stored
            ]
        return [await self.expand(item, wanted) for item in stored]

    def _filter_needs_expansion(self, text: str) -> bool:
        return "groups" in text.lower()

    def _expansion_rows(self, before: StoredResource, after: StoredResource) -> int:
        """Reverse-edge rows read to expand ``before`` (none if they came with its row, already counted)."""
        return 0 if before.edges_known else len(after.edges)

    async def _before_delete(self, current: StoredResource) -> StoredResource:
        """Leave every group first (DESIGN §5: deleting a user costs O(its groups)).

        The user is flagged *deleting* so that, should the deletion stop half
        way, readers verify its remaining reverse edges instead of trusting them.
        """
        if not current.edges:
            return current  # nothing outside the partition; a concurrent add changes the ETag
        flagged = await self._repository.mark_deleting(self.kind.name, current)
        await self._membership.remove_user(flagged)
        return flagged


def _with_edges(item: StoredResource, edges: dict[str, tuple[ReverseEdge, ...]]) -> StoredResource:
    if item.id not in edges:
        return item
    return dataclasses.replace(item, edges=edges[item.id], edges_known=True)
