"""
FILE: scale.py

DESCRIPTION:
    Latency at scale (issue 8): does a user lookup, a GET and a PATCH cost the same with 1,000 and
    with 50,000 users, and what does a 10,000-member group cost?

    One Azurite (in memory), one table. ``scim.web.api.ScimApi`` is driven directly (no HTTP: the
    service + storage path), and with ``--http`` also over loopback HTTP (``function_app`` through
    the local Functions host, the real ``azure-functions-runtime``, as ``make run`` serves it).
    Users are loaded through the service's create (``UserService.create`` →
    ``TableRepository.create``: one transaction per user with its ``userName`` and ``externalId``
    index rows), 32 at a time, with progress on stderr. The table grows from one size to the next
    (1,000 users, then 49,000 more).

    At each size, for ``--samples`` random users (sequentially, after a short warm-up):
    ``filter=userName eq "…"`` (a hit), ``GET /Users/{id}`` and a PATCH replacing ``active``.
    Every storage request is counted and timed by an azure-core ``SansIOHTTPPolicy`` passed to
    ``scim.storage.tables.connect(..., per_retry_policies=[...])``, so each operation's latency splits into
    storage time (inside the HTTP round trips) and the rest ("own": the service, plus the Table
    SDK's request building and response parsing). Then the ratio largest size / smallest size is
    compared with the target (p50 within 20%). Azurite answers range queries by scanning the whole
    table (LokiJS ``where``), Azure Table Storage from its index: storage time that grows with the
    table here says more about Azurite than about the service.

    Then a group of ``--group-size`` members (default 10,000), built with PATCHes of 100 members as
    Entra sends them: GET with ``excludedAttributes=members`` against an empty group's, GET with
    every member, adding one member and removing one member.

    Prints the machine, tables and one ``JSON:`` line. Bounded: prints an estimate, and skips a
    size whose loading would end past ``--budget-minutes``. Loopback only; Azurite and the HTTP
    server are stopped before exit.

USAGE:
    .venv/bin/python -m bench.scale [--sizes 1000,50000] [--samples 500] [--group-size 10000] [--http]
                                    [--concurrency 32] [--budget-minutes 30] [--seed 8]

    --sizes           comma-separated user counts, ascending (default 1000,50000; quicker: 1000,10000)
    --samples         random users per operation and size (default 500)
    --group-size      members of the large group (default 10000; 0 skips the group)
    --http            also measure over loopback HTTP (function_app through the local Functions host)
    --concurrency     concurrent creates while loading (default 32)
    --budget-minutes  skip sizes whose loading would end later than this (default 30)
    --seed            random seed of the user samples (default 8)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import secrets
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from unittest import mock
from urllib.parse import urlencode

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy, SansIOHTTPPolicy
from azure.data.tables.aio import TableClient

import scim.storage.tables
from scim.config import Settings, token_digest
from scim.model.errors import ServiceUnavailableError
from scim.service.membership import Membership
from scim.service.users import UserService
from scim.storage.tables import TableRepository
from scim.web.api import Request, ScimApi
from tools.azurite import Azurite

ROOT = Path(__file__).resolve().parents[1]
TABLE_NAME = "scale"
BASE_URL = "http://scim.bench/scim/v2"
TARGET_RATIO = 1.20
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER_OPS = ("lookup", "get", "patch_active")
GROUP_OPS = ("build_patch_100", "get_lean", "get_lean_empty", "get_full", "add_one", "remove_one")
PER_PATCH = 100
LEAN_READS = 50
FULL_READS = 5
SPARE_USERS = 20
WARM_UP = 10
ASSUMED_LOAD_RATE = 150.0
"""Users per second assumed for the first estimate (2 cores, before anything was measured)."""


# --- storage round trips ------------------------------------------------------------------------


def round_trip_kind(method: str, url: str) -> str:
    """``point_read`` (one entity by its keys), ``query`` (a filter), ``transaction`` or ``other``."""
    if method == "POST" and "$batch" in url:
        return "transaction"
    if method == "GET" and "(PartitionKey=" in url:
        return "point_read"
    if method == "GET" and "()" in url:
        return "query"
    return "other"


class StorageMeter(SansIOHTTPPolicy[Any, Any]):
    """Counts and times every HTTP request the Table SDK sends (per retry, so retries count)."""

    def __init__(self) -> None:
        self.trips = 0
        self.seconds = 0.0
        self.kinds: dict[str, list[float]] = {}

    def on_request(self, request: PipelineRequest[Any]) -> None:
        self.trips += 1
        request.context["bench_started"] = time.perf_counter()

    def on_response(self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]) -> None:
        self._record(request)

    def on_exception(self, request: PipelineRequest[Any]) -> None:
        self._record(request)

    def _record(self, request: PipelineRequest[Any]) -> None:
        elapsed = time.perf_counter() - request.context.get("bench_started", time.perf_counter())
        self.seconds += elapsed
        kind = round_trip_kind(request.http_request.method, request.http_request.url)
        self.kinds.setdefault(kind, []).append(elapsed)

    def take_kinds(self) -> dict[str, list[float]]:
        """The round-trip durations by kind recorded since the last call."""
        kinds, self.kinds = self.kinds, {}
        return kinds


def metered_connect(meter: StorageMeter) -> Callable[..., TableClient]:
    """A ``scim.storage.tables.connect`` that adds ``meter`` to the client's per-retry policies."""
    original = scim.storage.tables.connect  # captured before anything patches the module

    def connect(
        connection_string: str,
        table_name: str,
        *,
        per_retry_policies: Sequence[HTTPPolicy[Any, Any] | SansIOHTTPPolicy[Any, Any]] = (),
    ) -> TableClient:
        return original(connection_string, table_name, per_retry_policies=[*per_retry_policies, meter])

    return connect


# --- drivers: ScimApi directly, or over HTTP ----------------------------------------------------


class Driver(Protocol):
    name: str

    async def call(
        self, method: str, path: str, *, query: dict[str, str] | None = None, body: Any = None
    ) -> tuple[int, bytes]: ...


class Direct:
    """Calls the ``ScimApi`` handlers as the triggers do, without sockets."""

    name = "direct"

    def __init__(self, api: ScimApi, token: str) -> None:
        self._headers = {"authorization": f"Bearer {token}", "content-type": "application/scim+json"}
        self._handlers = {
            ("Users", 1): api.users,
            ("Users", 2): api.user,
            ("Groups", 1): api.groups,
            ("Groups", 2): api.group,
        }

    async def call(
        self, method: str, path: str, *, query: dict[str, str] | None = None, body: Any = None
    ) -> tuple[int, bytes]:
        segments = path.strip("/").split("/")
        handler = self._handlers[(segments[0], len(segments))]
        request = Request(
            method=method,
            url=BASE_URL + path + ("?" + urlencode(query) if query else ""),
            headers=self._headers,
            query=dict(query or {}),
            route={"id": segments[1]} if len(segments) == 2 else {},
            body=b"" if body is None else json.dumps(body).encode(),
        )
        response = await handler(request)
        return response.status, response.body


class Http:
    """Sends requests over loopback HTTP to ``function_app`` through the local Functions host."""

    name = "http"

    def __init__(self, client: Any) -> None:
        self._client = client

    async def call(
        self, method: str, path: str, *, query: dict[str, str] | None = None, body: Any = None
    ) -> tuple[int, bytes]:
        content = None if body is None else json.dumps(body).encode()
        response = await asyncio.to_thread(self._client.request, method, path, params=query, content=content)
        return response.status_code, response.content


@contextlib.contextmanager
def http_driver(connection_string: str, token: str, meter: StorageMeter) -> Iterator[Http]:
    """``function_app`` served over loopback by the local Functions host, its table client metered.

    The runtime indexes ``function_app`` when the host starts (once per process: one app per
    process); the table client is built on the first request, so patching ``scim.storage.tables.connect``
    before that is enough.
    """
    import httpx

    import function_app
    from functions_host import FunctionsHost, serve_in_thread

    settings = {
        "SCIM_STORAGE_CONNECTION_STRING": connection_string,
        "SCIM_TABLE_NAME": TABLE_NAME,
        "SCIM_BEARER_TOKEN": token,
    }
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    with (
        mock.patch.dict(os.environ, settings),
        # open_repository calls the name in scim.storage.tables when the runtime builds (first request).
        mock.patch.object(scim.storage.tables, "connect", metered_connect(meter)),
    ):
        host = FunctionsHost(ROOT)
        host.start()  # azure-functions-runtime indexes function_app.py
        worker = host.worker
        assert worker is not None
        try:
            with (
                serve_in_thread(host) as base,
                httpx.Client(base_url=base + "/scim/v2", headers=headers, timeout=60.0) as client,
            ):
                yield Http(client)
        finally:
            try:
                worker.run_coroutine(function_app.runtime.aclose())
            finally:
                worker.close()


# --- measuring ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One operation: client-side latency, storage round trips and the time spent in them."""

    seconds: float
    trips: int
    storage_seconds: float
    ok: bool
    size: int = 0


async def timed(
    meter: StorageMeter,
    send: Callable[[], Awaitable[tuple[int, bytes]]],
    check: Callable[[int, bytes], bool],
) -> Sample:
    trips, storage = meter.trips, meter.seconds
    started = time.perf_counter()
    status, body = await send()
    elapsed = time.perf_counter() - started
    return Sample(elapsed, meter.trips - trips, meter.seconds - storage, check(status, body), len(body))


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1); 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))
    return ordered[int(rank) - 1]


def stats(samples: Sequence[Sample]) -> dict[str, Any]:
    """Latency percentiles (ms), round trips per operation, storage and own (non-storage) medians."""
    latencies = [1000 * s.seconds for s in samples]
    return {
        "count": len(samples),
        "failures": sum(1 for s in samples if not s.ok),
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p95_ms": round(percentile(latencies, 0.95), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "trips_per_op": round(statistics.mean(s.trips for s in samples), 2) if samples else 0.0,
        "storage_p50_ms": round(statistics.median(1000 * s.storage_seconds for s in samples), 2)
        if samples
        else 0.0,
        "own_p50_ms": round(statistics.median(1000 * (s.seconds - s.storage_seconds) for s in samples), 2)
        if samples
        else 0.0,
        "bytes_p50": int(statistics.median(s.size for s in samples)) if samples else 0,
    }


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


# --- users --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    id: str
    user_name: str


def entra_user(number: int) -> dict[str, Any]:
    """An Entra *Create User* body (as in the Entra SCIM tutorial), numbered."""
    name = f"scale.user{number:06d}@contoso.com"
    return {
        "schemas": [CORE, ENTERPRISE],
        "externalId": str(uuid.uuid4()),
        "userName": name,
        "active": True,
        "emails": [{"primary": True, "type": "work", "value": name}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": f"User {number}", "familyName": f"{number:06d}", "givenName": "User"},
        ENTERPRISE: {"department": f"Department {number % 50}", "employeeNumber": str(number)},
        "roles": [],
    }


@dataclass
class Loader:
    """Creates users through the service, ``concurrency`` at a time."""

    service: UserService
    concurrency: int
    users: list[User] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Users per second so far (an assumed rate before any was loaded)."""
        return len(self.users) / self.seconds if self.seconds else ASSUMED_LOAD_RATE

    async def grow_to(self, total: int) -> None:
        start = len(self.users)
        if total <= start:
            return
        numbers = iter(range(start, total))
        created: dict[int, User] = {}
        started = time.perf_counter()

        async def worker() -> None:
            for number in numbers:
                created[number] = await self._create(number)

        async def report() -> None:
            while True:
                await asyncio.sleep(10)
                done = len(created)
                rate = done / (time.perf_counter() - started)
                left = (total - start - done) / rate if rate else 0.0
                progress(
                    f"  loaded {start + done:,}/{total:,} users ({rate:.0f} users/s, ~{minutes(left)} left)"
                )

        reporter = asyncio.create_task(report())
        try:
            await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
        self.seconds += time.perf_counter() - started
        self.users.extend(created[n] for n in range(start, total))
        progress(f"  loaded {total:,} users (overall {self.rate:.0f} users/s)")

    async def _create(self, number: int) -> User:
        body = entra_user(number)
        for attempt in range(3):
            try:
                stored = await self.service.create(body)
                return User(stored.id, body["userName"])
            except ServiceUnavailableError:
                if attempt == 2:
                    raise
                await asyncio.sleep(1)
        raise RuntimeError("unreachable")


def patch_body(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def total_results_is(expected: int, user_id: str) -> Callable[[int, bytes], bool]:
    def check(status: int, body: bytes) -> bool:
        if status != 200:
            return False
        payload = json.loads(body)
        found = payload.get("Resources") or [{}]
        return bool(payload.get("totalResults") == expected and found[0].get("id") == user_id)

    return check


def status_is(expected: int) -> Callable[[int, bytes], bool]:
    return lambda status, _body: status == expected


async def user_operations(
    driver: Driver, meter: StorageMeter, user: User, active: dict[str, bool]
) -> dict[str, Sample]:
    """Lookup by userName, GET by id, PATCH active: one sample of each for one user."""
    lookup = await timed(
        meter,
        lambda: driver.call("GET", "/Users", query={"filter": f'userName eq "{user.user_name}"'}),
        total_results_is(1, user.id),
    )
    get = await timed(meter, lambda: driver.call("GET", f"/Users/{user.id}"), status_is(200))
    value = not active.get(user.id, True)
    body = patch_body({"op": "replace", "path": "active", "value": value})
    patched = await timed(meter, lambda: driver.call("PATCH", f"/Users/{user.id}", body=body), status_is(200))
    if patched.ok:
        active[user.id] = value
    return {"lookup": lookup, "get": get, "patch_active": patched}


async def measure_size(
    driver: Driver,
    meter: StorageMeter,
    users: list[User],
    samples: int,
    rng: random.Random,
    active: dict[str, bool],
) -> dict[str, dict[str, Any]]:
    picks = rng.sample(users, min(samples, len(users)))
    for user in rng.sample(users, min(WARM_UP, len(users))):
        await user_operations(driver, meter, user, active)  # warm-up, not recorded
    recorded: dict[str, list[Sample]] = {name: [] for name in USER_OPS}
    meter.take_kinds()
    for user in picks:
        for name, sample in (await user_operations(driver, meter, user, active)).items():
            recorded[name].append(sample)
    result: dict[str, Any] = {name: stats(values) for name, values in recorded.items()}
    result["round_trips"] = kind_stats(meter.take_kinds())
    return result


def kind_stats(kinds: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Count and p50/p95 (ms) of storage round trips per kind."""
    return {
        kind: {
            "count": len(values),
            "p50_ms": round(1000 * percentile(values, 0.50), 2),
            "p95_ms": round(1000 * percentile(values, 0.95), 2),
        }
        for kind, values in sorted(kinds.items())
    }


# --- the large group ----------------------------------------------------------------------------


def members_of(*ids: str) -> list[dict[str, Any]]:
    return [{"value": member} for member in ids]


async def create_group(driver: Driver, name: str) -> str:
    body = {"schemas": [GROUP_SCHEMA], "externalId": str(uuid.uuid4()), "displayName": name}
    status, payload = await driver.call("POST", "/Groups", body=body)
    if status != 201:
        raise RuntimeError(f"creating group {name}: {status} {payload[:300]!r}")
    return str(json.loads(payload)["id"])


async def build_group(
    driver: Driver, meter: StorageMeter, group_id: str, members: list[User]
) -> list[Sample]:
    """Add the members with PATCHes of 100, sequentially; one sample per PATCH."""
    samples = []
    chunks = [members[i : i + PER_PATCH] for i in range(0, len(members), PER_PATCH)]
    for index, chunk in enumerate(chunks, start=1):
        body = patch_body({"op": "Add", "path": "members", "value": members_of(*(u.id for u in chunk))})
        samples.append(
            await timed(
                meter, lambda b=body: driver.call("PATCH", f"/Groups/{group_id}", body=b), status_is(204)
            )
        )
        if index % 20 == 0 or index == len(chunks):
            progress(f"  group: {index * PER_PATCH:,}/{len(members):,} members added")
    return samples


def member_count_is(expected: int) -> Callable[[int, bytes], bool]:
    return lambda status, body: status == 200 and len(json.loads(body).get("members", [])) == expected


async def measure_group(
    driver: Driver, meter: StorageMeter, group_id: str, empty_id: str, size: int, spare: list[User]
) -> dict[str, list[Sample]]:
    lean = {"excludedAttributes": "members"}

    def no_members(status: int, body: bytes) -> bool:
        return status == 200 and "members" not in json.loads(body)

    samples: dict[str, list[Sample]] = {name: [] for name in GROUP_OPS if name != "build_patch_100"}
    for group, name in ((group_id, "get_lean"), (empty_id, "get_lean_empty")):
        for _ in range(LEAN_READS):
            samples[name].append(
                await timed(meter, lambda g=group: driver.call("GET", f"/Groups/{g}", query=lean), no_members)
            )
    for _ in range(FULL_READS):
        samples["get_full"].append(
            await timed(meter, lambda: driver.call("GET", f"/Groups/{group_id}"), member_count_is(size))
        )
    path = f"/Groups/{group_id}"
    for user in spare:
        body = patch_body({"op": "Add", "path": "members", "value": members_of(user.id)})
        samples["add_one"].append(
            await timed(meter, lambda b=body: driver.call("PATCH", path, body=b), status_is(204))
        )
    for user in spare:
        body = patch_body({"op": "Remove", "path": f'members[value eq "{user.id}"]'})
        samples["remove_one"].append(
            await timed(meter, lambda b=body: driver.call("PATCH", path, body=b), status_is(204))
        )
    return samples


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Plan:
    sizes: list[int]
    skipped: list[int] = field(default_factory=list)


def estimate(loader: Loader, sizes: Sequence[int], samples: int, group_size: int, drivers: int) -> float:
    """Seconds still needed: loading at the measured rate, plus rough measurement costs."""
    largest = max([*sizes, group_size + SPARE_USERS if group_size else 0])
    loading = max(largest - len(loader.users), 0) / loader.rate
    measuring = len(sizes) * drivers * samples * len(USER_OPS) * 0.03
    group = group_size / PER_PATCH * 0.5 + drivers * 30 if group_size else 0.0
    return loading + measuring + group


async def run(args: argparse.Namespace, connection_string: str, started: float) -> dict[str, Any]:
    token = secrets.token_urlsafe(32)
    meter = StorageMeter()
    client = scim.storage.tables.connect(connection_string, TABLE_NAME, per_retry_policies=[meter])
    try:
        await client.create_table()
        repository = TableRepository(client)
        settings = Settings(
            storage_connection_string=connection_string,
            table_name=TABLE_NAME,
            token_digests=(token_digest(token),),
        )
        loader = Loader(UserService(repository, membership=Membership(repository)), args.concurrency)
        with contextlib.ExitStack() as stack:
            drivers: list[Driver] = [Direct(ScimApi(settings, repository), token)]
            if args.http:
                drivers.append(stack.enter_context(http_driver(connection_string, token, meter)))
            return await run_sizes_and_group(args, loader, drivers, meter, started)
    finally:
        await client.close()


async def run_sizes_and_group(
    args: argparse.Namespace, loader: Loader, drivers: list[Driver], meter: StorageMeter, started: float
) -> dict[str, Any]:
    deadline = started + 60 * args.budget_minutes
    rng = random.Random(args.seed)
    active: dict[str, bool] = {}
    plan = Plan([])
    sizes: dict[str, dict[str, Any]] = {driver.name: {} for driver in drivers}
    progress(
        f"estimate: ~{minutes(estimate(loader, args.sizes, args.samples, args.group_size, len(drivers)))} "
        f"(assuming {ASSUMED_LOAD_RATE:.0f} users/s until measured; budget {args.budget_minutes} min)"
    )
    for index, size in enumerate(args.sizes):
        needed = (size - len(loader.users)) / loader.rate
        if index and time.perf_counter() + needed > deadline:
            progress(f"skipping {size:,} users: loading would take ~{minutes(needed)}, past the budget")
            plan.skipped.append(size)
            continue
        progress(f"loading users up to {size:,} ...")
        await loader.grow_to(size)
        plan.sizes.append(size)
        rest = estimate(loader, args.sizes[index + 1 :], args.samples, args.group_size, len(drivers))
        progress(
            f"measuring at {size:,} users ({loader.rate:.0f} users/s loading; ~{minutes(rest)} after this)"
        )
        for driver in drivers:
            sizes[driver.name][str(size)] = await measure_size(
                driver, meter, loader.users, args.samples, rng, active
            )
    group = await run_group(args, loader, drivers, meter, deadline) if args.group_size else {}
    return {
        "sizes_measured": plan.sizes,
        "sizes_skipped": plan.skipped,
        "load": {
            "users": len(loader.users),
            "seconds": round(loader.seconds, 1),
            "users_per_s": round(loader.rate, 1),
            "method": f"UserService.create -> TableRepository.create, {args.concurrency} concurrent",
        },
        "users": sizes,
        "ratios": ratios(sizes, plan.sizes),
        "group": group,
    }


async def run_group(
    args: argparse.Namespace, loader: Loader, drivers: list[Driver], meter: StorageMeter, deadline: float
) -> dict[str, Any]:
    needed = args.group_size + SPARE_USERS
    if needed > len(loader.users):
        if time.perf_counter() + (needed - len(loader.users)) / loader.rate > deadline:
            progress("skipping the group: loading its members would go past the budget")
            return {"skipped": True}
        progress(f"loading users up to {needed:,} for the group ...")
        await loader.grow_to(needed)
    members, spare = loader.users[: args.group_size], loader.users[args.group_size : needed]
    direct = drivers[0]
    suffix = uuid.uuid4().hex[:8]
    group_id = await create_group(direct, f"Scale group {suffix}")
    empty_id = await create_group(direct, f"Empty group {suffix}")
    progress(f"building a {args.group_size:,}-member group with PATCHes of {PER_PATCH} ...")
    built = time.perf_counter()
    build = await build_group(direct, meter, group_id, members)
    build_seconds = time.perf_counter() - built
    result: dict[str, Any] = {
        "members": args.group_size,
        "build_seconds": round(build_seconds, 1),
        "build_failures": sum(1 for s in build if not s.ok),
    }
    for driver in drivers:
        progress(f"measuring the group ({driver.name}) ...")
        samples = await measure_group(driver, meter, group_id, empty_id, args.group_size, spare)
        if driver is direct:
            samples = {"build_patch_100": build, **samples}
        result[driver.name] = {name: stats(values) for name, values in samples.items()}
    return result


def ratios(sizes: dict[str, dict[str, Any]], measured: list[int]) -> dict[str, dict[str, Any]]:
    """Largest size / smallest size, per driver and operation, against the target."""
    if len(measured) < 2:
        return {}
    low, high = str(measured[0]), str(measured[-1])
    result: dict[str, dict[str, Any]] = {}
    for driver, by_size in sizes.items():
        result[driver] = {}
        for name in USER_OPS:
            a, b = by_size[low][name], by_size[high][name]

            def ratio(key: str, a: dict[str, Any] = a, b: dict[str, Any] = b) -> float:
                return round(b[key] / a[key], 3) if a[key] else 0.0

            result[driver][name] = {
                "p50": ratio("p50_ms"),
                "p95": ratio("p95_ms"),
                "storage_p50": ratio("storage_p50_ms"),
                "own_p50": ratio("own_p50_ms"),
                "meets_target": ratio("p50_ms") <= TARGET_RATIO,
            }
    return result


# --- report -------------------------------------------------------------------------------------


def print_user_table(report: dict[str, Any]) -> None:
    header = (
        f"{'driver':<8}{'users':>8}  {'operation':<14}{'count':>6}{'fail':>5}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'p99 ms':>9}{'trips':>7}{'storage p50':>13}{'own p50':>9}"
    )
    print(header)
    for driver, by_size in report["users"].items():
        for size, operations in by_size.items():
            for name in USER_OPS:
                row = operations[name]
                print(
                    f"{driver:<8}{int(size):>8,}  {name:<14}{row['count']:>6}{row['failures']:>5}"
                    f"{row['p50_ms']:>9.2f}{row['p95_ms']:>9.2f}{row['p99_ms']:>9.2f}{row['trips_per_op']:>7.2f}"
                    f"{row['storage_p50_ms']:>13.2f}{row['own_p50_ms']:>9.2f}"
                )
    print("  trips = storage round trips per operation; storage p50 = median time inside them;")
    print("  own p50 = median of (latency - storage time): the service, the Table SDK's request building and")
    print("  response parsing (multipart for transactions), and with --http the HTTP + Functions host hop")


def print_round_trips(report: dict[str, Any]) -> None:
    kinds = ("point_read", "query", "transaction")
    print("storage round trips of those operations, by kind: p50 ms (count)")
    print(f"{'driver':<8}{'users':>8}  " + "".join(f"{kind:>20}" for kind in kinds))
    for driver, by_size in report["users"].items():
        for size, operations in by_size.items():
            trips = operations["round_trips"]
            cells = "".join(
                f"{trips[kind]['p50_ms']:>11.2f} ({trips[kind]['count']:>5})"
                if kind in trips
                else f"{'-':>20}"
                for kind in kinds
            )
            print(f"{driver:<8}{int(size):>8,}  {cells}")
    print("  point_read = one entity by its keys (index row); query = PartitionKey + RowKey range (resource")
    print("  row and its edges); transaction = entity-group batch. Azurite evaluates a query against every")
    print("  entity of the table; Azure Table Storage seeks the range in its index.")


def print_ratios(report: dict[str, Any]) -> None:
    measured = report["sizes_measured"]
    if not report["ratios"]:
        print("ratio: needs two sizes")
        return
    print(f"ratio {measured[-1]:,} / {measured[0]:,} users (target: p50 within {TARGET_RATIO:.2f})")
    print(f"{'driver':<8}{'operation':<14}{'p50':>8}{'p95':>8}{'storage p50':>13}{'own p50':>9}  verdict")
    for driver, operations in report["ratios"].items():
        for name, row in operations.items():
            verdict = "OK" if row["meets_target"] else "OVER"
            verdict += f" (own {'OK' if row['own_p50'] <= TARGET_RATIO else 'OVER'})"
            print(
                f"{driver:<8}{name:<14}{row['p50']:>8.3f}{row['p95']:>8.3f}{row['storage_p50']:>13.3f}"
                f"{row['own_p50']:>9.3f}  {verdict}"
            )


def print_group(report: dict[str, Any]) -> None:
    group = report["group"]
    if not group or group.get("skipped"):
        print("group: not measured")
        return
    print(
        f"group of {group['members']:,} members (built in {group['build_seconds']:.1f} s with PATCHes of "
        f"{PER_PATCH}, {group['build_failures']} failed)"
    )
    print(
        f"{'driver':<8}{'operation':<17}{'count':>6}{'fail':>5}{'p50 ms':>10}{'p95 ms':>10}{'trips':>8}"
        f"{'storage p50':>13}{'bytes':>10}"
    )
    for driver in ("direct", "http"):
        for name, row in group.get(driver, {}).items():
            print(
                f"{driver:<8}{name:<17}{row['count']:>6}{row['failures']:>5}{row['p50_ms']:>10.2f}"
                f"{row['p95_ms']:>10.2f}{row['trips_per_op']:>8.2f}{row['storage_p50_ms']:>13.2f}"
                f"{row['bytes_p50']:>10,}"
            )
    print("  get_lean = GET ?excludedAttributes=members; add_one/remove_one = PATCH of one member")


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version()}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[1])
    parser.add_argument("--sizes", default="1000,50000", help="user counts, ascending (default 1000,50000)")
    parser.add_argument("--samples", type=int, default=500, help="random users per operation (default 500)")
    parser.add_argument("--group-size", type=int, default=10_000, help="members of the group (0: no group)")
    parser.add_argument("--http", action="store_true", help="also measure over loopback HTTP")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent creates (default 32)")
    parser.add_argument("--budget-minutes", type=float, default=30.0, help="time budget (default 30)")
    parser.add_argument("--seed", type=int, default=8, help="random seed (default 8)")
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    except ValueError:
        parser.error("--sizes must be comma-separated integers")
    if not args.sizes or any(s < 1 for s in args.sizes) or args.sizes != sorted(set(args.sizes)):
        parser.error("--sizes must be positive and ascending")
    if args.samples < 1 or args.concurrency < 1 or args.group_size < 0 or args.budget_minutes <= 0:
        parser.error("--samples and --concurrency must be at least 1, --group-size and --budget-minutes >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    print(f"machine: {info['platform']}, {info['cpu_count']} CPUs, Python {info['python']}")
    print(
        f"sizes: {', '.join(f'{s:,}' for s in args.sizes)} users; {args.samples} samples per operation; "
        f"group: {args.group_size:,} members; drivers: direct{' + http' if args.http else ''}"
    )
    started = time.perf_counter()
    progress("starting Azurite (in memory) ...")
    with Azurite() as azurite:
        body = asyncio.run(run(args, azurite.connection_string, started))
    report = {
        "machine": info,
        "samples": args.samples,
        "target_ratio": TARGET_RATIO,
        **body,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    load = report["load"]
    print(
        f"loaded {load['users']:,} users in {load['seconds']:.0f} s ({load['users_per_s']:.0f} users/s, "
        f"{load['method']})"
    )
    if report["sizes_skipped"]:
        print(f"skipped sizes (budget): {report['sizes_skipped']}")
    print()
    print_user_table(report)
    print()
    print_round_trips(report)
    print()
    print_ratios(report)
    print()
    print_group(report)
    print()
    print(f"wall time: {report['wall_s']:.0f} s")
    print("JSON: " + json.dumps(report, separators=(",", ":")))
    return 1 if failures(report) else 0


def failures(report: dict[str, Any]) -> int:
    """Failed operations of the whole run (an unexpected status or body)."""
    users = [
        ops[name] for by_size in report["users"].values() for ops in by_size.values() for name in USER_OPS
    ]
    group = report["group"]
    rows = users + [row for driver in ("direct", "http") for row in group.get(driver, {}).values()]
    return sum(row["failures"] for row in rows) + group.get("build_failures", 0)


if __name__ == "__main__":
    sys.exit(main())
