"""The local Functions host: the real Python runtime behind a small stand-in for the .NET host.

``make run``, the HTTP tests and the benchmarks serve ``function_app.py`` through this package.
What runs is split the way Azure splits it:

- **Real: the Python side.** ``azure-functions-runtime`` — the package Azure loads for Python
  3.13+, at the version pinned in ``requirements.txt`` — imports and indexes the app (with the
  validation that refuses a broken app in Azure), decodes each request with ``azure.functions``'
  binding converters, invokes the function on its event loop or thread pool and encodes the
  response (:mod:`functions_host.worker`).
- **Emulated: the .NET host's part**, rule by rule from its published source, each rule named with
  its source in the module that applies it: listening and start-up (:mod:`functions_host.server`),
  routing (:mod:`functions_host.routing`), HTTP to and from the runtime's ``Datum``
  (:mod:`functions_host.http`), timer schedules (:mod:`functions_host.timers`) and host.json and
  app settings (:mod:`functions_host.config`).

Run a folder's app: ``python -m functions_host [--app-dir DIR] [--port 7071]``.
"""

from functions_host.routing import HostStartupError
from functions_host.server import FunctionsHost, Listener, serve_in_thread
from functions_host.worker import RUNTIME_VERSION, IndexingError, Worker, load_worker

__all__ = [
    "RUNTIME_VERSION",
    "FunctionsHost",
    "HostStartupError",
    "IndexingError",
    "Listener",
    "Worker",
    "load_worker",
    "serve_in_thread",
]
