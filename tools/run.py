"""``make run``: serve the SCIM endpoint locally, as Entra would call it.

Starts Azurite (unless ``SCIM_STORAGE_CONNECTION_STRING`` names a storage
account), picks or generates the Secret Token, prints the Tenant URL and the
token to paste into Entra, and serves ``function_app.py``'s triggers through
the Functions host emulator on ``http://127.0.0.1:$PORT/scim/v2``.

Environment: ``PORT`` (7071), ``HOST`` (127.0.0.1), ``SCIM_BEARER_TOKEN``
(generated and kept in ``.scim-dev-token`` when unset), ``SCIM_STORAGE_CONNECTION_STRING``
(Azurite with data kept in ``.azurite/`` when unset), and every other
``SCIM_*`` setting of the README.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from azure.functions.decorators.function_app import Function

    from tools.azurite import Azurite
    from tools.devserver import HostEmulator

ROOT = Path(__file__).resolve().parents[1]
TOKEN_FILE = ROOT / ".scim-dev-token"
AZURITE_DATA = ROOT / ".azurite"

log = logging.getLogger("tools.run")

BODY_FRAMING_MARGIN = 64 * 1024
"""Bytes the dev server accepts above ``SCIM_MAX_BODY_BYTES`` before refusing a body unread.

Bodies up to the limit plus this margin reach the app, whose own check gives the
exact 413 message; anything larger is refused from its ``Content-Length``.
"""


def scim_emulator(functions: Iterable[Function], max_body_bytes: int) -> HostEmulator:
    """The host emulator for ``function_app``: SCIM 413 (RFC 7644 §3.12) for bodies never read."""
    import azure.functions as func

    from scim.api import error_response
    from scim.errors import PayloadTooLargeError
    from tools.devserver import HostEmulator, read_route_prefix

    limit = max_body_bytes + BODY_FRAMING_MARGIN
    error = PayloadTooLargeError(
        f"The body is larger than the limit of {max_body_bytes:,} bytes (SCIM_MAX_BODY_BYTES); "
        "it was not read."
    )
    refused = error_response(error)
    too_large = func.HttpResponse(body=refused.body, status_code=refused.status, headers=refused.headers)
    return HostEmulator(
        functions=functions,
        route_prefix=read_route_prefix(ROOT / "host.json"),
        max_body_bytes=limit,
        too_large=too_large,
    )


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


def _banner(tenant_url: str, token: str, token_origin: str, storage: str) -> str:
    rule = "-" * 72
    return "\n".join(
        [
            rule,
            "SCIM endpoint for Microsoft Entra provisioning is running.",
            "",
            f"  Tenant URL    {tenant_url}",
            f"  Secret Token  {token}   ({token_origin})",
            f"  Storage       {storage}",
            "",
            "Try it:",
            f'  curl -H "Authorization: Bearer $(cat {TOKEN_FILE.name})" {tenant_url}/ServiceProviderConfig'
            if "kept in" in token_origin or "generated" in token_origin
            else f'  curl -H "Authorization: Bearer $SCIM_BEARER_TOKEN" {tenant_url}/ServiceProviderConfig',
            "Entra's cloud service cannot reach 127.0.0.1: put this behind HTTPS on a reachable",
            "host name (docs: README, 'Connect Microsoft Entra'). Ctrl-C stops it.",
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


def main() -> int:
    """Run until Ctrl-C or SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if os.environ.get("SCIM_LOG_FORMAT", "").lower() == "json":
        from scim.logs import JsonFormatter

        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    _stop_on_sigterm()
    from scim.config import ConfigurationError, Settings
    from tools.devserver import serve

    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "7071"))
    token, token_origin = _token()
    with contextlib.ExitStack() as stack:
        connection_string = os.environ.get("SCIM_STORAGE_CONNECTION_STRING", "").strip()
        shared = ""
        if connection_string:
            storage = "the storage account of SCIM_STORAGE_CONNECTION_STRING"
        else:
            AZURITE_DATA.mkdir(exist_ok=True)
            print("Starting Azurite (table and queue services) ...", flush=True)
            azurite = _azurite("table", 10002)
            stack.callback(azurite.stop)
            queues = _azurite("queue", 10001)
            stack.callback(queues.stop)
            connection_string = azurite.connection_string_with(queues)
            shared = f"export SCIM_STORAGE_CONNECTION_STRING='{connection_string}'"
            storage = f"Azurite (tables {azurite.endpoint}, queues {queues.endpoint}; data in .azurite/)"
        os.environ["SCIM_STORAGE_CONNECTION_STRING"] = connection_string
        os.environ["SCIM_BEARER_TOKEN"] = token

        import function_app  # reads SCIM_* settings on the first request

        try:
            max_body_bytes = Settings.from_env(os.environ).max_body_bytes
        except ConfigurationError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        emulator = scim_emulator(function_app.app.get_functions(), max_body_bytes)
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - display only
        print(_banner(f"http://{shown_host}:{port}/scim/v2", token, token_origin, storage), flush=True)
        if shared:
            print(
                "For python -m scim check|audit|feed and the example consumer, in another shell:", flush=True
            )
            print(f"  {shared}", flush=True)
        # The change-feed relay (a timer trigger) runs every second: events reach the queue promptly.
        serve(emulator, host=host, port=port, on_shutdown=function_app.runtime.aclose, timer_interval=1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
