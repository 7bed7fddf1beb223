"""
FILE: reference.py

DESCRIPTION:
    Issue 8: the Entra workload against this endpoint and against the in-memory reference server
    ``scim2-server`` (PyPI), in the same run, reported as ratios (ours / reference). The target is
    server CPU per request below the reference's, despite real storage.

    Each server runs in its own subprocess (``python -m bench.reference --serve KIND``), served by
    the same threaded werkzeug server on a free loopback port, without access log:

    - ours: ``function_app.py``'s triggers through the local Functions host (``functions_host``: the real
      ``azure-functions-runtime`` behind an emulation of the .NET host),
      as ``make run`` serves them, over Azurite (in memory; a separate Node process started here);
    - reference: ``scim2-server``'s WSGI application (``BearerTokenApplication`` over
      ``InMemoryStorage``, default schemas and resource types, a static bearer token), as its
      ``scim2-server`` command builds it.

    The same client drives both, one after the other, with the same concurrency (C worker threads,
    each with its own ``httpx.Client``):

    - users phase, N cycles of what Entra sends for a user (as ``bench.users``): probe (filter on
      a random GUID), match (0 results), create (Entra's *Create User* body), match in upper case
      (1 result), GET, PATCH (default-client multi-op replace), PATCH manager (bare id, Entra's
      shape), PATCH active "False", DELETE;
    - groups phase, G cycles of what Entra sends for a group: probe (``displayName`` filter with
      ``excludedAttributes=members``), create (Entra's *Create Group* body), match, PATCH add K
      members, GET without members, PATCH remove K/2 members (Entra's ``Remove`` + ``path:
      members`` + ``value`` form), PATCH rename, DELETE. The K member users are created before the
      phase and deleted after it, unmeasured. A server that rejects Entra's *Create Group* body
      gets the same group again without Microsoft's extra schema URI (``group_create_core``), so
      the rest of its cycle still runs.

    A PATCH may answer 200 or 204 (RFC 7644 §3.5.2; Entra accepts both). Any other answer is a
    failure of that request, counted for that server, and the cycle goes on with its next request,
    so both servers get the same requests (but ``group_create_core``). One warm-up cycle of each
    kind runs first, unmeasured.

    Server CPU time is read from ``/proc/<pid>/stat`` (user + system, all threads) of the server
    subprocess just before and after each phase, divided by the phase's requests. Azurite's CPU
    (every process of its process group) is reported separately, never in ours. The client's CPU
    (this process) is reported too, and so is the CPU every other process of the machine used
    during the phase (``/proc/stat``): when that is not near 0, the machine was shared and the
    figures are less reliable. Latencies are client-side, per operation.

    Prints the machine, one table per server (count, failures, p50/p95 ms per operation), a table
    of phase figures (requests, ops/s, server CPU ms/request, Azurite CPU ms/request, client CPU
    ms/request, other processes' CPU, peak RSS), the ratios ours / reference, which requests the
    reference rejected, and one ``JSON:`` line with the same figures. Exits non-zero if one of
    *our* requests failed (the reference's failures are figures).

USAGE:
    .venv/bin/python -m bench.reference [--users N] [--groups G] [--members K] [--concurrency C]

    --users N          user cycles per server (default 200)
    --groups G         group cycles per server (default 20; 0 skips the groups phase)
    --members K        members added per group PATCH (default 10)
    --concurrency C    client worker threads (default 8)
    --order A,B        which server runs first (default reference,ours)

    Needs ``scim2-server`` in the venv: ``.venv/bin/pip install scim2-server==0.8.3``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import select
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.users import (
    ENTERPRISE,
    GROUP,
    OP_HEADER,
    entra_group,
    entra_user,
    machine,
    members_of,
    patch_body,
    percentile,
)

ROOT = Path(__file__).resolve().parents[1]

REFERENCE_PACKAGE = "scim2-server"
KINDS = ("reference", "ours")
LABELS = {
    "ours": "ours (function_app + local Functions host + Azurite)",
    "reference": "reference (scim2-server, in memory)",
}


USER_OPERATIONS = (
    "probe",
    "match_miss",
    "create",
    "match_hit",
    "get",
    "patch",
    "patch_manager",
    "patch_disable",
    "delete",
)
GROUP_OPERATIONS = (
    "group_probe",
    "group_create",
    "group_create_core",
    "group_match",
    "group_add",
    "group_get",
    "group_remove",
    "group_rename",
    "group_delete",
)
PATCH_OK = (200, 204)
"""RFC 7644 §3.5.2: 200 with the resource, or 204; Entra accepts both."""

TOKEN_ENV = "BENCH_REFERENCE_TOKEN"
_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 10.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- /proc: CPU time and memory of other processes ------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    """Fields 3.. of ``/proc/<pid>/stat`` (after the command name, which may hold spaces)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (``utime`` + ``stime``)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _processes() -> Iterator[tuple[int, list[str]]]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError):
                yield int(entry.name), _stat_fields(int(entry.name))


def group_cpu_seconds(pgid: int) -> float:
    """CPU time of every live process of a process group."""
    ticks = sum(int(f[11]) + int(f[12]) for _, f in _processes() if int(f[2]) == pgid)
    return ticks / _CLOCK_TICKS


def azurite_process_group() -> int:
    """The process group of the Azurite this process started (its own session, so pgid = pid)."""
    me = os.getpid()
    for pid, fields in _processes():
        if int(fields[1]) != me:
            continue
        with contextlib.suppress(OSError):
            if b"azurite" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return int(fields[2])
    raise RuntimeError("cannot find the Azurite process among this process's children")


def machine_busy_seconds() -> float:
    """CPU time every process of the machine used since boot (``/proc/stat``, all CPUs, no idle)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS


def peak_rss_mib(pid: int) -> float:
    """``VmHWM`` (peak resident set) of a live process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


# --- the server subprocess ------------------------------------------------------------------------


def _quiet_handler() -> Any:
    from werkzeug.serving import WSGIRequestHandler

    class QuietHandler(WSGIRequestHandler):
        """werkzeug's handler without its access log (the same for both servers)."""

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            """Log nothing."""

    return QuietHandler


def _build_ours() -> tuple[Any, str, Callable[[], None]]:
    """``function_app`` through the local Functions host (the real runtime); settings from SCIM_*."""
    import function_app
    from functions_host import FunctionsHost

    host = FunctionsHost(ROOT)
    host.start()  # azure-functions-runtime indexes function_app.py
    worker = host.worker
    assert worker is not None

    def close() -> None:
        try:
            worker.run_coroutine(function_app.runtime.aclose())
        finally:
            worker.close()

    return host, "/scim/v2", close


def _build_reference(token: str) -> tuple[Any, str, Callable[[], None]]:
    """``scim2-server``'s application, built as its ``scim2-server --bearer-token`` command does."""
    import secrets

    from scim2_models import ScimProvider
    from scim2_server.memory import InMemoryStorage
    from scim2_server.service import ScimService
    from scim2_server.testserver.application import BEARER_TOKEN_SCHEME, BearerTokenApplication
    from scim2_server.utils import (
        load_default_resource_types,
        load_default_schemas,
        load_default_service_provider_config,
    )

    config = load_default_service_provider_config()
    config.authentication_schemes = [*(config.authentication_schemes or []), BEARER_TOKEN_SCHEME]
    provider = ScimProvider.from_discovery(
        load_default_schemas().values(), load_default_resource_types().values(), config=config
    )
    service = ScimService(provider, secret=secrets.token_urlsafe(32))
    application = BearerTokenApplication(InMemoryStorage(), provider, service=service, bearer_tokens=[token])
    return application, "/v2", lambda: None


def serve_child(kind: str) -> int:
    """Serve one server on a free loopback port until stdin closes; print its Tenant URL first."""
    from werkzeug.serving import make_server

    token = os.environ[TOKEN_ENV]
    app, base_path, close = _build_ours() if kind == "ours" else _build_reference(token)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_quiet_handler())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        print(f"LISTENING http://127.0.0.1:{server.port}{base_path}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            sys.stdin.read()  # the parent closes our stdin to stop us (or dies)
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
        close()
    return 0


@dataclass(frozen=True)
class ServerProcess:
    kind: str
    pid: int
    tenant_url: str


@contextlib.contextmanager
def server_process(kind: str, env: dict[str, str]) -> Iterator[ServerProcess]:
    """Start ``python -m bench.reference --serve KIND``; stop it (and reap it) on exit."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.reference", "--serve", kind],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], _START_TIMEOUT_S)
        line = process.stdout.readline() if ready else ""
        if not line.startswith("LISTENING "):
            raise RuntimeError(f"the {kind} server did not start (exit {process.poll()}): {line!r}")
        yield ServerProcess(kind, process.pid, line.split()[1])
    finally:
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()


# --- the workload ---------------------------------------------------------------------------------


class StepFailedError(Exception):
    """A request whose answer the rest of the cycle cannot do without (create) failed."""


@dataclass
class Results:
    """Latencies and failures of one server, shared by the worker threads."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: Counter[str] = field(default_factory=Counter)
    first_failure: dict[str, str] = field(default_factory=dict)
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, operation: str, seconds: float, error: str | None) -> None:
        with self._lock:
            self.requests += 1
            self.latencies[operation].append(seconds * 1000)
            if error is not None:
                self.failures[operation] += 1
                self.first_failure.setdefault(operation, error)


def _total(expected: int) -> Callable[[Any], str | None]:
    def check(payload: Any) -> str | None:
        total = payload.get("totalResults") if isinstance(payload, dict) else None
        return None if total == expected else f"totalResults {total!r}, expected {expected}"

    return check


class Workload:
    """Entra's user and group cycles, sent the same way to either server."""

    def __init__(self, results: Results, manager: str = "", members: Sequence[str] = ()) -> None:
        self.results = results
        self.manager = manager
        self.members = list(members)

    def call(
        self,
        client: httpx.Client,
        operation: str,
        method: str,
        url: str,
        expected: Collection[int],
        body: dict[str, Any] | None = None,
        check: Callable[[Any], str | None] | None = None,
    ) -> Any:
        """Send one request, time it, check its status (and ``check``), record the outcome.

        Returns the decoded body, or ``None`` when the request failed.
        """
        error: str | None = None
        payload: Any = None
        started = time.perf_counter()
        try:
            response = client.request(method, url, json=body, headers={OP_HEADER: operation})
        except httpx.HTTPError as exc:
            elapsed = time.perf_counter() - started
            error = f"{type(exc).__name__}: {exc}"
        else:
            elapsed = time.perf_counter() - started
            if response.status_code not in expected:
                error = f"{response.status_code}: {response.text[:300]}"
            elif response.content:
                payload = response.json()
            if error is None and check is not None:
                error = check(payload)
        self.results.record(operation, elapsed, error)
        return None if error is not None else payload

    def create_user(self, client: httpx.Client, operation: str = "setup") -> str:
        created = self.call(client, operation, "POST", "/Users", (201,), entra_user())
        if created is None:
            raise StepFailedError(f"{operation}: POST /Users failed")
        return str(created["id"])

    def user_cycle(self, client: httpx.Client, _: int) -> None:
        """One user's cycle, as ``bench.users`` sends it (the manager is a live user)."""
        self.call(client, "probe", "GET", f"/Users?filter=userName+eq+%22{uuid.uuid4()}%22", (200,))
        body = entra_user()
        name = body["userName"]
        self.call(client, "match_miss", "GET", f'/Users?filter=userName eq "{name}"', (200,), check=_total(0))
        created = self.call(client, "create", "POST", "/Users", (201,), body)
        if created is None:
            return
        path = f"/Users/{created['id']}"
        upper = f'/Users?filter=userName eq "{name.upper()}"'
        self.call(client, "match_hit", "GET", upper, (200,), check=_total(1))
        self.call(client, "get", "GET", path, (200,))
        multi = patch_body(
            {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "updatedEmail@microsoft.com"},
            {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
        )
        self.call(client, "patch", "PATCH", path, PATCH_OK, multi)
        manager = patch_body({"op": "Add", "path": f"{ENTERPRISE}:manager", "value": self.manager})
        self.call(client, "patch_manager", "PATCH", path, PATCH_OK, manager)
        disable = patch_body({"op": "Replace", "path": "active", "value": "False"})
        self.call(client, "patch_disable", "PATCH", path, PATCH_OK, disable)
        self.call(client, "delete", "DELETE", path, (204,))

    def group_cycle(self, client: httpx.Client, _: int) -> None:
        """One group's cycle: probe, create, match, add K, GET lean, remove K/2, rename, DELETE."""
        lean = "excludedAttributes=members"
        probe = f'/Groups?{lean}&filter=displayName eq "{uuid.uuid4()}"'
        self.call(client, "group_probe", "GET", probe, (200,), check=_total(0))
        name = f"Group {uuid.uuid4()}"
        created = self.call(client, "group_create", "POST", "/Groups", (201,), entra_group(name))
        if created is None:
            # The rest of the cycle needs a group: create it again without Microsoft's extra schema
            # URI, recorded apart (only a server that rejected Entra's body gets this request).
            core = {**entra_group(name), "schemas": [GROUP]}
            created = self.call(client, "group_create_core", "POST", "/Groups", (201,), core)
            if created is None:
                return
        path = f"/Groups/{created['id']}"
        match = f'/Groups?{lean}&filter=displayName eq "{name}"'
        self.call(client, "group_match", "GET", match, (200,), check=_total(1))
        add = patch_body({"op": "Add", "path": "members", "value": members_of(self.members)})
        self.call(client, "group_add", "PATCH", path, PATCH_OK, add)
        self.call(client, "group_get", "GET", f"{path}?{lean}", (200,))
        half = self.members[: max(1, len(self.members) // 2)]
        remove = patch_body({"op": "Remove", "path": "members", "value": members_of(half)})
        self.call(client, "group_remove", "PATCH", path, PATCH_OK, remove)
        rename = patch_body({"op": "Replace", "path": "displayName", "value": f"{name} (renamed)"})
        self.call(client, "group_rename", "PATCH", path, PATCH_OK, rename)
        self.call(client, "group_delete", "DELETE", path, (204,))


def client_for(tenant_url: str, token: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    return httpx.Client(base_url=tenant_url, headers=headers, timeout=30.0)


def run_parallel(
    tenant_url: str, token: str, count: int, concurrency: int, job: Callable[[httpx.Client, int], None]
) -> None:
    """Run ``job`` for 0..count-1 on ``concurrency`` threads, each with its own client."""
    lock = threading.Lock()
    state = {"next": 0, "done": 0}
    step = max(1, count // 10)

    def worker() -> None:
        with client_for(tenant_url, token) as client:
            while True:
                with lock:
                    index = state["next"]
                    if index >= count:
                        return
                    state["next"] += 1
                job(client, index)
                with lock:
                    state["done"] += 1
                    done = state["done"]
                    if done % step == 0 or done == count:
                        print(f"    {done}/{count} ({100 * done // count}%)", file=sys.stderr, flush=True)

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="bench") as pool:
        for future in [pool.submit(worker) for _ in range(min(concurrency, count))]:
            future.result()


# --- measuring ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """CPU and wall time of one phase against one server."""

    requests: int
    wall_s: float
    server_cpu_s: float
    azurite_cpu_s: float | None
    client_cpu_s: float
    other_cpu_s: float

    def per_request_ms(self, seconds: float | None) -> float | None:
        if seconds is None or not self.requests:
            return None
        return round(1000 * seconds / self.requests, 3)

    def figures(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "wall_s": round(self.wall_s, 3),
            "ops_per_s": round(self.requests / self.wall_s, 1) if self.wall_s > 0 else 0.0,
            "server_cpu_s": round(self.server_cpu_s, 3),
            "server_cpu_ms_per_request": self.per_request_ms(self.server_cpu_s),
            "azurite_cpu_ms_per_request": self.per_request_ms(self.azurite_cpu_s),
            "client_cpu_ms_per_request": self.per_request_ms(self.client_cpu_s),
            "other_processes_cpu_s": round(self.other_cpu_s, 2),
        }


def measure(
    server: ServerProcess, azurite_pgid: int | None, results: Results, run: Callable[[], None]
) -> Phase:
    """Run ``run`` and read the server's (and Azurite's) CPU time around it.

    ``other_cpu_s`` is what the rest of the machine used meanwhile (other people's tests, say):
    a busy machine makes every figure less reliable.
    """
    requests0 = results.requests
    busy0 = machine_busy_seconds()
    server0 = cpu_seconds(server.pid)
    azurite0 = group_cpu_seconds(azurite_pgid) if azurite_pgid is not None else None
    client0, wall0 = time.process_time(), time.perf_counter()
    run()
    wall_s = time.perf_counter() - wall0
    client_s = time.process_time() - client0
    server_s = cpu_seconds(server.pid) - server0
    azurite_s = (
        group_cpu_seconds(azurite_pgid) - azurite0
        if azurite_pgid is not None and azurite0 is not None
        else None
    )
    other_s = machine_busy_seconds() - busy0 - server_s - (azurite_s or 0.0) - client_s
    return Phase(results.requests - requests0, wall_s, server_s, azurite_s, client_s, max(0.0, other_s))


def bench_server(
    server: ServerProcess, token: str, args: argparse.Namespace, azurite_pgid: int | None
) -> dict[str, Any]:
    """Warm up, run the users phase and the groups phase against one server; its figures."""
    url = server.tenant_url
    # Warm-up and setup (unmeasured): the first requests build the runtime, create the table, load
    # every code path; the manager and the member users live through the phases.
    setup = Results()
    with client_for(url, token) as client:
        prepare = Workload(setup)
        prepare.manager = prepare.create_user(client)
        prepare.members = [prepare.create_user(client) for _ in range(args.members)]
        prepare.user_cycle(client, 0)
        if args.groups:
            prepare.group_cycle(client, 0)

    results = Results()
    workload = Workload(results, prepare.manager, prepare.members)
    phases: dict[str, Phase] = {}
    print(f"  users phase: {args.users} cycles on {url}", file=sys.stderr, flush=True)
    phases["users"] = measure(
        server,
        azurite_pgid,
        results,
        lambda: run_parallel(url, token, args.users, args.concurrency, workload.user_cycle),
    )
    if args.groups:
        print(f"  groups phase: {args.groups} cycles of {args.members} members", file=sys.stderr, flush=True)
        phases["groups"] = measure(
            server,
            azurite_pgid,
            results,
            lambda: run_parallel(url, token, args.groups, args.concurrency, workload.group_cycle),
        )
    rss = peak_rss_mib(server.pid)

    with client_for(url, token) as client:  # teardown (unmeasured)
        for user_id in [prepare.manager, *prepare.members]:
            prepare.call(client, "teardown", "DELETE", f"/Users/{user_id}", (204,))

    total = Phase(
        requests=sum(p.requests for p in phases.values()),
        wall_s=sum(p.wall_s for p in phases.values()),
        server_cpu_s=sum(p.server_cpu_s for p in phases.values()),
        azurite_cpu_s=sum(p.azurite_cpu_s or 0.0 for p in phases.values())
        if azurite_pgid is not None
        else None,
        client_cpu_s=sum(p.client_cpu_s for p in phases.values()),
        other_cpu_s=sum(p.other_cpu_s for p in phases.values()),
    )
    operations: dict[str, dict[str, float]] = {}
    for name in USER_OPERATIONS + (GROUP_OPERATIONS if args.groups else ()):
        samples = results.latencies.get(name, [])
        operations[name] = {
            "count": len(samples),
            "failures": results.failures[name],
            "p50_ms": round(percentile(samples, 0.50), 2),
            "p95_ms": round(percentile(samples, 0.95), 2),
        }
    return {
        "label": LABELS[server.kind],
        "phases": {name: phase.figures() for name, phase in phases.items()},
        "total": total.figures(),
        "operations": operations,
        "failures": sum(results.failures.values()),
        "setup_failures": sum(setup.failures.values()),
        "first_failure": dict(results.first_failure),
        "server_peak_rss_mib": rss,
    }


def _ratio(ours: float | None, reference: float | None) -> float | None:
    if ours is None or not reference:
        return None
    return round(ours / reference, 2)


def ratios(ours: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """ours / reference of every comparable figure."""
    keys = ("server_cpu_ms_per_request", "ops_per_s")
    result: dict[str, Any] = {
        section: {
            key: _ratio(ours["phases"][section][key], reference["phases"][section][key]) for key in keys
        }
        for section in ours["phases"]
    }
    result["total"] = {key: _ratio(ours["total"][key], reference["total"][key]) for key in keys}
    ours_with_storage = (ours["total"]["server_cpu_ms_per_request"] or 0) + (
        ours["total"]["azurite_cpu_ms_per_request"] or 0
    )
    result["total"]["server_plus_azurite_cpu_ms_per_request"] = _ratio(
        ours_with_storage, reference["total"]["server_cpu_ms_per_request"]
    )
    result["operations"] = {}
    for name, row in ours["operations"].items():
        theirs = reference["operations"][name]
        both = row["count"] and theirs["count"]
        result["operations"][name] = {
            "p50_ms": _ratio(row["p50_ms"], theirs["p50_ms"]) if both else None,
            "p95_ms": _ratio(row["p95_ms"], theirs["p95_ms"]) if both else None,
        }
    return result


# --- printing -------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def print_report(report: dict[str, Any]) -> None:
    servers: dict[str, Any] = report["servers"]
    for kind in KINDS:
        figures = servers[kind]
        print(f"\n{figures['label']}")
        print(f"  {'operation':<19}{'count':>7}{'fail':>6}{'p50 ms':>9}{'p95 ms':>9}")
        for name, row in figures["operations"].items():
            print(
                f"  {name:<19}{row['count']:>7}{row['failures']:>6}{row['p50_ms']:>9.2f}{row['p95_ms']:>9.2f}"
            )

    print("\nphases (server CPU = the server's subprocess only; Azurite is a separate process)")
    header = f"  {'server':<10}{'phase':<8}{'requests':>9}{'ops/s':>9}{'srv CPU ms/req':>16}"
    print(header + f"{'Azurite ms/req':>16}{'client ms/req':>15}{'others CPU s':>14}")
    for kind in KINDS:
        figures = servers[kind]
        for phase, row in [*figures["phases"].items(), ("total", figures["total"])]:
            print(
                f"  {kind:<10}{phase:<8}{row['requests']:>9}{row['ops_per_s']:>9.1f}"
                f"{_fmt(row['server_cpu_ms_per_request']):>16}{_fmt(row['azurite_cpu_ms_per_request']):>16}"
                f"{_fmt(row['client_cpu_ms_per_request']):>15}{row['other_processes_cpu_s']:>14.2f}"
            )
    for kind in KINDS:
        print(f"  peak RSS of the {kind} server: {servers[kind]['server_peak_rss_mib']:.1f} MiB")

    ratio = report["ratios"]
    print("\nratios ours / reference (server CPU per request: target below 1.00)")
    for section in [*servers["ours"]["phases"], "total"]:
        row = ratio[section]
        print(
            f"  {section:<8} server CPU/request {_fmt(row['server_cpu_ms_per_request'], '.2f'):>6}"
            f"   ops/s {_fmt(row['ops_per_s'], '.2f'):>6}"
        )
    plus = _fmt(ratio["total"]["server_plus_azurite_cpu_ms_per_request"], ".2f")
    print(f"  total    (ours + Azurite) CPU/request vs reference: {plus}")
    print(f"  {'operation':<19}{'p50':>7}{'p95':>7}")
    for name, row in ratio["operations"].items():
        print(f"  {name:<19}{_fmt(row['p50_ms'], '.2f'):>7}{_fmt(row['p95_ms'], '.2f'):>7}")

    for kind in KINDS:
        failed = servers[kind]["first_failure"]
        if failed:
            print(f"\nrequests the {kind} server failed (first answer per operation):")
            for name, error in failed.items():
                print(f"  {name} ({servers[kind]['operations'][name]['failures']}x): {error[:240]}")
    print("\nJSON: " + json.dumps(report, separators=(",", ":")))


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.reference", description=__doc__.split("\n\n")[1])
    parser.add_argument("--users", type=int, default=200, help="user cycles per server (default 200)")
    parser.add_argument("--groups", type=int, default=20, help="group cycles per server (default 20)")
    parser.add_argument("--members", type=int, default=10, help="members per group PATCH (default 10)")
    parser.add_argument("--concurrency", type=int, default=8, help="client worker threads (default 8)")
    parser.add_argument("--order", default="reference,ours", help="server run order (default reference,ours)")
    parser.add_argument("--serve", choices=KINDS, help=argparse.SUPPRESS)  # the server subprocess
    args = parser.parse_args(argv)
    if args.users < 1 or args.concurrency < 1 or args.groups < 0 or args.members < 1:
        parser.error("--users, --concurrency and --members must be at least 1, --groups at least 0")
    args.order = [kind.strip() for kind in args.order.split(",")]
    if sorted(args.order) != sorted(KINDS):
        parser.error("--order must name reference and ours once each")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        return serve_child(args.serve)
    try:
        version = importlib.metadata.version(REFERENCE_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        print(
            f"{REFERENCE_PACKAGE} is not installed: .venv/bin/pip install scim2-server==0.8.3",
            file=sys.stderr,
        )
        return 2

    from tools.azurite import Azurite

    info = machine()
    print(f"machine: {info['platform']}, {info['cpu_count']} CPUs, Python {info['python']}")
    print(f"reference: {REFERENCE_PACKAGE} {version}")
    print(
        f"users: {args.users}, groups: {args.groups} x {args.members} members, "
        f"concurrency: {args.concurrency}, order: {','.join(args.order)}"
    )
    token = uuid.uuid4().hex + uuid.uuid4().hex
    servers: dict[str, Any] = {}
    with Azurite() as azurite:
        azurite_pgid = azurite_process_group()
        for kind in args.order:
            env = {**os.environ, TOKEN_ENV: token}
            if kind == "ours":
                env.update(
                    {
                        "SCIM_STORAGE_CONNECTION_STRING": azurite.connection_string,
                        "SCIM_TABLE_NAME": "bench" + uuid.uuid4().hex[:12],
                        "SCIM_BEARER_TOKEN": token,
                    }
                )
            print(f"{LABELS[kind]}: starting", file=sys.stderr, flush=True)
            with server_process(kind, env) as server:
                servers[kind] = bench_server(server, token, args, azurite_pgid if kind == "ours" else None)
    report = {
        "machine": info,
        "reference_package": f"{REFERENCE_PACKAGE}=={version}",
        "users": args.users,
        "groups": args.groups,
        "members": args.members,
        "concurrency": args.concurrency,
        "order": args.order,
        "cpu_source": "/proc/<pid>/stat utime+stime of each server subprocess, around each phase",
        "servers": servers,
        "ratios": ratios(servers["ours"], servers["reference"]),
    }
    print_report(report)
    return 1 if servers["ours"]["failures"] or servers["ours"]["setup_failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
