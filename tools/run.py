"""``make run``: serve the SCIM endpoint locally, as Entra would call it.

Starts Azurite (unless ``SCIM_STORAGE_CONNECTION_STRING`` names a storage
account), picks or generates the Secret Token, prints the Tenant URL and the
token to paste into Entra, and serves ``function_app.py`` through the local
Functions host (:mod:`functions_host`: the real ``azure-functions-runtime``
behind an emulation of the .NET host) on ``http://127.0.0.1:$PORT/scim/v2``.

Environment: ``PORT`` (7071), ``HOST`` (127.0.0.1), ``SCIM_BEARER_TOKEN``
(generated and kept in ``.scim-dev-token`` when unset), ``SCIM_STORAGE_CONNECTION_STRING``
(Azurite with data kept in ``.azurite/`` when unset), and every other
``SCIM_*`` setting of docs/configuration.md.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import platform
import secrets
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from functions_host import FunctionsHost, Listener, Worker
    from tools.azurite import Azurite

ROOT = Path(__file__).resolve().parents[1]
TOKEN_FILE = ROOT / ".scim-dev-token"
AZURITE_DATA = ROOT / ".azurite"

log = logging.getLogger("tools.run")

HOST_LIMIT_FACTOR = 4
"""``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT`` is set to this many times ``SCIM_MAX_BODY_BYTES`` (as in Bicep).

Above the host's limit the host fails the request with an empty 500 before the app runs
(Azure/azure-functions-host#10519); with the host's limit well above the app's, a body that is
too large gets the app's SCIM 413, which says what the limit is.
"""


def host_body_limit(max_body_bytes: int) -> int:
    """The host body limit for an app limit of ``max_body_bytes``."""
    return HOST_LIMIT_FACTOR * max_body_bytes


def _token() -> tuple[str, str]:
    """The Secret Token to serve with, and where it came from."""
    given = os.environ.get("SCIM_BEARER_TOKEN", "").strip()
    if given:
        return given, "from SCIM_BEARER_TOKEN"
    if TOKEN_FILE.exists():
        return TOKEN_FILE.read_text().strip(), f"kept in {TOKEN_FILE.name}"
    token = secrets.token_urlsafe(32)
    TOKEN_FILE.write_text(token + "\n")
    TOKEN_FILE.chmod(0o600)
    return token, f"generated, kept in {TOKEN_FILE.name}"


def _banner(tenant_url: str, token: str, token_origin: str, storage: str, runtime: str) -> str:
    rule = "-" * 72
    return "\n".join(
        [
            rule,
            "SCIM endpoint for Microsoft Entra provisioning is running.",
            "",
            f"  Tenant URL    {tenant_url}",
            f"  Secret Token  {token}   ({token_origin})",
            f"  Storage       {storage}",
            f"  Runtime       {runtime}",
            "",
            "Try it:",
            f'  curl -H "Authorization: Bearer $(cat {TOKEN_FILE.name})" {tenant_url}/ServiceProviderConfig'
            if "kept in" in token_origin or "generated" in token_origin
            else f'  curl -H "Authorization: Bearer $SCIM_BEARER_TOKEN" {tenant_url}/ServiceProviderConfig',
            "Entra's cloud service cannot reach 127.0.0.1: put this behind HTTPS on a reachable",
            "host name (docs/connect-entra.md). Ctrl-C stops it.",
            rule,
        ]
    )


def _azurite(service: str, port: int) -> Azurite:
    """Azurite's ``service`` on its usual port (``UseDevelopmentStorage=true`` then works), else on any."""
    from tools.azurite import Azurite

    location = str(AZURITE_DATA if service == "table" else AZURITE_DATA / service)
    try:
        return Azurite(service=service, port=port, location=location).start()
    except RuntimeError:
        return Azurite(service=service, location=location).start()


def _stop_on_sigterm() -> None:
    """Treat SIGTERM/SIGHUP like Ctrl-C, so Azurite is stopped on the way out."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)


def _close_app(worker: Worker) -> None:
    """Close the app's storage clients on the loop they were created on, then the worker."""
    import function_app  # already imported by the runtime

    try:
        worker.run_coroutine(function_app.runtime.aclose(), timeout=10)
    except Exception:
        log.warning("closing the app's clients failed", exc_info=True)
    worker.close()


def _wait_for_interrupt() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()


class StartupError(Exception):
    """A setting or a resource that keeps ``make run`` from starting; the message says what to do."""


def _port(environ: Mapping[str, str]) -> int:
    raw = environ.get("PORT", "").strip() or "7071"
    if not raw.isdigit() or int(raw) > 65535:
        raise StartupError(f"PORT={raw!r} is not a TCP port number (0-65535; 0 picks a free one)")
    return int(raw)


def _check_token(environ: Mapping[str, str]) -> None:
    """Refuse a Secret Token that is set but empty; a short one is warned about in the banner."""
    if "SCIM_BEARER_TOKEN" in environ and not environ["SCIM_BEARER_TOKEN"].strip():
        raise StartupError(
            "SCIM_BEARER_TOKEN is set but empty: unset it (make run then generates a strong one and "
            "keeps it in .scim-dev-token) or set a token of 32+ characters (`scim token new` makes one)"
        )


def _lock_data_folder(stack: contextlib.ExitStack) -> None:
    """Hold a lock on ``.azurite/`` for the life of the process: one ``make run`` per data folder.

    Two Azurite processes writing one folder corrupt it; the second ``make run`` stops here
    before starting anything.
    """
    AZURITE_DATA.mkdir(exist_ok=True)
    lock = stack.enter_context((AZURITE_DATA / ".lock").open("a+"))
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        owner = lock.read().strip() or "another process"
        raise StartupError(
            f".azurite/ is in use by another `make run` ({owner}): stop it first, or point this one at "
            "other storage with SCIM_STORAGE_CONNECTION_STRING"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()}")
    lock.flush()


def _listen(host: FunctionsHost, address: str, port: int) -> Listener:
    from functions_host import Listener

    try:
        return Listener(host, address, port)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise StartupError(
                f"port {port} on {address} is in use (another `make run`, or `func start`?): "
                f"stop it, or choose another port: PORT={port + 1} make run"
            ) from None
        raise StartupError(f"cannot listen on {address}:{port}: {error.strerror}") from None


def _settings_before_start(environ: Mapping[str, str]) -> int:
    """Validate every SCIM_* setting before anything starts; return SCIM_MAX_BODY_BYTES."""
    from scim.config import ConfigurationError, Settings, check_connection_string

    try:
        settings = Settings.from_env(environ)
        if settings.storage_connection_string:
            check_connection_string(settings.storage_connection_string)
    except ConfigurationError as error:
        raise StartupError(str(error)) from None
    return settings.max_body_bytes


def main() -> int:
    """Run until Ctrl-C or SIGTERM; 2 with one line on stderr when a setting or the port is unusable."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if os.environ.get("SCIM_LOG_FORMAT", "").lower() == "json":
        from scim.logs import JsonFormatter

        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    _stop_on_sigterm()
    try:
        with contextlib.ExitStack() as stack:
            return _serve(stack)
    except StartupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _serve(stack: contextlib.ExitStack) -> int:
    from functions_host import RUNTIME_VERSION, FunctionsHost, HostStartupError, IndexingError
    from functions_host.__main__ import quiet_runtime_logs
    from scim.config import WEAK_TOKEN_CHARS

    quiet_runtime_logs()
    # Everything that can be wrong is checked before anything starts or is announced.
    address = os.environ.get("HOST", "127.0.0.1")
    port = _port(os.environ)
    _check_token(os.environ)
    max_body_bytes = _settings_before_start(os.environ)
    connection_string = os.environ.get("SCIM_STORAGE_CONNECTION_STRING", "").strip()
    if not connection_string:
        _lock_data_folder(stack)
    host = FunctionsHost(ROOT)
    listener = _listen(host, address, port)  # a busy port fails here, before Azurite starts
    stack.callback(listener.shutdown)
    token, token_origin = _token()
    listener.start_thread()  # 503 until the app is indexed, as the host answers while starting
    notes: list[str] = []
    if connection_string:
        storage = "the storage account of SCIM_STORAGE_CONNECTION_STRING"
    else:
        print("Starting Azurite (table and queue services) ...", flush=True)
        azurite = _azurite("table", 10002)
        stack.callback(azurite.stop)
        queues = _azurite("queue", 10001)
        stack.callback(queues.stop)
        connection_string = azurite.connection_string_with(queues)
        storage = f"Azurite (tables {azurite.endpoint}, queues {queues.endpoint}; data in .azurite/)"
        notes += [
            "For `scim check|audit|feed|export` and the example consumer, in another shell (exactly):",
            f"  export SCIM_STORAGE_CONNECTION_STRING='{connection_string}'",
        ]
        if (azurite.port, queues.port) != (10002, 10001):
            notes.append(
                "Azurite's usual ports were busy (another Azurite?), so this one is elsewhere: "
                "UseDevelopmentStorage=true would reach the OTHER one. Use the string above."
            )
    if len(token) < WEAK_TOKEN_CHARS:
        notes.append(
            f"WARNING: the Secret Token is {len(token)} characters; use 32 or more "
            "(`scim token new` makes one). A short token can be guessed."
        )
    os.environ["SCIM_STORAGE_CONNECTION_STRING"] = connection_string
    os.environ["SCIM_BEARER_TOKEN"] = token
    os.environ.setdefault("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT", str(host_body_limit(max_body_bytes)))
    try:
        host.start()  # azure-functions-runtime imports and indexes function_app.py
    except (IndexingError, HostStartupError, ValueError) as error:
        raise StartupError(f"function_app.py cannot start: {error}") from None
    worker = host.worker
    assert worker is not None  # noqa: S101 - start() succeeded
    stack.callback(_close_app, worker)
    host.start_timers()
    stack.callback(host.stop_timers)
    shown_host = "127.0.0.1" if address in ("0.0.0.0", "") else address  # noqa: S104 - display only
    runtime = (
        f"azure-functions-runtime {RUNTIME_VERSION} on Python {platform.python_version()} "
        "(the .NET host's part emulated by functions_host)"
    )
    tenant_url = f"http://{shown_host}:{listener.server.port}/scim/v2"
    print(_banner(tenant_url, token, token_origin, storage, runtime), flush=True)
    for note in notes:
        print(note, flush=True)
    _wait_for_interrupt()
    return 0


if __name__ == "__main__":
    sys.exit(main())
