"""``python -m functions_host``: serve a folder's ``function_app.py`` like ``func start``.

Prints ``Starting on http://HOST:PORT`` when the port is bound (it answers 503 while the runtime
indexes the app), then ``Listening on http://HOST:PORT`` once the app is indexed (``--port 0``
picks a free port, so tests read the line). Exits with status 1 and the runtime's or the host's
reason when the app cannot start. App settings come from the environment.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading

from functions_host.routing import HostStartupError
from functions_host.server import FunctionsHost, Listener
from functions_host.worker import RUNTIME_VERSION, IndexingError


def main(argv: list[str] | None = None) -> int:
    """Serve until Ctrl-C; 1 when the app cannot start, 2 for bad arguments."""
    parser = argparse.ArgumentParser(prog="python -m functions_host", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--app-dir", default=".", help="folder with function_app.py and host.json (default: .)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7071, help="TCP port; 0 picks a free one (default: 7071)")
    parser.add_argument("--no-timers", action="store_true", help="do not run timer triggers")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_runtime_logs()
    try:
        host = FunctionsHost(args.app_dir)
        listener = Listener(host, args.host, args.port)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    listener.start_thread()  # the port answers 503 until the app is indexed, as the host does
    print(f"Starting on {listener.url} (503 until the app is indexed)", flush=True)
    try:
        host.start()
    except (IndexingError, HostStartupError, ValueError) as error:
        listener.shutdown()
        print(f"error: the function app in {host.app_dir} cannot start: {error}", file=sys.stderr)
        return 1
    if not args.no_timers:
        host.start_timers()
    print(f"azure-functions-runtime {RUNTIME_VERSION}; Listening on {listener.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        host.stop_timers()
        listener.shutdown()
    return 0


def quiet_runtime_logs() -> None:
    """The runtime logs every invocation at INFO ("Function name: ..."); keep warnings unless asked.

    ``PYTHON_ENABLE_DEBUG_LOGGING=1`` (the runtime's own setting) keeps everything.
    """
    if os.environ.get("PYTHON_ENABLE_DEBUG_LOGGING", "").lower() not in ("1", "true"):
        logging.getLogger("azure.functions").setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
