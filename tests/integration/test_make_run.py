"""``make run`` (``tools.run``) validates before it announces: one line and exit 2 for each broken setting.

Each case runs ``python -m tools.run`` as ``make run`` does, in a subprocess, and checks that it
stops before starting Azurite or printing the banner, with one ``error:`` line that names what to
fix, and never a traceback.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def make_run(settings: Mapping[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m tools.run`` with ``settings`` on top of a clean environment (no SCIM_* of the caller)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SCIM_") and k != "PORT"}
    environ.update(settings)
    return subprocess.run(
        [sys.executable, "-m", "tools.run"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_refused(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit 2, exactly one stderr line starting ``error:`` with every fragment, no banner, no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in result.stderr + result.stdout
    assert "Tenant URL" not in result.stdout and "Starting Azurite" not in result.stdout


@pytest.mark.parametrize("port", ["abc", "70000", "-1", "7071x"])
def test_a_port_that_is_not_a_number_is_refused(port: str) -> None:
    assert_refused(make_run({"PORT": port}), f"PORT={port!r}", "not a TCP port number")


def test_an_empty_secret_token_is_refused() -> None:
    assert_refused(make_run({"SCIM_BEARER_TOKEN": "  "}), "SCIM_BEARER_TOKEN is set but empty")


@pytest.mark.parametrize(
    ("connection_string", "fragment"),
    [
        ("garbage", "malformed"),
        ("AccountName=a;AccountKey=%%%;TableEndpoint=http://127.0.0.1:9/a", "AccountKey is not base64"),
        (f"AccountName=a;AccountKey={AZURITE_KEY};TableEndpoint=ftp://x/a", "TableEndpoint"),
    ],
)
def test_a_malformed_connection_string_is_refused_without_echoing_it(
    connection_string: str, fragment: str
) -> None:
    result = make_run({"SCIM_STORAGE_CONNECTION_STRING": connection_string})
    assert_refused(result, "SCIM_STORAGE_CONNECTION_STRING", fragment)
    assert AZURITE_KEY not in result.stderr


def test_a_malformed_scim_setting_is_refused() -> None:
    assert_refused(make_run({"SCIM_TABLE_NAME": "x"}), "SCIM_TABLE_NAME")


@contextlib.contextmanager
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        yield taken.getsockname()[1]


def test_a_busy_port_is_refused_before_azurite_starts() -> None:
    with busy_port() as port:
        result = make_run({"PORT": str(port), "SCIM_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true"})
    assert_refused(result, f"port {port}", "is in use", f"PORT={port + 1}")


def test_a_second_run_on_the_same_data_folder_is_refused() -> None:
    """Another process holds .azurite/'s lock (as a running ``make run`` does): refused, Azurite untouched."""
    data = ROOT / ".azurite"
    data.mkdir(exist_ok=True)
    with (data / ".lock").open("a+") as lock:
        with contextlib.suppress(BlockingIOError):  # a developer's own `make run` may hold it: same outcome
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = make_run({"PORT": "0"})
    assert_refused(result, ".azurite/ is in use by another `make run`", "SCIM_STORAGE_CONNECTION_STRING")
