"""``python -m scim export`` / ``import`` against Azurite (issue 16, item 4).

One directory is built per module — 1,000 users, a 1,000-member group, users
with the enterprise extension and a manager, a deleted user, audit rows (a
relay ran) and pending outbox rows (writes after it) — and exported once, with
and without the audit trail. Each test imports into fresh tables: every GET is
identical, ``check`` is clean, the change feed is unaffected, every EDM type is
restored exactly, and a non-empty target, a truncated or an altered file is
refused with nothing written.

Throughput on this machine is printed by ``test_import_restores_every_get_exactly``
(run it with ``-s``) and quoted in ``docs/operations.md``.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.data.tables import EdmType, EntityProperty

from scim.admin.backup import BackupError, Progress, export_directory, import_directory, verify
from scim.feed.relay import Relay
from scim.model.resources import build_kinds
from scim.model.schemafile import load_schema_file
from scim.service.consistency import check
from scim.storage.tables import TableRepository, connect
from scim.web.api import ScimApi
from tests.integration.conftest import RoundTrips, ScimClient, Store, make_settings
from tests.integration.test_groups_entra import create_group, members_of
from tests.integration.test_users_entra import ENTERPRISE, create, entra_user, patch

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
USERS = 1_000
SOURCE = "urn:scim:tenant:default"


class Collector:
    """A publisher keeping what the relay sends."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    async def send(self, message: str) -> None:
        self.messages.append(message)


@asynccontextmanager
async def fresh_table(connection_string: str, *, policies: list[Any] | None = None) -> AsyncIterator[Store]:
    """A table name nobody uses (not created: import creates it), deleted afterwards."""
    name = "bk" + uuid.uuid4().hex[:16]
    client = connect(connection_string, name, per_retry_policies=policies or [])
    try:
        yield Store(TableRepository(client), RoundTrips(), name, connection_string)
    finally:
        await client.delete_table()
        await client.close()


def client_of(store: Store) -> ScimClient:
    return ScimClient(ScimApi(make_settings(store), store.repository))


async def raw_rows(store: Store) -> list[dict[str, Any]]:
    """Every row of the table as the SDK reads it (keys and properties, no metadata)."""
    client = connect(store.connection_string, store.table_name)
    try:
        return [dict(entity) async for entity in client.list_entities()]
    finally:
        await client.close()


async def export_bytes(store: Store, *, audit: bool, tenant: str = "default") -> bytes:
    out = io.BytesIO()
    await export_directory(
        store.repository, out, table=store.table_name, tenant=tenant, audit=audit, progress=Progress("", None)
    )
    return out.getvalue()


async def import_bytes(store: Store, data: bytes, **options: Any) -> Any:
    return await import_directory(
        store.repository,
        io.BytesIO(data),
        name="the export",
        table=store.table_name,
        tenant=options.pop("tenant", "default"),
        progress=options.pop("progress", Progress("", None)),
        **options,
    )


def row_lines(data: bytes) -> list[bytes]:
    """The row lines of an export (without its header and trailer)."""
    return data.splitlines(keepends=True)[1:-1]


@dataclass
class Directory:
    store: Store
    scim: ScimClient
    users: list[str]
    group: str
    small_group: str
    deleted: str
    managed: list[str]
    exported: bytes
    """The export with the audit trail."""
    exported_lean: bytes
    """The export without it."""
    pending_before: list[Any]


@pytest.fixture(scope="module")
async def directory(storage_connection_string: str) -> AsyncIterator[Directory]:
    async with fresh_table(storage_connection_string) as store:
        await store.repository.ensure_table()
        scim = client_of(store)
        gate = asyncio.Semaphore(16)

        async def new_user(n: int) -> str:
            async with gate:
                response = await scim.post("/Users", entra_user(f"person{n:04d}@contoso.com"))
                assert response.status == 201, response.json()
                return str(response.json()["id"])

        users = list(await asyncio.gather(*(new_user(n) for n in range(USERS))))
        group = (await create_group(scim, displayName="Everyone"))["id"]
        for start in range(0, USERS, 100):  # Entra's batches: 100 members per PATCH
            add = patch({"op": "Add", "path": "members", "value": members_of(*users[start : start + 100])})
            assert (await scim.patch(f"/Groups/{group}", add)).status == 204
        boss = await create(scim, **{ENTERPRISE: {"department": "Board", "employeeNumber": "1"}})
        managed = [boss["id"]]
        for n in range(3):
            report = await create(scim, **{ENTERPRISE: {"department": "Sales", "employeeNumber": f"10{n}"}})
            manager = patch({"op": "Add", "path": f"{ENTERPRISE}:manager", "value": boss["id"]})
            assert (await scim.patch(f"/Users/{report['id']}", manager)).status == 200
            managed.append(report["id"])
        doomed = await create(scim)
        small = (await create_group(scim, displayName="Board"))["id"]
        add = patch({"op": "Add", "path": "members", "value": members_of(doomed["id"], *managed)})
        assert (await scim.patch(f"/Groups/{small}", add)).status == 204
        # Everything so far is published and moves to the audit trail ...
        report = await Relay(store.repository, Collector(), source=SOURCE).drain()
        assert report.recorded > USERS
        # ... and these changes stay pending in the outbox.
        disable = patch({"op": "Replace", "path": "active", "value": False})
        assert (await scim.patch(f"/Users/{users[7]}", disable)).status == 200
        assert (await scim.delete(f"/Users/{doomed['id']}")).status == 204
        rename = patch({"op": "Replace", "path": "displayName", "value": "The Board"})
        assert (await scim.patch(f"/Groups/{small}", rename)).status == 204
        pending = [
            p.change for kind in ("User", "Group") for p in await store.repository.pending_changes(kind)
        ]
        exported = await export_bytes(store, audit=True)
        exported_lean = await export_bytes(store, audit=False)
        yield Directory(
            store, scim, users, group, small, doomed["id"], managed, exported, exported_lean, pending
        )


async def all_pages(scim: ScimClient, resource: str) -> list[Any]:
    """Every list page as JSON: the first and a deep ``startIndex`` page, then a cursor walk (RFC 9865)."""
    pages = [(await scim.get(f"/{resource}?startIndex={start}&count=50")).json() for start in (1, 451)]
    cursor = ""
    while cursor is not None:
        page = (await scim.get(f"/{resource}?cursor={cursor}&count=50")).json()
        assert page["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], page
        pages.append(page)
        cursor = page.get("nextCursor")
    return pages


async def answers(scim: ScimClient, paths: list[str]) -> list[tuple[int, str | None, Any]]:
    """(status, ETag, JSON) of a GET of each path, 16 at a time."""
    gate = asyncio.Semaphore(16)

    async def one(path: str) -> tuple[int, str | None, Any]:
        async with gate:
            response = await scim.get(path)
            return response.status, response.headers.get("ETag"), response.json()

    return list(await asyncio.gather(*(one(path) for path in paths)))


# -- export --------------------------------------------------------------------------


async def test_the_export_holds_every_row_of_the_table(directory):
    lines = directory.exported.splitlines()
    header, trailer = json.loads(lines[0]), json.loads(lines[-1])["trailer"]
    assert header["format"] == "scim-table-export" and header["version"] == 1
    assert header["tenant"] == "default" and header["table"] == directory.store.table_name
    assert header["audit"] is True
    rows = [json.loads(line) for line in lines[1:-1]]
    stored = await raw_rows(directory.store)
    assert sorted((r["PartitionKey"], r["RowKey"]) for r in rows) == sorted(
        (r["PartitionKey"], r["RowKey"]) for r in stored
    )
    assert trailer["rows"] == len(rows) == len(stored)
    by_type: dict[str, int] = {}
    for row in stored:
        by_type[row["t"]] = by_type.get(row["t"], 0) + 1
    names = {
        "r": "resources",
        "i": "index",
        "m": "members",
        "e": "reverse-edges",
        "o": "outbox",
        "a": "audit",
    }
    assert trailer["types"] == {names[t]: n for t, n in sorted(by_type.items())}
    assert by_type["m"] == by_type["e"] == USERS + len(directory.managed)  # the deleted user left both groups
    assert by_type["o"] == len(directory.pending_before) >= 3
    # The version counter travels with the row: it is meta.version.
    disabled = next(r for r in rows if r["RowKey"] == f"res:{directory.users[7]}")
    got = (await directory.scim.get(f"/Users/{directory.users[7]}")).json()
    assert got["meta"]["version"] == f'W/"{disabled["v"]}"' == 'W/"2"'
    assert not any(r["RowKey"] == f"res:{directory.deleted}" for r in rows)


async def test_without_audit_no_audit_row_is_exported(directory):
    lean = [json.loads(line) for line in row_lines(directory.exported_lean)]
    full = [json.loads(line) for line in row_lines(directory.exported)]
    audit = [r for r in full if r["RowKey"].startswith("aud:")]
    assert len(audit) > USERS and all(r["t"] == "a" for r in audit)
    assert not any(r["RowKey"].startswith("aud:") or r.get("t") == "a" for r in lean)
    assert [r for r in full if not r["RowKey"].startswith("aud:")] == lean
    assert json.loads(directory.exported_lean.splitlines()[0])["audit"] is False
    assert "audit" not in json.loads(directory.exported_lean.splitlines()[-1])["trailer"]["types"]


async def test_exporting_changes_nothing(directory):
    pending = [
        p.change for kind in ("User", "Group") for p in await directory.store.repository.pending_changes(kind)
    ]
    assert pending == directory.pending_before  # still pending: an export publishes nothing


# -- import ----------------------------------------------------------------------------


async def test_import_restores_every_get_exactly(directory, store, capsys):
    started = time.perf_counter()
    again = await export_bytes(directory.store, audit=True)
    export_seconds = time.perf_counter() - started
    rows = len(row_lines(again))
    started = time.perf_counter()
    header, written = await import_bytes(store, directory.exported)
    import_seconds = time.perf_counter() - started
    assert written.rows == rows and header["tenant"] == "default"
    with capsys.disabled():
        trailer = json.loads(again.splitlines()[-1])["trailer"]
        print(
            f"\n[backup on Azurite] {rows:,} rows {trailer['types']}: export {rows / export_seconds:,.0f} "
            f"rows/s, import {rows / import_seconds:,.0f} rows/s (verification included); "
            f"{len(again):,} B, {len(gzip.compress(again)):,} B gzipped"
        )

    source, target = directory.scim, client_of(store)
    paths = [f"/Users/{uid}" for uid in (*directory.users, *directory.managed, directory.deleted)]
    paths += [f"/Groups/{directory.group}", f"/Groups/{directory.small_group}"]
    paths += [f'/Users?filter=userName eq "person{n:04d}@contoso.com"' for n in range(USERS)]
    paths += ['/Groups?filter=displayName eq "The Board"', '/Groups?filter=displayName eq "Board"']
    before, after = await answers(source, paths), await answers(target, paths)
    assert after == before
    assert all(status == 200 and etag == body["meta"]["version"] for status, etag, body in before[:USERS])
    assert before[USERS + len(directory.managed)][0] == 404  # the deleted user stays deleted
    found = [body["Resources"][0]["id"] for _, _, body in before[-USERS - 2 : -2]]
    assert found == directory.users  # every userName filter finds its user, through the index rows
    assert before[-2][2]["totalResults"] == 1 and before[-1][2]["totalResults"] == 0
    everyone = before[-USERS - 4][2]
    assert len(everyone["members"]) == USERS and everyone["displayName"] == "Everyone"
    boss = directory.managed[0]
    assert before[USERS + 1][2][ENTERPRISE]["manager"]["value"] == boss
    assert await all_pages(target, "Users") == await all_pages(source, "Users")
    assert await all_pages(target, "Groups") == await all_pages(source, "Groups")

    kinds = build_kinds(load_schema_file(""))
    assert await check(store.repository, kinds) == []
    # The feed: the same changes pending on both sides, none added by the import; the audit trail kept.
    for kind in ("User", "Group"):
        restored = [p.change for p in await store.repository.pending_changes(kind)]
        assert restored == [c for c in directory.pending_before if c.kind == kind]
        trail = [c async for c in store.repository.audit_records(kind)]
        assert trail == [c async for c in directory.store.repository.audit_records(kind)]
    # Byte for byte: the target exports the very same row lines.
    assert row_lines(await export_bytes(store, audit=True)) == row_lines(directory.exported)


async def test_import_refuses_a_table_with_rows_and_writes_nothing(directory, store, scim):
    await create(scim, userName="already@contoso.com")
    before = await raw_rows(store)
    with pytest.raises(BackupError, match=r"already holds rows of directory 'default'.*Nothing was written"):
        await import_bytes(store, directory.exported_lean)
    assert await raw_rows(store) == before


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="mid-line"),
        pytest.param(lambda data: b"".join(data.splitlines(keepends=True)[:-1]), id="no-trailer"),
        pytest.param(lambda data: data.splitlines(keepends=True)[0], id="header-only"),
    ],
)
async def test_a_truncated_file_is_refused_before_anything_is_written(
    directory, storage_connection_string, cut
):
    async with fresh_table(storage_connection_string) as target:
        with pytest.raises(BackupError, match=r"is truncated: it ends after [0-9,]+ rows") as refused:
            await import_bytes(target, cut(directory.exported_lean))
        assert "without the trailer" in str(refused.value)
        assert await target.repository.directory_row() is None


async def test_an_altered_file_is_refused(directory, storage_connection_string):
    lines = directory.exported_lean.splitlines(keepends=True)
    dropped = b"".join(lines[:5] + lines[6:])
    at = next(i for i, line in enumerate(lines) if b'"v":1,' in line)
    changed = b"".join([*lines[:at], lines[at].replace(b'"v":1,', b'"v":7,'), *lines[at + 1 :]])
    async with fresh_table(storage_connection_string) as target:
        with pytest.raises(BackupError, match="does not match its trailer"):
            await import_bytes(target, dropped)
        with pytest.raises(BackupError, match="does not match its trailer"):
            await import_bytes(target, changed)
        with pytest.raises(BackupError, match="export of directory 'default', but SCIM_TENANT is 'other'"):
            await import_bytes(target, directory.exported_lean, tenant="other")
        assert await target.repository.directory_row() is None


def test_a_malformed_line_is_named():
    header = b'{"format":"scim-table-export","version":1,"tenant":"default"}\n'
    row = {"PartitionKey": "default|User", "RowKey": "res:x", "n": 2**40}
    with pytest.raises(BackupError, match=r"line 2: property n is not a string, a boolean or an Int32"):
        verify(io.BytesIO(header + json.dumps(row).encode() + b"\n"), "f")
    row = {"PartitionKey": "default|User", "RowKey": "res:x", "n": "x", "n@odata.type": "Edm.Int64"}
    with pytest.raises(BackupError, match=r"line 2: property n is not a valid Edm.Int64 value"):
        verify(io.BytesIO(header + json.dumps(row).encode() + b"\n"), "f")
    with pytest.raises(
        BackupError, match=r"line 2: PartitionKey 'other\|User' is not in directory 'default'"
    ):
        verify(io.BytesIO(header + b'{"PartitionKey":"other|User","RowKey":"r"}\n'), "f")
    with pytest.raises(BackupError, match="format version 2"):
        verify(io.BytesIO(header.replace(b'"version":1', b'"version":2')), "f")
    with pytest.raises(BackupError, match="is not a scim-table-export file"):
        verify(io.BytesIO(b'{"hello": 1}\n'), "f")


async def test_every_edm_type_is_restored_exactly(storage_connection_string):
    moment = "2024-02-29T23:59:59.1234567Z"  # 7 fractional digits: more than a Python datetime holds
    entity = {
        "PartitionKey": "default|User",
        "RowKey": "res:typed",
        "text": 'h\u00e9 \U0001f600 "quoted"\n',
        "empty": "",
        "flag": False,
        "small": -(2**31),
        "large": EntityProperty(2**62 + 1, EdmType.INT64),
        "modest": EntityProperty(5, EdmType.INT64),
        "when": EntityProperty(moment, EdmType.DATETIME),
        "whole": EntityProperty("2024-01-01T00:00:00Z", EdmType.DATETIME),
        "guid": uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e"),
        "blob": bytes(range(256)),
        "ratio": 0.1,
        "integral": EntityProperty(2.0, EdmType.DOUBLE),
        "tiny": 5e-324,
        "nan": float("nan"),
        "minus": float("-inf"),
    }
    async with (
        fresh_table(storage_connection_string) as source,
        fresh_table(storage_connection_string) as target,
    ):
        await source.repository.ensure_table()
        client = connect(source.connection_string, source.table_name)
        await client.create_entity(entity)
        await client.close()
        exported = await export_bytes(source, audit=False)
        row = json.loads(row_lines(exported)[0])
        assert row["large"] == str(2**62 + 1) and row["large@odata.type"] == "Edm.Int64"
        assert row["modest@odata.type"] == "Edm.Int64" and row["when"] == moment
        assert (
            row["nan"] == "NaN" and row["minus"] == "-Infinity" and row["integral@odata.type"] == "Edm.Double"
        )
        assert "small@odata.type" not in row and "text@odata.type" not in row
        await import_bytes(target, exported)
        (before,), (after,) = await raw_rows(source), await raw_rows(target)
        assert set(after) == set(before)
        for name, value in before.items():
            restored = after[name]
            assert type(restored) is type(value), name
            if name == "nan":
                assert restored != restored
            else:
                assert restored == value, name
        assert after["when"].tables_service_value == moment
        assert after["large"].edm_type == EdmType.INT64 and after["modest"].edm_type == EdmType.INT64
        assert row_lines(await export_bytes(target, audit=False)) == row_lines(exported)


class LoseFirstBatchAnswer(SansIOHTTPPolicy[Any, Any]):
    """Lets the first ``$batch`` commit, then loses its answer (as a dropped connection would)."""

    def __init__(self) -> None:
        self.lost = 0

    def on_response(self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]) -> None:
        if request.http_request.url.endswith("/$batch") and not self.lost:
            self.lost += 1
            raise ServiceResponseError("connection reset after the commit (injected)")


async def test_a_lost_answer_is_retried_without_a_duplicate_or_a_failure(
    directory, storage_connection_string
):
    lose = LoseFirstBatchAnswer()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async with fresh_table(storage_connection_string, policies=[lose]) as target:
        _, written = await import_bytes(target, directory.exported_lean, sleep=sleep)
        assert lose.lost == 1 and waits == [1.0]  # the batch was sent again, found already stored
        assert written.rows == len(row_lines(directory.exported_lean))
        assert row_lines(await export_bytes(target, audit=False)) == row_lines(directory.exported_lean)


class StorageGoesDown(SansIOHTTPPolicy[Any, Any]):
    """Lets ``allowed`` transactions through, then fails every request as an unreachable host would."""

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed

    def on_request(self, request: PipelineRequest[Any]) -> None:
        if request.http_request.url.endswith("/$batch"):
            if self.allowed <= 0:
                raise ServiceRequestError("connection refused (injected)")
            self.allowed -= 1


async def test_an_import_that_stops_says_how_many_rows_were_written(directory, storage_connection_string):
    async def sleep(seconds: float) -> None:
        pass

    async with fresh_table(storage_connection_string, policies=[StorageGoesDown(12)]) as target:
        with pytest.raises(BackupError, match=r"import stopped after ([0-9,]+) of ([0-9,]+) rows") as stopped:
            await import_bytes(target, directory.exported_lean, sleep=sleep)
        message = str(stopped.value)
        written, total = (
            int(n.replace(",", "")) for n in re.findall(r"after ([0-9,]+) of ([0-9,]+)", message)[0]
        )
        assert total == len(row_lines(directory.exported_lean)) and 0 < written < total
        assert "delete the table (or its rows) before importing again" in message
        assert len(await raw_rows(target)) == written  # the count is what the table holds


# -- the command line ----------------------------------------------------------------------


def scim_command(*argv: str, table: str, connection_string: str, stdin: bytes | None = None):
    environment = {
        **os.environ,
        "SCIM_STORAGE_CONNECTION_STRING": connection_string,
        "SCIM_TABLE_NAME": table,
    }
    return subprocess.run(  # noqa: S603 - our own module, run as an operator runs it
        [sys.executable, "-m", "scim", *argv],
        cwd=ROOT,
        env=environment,
        input=stdin,
        capture_output=True,
        timeout=120,
    )


async def test_the_commands_exit_codes_and_progress(directory, storage_connection_string, tmp_path):
    source = {"table": directory.store.table_name, "connection_string": storage_connection_string}
    backup = tmp_path / "directory.jsonl.gz"
    exported = await asyncio.to_thread(
        scim_command, "export", "--audit", "--output", str(backup), "--progress", "1000", **source
    )
    stderr = exported.stderr.decode()
    assert exported.returncode == 0, stderr
    assert "... 1,000 rows exported" in stderr and "rows/s" in stderr and f"Wrote {backup}." in stderr
    assert not (tmp_path / "directory.jsonl.gz.partial").exists()
    async with fresh_table(storage_connection_string) as target:
        into = {"table": target.table_name, "connection_string": storage_connection_string}
        imported = await asyncio.to_thread(scim_command, "import", str(backup), "--progress", "1000", **into)
        stderr = imported.stderr.decode()
        assert imported.returncode == 0, stderr
        assert "Created table" in stderr and "... 1,000 rows imported" in stderr
        assert f"{len(directory.pending_before)} pending change(s) restored" in stderr
        assert row_lines(await export_bytes(target, audit=True)) == row_lines(directory.exported)

        again = await asyncio.to_thread(scim_command, "import", str(backup), **into)
        lines = again.stderr.decode().strip().splitlines()
        assert again.returncode == 1 and "Traceback" not in again.stderr.decode()
        assert lines[-1].startswith(f"error: table {target.table_name} already holds rows")

    # stdout → stdin, and a copy cut short.
    piped = await asyncio.to_thread(scim_command, "export", "--progress", "0", **source)
    assert piped.returncode == 0 and piped.stdout.startswith(b'{"format":"scim-table-export"')
    async with fresh_table(storage_connection_string) as target:
        into = {"table": target.table_name, "connection_string": storage_connection_string}
        cut = await asyncio.to_thread(scim_command, "import", stdin=piped.stdout[:-300], **into)
        assert cut.returncode == 1 and "Traceback" not in cut.stderr.decode()
        assert (
            cut.stderr.decode().strip().splitlines()[-1].startswith("error: the export on stdin is truncated")
        )
        assert await target.repository.directory_row() is None
        whole = await asyncio.to_thread(scim_command, "import", "--progress", "0", stdin=piped.stdout, **into)
        assert whole.returncode == 0, whole.stderr.decode()
        assert row_lines(await export_bytes(target, audit=False)) == row_lines(directory.exported_lean)

    nowhere = {"table": "nosuchtable" + uuid.uuid4().hex[:8], "connection_string": storage_connection_string}
    absent = await asyncio.to_thread(scim_command, "export", **nowhere)
    assert absent.returncode == 2 and absent.stdout == b""  # not even a header
    assert (
        absent.stderr.decode().strip().splitlines()[-1] == f"error: Table {nowhere['table']} does not exist."
    )
    missing = await asyncio.to_thread(scim_command, "import", str(tmp_path / "nothing.jsonl"), **source)
    assert missing.returncode == 1 and "error: cannot read" in missing.stderr.decode()
