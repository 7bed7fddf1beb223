"""
FILE: cold_start.py

DESCRIPTION:
    Cold start of the SCIM endpoint, measured in fresh Python processes (issue 8), N times each
    (median and min):

    (a) time to ``import function_app``, plus ``python -X importtime`` parsed into the top 10
        modules by cumulative time, the top 10 by self time, and self time per package (the
        import alone: in Azure the runtime's worker init also indexes the app, timed in (c));
    (b) time to import its third-party dependencies alone. The list is derived from the importtime
        tree: every third-party module that first-party code (``function_app``, ``scim``) imports
        first, directly or through the standard library (e.g. ``azure.functions``,
        ``azure.data.tables.aio``, ``scim2_models``, ``aiohttp``, ``jwt``). Also, in one process,
        the dependencies then ``function_app`` on top (the project's own share). Target: (a)/(b)
        no more than 1.20;
    (c) the first request in a fresh process, as a Functions worker serves it, through the local
        Functions host (``functions_host``: the real ``azure-functions-runtime`` behind an
        emulation of the .NET host). A child imports ``functions_host`` (the runtime package, and
        werkzeug for the local listener), then runs the runtime's worker init, which imports AND
        indexes ``function_app.py`` as production's worker init does (``FunctionsHost.start``),
        then listens; this process then sends ``GET /scim/v2/Users?filter=userName eq "x"`` with
        the bearer token (against one Azurite, started here, whose table exists), then W warm
        requests. Reported: the timeline from process start to the first response, the first
        request's breakdown (runtime build = settings + table client, SCIM handler, of which
        storage round trips, and the rest: HTTP, the host's routing and conversion, the runtime's
        binding conversion and invocation) against a warm request's, and the modules imported
        lazily while serving. In Azure the listener is the .NET host's, not the worker's, and the
        worker is a thin proxy that loads the runtime package (azure-notes §6.1): the listen row
        has no counterpart in the worker. ``functions_host`` imports werkzeug for its listener, and
        ``azure.functions`` imports it too: in this child that import lands in the
        ``functions_host`` row, not in the worker init row as in Azure (its share: the
        ``werkzeug`` row of (a)'s self time per package).

    Every child uses a private bytecode cache (``PYTHONPYCACHEPREFIX`` in a temporary folder,
    filled by a warm-up run), so runs do not depend on what ``__pycache__`` the checkout holds; one
    more row times ``import function_app`` with the project's own modules compiled at each start
    (no ``.pyc`` for them: ``PYTHONDONTWRITEBYTECODE=1``, or a read-only package without them).

    Prints tables and one ``JSON:`` line. Progress goes to stderr. Loopback only; every child
    process (and Azurite) is stopped before exit.

USAGE:
    .venv/bin/python -m bench.cold_start [--repeat N] [--warm W]

    --repeat N   fresh processes per measurement (default 10)
    --warm W     warm requests after the first one, per process of (c) (default 20)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tools.azurite import Azurite

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = frozenset({"function_app", "scim", "tools", "bench", "functions_host"})
TARGET_RATIO = 1.20
CHILD_TIMEOUT_S = 60.0
TABLE_NAME = "coldstart"
FILTER = 'userName eq "x"'

# A child that times one import statement and prints the seconds (nothing else imported first:
# `time` is built in).
IMPORT_CHILD = """\
import time
_t0 = time.perf_counter()
{imports}
_t1 = time.perf_counter()
import json, sys
print(json.dumps({{"seconds": _t1 - _t0, "modules": len(sys.modules)}}))
"""

# The dependencies, then function_app on top, in one process: the project's own share.
SPLIT_CHILD = """\
import time
_t0 = time.perf_counter()
{imports}
_t1 = time.perf_counter()
import function_app
_t2 = time.perf_counter()
import json
print(json.dumps({{"deps": _t1 - _t0, "own": _t2 - _t1}}))
"""

# (c): a fresh worker. Its phases, each timed: import functions_host (the runtime package and the
# local listener), the runtime's worker init (FunctionsHost.start: import + index function_app.py,
# as production's worker init does), the bench's instrumentation, listening; it prints "ready" and
# waits for a line on stdin before reporting each request's figures and the modules imported since
# it was ready.
#
# Order: the instrumentation is installed AFTER the worker init and BEFORE listening. After, so
# that the timed init is exactly production's (nothing imported or patched ahead of the runtime's
# own `importlib.import_module("function_app")`); patching first would need `import function_app`
# first, which would move the import out of the init row. Before listening, so that it is in
# place for the first request, and still in time: indexing does not build the SCIM runtime, which
# builds itself (Runtime._build, which calls scim.storage.tables.connect through open_repository) on the
# first request. The instrumentation does not change behaviour: a counting/timing per-retry
# policy in the table client, a timer around Runtime._build, and a log handler collecting the
# latency that scim.web.api logs for each request.
SERVE_CHILD = """\
import time
T0 = time.time()
from functions_host import FunctionsHost, serve_in_thread
T1 = time.time()
host = FunctionsHost(".")
host.start()
T2 = time.time()
import json, logging, sys
import function_app  # imported by the runtime's worker init: this is a sys.modules lookup
import scim.storage.tables
from azure.core.pipeline.policies import SansIOHTTPPolicy

class Meter(SansIOHTTPPolicy):
    trips = 0
    seconds = 0.0
    def on_request(self, request):
        Meter.trips += 1
        request.context["bench_started"] = time.perf_counter()
    def on_response(self, request, response):
        Meter.seconds += time.perf_counter() - request.context["bench_started"]

_connect = scim.storage.tables.connect
def connect(connection_string, table_name, *, per_retry_policies=()):
    return _connect(connection_string, table_name, per_retry_policies=[*per_retry_policies, Meter()])
scim.storage.tables.connect = connect

builds = []
runtime = function_app.runtime
assert runtime._api is None, "the SCIM runtime was built before the first request"
_build = runtime._build
def timed_build():
    started = time.perf_counter()
    try:
        return _build()
    finally:
        builds.append(time.perf_counter() - started)
runtime._build = timed_build

requests = []
class Capture(logging.Handler):
    seen = (0, 0.0, 0)
    def emit(self, record):
        fields = getattr(record, "scim", None)
        if not fields:
            return
        trips, seconds, built = Capture.seen
        requests.append({
            "status": fields["status"],
            "handler_ms": fields["latency_ms"],
            "trips": Meter.trips - trips,
            "storage_ms": round(1000 * (Meter.seconds - seconds), 3),
            "build_ms": round(1000 * sum(builds[built:]), 3),
        })
        Capture.seen = (Meter.trips, Meter.seconds, len(builds))
api_log = logging.getLogger("scim.api")
api_log.setLevel(logging.INFO)
api_log.propagate = False
api_log.addHandler(Capture())

T3 = time.time()
try:
    with serve_in_thread(host) as base:  # the host has started: this binds and serves
        before = set(sys.modules)
        T4 = time.time()
        print(json.dumps({"event": "ready", "base": base, "t_start": T0, "t_host_imported": T1,
                          "t_indexed": T2, "t_instrumented": T3, "t_ready": T4}), flush=True)
        sys.stdin.readline()
        new_modules = sorted(set(sys.modules) - before)
finally:
    try:
        host.worker.run_coroutine(runtime.aclose())
    finally:
        host.worker.close()
print(json.dumps({"event": "done", "requests": requests, "new_modules": new_modules}), flush=True)
"""


# --- figures ------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def ms(seconds: float) -> float:
    return round(1000 * seconds, 2)


def summary(values_s: Sequence[float]) -> dict[str, float]:
    """Median and min, in ms, of durations given in seconds."""
    return {"median_ms": ms(median(values_s)), "min_ms": ms(min(values_s) if values_s else 0.0)}


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version()}


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- children -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bytecode:
    """Where the children keep their bytecode (``PYTHONPYCACHEPREFIX``), and whether they write it.

    A private cache makes every run alike whatever the checkout holds: the warm-up fills it, as a
    deployment with compiled files would have it, for every module including the project's.
    """

    prefix: Path
    write: bool = True

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """This environment without SCIM_* settings, with this cache (and with ``extra``)."""
        own = ("PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE")
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("SCIM_") and name not in own
        }
        env["PYTHONPYCACHEPREFIX"] = str(self.prefix)
        if not self.write:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.update(extra or {})
        return env

    def without_project(self, prefix: Path) -> Bytecode:
        """A read-only copy of this cache without the repository's modules (compiled at each start)."""
        shutil.copytree(self.prefix, prefix)
        project = prefix / ROOT.relative_to(ROOT.anchor)  # the venv may live here too: keep it
        for package in ("scim", "tools"):
            shutil.rmtree(project / package, ignore_errors=True)
        for compiled in project.glob("function_app.*.pyc"):
            compiled.unlink()
        return Bytecode(prefix, write=False)


def run_python(arguments: Sequence[str], bytecode: Bytecode) -> subprocess.CompletedProcess[str]:
    """Run the venv's Python in the repository root; raise with its stderr if it fails."""
    completed = subprocess.run(
        [sys.executable, *arguments],
        cwd=ROOT,
        env=bytecode.env(),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"child failed ({completed.returncode}):\n{completed.stderr[-2000:]}")
    return completed


def last_json(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"the child printed no JSON: {stdout[-500:]!r}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def import_statements(modules: Iterable[str]) -> str:
    return "\n".join(f"import {module}" for module in modules)


def time_import(modules: Sequence[str], bytecode: Bytecode) -> float:
    """Seconds to import ``modules`` in a fresh process."""
    code = IMPORT_CHILD.format(imports=import_statements(modules))
    return float(last_json(run_python(["-c", code], bytecode).stdout)["seconds"])


def time_split(dependencies: Sequence[str], bytecode: Bytecode) -> tuple[float, float]:
    """Seconds to import the dependencies, then function_app on top, in one fresh process."""
    code = SPLIT_CHILD.format(imports=import_statements(dependencies))
    result = last_json(run_python(["-c", code], bytecode).stdout)
    return float(result["deps"]), float(result["own"])


# --- -X importtime ------------------------------------------------------------------------------


@dataclass
class Node:
    """One line of ``-X importtime``: a module, its self and cumulative microseconds, its imports."""

    name: str
    self_us: int
    cumulative_us: int
    children: list[Node] = field(default_factory=list)

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()


def parse_importtime(text: str) -> list[Node]:
    """The import trees of ``-X importtime`` output (post-order, two spaces per nesting level)."""
    waiting: dict[int, list[Node]] = {}
    for line in text.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line[len("import time:") :].split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue  # the header line
        raw = parts[2][1:]
        name = raw.lstrip(" ")
        level = (len(raw) - len(name)) // 2
        node = Node(name.strip(), int(parts[0]), int(parts[1]), waiting.pop(level + 1, []))
        waiting.setdefault(level, []).append(node)
    return waiting.get(0, [])


def importtime_tree(bytecode: Bytecode) -> Node:
    """The import tree of ``function_app`` in a fresh process."""
    completed = run_python(["-X", "importtime", "-c", "import function_app"], bytecode)
    for root in parse_importtime(completed.stderr):
        if root.name == "function_app":
            return root
    raise RuntimeError("no `function_app` entry in the -X importtime output")


def origin(module: str) -> str:
    """``first-party``, ``stdlib`` or ``third-party``."""
    top = module.split(".")[0]
    if top in FIRST_PARTY:
        return "first-party"
    if top in sys.stdlib_module_names:
        return "stdlib"
    return "third-party"


def package_of(module: str) -> str:
    """What a module's time is grouped under: its top-level package, ``azure.<x>``, or ``(stdlib)``."""
    parts = module.split(".")
    kind = origin(module)
    if kind == "stdlib":
        return "(stdlib)"
    if kind == "first-party":
        return parts[0]
    return ".".join(parts[:2]) if parts[0] == "azure" and len(parts) > 1 else parts[0]


def dependencies_of(root: Node) -> list[str]:
    """Third-party modules first imported by first-party code (directly or through the stdlib)."""
    found: list[str] = []

    def visit(node: Node) -> None:
        for child in node.children:
            if origin(child.name) == "third-party":
                found.append(child.name)
            else:
                visit(child)

    visit(root)
    return found


@dataclass
class ImportProfile:
    """Medians over several ``-X importtime`` runs."""

    total_us: list[int] = field(default_factory=list)
    cumulative: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    own: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    packages: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    def add(self, root: Node) -> None:
        self.total_us.append(root.cumulative_us)
        per_package: dict[str, int] = defaultdict(int)
        for node in root.walk():
            self.cumulative[node.name].append(node.cumulative_us)
            self.own[node.name].append(node.self_us)
            per_package[package_of(node.name)] += node.self_us
        for package, total in per_package.items():
            self.packages[package].append(total)

    def top(self, table: dict[str, list[int]], count: int, skip: str = "") -> list[dict[str, Any]]:
        medians = {name: median(values) for name, values in table.items() if name != skip}
        ranked = sorted(medians.items(), key=lambda item: -item[1])[:count]
        total = median(self.total_us) or 1
        return [
            {"module": name, "ms": round(value / 1000, 1), "share": round(value / total, 3)}
            for name, value in ranked
        ]


# --- (c) first request --------------------------------------------------------------------------


class Lines:
    """A child's stdout, read line by line from a thread, with timeouts."""

    def __init__(self, stream: IO[str]) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def next_json(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the child did not answer in time")
            line = self._queue.get(timeout=remaining)
            if line is None:
                raise RuntimeError("the child exited early")
            if line.startswith("{"):
                result: dict[str, Any] = json.loads(line)
                return result


@dataclass
class FirstRequest:
    """One fresh worker's timeline and requests (seconds unless named otherwise)."""

    interpreter: float
    host_imported: float
    indexed: float
    instrumented: float
    listening: float
    notice: float
    first: float
    warm: list[float]
    start_to_response: float
    indexed_to_response: float
    server: list[dict[str, Any]]
    new_modules: list[str]


def stop(process: subprocess.Popen[str]) -> None:
    """End a child this benchmark started: close its stdin, wait, then kill it by its handle."""
    if process.stdin is not None and not process.stdin.closed:
        try:
            process.stdin.close()
        except OSError:
            pass
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def first_request(env: dict[str, str], token: str, warm: int, client: Any) -> FirstRequest:
    """Start a fresh worker, send it the first request, then ``warm`` more; collect its figures."""
    with tempfile.TemporaryFile(mode="w+") as errors:
        started = time.time()
        process = subprocess.Popen(
            [sys.executable, "-c", SERVE_CHILD],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        try:
            assert process.stdout is not None and process.stdin is not None
            lines = Lines(process.stdout)
            ready = lines.next_json(CHILD_TIMEOUT_S)
            url = ready["base"] + "/scim/v2/Users"
            headers = {"Authorization": f"Bearer {token}"}
            sent = time.time()
            began = time.perf_counter()
            response = client.get(url, params={"filter": FILTER}, headers=headers)
            first = time.perf_counter() - began
            answered = time.time()
            if response.status_code != 200 or response.json().get("totalResults") != 0:
                raise RuntimeError(f"first request: {response.status_code} {response.text[:300]}")
            latencies = []
            for _ in range(warm):
                began = time.perf_counter()
                response = client.get(url, params={"filter": FILTER}, headers=headers)
                latencies.append(time.perf_counter() - began)
                if response.status_code != 200:
                    raise RuntimeError(f"warm request: {response.status_code} {response.text[:300]}")
            process.stdin.write("done\n")
            process.stdin.flush()
            done = lines.next_json(CHILD_TIMEOUT_S)
        except BaseException:
            stop(process)
            errors.seek(0)
            progress(errors.read()[-2000:])
            raise
        stop(process)
    return FirstRequest(
        interpreter=ready["t_start"] - started,
        host_imported=ready["t_host_imported"] - ready["t_start"],
        indexed=ready["t_indexed"] - ready["t_host_imported"],
        instrumented=ready["t_instrumented"] - ready["t_indexed"],
        listening=ready["t_ready"] - ready["t_instrumented"],
        notice=sent - ready["t_ready"],
        first=first,
        warm=latencies,
        start_to_response=answered - started,
        indexed_to_response=answered - ready["t_indexed"],
        server=done["requests"],
        new_modules=done["new_modules"],
    )


def first_request_report(runs: list[FirstRequest]) -> dict[str, Any]:
    """Medians over the fresh workers, first request against warm ones."""

    def server_ms(index: slice, key: str) -> float:
        values = [row[key] for run in runs for row in run.server[index]]
        return round(median(values), 3)

    first_server = {
        key: server_ms(slice(0, 1), key) for key in ("handler_ms", "storage_ms", "build_ms", "trips")
    }
    warm_server = {
        key: server_ms(slice(1, None), key) for key in ("handler_ms", "storage_ms", "build_ms", "trips")
    }
    first_ms = ms(median([run.first for run in runs]))
    warm_ms = ms(median([w for run in runs for w in run.warm]))
    lazy = sorted({m for run in runs for m in run.new_modules})
    lazy_packages: dict[str, int] = defaultdict(int)
    for module in lazy:
        lazy_packages[package_of(module)] += 1
    return {
        "timeline": {
            "interpreter_start": summary([r.interpreter for r in runs]),
            "import_host_and_runtime": summary([r.host_imported for r in runs]),
            "worker_init_and_index": summary([r.indexed for r in runs]),
            "bench_instrumentation": summary([r.instrumented for r in runs]),
            "listen": summary([r.listening for r in runs]),
            "ready_to_request_sent": summary([r.notice for r in runs]),
            "first_request": summary([r.first for r in runs]),
            "process_start_to_first_response": summary([r.start_to_response for r in runs]),
            "worker_init_done_to_first_response": summary([r.indexed_to_response for r in runs]),
        },
        "first": {"latency_ms": first_ms, **first_server},
        "warm": {"latency_ms": warm_ms, **warm_server},
        "first_extra_ms": round(first_ms - warm_ms, 2),
        "lazy_modules": len(lazy),
        "lazy_packages": dict(sorted(lazy_packages.items(), key=lambda item: -item[1])),
    }


def measure_first_requests(repeat: int, warm: int, bytecode: Bytecode) -> dict[str, Any]:
    """(c): one Azurite with the table created, then ``repeat`` fresh workers."""
    import httpx
    from azure.data.tables import TableClient

    token = secrets.token_urlsafe(32)
    with Azurite() as azurite:
        with TableClient.from_connection_string(azurite.connection_string, TABLE_NAME) as table:
            table.create_table()
        env = bytecode.env(
            {
                "SCIM_STORAGE_CONNECTION_STRING": azurite.connection_string,
                "SCIM_TABLE_NAME": TABLE_NAME,
                "SCIM_BEARER_TOKEN": token,
            }
        )
        runs: list[FirstRequest] = []
        with httpx.Client(timeout=30.0) as client:
            # Warm this side (the client's code paths) and the pyc caches: one worker, not counted.
            first_request(env, token, 1, client)
            for index in range(repeat):
                progress(f"  (c) fresh worker {index + 1}/{repeat}")
                runs.append(first_request(env, token, warm, client))
    return first_request_report(runs)


# --- report -------------------------------------------------------------------------------------


def status(ratio: float) -> str:
    return "OK" if ratio <= TARGET_RATIO else "OVER"


def print_imports(report: dict[str, Any]) -> None:
    a, b = report["function_app"], report["dependencies"]
    split, ratio = report["same_process"], report["ratio"]
    width = 58
    title = f"(a)/(b) import time in fresh processes (N={report['repeat']})"
    print(f"{title:<{width}}{'median ms':>10}{'min ms':>10}")
    print(f"{'  import function_app':<{width}}{a['median_ms']:>10.1f}{a['min_ms']:>10.1f}")
    label = f"  import its {len(report['dependency_modules'])} dependencies alone"
    print(f"{label:<{width}}{b['median_ms']:>10.1f}{b['min_ms']:>10.1f}")
    print(
        f"{'  ratio (a)/(b)':<{width}}{ratio:>10.3f}{report['ratio_of_mins']:>10.3f}"
        f"   target <= {TARGET_RATIO:.2f}: {status(ratio)} (on medians)"
    )
    uncompiled, other = report["function_app_project_uncompiled"], report["ratio_project_uncompiled"]
    print(f"{'  import function_app, project .py compiled at each start':<{width}}", end="")
    print(
        f"{uncompiled['median_ms']:>10.1f}{uncompiled['min_ms']:>10.1f}   ratio {other:.3f}: {status(other)}"
    )
    print(f"{'  same process: the dependencies':<{width}}{split['deps_ms']:>10.1f}")
    print(f"{'  same process: then function_app on top (own modules)':<{width}}{split['own_ms']:>10.1f}")
    print(f"  dependencies: {', '.join(report['dependency_modules'])}")
    print("  bytecode: a private PYTHONPYCACHEPREFIX, filled by a warm-up (as a deployment with compiled")
    print("  files); the 'compiled at each start' row drops the project's .pyc (no __pycache__ and a")
    print("  read-only package, or PYTHONDONTWRITEBYTECODE=1 as in this sandbox)")
    print()
    print(
        f"-X importtime of function_app, median of {report['repeat']} "
        f"(total {report['importtime_total_ms']:.1f} ms: tracing inflates it)"
    )
    for title, rows in (
        ("top 10 modules by cumulative time", report["top_cumulative"]),
        ("top 10 modules by self time", report["top_self"]),
        ("self time per package", report["packages"]),
    ):
        print(f"  {title:<50}{'ms':>8}{'share':>8}")
        for row in rows:
            print(f"    {row['module']:<48}{row['ms']:>8.1f}{row['share']:>8.1%}")


def print_first_request(report: dict[str, Any], repeat: int, warm: int) -> None:
    print(
        f"(c) first request in a fresh worker (N={repeat}; {warm} warm requests each)   median ms    min ms"
    )
    labels = {
        "interpreter_start": "spawn -> first statement (interpreter start)",
        "import_host_and_runtime": "import functions_host (runtime package, werkzeug)",
        "worker_init_and_index": "runtime worker init: import + index function_app.py",
        "bench_instrumentation": "bench instrumentation (not in production)",
        "listen": "listen (bind, serve from a thread)",
        "ready_to_request_sent": "ready -> request sent",
        "first_request": "first request (client-side latency)",
        "process_start_to_first_response": "process start -> first response",
        "worker_init_done_to_first_response": "worker init done -> first response",
    }
    for key, label in labels.items():
        row = report["timeline"][key]
        print(f"  {label:<58}{row['median_ms']:>9.1f} {row['min_ms']:>9.1f}")
    first, warm_row = report["first"], report["warm"]
    print()
    print(f"  {'request breakdown (median ms)':<44}{'first':>9}{'warm':>9}{'extra':>9}")
    rest_first = first["latency_ms"] - first["handler_ms"] - first["build_ms"]
    rest_warm = warm_row["latency_ms"] - warm_row["handler_ms"] - warm_row["build_ms"]
    rows = [
        ("client-side latency", first["latency_ms"], warm_row["latency_ms"]),
        ("  runtime build (settings + table client)", first["build_ms"], warm_row["build_ms"]),
        ("  SCIM handler (auth, filter, storage, render)", first["handler_ms"], warm_row["handler_ms"]),
        ("    of which storage", first["storage_ms"], warm_row["storage_ms"]),
        ("  rest (HTTP, host, runtime binding + invoke)", rest_first, rest_warm),
        ("storage round trips", first["trips"], warm_row["trips"]),
    ]
    for label, one, other in rows:
        print(f"  {label:<44}{one:>9.2f}{other:>9.2f}{one - other:>9.2f}")
    packages = ", ".join(f"{name} {count}" for name, count in report["lazy_packages"].items())
    print(
        f"  modules imported while serving (first request): {report['lazy_modules']} ({packages or 'none'})"
    )


# --- main ---------------------------------------------------------------------------------------


def measure_imports(repeat: int, bytecode: Bytecode, uncompiled: Path) -> dict[str, Any]:
    progress("warm-up: import function_app under -X importtime (fills the bytecode cache; dependency list)")
    dependencies = dependencies_of(importtime_tree(bytecode))
    progress(f"dependencies of function_app: {', '.join(dependencies)}")
    time_import(["function_app"], bytecode)  # warm-up, not counted
    time_import(dependencies, bytecode)  # warm-up, not counted
    source = bytecode.without_project(uncompiled)
    whole: list[float] = []
    alone: list[float] = []
    compiling: list[float] = []
    deps_part: list[float] = []
    own_part: list[float] = []
    profile = ImportProfile()
    for index in range(repeat):
        progress(f"  (a)/(b) fresh processes, round {index + 1}/{repeat}")
        whole.append(time_import(["function_app"], bytecode))
        alone.append(time_import(dependencies, bytecode))
        compiling.append(time_import(["function_app"], source))
        deps, own = time_split(dependencies, bytecode)
        deps_part.append(deps)
        own_part.append(own)
        profile.add(importtime_tree(bytecode))
    ratio = median(whole) / median(alone)
    own_ms, deps_ms = ms(median(own_part)), ms(median(deps_part))
    return {
        "repeat": repeat,
        "function_app": summary(whole),
        "dependencies": summary(alone),
        "ratio": round(ratio, 3),
        "ratio_of_mins": round(min(whole) / min(alone), 3),
        "function_app_project_uncompiled": summary(compiling),
        "ratio_project_uncompiled": round(median(compiling) / median(alone), 3),
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio <= TARGET_RATIO,
        "dependency_modules": dependencies,
        "same_process": {
            "deps_ms": deps_ms,
            "own_ms": own_ms,
            "own_share": round(own_ms / (own_ms + deps_ms), 3) if own_ms + deps_ms else 0.0,
        },
        "importtime_total_ms": round(median(profile.total_us) / 1000, 1),
        "top_cumulative": profile.top(profile.cumulative, 10, skip="function_app"),
        "top_self": profile.top(profile.own, 10),
        "packages": profile.top(profile.packages, 12),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.cold_start", description=__doc__.split("\n\n")[1])
    parser.add_argument("--repeat", type=int, default=10, help="fresh processes per measurement (default 10)")
    parser.add_argument("--warm", type=int, default=20, help="warm requests per worker in (c) (default 20)")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.warm < 1:
        parser.error("--repeat and --warm must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    started = time.perf_counter()
    print(f"machine: {info['platform']}, {info['cpu_count']} CPUs, Python {info['python']}")
    with tempfile.TemporaryDirectory(prefix="bench-cold-start-") as scratch:
        bytecode = Bytecode(Path(scratch) / "pycache")
        imports = measure_imports(args.repeat, bytecode, Path(scratch) / "pycache-without-project")
        progress("(c) first request: starting Azurite")
        first = measure_first_requests(args.repeat, args.warm, bytecode)
    print()
    print_imports(imports)
    print()
    print_first_request(first, args.repeat, args.warm)
    report = {
        "machine": info,
        "imports": imports,
        "first_request": first,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print("JSON: " + json.dumps(report, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
