"""The service evaluates what storage leaves of a filter, and nothing else (the ``Repository.scan`` contract).

Table Storage always leaves the whole filter (push-down only narrows; its
tests run on Azurite in ``tests/integration/test_pushdown.py``). This checks
the other side of the port with a stand-in that serves rows from a list: a
backend that answers a filter exactly may return no residual, and the service
must then trust its rows rather than evaluate the filter again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from scim.model.resources import USER
from scim.service.operations import ResourceService
from scim.storage.repository import Scan, StoredResource

ROWS = [
    StoredResource(f"{i:08d}-0000-4000-8000-000000000000", {"schemas": [USER.schema], "userName": name}, "e")
    for i, name in enumerate(["amy@x.com", "ben@x.com", "bea@x.com"])
]


class ListedRows:
    """Serves ``ROWS`` for any scan and leaves ``residual`` (``"whole"``: the filter it was given)."""

    def __init__(self, residual: str | None) -> None:
        self.residual = residual
        self.filters: list[Any] = []

    def scan(self, kind: str, *, after: str | None = None, where: Any = None) -> Scan:
        self.filters.append(where)

        async def rows() -> AsyncIterator[StoredResource]:
            for row in ROWS:
                yield row

        return Scan(rows(), where if self.residual == "whole" else None)


@pytest.mark.parametrize(
    ("residual", "expected"),
    [("whole", ["bea@x.com", "ben@x.com"]), (None, ["amy@x.com", "bea@x.com", "ben@x.com"])],
)
async def test_the_service_evaluates_only_the_residual(residual, expected):
    storage = ListedRows(residual)
    service = ResourceService(USER, storage)  # type: ignore[arg-type]
    query = service.parse_query({"filter": 'userName sw "b"'})
    found = [stored.document["userName"] for stored in (await service.query(query)).resources]
    assert str(storage.filters[0]) == 'userName sw "b"', "the parsed filter reaches storage"
    assert sorted(found) == expected
