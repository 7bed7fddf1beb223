"""Start and stop the Azurite *table* (and *queue*) services for tests and ``make run``.

Azurite is pinned in ``package.json`` and installed by ``npm ci`` into ``node_modules/``. This
module runs ``azurite-table`` (or ``azurite-queue``) in memory on a loopback port, in its own
process group, and waits until the port accepts connections::

    with Azurite() as az, Azurite(service="queue") as queues:
        client = TableServiceClient.from_connection_string(az.connection_string)
        both = az.connection_string_with(queues)  # TableEndpoint and QueueEndpoint

It is safe to run as root, without a TTY and without stdin (CI): the child gets ``/dev/null`` as
stdin and a new session, so a Ctrl-C in the terminal reaches only the Python process, whose
``stop()`` then ends the whole group.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = [
    "ACCOUNT_KEY",
    "ACCOUNT_NAME",
    "Azurite",
    "find_azurite",
    "find_azurite_table",
]

ACCOUNT_NAME = "devstoreaccount1"
"""The well-known Azurite account name."""

ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
"""The well-known Azurite account key (public; the same on every Azurite install)."""

_REPO_ROOT = Path(__file__).resolve().parent.parent
_START_TIMEOUT_S = 20.0
_STOP_GRACE_S = 5.0
_POLL_INTERVAL_S = 0.05
_LOG_TAIL_LINES = 20
_AUTO_PORT_ATTEMPTS = 3


class _PortTakenError(RuntimeError):
    """Azurite exited because its port was taken (``EADDRINUSE``)."""


def find_azurite_table() -> str:
    """Return the path of ``node_modules/.bin/azurite-table`` (see :func:`find_azurite`)."""
    return find_azurite("table")


def find_azurite(service: str) -> str:
    """Return the path of ``node_modules/.bin/azurite-<service>`` under the repository root.

    Raises:
        RuntimeError: Azurite (or Node.js) is not installed.
    """
    path = _REPO_ROOT / "node_modules" / ".bin" / f"azurite-{service}"
    if not path.exists():
        raise RuntimeError(
            f"Azurite is not installed ({path} is missing): run `npm ci` (or `make install`) in {_REPO_ROOT}"
        )
    if shutil.which("node") is None:
        raise RuntimeError("Azurite needs Node.js, but `node` is not on PATH: install Node.js 18+")
    return str(path)


def _free_port(host: str) -> int:
    """Return a TCP port on ``host`` that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(host: str, port: int) -> bool:
    """Tell whether ``port`` on ``host`` can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers (Node included) do: connections in TIME_WAIT do not hold the port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _accepts_connections(host: str, port: int) -> bool:
    """Tell whether something listens on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Azurite:
    """An Azurite service (table by default, or queue) as a child process, usable as a context manager.

    Args:
        host: Interface to listen on (loopback by default).
        port: TCP port; ``0`` picks a free port.
        log_path: File that receives Azurite's stdout and stderr. Without it stdout goes to
            ``/dev/null`` and stderr to an anonymous temporary file, kept only so that a failed
            start can report why.
        tls: ``(certificate PEM path, key PEM path)``: serve HTTPS and accept OAuth
            bearer tokens (Azurite's ``--oauth basic``), for identity-based access tests.
        location: Folder where Azurite persists its data (``make run`` keeps data across
            restarts there); ``None`` keeps everything in memory, as the tests do.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: str | None = None,
        location: str | None = None,
        tls: tuple[str, str] | None = None,
        service: str = "table",
    ) -> None:
        if service not in ("table", "queue"):
            raise ValueError(f"unknown Azurite service {service!r}")
        self.service = service
        self.host = host
        self.tls = tls
        self.port = port
        self._requested_port = port
        self.log_path = log_path
        self.location = location
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The service's endpoint URL, e.g. ``http://127.0.0.1:PORT/devstoreaccount1``."""
        self._require_running()
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}/{ACCOUNT_NAME}"

    @property
    def table_endpoint(self) -> str:
        """The table endpoint URL (of a table service)."""
        return self.endpoint

    @property
    def connection_string(self) -> str:
        """A shared-key connection string for the well-known development account."""
        key = "TableEndpoint" if self.service == "table" else "QueueEndpoint"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};"
            f"AccountKey={ACCOUNT_KEY};{key}={self.endpoint};"
        )

    def connection_string_with(self, queue: Azurite) -> str:
        """One connection string for this table service and a queue service."""
        return f"{self.connection_string}QueueEndpoint={queue.endpoint};"

    def start(self) -> Self:
        """Start Azurite and wait until its port accepts TCP connections.

        Raises:
            RuntimeError: Azurite is missing, the port is taken, the process exited, or it did
                not listen within 20 s. The message carries the last lines of its log.
        """
        if self._process is not None:
            raise RuntimeError("Azurite is already running")
        executable = find_azurite(self.service)
        attempts = _AUTO_PORT_ATTEMPTS if self._requested_port == 0 else 1
        for attempt in range(1, attempts + 1):
            if self._requested_port == 0:
                self.port = _free_port(self.host)
            elif not _port_is_free(self.host, self.port):
                raise RuntimeError(f"cannot start Azurite: {self.host}:{self.port} is already in use")
            self._spawn(executable)
            try:
                self._wait_until_listening()
                return self
            except _PortTakenError:
                # Another process took the free port between our probe and Azurite's bind.
                self.stop()
                if attempt == attempts:
                    raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _spawn(self, executable: str) -> None:
        command = [
            executable,
            f"--{self.service}Host", self.host,
            f"--{self.service}Port", str(self.port),
            *(["--location", self.location] if self.location else ["--inMemoryPersistence"]),
            # HTTPS with a given certificate, and OAuth bearer tokens checked for iss/aud/exp
            # (not signatures): how identity-based access is tested (azure-notes §5.7).
            *(["--cert", self.tls[0], "--key", self.tls[1], "--oauth", "basic"] if self.tls else []),
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--loose",
        ]  # fmt: skip
        stdout: IO[bytes] | int
        if self.log_path is not None:
            self._log = open(self.log_path, "wb")  # closed in stop()
            stdout = self._log
        else:
            self._log = tempfile.TemporaryFile()  # closed in stop()
            stdout = subprocess.DEVNULL
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=self._log,
            start_new_session=True,  # own process group: stop() signals the whole tree
            cwd=tempfile.gettempdir(),  # never litter the checkout
        )

    def stop(self) -> None:
        """Stop Azurite: SIGTERM to its process group, then SIGKILL after 5 s. Idempotent."""
        process, self._process = self._process, None
        try:
            if process is not None:
                _terminate_group(process)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def __enter__(self) -> Self:
        """Start Azurite (see :meth:`start`)."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop Azurite (see :meth:`stop`)."""
        self.stop()

    def _require_running(self) -> None:
        if self._process is None:
            raise RuntimeError("Azurite is not running: use `with Azurite() as az:` or start()")

    def _wait_until_listening(self) -> None:
        if self._process is None:
            raise RuntimeError("Azurite was not spawned")
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = self._log_tail()
                error = _PortTakenError if "EADDRINUSE" in tail else RuntimeError
                raise error(
                    f"Azurite exited with status {self._process.returncode} before listening on "
                    f"{self.host}:{self.port}{tail}"
                )
            if _accepts_connections(self.host, self.port):
                return
            time.sleep(_POLL_INTERVAL_S)
        raise RuntimeError(
            f"Azurite did not listen on {self.host}:{self.port} within "
            f"{_START_TIMEOUT_S:.0f} s{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        """Return the last lines of Azurite's log, formatted for an error message."""
        if self._log is None:
            return ""
        self._log.flush()
        try:
            if self.log_path is not None:
                data = Path(self.log_path).read_bytes()
            else:
                self._log.seek(0)
                data = self._log.read()
        except OSError:
            return ""
        lines = data.decode("utf-8", "replace").splitlines()[-_LOG_TAIL_LINES:]
        if not lines:
            return " (Azurite wrote nothing)"
        return ":\n" + "\n".join(lines)


def _terminate_group(process: subprocess.Popen[bytes]) -> None:
    """Send SIGTERM to the process group, wait 5 s, then SIGKILL; always reap the child."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=_STOP_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            pass
    # Kill whatever is left in the group (Node may have spawned helpers) and reap the child.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
