"""
FILE: users.py

DESCRIPTION:
    Benchmark of Microsoft Entra's user provisioning cycle against the SCIM endpoint, over real
    HTTP on loopback, served exactly as ``make run`` serves it: ``function_app.py``'s triggers in
    the local Functions host (``functions_host``: the real ``azure-functions-runtime`` behind an
    emulation of the .NET host), backed by Azurite (in memory).

    For each of N users, C worker threads (each with its own ``httpx.Client``) send what Entra
    sends: probe (filter on a random GUID), match (0 results), create (Entra's *Create User*
    body), match again in upper case (1 result), GET by id, PATCH (default-client multi-op
    replace), PATCH manager (bare id of the previous user), PATCH disable, DELETE.

    Storage round trips are counted by an azure-core ``SansIOHTTPPolicy`` injected into the
    runtime's table client, and attributed to the operation that caused them with a contextvar:
    the client names the operation in an ``X-Bench-Op`` header, a ``Runtime`` subclass copies it
    into the contextvar around each request, and the policy (which runs in the same asyncio task)
    reads it. So every user is counted, at full concurrency.

    Prints the machine, a table per operation kind (count, p50/p95/p99 client-side latency in
    ms, storage round trips per operation), totals, and one ``JSON:`` line with the same figures.
    Exits non-zero if any operation failed.

USAGE:
    .venv/bin/python -m bench.users [--users N] [--concurrency C]

    --users N          users to provision and deprovision (default 200)
    --concurrency C    client worker threads (default 8)
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import json
import os
import platform
import resource
import secrets
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import HTTPPolicy, SansIOHTTPPolicy
from azure.data.tables.aio import TableClient

import scim.runtime
import scim.storage.tables
from functions_host import FunctionsHost, serve_in_thread
from scim.config import Settings
from scim.web.api import Request, Response
from tools.azurite import Azurite

ROOT = Path(__file__).resolve().parents[1]

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
MS_GROUP = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

OPERATIONS = (
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
"""Operation kinds of one user cycle, in the order Entra sends them."""

OP_HEADER = "X-Bench-Op"
"""Request header naming the operation, so storage round trips can be attributed to it."""

UNATTRIBUTED = "(unattributed)"

ATTRIBUTION = (
    "contextvar: X-Bench-Op header -> Runtime.handle sets a contextvar -> "
    "counting per-retry policy reads it (every user, full concurrency)"
)

_operation: contextvars.ContextVar[str] = contextvars.ContextVar("bench_operation", default=UNATTRIBUTED)


# --- storage round trips ------------------------------------------------------------------------


class RoundTrips(SansIOHTTPPolicy[Any, Any]):
    """Counts every HTTP request the Table SDK sends (retries included), per operation kind."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def on_request(self, request: PipelineRequest[Any]) -> None:
        with self._lock:
            self.counts[_operation.get()] += 1

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)


class AttributingRuntime(scim.runtime.Runtime):
    """The app's runtime, which records the request's ``X-Bench-Op`` in a contextvar while it runs."""

    async def handle(self, route: str, request: Request) -> Response:
        token = _operation.set(request.headers.get(OP_HEADER.lower(), UNATTRIBUTED))
        try:
            return await super().handle(route, request)
        finally:
            _operation.reset(token)


def counting_connect(
    policy: RoundTrips,
) -> Callable[..., TableClient]:
    """A ``scim.storage.tables.connect`` that adds ``policy`` to the client's per-retry policies."""
    original = scim.storage.tables.connect

    def connect(
        connection_string: str,
        table_name: str,
        *,
        per_retry_policies: Sequence[HTTPPolicy[Any, Any] | SansIOHTTPPolicy[Any, Any]] = (),
        **options: Any,
    ) -> TableClient:
        return original(
            connection_string, table_name, per_retry_policies=[*per_retry_policies, policy], **options
        )

    return connect


# --- the Entra user cycle -----------------------------------------------------------------------


def entra_user() -> dict[str, Any]:
    """The *Create User* body of the Entra SCIM tutorial (as in tests/integration)."""
    return {
        "schemas": [CORE, ENTERPRISE],
        "externalId": str(uuid.uuid4()),
        "userName": f"Test_User_{uuid.uuid4()}",
        "active": True,
        "emails": [{"primary": True, "type": "work", "value": f"Test_User_{uuid.uuid4()}@testuser.com"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": [],
    }


def patch_body(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def entra_group(name: str) -> dict[str, Any]:
    """The *Create Group* body of the Entra SCIM tutorial (as in tests/integration)."""
    return {
        "schemas": [GROUP, MS_GROUP],
        "externalId": str(uuid.uuid4()),
        "displayName": name,
        "meta": {"resourceType": "Group"},
    }


def members_of(ids: Sequence[str]) -> list[dict[str, Any]]:
    """A PatchOp ``members`` value as Entra sends it."""
    return [{"$ref": None, "value": member} for member in ids]


class StepFailedError(Exception):
    """An operation of the cycle got an unexpected answer; the rest of that user's cycle is skipped."""


@dataclass
class Results:
    """Latencies and failures, shared by the worker threads."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: Counter[str] = field(default_factory=Counter)
    failure_samples: list[str] = field(default_factory=list)
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, operation: str, seconds: float, error: str | None) -> None:
        with self._lock:
            self.requests += 1
            self.latencies[operation].append(seconds * 1000)
            if error is not None:
                self.failures[operation] += 1
                if len(self.failure_samples) < 10:
                    self.failure_samples.append(f"{operation}: {error}")


class Cycle:
    """Runs Entra's cycle for users handed out one by one, up to a fixed number."""

    def __init__(self, base_url: str, token: str, users: int, results: Results, first_manager: str) -> None:
        self.base_url = base_url
        self.token = token
        self.users = users
        self.results = results
        self._next = 0
        self._done = 0
        self._previous_id = first_manager
        self._lock = threading.Lock()
        self._progress_step = max(1, users // 10)

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= self.users:
                return None
            self._next += 1
            return self._next - 1

    def _finished(self, user_id: str | None) -> None:
        with self._lock:
            self._done += 1
            if user_id is not None:
                self._previous_id = user_id
            done = self._done
        if done % self._progress_step == 0 or done == self.users:
            print(f"  {done}/{self.users} users ({100 * done // self.users}%)", file=sys.stderr, flush=True)

    def _previous(self) -> str:
        with self._lock:
            return self._previous_id

    def worker(self) -> None:
        """Run cycles until every user is handed out (each worker has its own client)."""
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/scim+json"}
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=30.0) as client:
            while self._take() is not None:
                user_id: str | None = None
                try:
                    user_id = self.run_one(client)
                except StepFailedError:
                    pass
                self._finished(user_id)

    def _call(
        self,
        client: httpx.Client,
        operation: str,
        method: str,
        url: str,
        expected: int,
        body: dict[str, Any] | None = None,
        check: Callable[[Any], str | None] | None = None,
    ) -> Any:
        """Send one request, time it, check the status (and ``check``), record the outcome."""
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
            if response.status_code != expected:
                error = (
                    f"{method} {url} -> {response.status_code} (expected {expected}): {response.text[:200]}"
                )
            elif response.content:
                payload = response.json()
            if error is None and check is not None:
                error = check(payload)
        self.results.record(operation, elapsed, error)
        if error is not None:
            raise StepFailedError(error)
        return payload

    def run_one(self, client: httpx.Client) -> str:
        """One user's full cycle; returns the id the user had."""
        self._call(client, "probe", "GET", f"/Users?filter=userName+eq+%22{uuid.uuid4()}%22", 200)
        body = entra_user()
        name = body["userName"]
        self._call(client, "match_miss", "GET", f'/Users?filter=userName eq "{name}"', 200, check=_results(0))
        created = self._call(client, "create", "POST", "/Users", 201, body)
        user_id: str = created["id"]
        path = f"/Users/{user_id}"
        self._call(
            client, "match_hit", "GET", f'/Users?filter=userName eq "{name.upper()}"', 200, check=_results(1)
        )
        self._call(client, "get", "GET", path, 200)
        self._call(
            client,
            "patch",
            "PATCH",
            path,
            200,
            patch_body(
                {
                    "op": "Replace",
                    "path": 'emails[type eq "work"].value',
                    "value": "updatedEmail@microsoft.com",
                },
                {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
            ),
        )
        manager = patch_body({"op": "Add", "path": f"{ENTERPRISE}:manager", "value": self._previous()})
        self._call(client, "patch_manager", "PATCH", path, 200, manager)
        disable = patch_body({"op": "Replace", "path": "active", "value": "False"})
        self._call(client, "patch_disable", "PATCH", path, 200, disable)
        self._call(client, "delete", "DELETE", path, 204)
        return user_id


def _results(expected: int) -> Callable[[Any], str | None]:
    def check(payload: Any) -> str | None:
        total = payload.get("totalResults") if isinstance(payload, dict) else None
        return None if total == expected else f"totalResults {total!r}, expected {expected}"

    return check


# --- figures ------------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (``fraction`` in 0..1); 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))  # ceil(n * fraction), at least 1
    return ordered[int(rank) - 1]


@dataclass(frozen=True)
class Report:
    """Every figure of one run."""

    machine: dict[str, Any]
    users: int
    concurrency: int
    operations: dict[str, dict[str, float]]
    total_ops: int
    wall_s: float
    ops_per_s: float
    cpu_ms_per_request: float
    peak_rss_mib: float
    failures: int
    unattributed_round_trips: int
    round_trip_attribution: str = ATTRIBUTION


def build_report(
    args: argparse.Namespace,
    results: Results,
    trips: dict[str, int],
    wall_s: float,
    cpu_s: float,
) -> Report:
    operations: dict[str, dict[str, float]] = {}
    for name in OPERATIONS:
        samples = results.latencies.get(name, [])
        operations[name] = {
            "count": len(samples),
            "failures": results.failures[name],
            "p50_ms": round(percentile(samples, 0.50), 2),
            "p95_ms": round(percentile(samples, 0.95), 2),
            "p99_ms": round(percentile(samples, 0.99), 2),
            "round_trips_per_op": round(trips.get(name, 0) / len(samples), 2) if samples else 0.0,
        }
    total = results.requests
    return Report(
        machine=machine(),
        users=args.users,
        concurrency=args.concurrency,
        operations=operations,
        total_ops=total,
        wall_s=round(wall_s, 3),
        ops_per_s=round(total / wall_s, 1) if wall_s > 0 else 0.0,
        cpu_ms_per_request=round(1000 * cpu_s / total, 3) if total else 0.0,
        peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        failures=sum(results.failures.values()),
        unattributed_round_trips=trips.get(UNATTRIBUTED, 0),
    )


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }


def print_report(report: Report) -> None:
    print(f"{'operation':<15}{'count':>7}{'fail':>6}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'trips/op':>10}")
    for name, row in report.operations.items():
        print(
            f"{name:<15}{row['count']:>7}{row['failures']:>6}{row['p50_ms']:>9.2f}"
            f"{row['p95_ms']:>9.2f}{row['p99_ms']:>9.2f}{row['round_trips_per_op']:>10.2f}"
        )
    print()
    print(f"total ops          {report.total_ops}")
    print(f"wall time          {report.wall_s:.2f} s")
    print(f"throughput         {report.ops_per_s:.1f} ops/s")
    print(
        f"server CPU/request {report.cpu_ms_per_request:.3f} ms "
        "(process CPU time / requests; includes the client threads: one process)"
    )
    print(f"peak RSS           {report.peak_rss_mib:.1f} MiB (this process; Azurite excluded)")
    print(f"failures           {report.failures}")
    print(f"round trips        attributed by {report.round_trip_attribution}")
    if report.unattributed_round_trips:
        print(f"                   {report.unattributed_round_trips} storage requests were not attributed")
    print("JSON: " + json.dumps(report.__dict__, separators=(",", ":")))


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.users", description=__doc__.split("\n\n")[1])
    parser.add_argument("--users", type=int, default=200, help="users to provision (default 200)")
    parser.add_argument("--concurrency", type=int, default=8, help="client worker threads (default 8)")
    args = parser.parse_args(argv)
    if args.users < 1 or args.concurrency < 1:
        parser.error("--users and --concurrency must be at least 1")
    return args


@contextlib.contextmanager
def endpoint(token: str, policy: RoundTrips) -> Iterator[str]:
    """Azurite + ``function_app`` through the local Functions host over loopback; yields the Tenant URL."""
    with contextlib.ExitStack() as stack:
        azurite = stack.enter_context(Azurite())
        os.environ["SCIM_STORAGE_CONNECTION_STRING"] = azurite.connection_string
        os.environ["SCIM_BEARER_TOKEN"] = token
        # Runtime._build calls the name it imported, so patch it there, not in scim.storage.tables.
        stack.enter_context(mock.patch.object(scim.storage.tables, "connect", counting_connect(policy)))

        import function_app

        function_app.runtime = AttributingRuntime(lambda: Settings.from_env(os.environ))
        host = FunctionsHost(ROOT)
        host.start()  # azure-functions-runtime indexes function_app.py
        worker = host.worker
        assert worker is not None

        def close() -> None:
            try:
                worker.run_coroutine(function_app.runtime.aclose())
            finally:
                worker.close()

        stack.callback(close)
        base = stack.enter_context(serve_in_thread(host))
        yield base + "/scim/v2"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    print(f"machine: {info['platform']}, {info['cpu_count']} CPUs, Python {info['python']}")
    print(f"users: {args.users}, concurrency: {args.concurrency}")
    token = secrets.token_urlsafe(32)
    policy = RoundTrips()
    with endpoint(token, policy) as tenant_url:
        # Warm-up (not measured): one full cycle builds the runtime, creates the table lazily and
        # loads every code path; its id is the first user's manager.
        warm_up = Results()
        warm_cycle = Cycle(tenant_url, token, 1, warm_up, first_manager=str(uuid.uuid4()))
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
        with httpx.Client(base_url=tenant_url, headers=headers, timeout=30.0) as client:
            try:
                first_manager = warm_cycle.run_one(client)
            except StepFailedError as error:
                print(f"warm-up cycle failed: {error}", file=sys.stderr)
                return 1

        policy.reset()
        results = Results()
        cycle = Cycle(tenant_url, token, args.users, results, first_manager=first_manager)
        print(f"running {args.users} user cycles on {tenant_url} ...", file=sys.stderr, flush=True)
        cpu_started, wall_started = time.process_time(), time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.concurrency, thread_name_prefix="bench") as pool:
            workers = [pool.submit(cycle.worker) for _ in range(min(args.concurrency, args.users))]
            for future in workers:
                future.result()
        wall_s = time.perf_counter() - wall_started
        cpu_s = time.process_time() - cpu_started
        trips = policy.snapshot()

    for sample in results.failure_samples:
        print(f"failure: {sample}", file=sys.stderr)
    report = build_report(args, results, trips, wall_s, cpu_s)
    print()
    print_report(report)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
