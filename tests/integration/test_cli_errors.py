"""The ``scim`` command as an operator runs it: every failure is one ``error:`` line and a status, never a traceback.

Each test runs the installed console command (``.venv/bin/scim``, which ``make install`` puts
there from ``[project.scripts]``) as a subprocess, from a directory outside the clone and
without the venv activated, against real Azurite (``tests/integration/conftest.py``) or a
closed loopback port for storage that is down (issue 16, item 1). A usage error is
argparse's usage line and its ``error:`` line (``COLUMNS`` is set wide so the usage is one
line); ``entra`` may follow its ``error:`` line with a ``What to do:`` line.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from scim.__main__ import PROGRESS_AFTER_S, PROGRESS_EVERY_S, ScanProgress
from scim.storage.repository import IndexRow
from tests.integration.conftest import ROOT, Store
from tests.integration.test_users_entra import create
from tools.azurite import ACCOUNT_KEY, ACCOUNT_NAME

SCIM = Path(sys.executable).with_name("scim")
"""The console command of the venv the tests run in."""

AT_PORT = "DefaultEndpointsProtocol=http;AccountName={name};AccountKey={key};TableEndpoint=http://127.0.0.1:{port}/{name};QueueEndpoint=http://127.0.0.1:{port}/{name};"


@dataclass(frozen=True)
class Result:
    status: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.err.splitlines()


@pytest.fixture(scope="module", autouse=True)
def installed() -> None:
    if not SCIM.exists():
        pytest.fail(f"{SCIM} is missing: `make install` installs the scim command (pyproject.toml)")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A working directory outside the clone: the command must not depend on where it runs."""
    return tmp_path


def environment(**settings: str) -> dict[str, str]:
    """The test's environment without any SCIM_* setting (nor an activated venv), plus ``settings``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SCIM_", "VIRTUAL_ENV", "PYTHON"))}
    base["PATH"] = os.pathsep.join(p for p in base.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    return {**base, "COLUMNS": "1000", **settings}


def run(*argv: str, env: dict[str, str], cwd: Path, timeout: float = 60) -> Result:
    done = subprocess.run(  # noqa: S603 - our own command, as an operator runs it
        [str(SCIM), *argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    return Result(done.returncode, done.stdout, done.stderr)


def run_all(
    commands: list[list[str]], *, env: dict[str, str], cwd: Path, timeout: float = 60
) -> list[Result]:
    """Several commands at once (each may wait out the storage client's retries)."""
    started = [
        subprocess.Popen(  # noqa: S603 - our own command, as an operator runs it
            [str(SCIM), *argv], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for argv in commands
    ]
    results = []
    for process in started:
        out, err = process.communicate(timeout=timeout)
        results.append(Result(process.returncode, out, err))
    return results


def assert_one_error(result: Result, status: int, *fragments: str) -> str:
    """Exactly one stderr line, ``error: ...`` with every fragment; no traceback anywhere."""
    assert "Traceback" not in result.err + result.out, result.err
    assert result.status == status, result
    assert len(result.lines) == 1, result.err
    line = result.lines[0]
    assert line.startswith("error: "), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def assert_usage_error(result: Result, *fragments: str) -> None:
    """argparse's two lines: the usage, then ``scim ...: error: ...``; status 2."""
    assert "Traceback" not in result.err + result.out, result.err
    assert result.status == 2, result
    usage, error = result.lines
    assert usage.startswith("usage: scim"), usage
    assert error.startswith("scim") and ": error: " in error, error
    for fragment in fragments:
        assert fragment in error, (fragment, error)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def down(port: int) -> dict[str, str]:
    return environment(
        SCIM_STORAGE_CONNECTION_STRING=AT_PORT.format(name=ACCOUNT_NAME, key=ACCOUNT_KEY, port=port)
    )


def on(store: Store, **more: str) -> dict[str, str]:
    """The settings of the test's table, change feed off."""
    return environment(
        SCIM_STORAGE_CONNECTION_STRING=store.connection_string,
        SCIM_TABLE_NAME=store.table_name,
        SCIM_CHANGE_QUEUE="off",
        **more,
    )


STORAGE_COMMANDS = [
    ["check"],
    ["check", "--json"],
    ["audit"],
    ["audit", "prune", "--days", "1"],
    ["feed", "relay"],
    ["feed", "replay", "--since", "1h"],
]


# -- installed, and usage errors ---------------------------------------------------------------


def test_the_installed_command_runs_from_any_directory_without_the_venv_activated(home):
    result = run("--help", env=environment(), cwd=home)
    assert result.status == 0, result.err
    for command in ("check", "audit", "feed", "token", "entra", "export", "import"):
        assert command in result.out
    assert result.out.startswith("usage: scim ")


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        ((), ["the following arguments are required"]),
        (("check", "--bogus"), ["unrecognized arguments: --bogus"]),
        (("audit", "--days", "many"), ["argument --days", "'many'"]),
        (
            ("audit", "--since", "yesterday"),
            ["argument --since", "not a time: 'yesterday'", "30m, 24h, 7d", "2026-11-30T08:00:00Z"],
        ),
        (("audit", "--until", "soon"), ["argument --until", "not a time: 'soon'"]),
        (("feed", "replay", "--since", "last week"), ["argument --since", "not a time: 'last week'"]),
        (("entra", "logs", "App", "--since", "yesterday"), ["argument --since", "30m, 24h, 7d"]),
    ],
)
def test_bad_arguments_are_the_usage_and_one_error_line_before_any_storage_call(home, argv, fragments):
    # No storage setting at all: the arguments are refused first.
    assert_usage_error(run(*argv, env=environment(), cwd=home), *fragments)


# -- settings --------------------------------------------------------------------------------------


def test_missing_storage_settings_name_the_variables(home):
    commands = [*STORAGE_COMMANDS, ["export"]]
    for argv, result in zip(commands, run_all(commands, env=environment(), cwd=home), strict=True):
        assert_one_error(result, 2, "SCIM_STORAGE_CONNECTION_STRING", "SCIM_STORAGE_TABLE_ENDPOINT")
        assert result.out == "", argv


def test_a_malformed_connection_string_names_the_setting_and_never_echoes_it(home):
    secret = "AccountName=devstoreaccount1;AccountKey=not-base64-secret!"
    result = run("check", env=environment(SCIM_STORAGE_CONNECTION_STRING=secret), cwd=home)
    assert_one_error(result, 2, "SCIM_STORAGE_CONNECTION_STRING", "AccountKey is not base64")
    assert "not-base64-secret" not in result.err


# -- storage down, refused, missing ----------------------------------------------------------------


def test_unreachable_storage_is_one_line_naming_the_endpoint_and_the_setting(home, closed_port):
    began = time.monotonic()
    results = run_all(STORAGE_COMMANDS, env=down(closed_port), cwd=home)
    for argv, result in zip(STORAGE_COMMANDS, results, strict=True):
        line = assert_one_error(
            result,
            2,
            f"cannot reach Table Storage at http://127.0.0.1:{closed_port}/{ACCOUNT_NAME}",
            "SCIM_STORAGE_CONNECTION_STRING",
        )
        assert "Connect call failed" in line or "Connection refused" in line, (argv, line)
        assert result.out == "", argv
    assert time.monotonic() - began < 30  # the client's short retries (scim.storage.tables), not minutes


def test_an_unresolvable_storage_host_is_one_line(home):
    # RFC 6761 §6.4: names under .invalid never resolve.
    settings = f"DefaultEndpointsProtocol=https;AccountName=nosuchaccount;AccountKey={ACCOUNT_KEY};EndpointSuffix=invalid"
    result = run("audit", env=environment(SCIM_STORAGE_CONNECTION_STRING=settings), cwd=home)
    assert_one_error(result, 2, "cannot reach Table Storage at https://nosuchaccount.table.invalid")


def test_export_gets_the_same_one_line_treatment(home, closed_port):
    result = run("export", env=down(closed_port), cwd=home)
    assert "Traceback" not in result.err and result.status == 2, result
    assert result.lines[-1].startswith(f"error: cannot reach Table Storage at http://127.0.0.1:{closed_port}")


def test_a_wrong_account_key_is_refused_credentials_naming_the_key(home, store):
    another_key = base64.b64encode(bytes(64)).decode()  # well-formed, and nobody's key
    wrong = re.sub(r"AccountKey=[^;]+", f"AccountKey={another_key}", store.connection_string)
    assert wrong != store.connection_string
    result = run("check", env={**on(store), "SCIM_STORAGE_CONNECTION_STRING": wrong}, cwd=home)
    assert_one_error(
        result, 2, "refused the credentials (403 ", "AccountKey", "SCIM_STORAGE_CONNECTION_STRING"
    )


def test_a_table_that_does_not_exist_is_reported_not_called_clean(home, storage_connection_string):
    name = "missing" + uuid.uuid4().hex[:12]
    settings = environment(SCIM_STORAGE_CONNECTION_STRING=storage_connection_string, SCIM_TABLE_NAME=name)
    endpoint = re.search(r"TableEndpoint=([^;]+)", storage_connection_string)
    where = f"at {endpoint.group(1).rstrip('/')} " if endpoint else "at "
    commands = [c for c in STORAGE_COMMANDS if c != ["feed", "relay"]]  # the relay waits for a first write
    for argv, result in zip(commands, run_all(commands, env=settings, cwd=home), strict=True):
        assert_one_error(result, 2, f"table {name} does not exist {where}", "SCIM_TABLE_NAME")
        assert result.out == "", argv


# -- check: the summary, always ----------------------------------------------------------------------


async def inventory_rows(store: Store) -> list[object]:
    return [row for kind in ("User", "Group") async for row in store.repository.inventory(kind)]


async def test_check_always_prints_a_summary_and_its_counts_are_the_scan(scim, store, home):
    for _ in range(3):
        await create(scim)
    rows = len(await inventory_rows(store))

    clean = await asyncio.to_thread(run, "check", "--json", env=on(store), cwd=home)
    assert clean.status == 0, clean.err
    (line,) = clean.out.splitlines()  # nothing to report: the summary alone
    assert json.loads(line) == {
        "summary": {
            "table": store.table_name, "tenant": "default", "rows": rows,
            "anomalies": 0, "repaired": 0, "resolved": 0, "remaining": 0,
        }
    }  # fmt: skip
    text = await asyncio.to_thread(run, "check", env=on(store), cwd=home)
    assert text.status == 0 and text.out == "", text
    assert text.lines[-1] == f"0 anomalies found, 0 repaired ({rows:,} rows scanned)."

    index = next(r for r in await inventory_rows(store) if isinstance(r, IndexRow))
    await store.repository.delete_index_row(index.kind, index.row_key)
    broken = await asyncio.to_thread(run, "check", "--json", env=on(store), cwd=home)
    assert broken.status == 1, broken.err
    *anomalies, last = [json.loads(line) for line in broken.out.splitlines()]
    assert [a["code"] for a in anomalies] == ["missing-index"] and anomalies[0]["outcome"] == "found"
    assert last["summary"]["rows"] == rows - 1
    assert (last["summary"]["anomalies"], last["summary"]["remaining"]) == (1, 1)


def test_scan_progress_is_silent_for_a_short_scan_then_periodic():
    now = [0.0]
    said: list[str] = []
    progress = ScanProgress(clock=lambda: now[0], say=said.append)
    for rows, moment in [(1, 0.1), (500, PROGRESS_AFTER_S - 0.01)]:
        now[0] = moment
        progress(rows)
    assert said == []  # a scan that ends here printed nothing
    now[0] = PROGRESS_AFTER_S
    progress(1_200)
    now[0] = PROGRESS_AFTER_S + PROGRESS_EVERY_S / 2
    progress(1_300)
    now[0] = PROGRESS_AFTER_S + PROGRESS_EVERY_S
    progress(25_000)
    assert said == ["... 1,200 rows scanned", "... 25,000 rows scanned"]
    assert progress.rows == 25_000


# -- pipes and Ctrl-C -----------------------------------------------------------------------------------


async def test_a_closed_stdout_ends_the_command_quietly(scim, store, home):
    for number in range(150):
        await create(scim, displayName=f"user {number} " + "x" * 1_000)
    whole = await asyncio.to_thread(run, "audit", "--json", env=on(store), cwd=home)
    assert whole.status == 0 and len(whole.out) > 128 * 1024  # more than a pipe holds: head closes it first

    def audit_into_head() -> tuple[int, str, str]:
        """``scim audit --json | head -2``: (the status of scim, what head showed, scim's stderr)."""
        with subprocess.Popen(  # noqa: S603 - our own command, as an operator runs it
            [str(SCIM), "audit", "--json"],
            env=on(store),
            cwd=home,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as audit:
            assert audit.stdout is not None and audit.stderr is not None
            with subprocess.Popen(["head", "-2"], stdin=audit.stdout, stdout=subprocess.PIPE) as head:  # noqa: S607
                audit.stdout.close()  # as a shell does: only head reads the pipe
                shown, _ = head.communicate(timeout=60)
            errors = audit.stderr.read()
            return audit.wait(timeout=60), shown.decode(), errors.decode()

    status, shown, errors = await asyncio.to_thread(audit_into_head)
    assert [json.loads(line)["operation"] for line in shown.splitlines()] == ["create", "create"]
    assert errors == ""  # no traceback, no "Exception ignored ... BrokenPipeError"
    assert status == 141  # 128 + SIGPIPE, as for `yes | head`


class Lines:
    """A child's stream read line by line on a thread, so that waiting for a line can time out."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def until(self, fragment: str | None, timeout: float = 30) -> list[str]:
        """The lines up to the one holding ``fragment`` (None: up to the end of the stream)."""
        lines: list[str] = []
        while True:
            line = self._lines.get(timeout=timeout)
            if line is None:
                assert fragment is None, f"the stream ended before {fragment!r}: {lines}"
                return lines
            lines.append(line)
            if fragment is not None and fragment in line:
                return lines


@pytest.fixture
def silent_server() -> Iterator[socket.socket]:
    """A loopback port that accepts connections and never answers: storage that hangs."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(30)
        yield server


def test_ctrl_c_is_one_line_and_status_130(home, silent_server):
    port = silent_server.getsockname()[1]
    process = subprocess.Popen(  # noqa: S603 - our own command, as an operator runs it
        [str(SCIM), "check"],
        env=down(port),
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    connection, _ = silent_server.accept()  # the command waits for storage's answer
    with connection:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert (process.returncode, out, err) == (130, "", "interrupted\n")


def test_ctrl_c_stops_relay_watch_with_status_0(home, store):
    with subprocess.Popen(  # noqa: S603 - our own command, as an operator runs it
        [str(SCIM), "feed", "relay", "--watch", "30"],
        env=on(store),
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stderr is not None
        errors = Lines(process.stderr)
        lines = errors.until("published 0")
        process.send_signal(signal.SIGINT)
        rest = errors.until(None)
        assert process.wait(timeout=30) == 0, rest
    assert lines[0].startswith(f"Relaying changes of table {store.table_name}")
    assert rest == ["Stopped."]


def test_debug_shows_the_traceback_the_error_line_replaces(home, closed_port):
    result = run("--debug", "audit", env=down(closed_port), cwd=home)
    assert result.status == 2 and "Traceback (most recent call last)" in result.err
    assert result.lines[-1].startswith("error: cannot reach Table Storage")


# -- token and entra -----------------------------------------------------------------------------------


def test_token_check_without_a_token_is_one_line(home):
    result = run("token", "check", "http://127.0.0.1:9/scim/v2", env=environment(), cwd=home)
    assert_one_error(result, 2, "no Secret Token in $SCIM_BEARER_TOKEN", "--token-file")
    missing = home / "no-such-token-file"
    result = run(
        "token",
        "check",
        "http://127.0.0.1:9/scim/v2",
        "--token-file",
        str(missing),
        env=environment(),
        cwd=home,
    )
    assert_one_error(result, 2, str(missing))


def test_token_new_into_a_closed_pipe_is_quiet(home):
    process = subprocess.Popen(  # noqa: S603 - our own command, as an operator runs it
        [str(SCIM), "token", "new"],
        env=environment(),
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    process.stdout.close()  # `scim token new | true`: nobody reads
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 141 and b"Traceback" not in errors and b"Broken pipe" not in errors, errors


def test_entra_without_a_tenant_is_one_line(home):
    assert_one_error(
        run("entra", "status", "App", env=environment(), cwd=home), 2, "no tenant", "SCIM_GRAPH_TENANT"
    )


def test_entra_with_sign_in_unreachable_is_the_error_then_what_to_do(home, closed_port):
    settings = environment(
        SCIM_GRAPH_TENANT="contoso.example",
        SCIM_GRAPH_AUTHORITY=f"https://127.0.0.1:{closed_port}",
        SCIM_GRAPH_CLIENT_ID="00000000-0000-0000-0000-000000000001",
        SCIM_GRAPH_CLIENT_SECRET="not-a-real-secret",
        SCIM_GRAPH_TOKEN_CACHE=str(home / "cache.json"),
    )
    result = run("entra", "status", "App", env=settings, cwd=home)
    assert result.status == 2 and "Traceback" not in result.err, result
    first, *advice = result.lines
    assert first.startswith(f"error: Sign-in failed: could not reach https://127.0.0.1:{closed_port}"), first
    assert [line.split(":")[0] for line in advice] == ["What to do"]


# -- the example consumer --------------------------------------------------------------------------------


def test_the_feed_consumer_without_settings_names_them(home):
    database = home / "copy.sqlite"
    done = subprocess.run(  # noqa: S603 - our own command, as an operator runs it
        [sys.executable, str(ROOT / "examples" / "feed_consumer.py"), "--db", str(database), "--once"],
        env=environment(),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    result = Result(done.returncode, done.stdout, done.stderr)
    assert_one_error(result, 2, "SCIM_STORAGE_CONNECTION_STRING", "SCIM_STORAGE_QUEUE_ENDPOINT", "--stdin")
    assert not database.exists()  # refused before anything was written
