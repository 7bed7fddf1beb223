"""``python -m scim export`` / ``import``: the whole directory as JSON lines, and back into an empty table.

A lost table means new SCIM ids for every user (downstream links break) and
the audit trail gone with it (issue 16, item 4). ``export`` writes every row of
the directory — resource rows (the SCIM JSON, the version counter ``v`` that is
``meta.version``, the ids in the keys), index rows, member and reverse edges,
pending outbox rows, and with ``--audit`` the audit trail — so that ``import``
restores them as they were, in the same or another account (Azurite → Azure
Table Storage, say: the target comes from the usual ``SCIM_*`` settings).

Format (``scim-table-export``, version 1), UTF-8 JSON lines, gzip-compressed
when the file name ends in ``.gz``:

1. a header: ``{"format": "scim-table-export", "version": 1, "table": …, "tenant": …,
   "exportedAt": …, "audit": …, "producer": …}``;
2. one line per row: ``PartitionKey``, ``RowKey`` and every property in the
   Table service's own JSON form — strings, booleans and Int32 as plain JSON,
   every other type followed by ``<name>@odata.type`` (``Edm.Int64`` as decimal
   text, ``Edm.Binary`` Base64, ``Edm.DateTime`` the service's 7-digit text,
   ``Edm.Guid``, ``Edm.Double``) — see :func:`scim.storage.tables.exported_row`;
3. a trailer, since a stream cannot fill counts into its header:
   ``{"trailer": {"rows": N, "types": {…}, "partitions": {…}, "sha256": …}}``, the
   digest being over the exact bytes of the row lines.

``import`` reads the file twice: first it checks every line, the counts and the
digest against the trailer — a truncated or altered file is refused before
anything is written — then it inserts the rows, in entity-group transactions
of one partition each (≤ 100 rows, ≤ 4 MiB; *Performing entity group
transactions*, Table service REST API), several in flight. It restores into a
table that holds no row of the directory (creating the table if needed), and
emits no change event: the pending outbox rows it restores are published by the
relay of the target as they would have been by the source's.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import gzip
import hashlib
import json
import re
import shutil
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol
from uuid import UUID

from scim import __version__
from scim.admin.directories import directory_option
from scim.config import Settings
from scim.model.errors import ConflictError, ScimError, ServiceUnavailableError
from scim.storage.tables import (
    BATCH,
    EDM_ANNOTATION,
    MAX_TRANSACTION_BYTES,
    TableRepository,
    open_repository,
    transaction_bytes,
)

__all__ = [
    "FORMAT",
    "VERSION",
    "BackupError",
    "Progress",
    "Tally",
    "add_commands",
    "export_directory",
    "import_directory",
    "run",
    "verify",
]

FORMAT = "scim-table-export"
VERSION = 1
"""Version of the line format; an import refuses a newer one rather than guess."""

PROGRESS_EVERY = 10_000
"""Rows between two progress lines on stderr (``--progress``)."""

CONCURRENT_BATCHES = 8
"""Transactions an import keeps in flight (Table Storage takes ~2,000 entities/s per partition)."""

BATCH_ATTEMPTS = 5
"""Tries of one transaction when storage is unavailable (1, 2, 4, 8 s apart)."""

TYPES = {"r": "resources", "i": "index", "m": "members", "e": "reverse-edges", "o": "outbox", "a": "audit"}
"""Row types by their ``t`` property (``scim.storage.tables`` layout), for the trailer's counts."""

_PAYLOAD_BUDGET = MAX_TRANSACTION_BYTES - 64 * 1024
"""Bytes of rows per transaction: the 4 MiB limit less the multipart envelope."""

_DATETIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?Z")
_INT64 = range(-(2**63), 2**63)
_INT32 = range(-(2**31), 2**31)
_DOUBLE_WORDS = ("NaN", "Infinity", "-Infinity")


class Sink(Protocol):
    """Where an export goes: a binary file, gzip file or stdout."""

    def write(self, data: bytes, /) -> int:
        """Write bytes."""
        ...

    def flush(self) -> None:
        """Flush buffers."""
        ...


class BackupError(Exception):
    """A refusal or a failure that the command reports in one line (exit status 1)."""


@dataclass
class Tally:
    """What an export holds (or an import wrote): rows, per type and partition, and their digest."""

    rows: int = 0
    types: Counter[str] = field(default_factory=Counter)
    partitions: Counter[str] = field(default_factory=Counter)
    digest: Any = field(default_factory=hashlib.sha256)

    def add(self, row: dict[str, Any], line: bytes) -> None:
        """Count one row and its line's exact bytes."""
        self.rows += 1
        self.types[TYPES.get(str(row.get("t")), "other")] += 1
        self.partitions[str(row["PartitionKey"])] += 1
        self.digest.update(line)

    def trailer(self) -> dict[str, Any]:
        """The trailer line's object."""
        return {
            "trailer": {
                "rows": self.rows,
                "types": dict(sorted(self.types.items())),
                "partitions": dict(sorted(self.partitions.items())),
                "sha256": self.digest.hexdigest(),
            }
        }

    def describe(self) -> str:
        """``1,011 resources, 2,022 index, …`` for the summary line."""
        return ", ".join(f"{count:,} {name}" for name, count in sorted(self.types.items())) or "nothing"


class Progress:
    """A line on stderr every ``every`` rows (0: none), with the rate so far."""

    def __init__(self, verb: str, stream: IO[str] | None, every: int = PROGRESS_EVERY) -> None:
        self.verb = verb
        self.done = 0
        self._stream = stream
        self._every = every
        self._next = every
        self._started = time.monotonic()

    @property
    def seconds(self) -> float:
        """Time since the start."""
        return time.monotonic() - self._started

    @property
    def rate(self) -> float:
        """Rows per second so far."""
        return self.done / max(self.seconds, 1e-9)

    def advance(self, rows: int) -> None:
        """Count ``rows`` more; print a line when a multiple of ``every`` was passed."""
        self.done += rows
        if self._every and self.done >= self._next:
            self._next = (self.done // self._every + 1) * self._every
            self.say(f"... {self.done:,} rows {self.verb} ({self.rate:,.0f} rows/s)")

    def say(self, text: str) -> None:
        """One line on the stream."""
        if self._stream is not None:
            self._stream.write(text + "\n")
            self._stream.flush()


def _line(value: dict[str, Any]) -> bytes:
    """One JSON line, UTF-8; a lone surrogate (storage accepts one) is kept as a JSON escape."""
    try:
        return (json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(value, separators=(",", ":")) + "\n").encode("ascii")


# -- export -------------------------------------------------------------------------


async def export_directory(
    repository: TableRepository,
    out: Sink,
    *,
    table: str,
    tenant: str,
    audit: bool,
    progress: Progress,
) -> Tally:
    """Write the header, every row of the directory, then the trailer, to ``out``; what was written.

    Raises:
        NotFoundError: The table does not exist.
        ServiceUnavailableError: Storage failed part-way (the output then has no trailer).
    """
    header = {
        "format": FORMAT,
        "version": VERSION,
        "table": table,
        "tenant": tenant,
        "exportedAt": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "audit": audit,
        "producer": f"scim {__version__}",
    }
    rows = aiter(repository.dump_rows(audit=audit))
    first = await anext(rows, None)  # a missing table or unreachable storage fails before any output
    out.write(_line(header))
    tally = Tally()
    row = first
    while row is not None:
        line = _line(row)
        out.write(line)
        tally.add(row, line)
        progress.advance(1)
        row = await anext(rows, None)
    out.write(_line(tally.trailer()))
    out.flush()
    return tally


# -- validation ---------------------------------------------------------------------


def _parses(parse: Callable[[str], object], text: str) -> bool:
    try:
        parse(text)
    except (ValueError, binascii.Error):
        return False
    return True


def _value_problem(value: Any, annotation: Any) -> str | None:
    """What is wrong with a property value for its annotation (None: nothing)."""
    if annotation is None:
        if isinstance(value, bool | str) or (isinstance(value, int) and value in _INT32):
            return None
        return "is not a string, a boolean or an Int32, and has no @odata.type"
    checks: dict[str, Callable[[Any], bool]] = {
        "Edm.Int64": lambda v: (
            isinstance(v, str) and re.fullmatch(r"-?\d{1,19}", v) is not None and int(v) in _INT64
        ),
        "Edm.DateTime": lambda v: isinstance(v, str) and _DATETIME.fullmatch(v) is not None,
        "Edm.Guid": lambda v: isinstance(v, str) and _parses(UUID, v),
        "Edm.Binary": lambda v: (
            isinstance(v, str) and _parses(lambda t: base64.b64decode(t, validate=True), v)
        ),
        "Edm.Double": lambda v: (
            v in _DOUBLE_WORDS or (isinstance(v, int | float) and not isinstance(v, bool))
        ),
        "Edm.String": lambda v: isinstance(v, str),
        "Edm.Int32": lambda v: isinstance(v, int) and not isinstance(v, bool) and v in _INT32,
        "Edm.Boolean": lambda v: isinstance(v, bool),
    }
    check = checks.get(str(annotation))
    if check is None:
        return f"has an unknown type {annotation!r}"
    ok = check(value)
    return None if ok else f"is not a valid {annotation} value"


def _row_problem(row: dict[str, Any], tenant: str) -> str | None:
    """What is wrong with a row line (None: nothing)."""
    partition, row_key = row.get("PartitionKey"), row.get("RowKey")
    if not isinstance(partition, str) or not isinstance(row_key, str):
        return "PartitionKey and RowKey must be strings"
    if not partition.startswith(f"{tenant}|"):
        return f"PartitionKey {partition!r} is not in directory {tenant!r} of the header"
    for name, value in row.items():
        if name in ("PartitionKey", "RowKey"):
            continue
        if name.endswith(EDM_ANNOTATION):
            if name[: -len(EDM_ANNOTATION)] not in row:
                return f"{name} annotates no property"
            continue
        problem = _value_problem(value, row.get(name + EDM_ANNOTATION))
        if problem:
            return f"property {name} {problem}"
    return None


def _header_of(first: bytes, name: str) -> dict[str, Any]:
    try:
        header = json.loads(first)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BackupError(f"{name} is not a {FORMAT} file (its first line is not an export header).")
    if header.get("version") != VERSION:
        raise BackupError(
            f"{name} has format version {header.get('version')!r}; this release reads version {VERSION}."
        )
    if not isinstance(header.get("tenant"), str):
        raise BackupError(f"{name}: the header names no tenant.")
    return header


def _lines(source: IO[bytes]) -> Iterator[bytes]:
    """The lines of a plain or gzip-compressed export (detected by its magic bytes)."""
    source.seek(0)
    compressed = source.read(2) == b"\x1f\x8b"
    source.seek(0)
    stream: Iterable[bytes] = gzip.GzipFile(fileobj=source, mode="rb") if compressed else source
    yield from stream


def verify(source: IO[bytes], name: str) -> tuple[dict[str, Any], Tally]:
    """Check every line of an export against its header and trailer; its header and what it holds.

    Raises:
        BackupError: Not an export, a malformed line, or a truncated or altered file.
    """
    header: dict[str, Any] | None = None
    tally = Tally()
    trailer: dict[str, Any] | None = None
    number = 0
    try:
        for number, line in enumerate(_lines(source), 1):
            if header is None:
                header = _header_of(line, name)
                continue
            if trailer is not None:
                raise BackupError(f"{name}, line {number}: data after the trailer.")
            try:
                value = json.loads(line)
            except ValueError:
                if not line.endswith(b"\n"):
                    break  # a last line cut short: truncated, reported below
                raise BackupError(f"{name}, line {number} is not JSON.") from None
            if isinstance(value, dict) and "trailer" in value and "PartitionKey" not in value:
                trailer = value["trailer"] if isinstance(value["trailer"], dict) else {}
                continue
            problem = _row_problem(value, header["tenant"]) if isinstance(value, dict) else "not an object"
            if problem:
                raise BackupError(f"{name}, line {number}: {problem}.")
            tally.add(value, line)
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise BackupError(f"{name} is truncated or corrupt after line {number}: {error}.") from None
    if header is None:
        raise BackupError(f"{name} is empty: it holds no export.")
    if trailer is None:
        raise BackupError(
            f"{name} is truncated: it ends after {tally.rows:,} rows (line {number}) without the trailer "
            "line that closes every export (the export did not finish, or the copy was cut)."
        )
    if trailer.get("rows") != tally.rows or trailer.get("sha256") != tally.digest.hexdigest():
        raise BackupError(
            f"{name} does not match its trailer: it holds {tally.rows:,} rows, the trailer counts "
            f"{trailer.get('rows')} (or the rows' digest differs): the file was altered."
        )
    return header, tally


# -- import -------------------------------------------------------------------------


async def _landed(repository: TableRepository, batch: list[dict[str, Any]]) -> bool:
    """Whether every row of ``batch`` is stored exactly so (an earlier attempt committed)."""
    stored = await repository.read_rows(batch[0]["PartitionKey"], [row["RowKey"] for row in batch])
    return all(stored.get(row["RowKey"]) == row for row in batch)


async def _insert(
    repository: TableRepository, batch: list[dict[str, Any]], sleep: Callable[[float], Awaitable[None]]
) -> None:
    """One transaction, retried while storage is unavailable.

    A retry that finds the rows already there is accepted when they are exactly
    the batch's: the previous attempt committed and only its answer was lost.
    """
    resent = False
    for attempt in range(BATCH_ATTEMPTS):
        try:
            await repository.insert_rows(batch)
            return
        except ServiceUnavailableError:
            if attempt == BATCH_ATTEMPTS - 1:
                raise
            await sleep(2.0**attempt)
            resent = True
        except ConflictError:
            if resent and await _landed(repository, batch):
                return
            raise


@dataclass
class _Writer:
    """Batches rows per partition and keeps up to :data:`CONCURRENT_BATCHES` transactions in flight."""

    repository: TableRepository
    progress: Progress
    sleep: Callable[[float], Awaitable[None]]
    written: Tally = field(default_factory=Tally)
    pending: dict[str, tuple[list[dict[str, Any]], int]] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    gate: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(CONCURRENT_BATCHES))
    failure: BaseException | None = None

    async def add(self, row: dict[str, Any]) -> None:
        size = transaction_bytes(row)
        partition = row["PartitionKey"]
        batch, used = self.pending.get(partition, ([], 0))
        if batch and (len(batch) >= BATCH or used + size > _PAYLOAD_BUDGET):
            await self._send(batch)
            batch, used = [], 0
        batch.append(row)
        self.pending[partition] = (batch, used + size)

    async def _send(self, batch: list[dict[str, Any]]) -> None:
        if self.failure is not None:
            raise self.failure
        await self.gate.acquire()
        task = asyncio.create_task(self._commit(batch))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _commit(self, batch: list[dict[str, Any]]) -> None:
        try:
            await _insert(self.repository, batch, self.sleep)
        except Exception as error:  # noqa: BLE001 - reported by finish(), with the rows written so far
            self.failure = self.failure or error
            return
        finally:
            self.gate.release()
        for row in batch:
            self.written.rows += 1
            self.written.types[TYPES.get(str(row.get("t")), "other")] += 1
            self.written.partitions[row["PartitionKey"]] += 1
        self.progress.advance(len(batch))

    async def finish(self) -> None:
        for batch, _ in list(self.pending.values()):
            if batch:
                await self._send(batch)
        self.pending.clear()
        await asyncio.gather(*list(self.tasks))
        if self.failure is not None:
            raise self.failure


async def import_directory(
    repository: TableRepository,
    source: IO[bytes],
    *,
    name: str,
    table: str,
    tenant: str,
    progress: Progress,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> tuple[dict[str, Any], Tally]:
    """Verify the export, check the target holds no row of the directory, then insert every row.

    ``source`` must be seekable (it is read twice). Returns the header and what was written.

    Raises:
        BackupError: The file is not a complete export, is of another tenant, or the
            target holds rows of the directory — nothing written; or the import
            failed part-way — the message says how many rows were written.
    """
    try:
        header, expected = verify(source, name)
    except BackupError as error:
        raise BackupError(f"{error} Nothing was written.") from None
    progress.say(
        f"Verified {name}: {expected.rows:,} rows ({expected.describe()}) of directory {header['tenant']}, "
        f"exported from table {header.get('table')} at {header.get('exportedAt')}."
    )
    if header["tenant"] != tenant:
        raise BackupError(
            f"{name} is an export of directory {header['tenant']!r}, but SCIM_TENANT is {tenant!r}: "
            f"set SCIM_TENANT={header['tenant']} (a named directory: pass --directory {header['tenant']}) "
            "to restore it. Nothing was written."
        )
    found = await repository.directory_row()
    if found is not None:
        raise BackupError(
            f"table {table} already holds rows of directory {tenant!r} (e.g. {found[0]} / {found[1]}): "
            "import restores only into an empty table. Nothing was written."
        )
    if await repository.ensure_table():
        progress.say(f"Created table {table}.")
    writer = _Writer(repository, progress, sleep)
    try:
        lines = _lines(source)
        next(lines)  # the header
        for line in lines:
            value = json.loads(line)
            if "PartitionKey" in value:
                await writer.add(value)
        await writer.finish()
    except Exception as error:  # whatever stopped it: say how much was written
        await asyncio.gather(*list(writer.tasks), return_exceptions=True)
        detail = getattr(error, "detail", None) or f"{type(error).__name__}: {error}"
        detail = detail if isinstance(error, ScimError | BackupError) else f"unexpected {detail}"
        raise BackupError(
            f"import stopped after {writer.written.rows:,} of {expected.rows:,} rows were written to table "
            f"{table}: {detail} The table now holds part of the directory: delete the table (or its rows) "
            "before importing again."
        ) from error
    if writer.written.rows != expected.rows:  # pragma: no cover - every row is sent or the import fails
        raise BackupError(f"wrote {writer.written.rows:,} rows, the export holds {expected.rows:,}.")
    return header, writer.written


# -- command line -------------------------------------------------------------------


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``export`` and ``import`` on the ``python -m scim`` sub-parsers."""
    exporting = commands.add_parser("export", help="write the whole directory as JSON lines (a backup)")
    exporting.add_argument("--audit", action="store_true", help="include the audit trail")
    exporting.add_argument(
        "--output", "-o", metavar="FILE", help="write to FILE (gzip if it ends in .gz); default stdout"
    )
    importing = commands.add_parser("import", help="restore an export into an empty table")
    importing.add_argument("file", nargs="?", default="-", metavar="FILE", help="the export (default stdin)")
    for parser in (exporting, importing):
        parser.add_argument(
            "--progress",
            type=int,
            default=PROGRESS_EVERY,
            metavar="N",
            help=f"a progress line on stderr every N rows (default {PROGRESS_EVERY:,}; 0: none)",
        )
        directory_option(parser)


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


async def _export(settings: Settings, arguments: argparse.Namespace, out: Sink) -> Tally:
    progress = Progress("exported", sys.stderr, arguments.progress)
    repository = open_repository(settings)
    try:
        tally = await export_directory(
            repository,
            out,
            table=settings.table_name,
            tenant=settings.tenant,
            audit=arguments.audit,
            progress=progress,
        )
    finally:
        await repository.close()
    _say(
        f"Exported {tally.rows:,} rows ({tally.describe()}) in {progress.seconds:.1f} s "
        f"({progress.rate:,.0f} rows/s)."
    )
    return tally


def _export_to(settings: Settings, arguments: argparse.Namespace) -> int:
    """Export to stdout, or to ``FILE.partial`` renamed ``FILE`` once complete (a failure leaves no FILE)."""
    what = "with" if arguments.audit else "without"
    _say(f"Exporting directory {settings.tenant} of table {settings.table_name} ({what} the audit trail) ...")
    if not arguments.output or arguments.output == "-":
        asyncio.run(_export(settings, arguments, sys.stdout.buffer))
        return 0
    target = Path(arguments.output)
    partial = target.with_name(target.name + ".partial")
    try:
        with contextlib.ExitStack() as stack:
            out: Sink = stack.enter_context(
                gzip.GzipFile(partial, "wb") if target.name.endswith(".gz") else partial.open("wb")
            )
            asyncio.run(_export(settings, arguments, out))
        partial.replace(target)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise BackupError(f"cannot write {arguments.output}: {error.strerror or error}.") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _say(f"Wrote {target}.")
    return 0


async def _import(settings: Settings, arguments: argparse.Namespace, source: IO[bytes], name: str) -> int:
    progress = Progress("imported", sys.stderr, arguments.progress)
    _say(f"Importing {name} into table {settings.table_name} (directory {settings.tenant}) ...")
    repository = open_repository(settings)
    try:
        header, written = await import_directory(
            repository,
            source,
            name=name,
            table=settings.table_name,
            tenant=settings.tenant,
            progress=progress,
        )
    finally:
        await repository.close()
    _say(
        f"Imported {written.rows:,} rows ({written.describe()}) exported at {header.get('exportedAt')} "
        f"in {progress.seconds:.1f} s ({progress.rate:,.0f} rows/s, the verification included)."
    )
    if written.types.get("outbox"):
        _say(
            f"{written.types['outbox']:,} pending change(s) restored: the relay of this table publishes them."
        )
    return 0


def _import_from(settings: Settings, arguments: argparse.Namespace) -> int:
    """Import a file, or stdin spooled to a temporary file (the export is read twice)."""
    with contextlib.ExitStack() as stack:
        if arguments.file == "-":
            source: IO[bytes] = stack.enter_context(tempfile.TemporaryFile())
            shutil.copyfileobj(sys.stdin.buffer, source)
            return asyncio.run(_import(settings, arguments, source, "the export on stdin"))
        try:
            source = stack.enter_context(Path(arguments.file).open("rb"))
        except OSError as error:
            raise BackupError(f"cannot read {arguments.file}: {error.strerror or error}.") from None
        return asyncio.run(_import(settings, arguments, source, arguments.file))


def run(settings: Settings, arguments: argparse.Namespace) -> int:
    """Run ``export`` or ``import``; the exit status (1: refused or failed, with one line on stderr).

    Storage that cannot be reached, or a missing table to export, raise
    ``ScimError`` for the caller to report (exit status 2, like the other commands);
    a closed stdout and Ctrl-C are the caller's too (``scim.__main__.cli``). A failed or
    interrupted ``--output`` export leaves no file behind (its ``FILE.partial`` is removed).
    """
    try:
        return (
            _export_to(settings, arguments)
            if arguments.command == "export"
            else _import_from(settings, arguments)
        )
    except BackupError as error:
        _say(f"error: {error}")
        return 1
