"""scim.storage.transactions sends the SDK's transactions byte for byte, and reads every answer as the SDK does."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.data.tables import TableTransactionError, UpdateMode

from scim.storage import transactions
from scim.storage.tables import connect


class Wire(SansIOHTTPPolicy[Any, Any]):
    """Keeps the body of every $batch request."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def on_request(self, request):
        if request.http_request.url.endswith("$batch"):
            body = request.http_request.body
            self.bodies.append(body if isinstance(body, bytes) else bytes(request.http_request.content))


def normalised(body: bytes) -> bytes:
    body = re.sub(rb"(batch|changeset)_[0-9a-f-]{36}", rb"\1_X", body)
    return re.sub(rb"(x-ms-date|Date): [^\r]+", rb"\1: D", body)


@pytest.fixture
async def table(storage_connection_string):
    wire = Wire()
    client = connect(storage_connection_string, "tx" + uuid.uuid4().hex[:12], per_retry_policies=[wire])
    await client.create_table()
    yield client, wire
    await client.delete_table()
    await client.close()


def operations(suffix: str) -> list[tuple[Any, ...]]:
    etag = "W/\"datetime'2020-01-01T00%3A00%3A00Z'\""
    return [
        ("create", {"PartitionKey": "p", "RowKey": f"a'b cé{suffix}", "x": "ü", "n": 3, "b": True, "d0": "x" * 40}),
        ("upsert", {"PartitionKey": "p", "RowKey": f"u{suffix}", "x": "2"}, {"mode": UpdateMode.REPLACE}),
        ("upsert", {"PartitionKey": "p", "RowKey": f"m{suffix}", "x": "3"}, {"mode": UpdateMode.MERGE}),
        ("update", {"PartitionKey": "p", "RowKey": f"v{suffix}", "v": 2}, {"mode": UpdateMode.MERGE}),
        ("delete", {"PartitionKey": "p", "RowKey": f"w{suffix}"}),
        ("update", {"PartitionKey": "p", "RowKey": f"x{suffix}"}, {"mode": UpdateMode.REPLACE, "etag": etag,
                                                                  "match_condition": MatchConditions.IfNotModified}),
    ]  # fmt: skip


async def test_the_body_is_the_sdks(table):
    client, wire = table
    with pytest.raises(TableTransactionError):
        await client.submit_transaction(operations(""))
    with pytest.raises(TableTransactionError):
        await transactions.submit(client, operations(""))
    sdk, ours = wire.bodies
    assert normalised(ours) == normalised(sdk)


@pytest.mark.parametrize(
    ("operations_of", "status", "index", "code"),
    [
        (lambda: [("create", {"PartitionKey": "p", "RowKey": "d"}), ("create", {"PartitionKey": "p", "RowKey": "c"})],
         409, 1, "EntityAlreadyExists"),
        (lambda: [("create", {"PartitionKey": "p", "RowKey": "d"}), ("delete", {"PartitionKey": "p", "RowKey": "zz"})],
         404, 1, "ResourceNotFound"),
        (lambda: operations("-2")[5:], 404, 0, "ResourceNotFound"),
    ],
)  # fmt: skip
async def test_failures_are_the_sdks(table, operations_of, status, index, code):
    client, _ = table
    await client.create_entity({"PartitionKey": "p", "RowKey": "c"})
    for submit in (client.submit_transaction, lambda ops: transactions.submit(client, ops)):
        with pytest.raises(TableTransactionError) as failed:
            await submit(operations_of())
        assert (failed.value.status_code, failed.value.index) == (status, index)
        assert str(getattr(failed.value.error_code, "value", failed.value.error_code)) == code
    assert [e["RowKey"] async for e in client.list_entities()] == ["c"]  # nothing of a failed transaction


async def test_success_answers_the_etag_of_each_operation(table):
    client, _ = table
    results = await transactions.submit(client, operations("-3")[:3])
    assert len(results) == 3 and all(r["etag"].startswith('W/"datetime') for r in results)
    merge = ("update", {"PartitionKey": "p", "RowKey": "u-3", "v": 2}, {"mode": UpdateMode.MERGE})
    results = await transactions.submit(client, [merge, ("delete", {"PartitionKey": "p", "RowKey": "m-3"})])
    assert results[0]["etag"].startswith('W/"datetime') and results[1] == {}
    stored = {e["RowKey"]: e for e in [e async for e in client.list_entities()]}
    assert stored["a'b cé-3"]["x"] == "ü" and stored["a'b cé-3"]["n"] == 3 and stored["a'b cé-3"]["b"] is True
    assert stored["u-3"]["v"] == 2 and stored["u-3"]["x"] == "2" and "m-3" not in stored
