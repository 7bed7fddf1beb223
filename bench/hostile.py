"""
FILE: hostile.py

DESCRIPTION:
    What the largest requests the limits allow cost, and whether the endpoint keeps answering
    while one runs (issue 14 item 2; DESIGN §11). Served as ``make run`` serves it:
    ``function_app.py`` through the local Functions host (``functions_host``: the real
    ``azure-functions-runtime`` behind an emulation of the .NET host) over loopback HTTP, backed by
    Azurite (in memory). The host's own body limit (``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT``, 100 MB by
    default) must stay above ``SCIM_MAX_BODY_BYTES``, else the host's empty 500 hides the app's 413.

    Each scenario sends one request (a fresh resource for each) while a prober thread sends
    ``GET /Users/{id}`` (Entra's read) every 20 ms, and reports the request's wall time, the
    process CPU spent meanwhile (the prober's share included), and the probes' latency during
    it, next to the idle baseline. Scenarios:

    * ``post_max``: POST a user whose eight multi-valued attributes hold ``MAX_MULTI_VALUES``
      values each (the body near ``SCIM_MAX_BODY_BYTES``);
    * ``patch_filtered``: PATCH of value-filtered operations on a user with ``MAX_MULTI_VALUES``
      e-mails, as many as ``MAX_PATCH_WORK`` allows;
    * ``patch_growing``: value-filtered ``replace`` operations that match nothing, so each creates
      an e-mail (Entra's form), as many as ``MAX_PATCH_WORK`` allows;
    * ``patch_plain``: ``MAX_PATCH_OPERATIONS`` single-valued replaces;
    * ``refused_*``: the requests of issue 14 (10,000 e-mails; 1,000 value-filtered operations),
      which are now refused up front — how long refusing takes.

    ``--on-loop`` runs the CPU-heavy steps on the event loop instead of the thread pool
    (``scim.service.operations.off_loop`` replaced by a direct call): what the probes saw before the fix.
    Measured, not asserted: the responsiveness check is ``tests/integration/test_bounded_work.py``.

USAGE:
    .venv/bin/python -m bench.hostile [--on-loop] [--repeat N]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import secrets
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import httpx

import scim.service.operations
import scim.web.api
from functions_host import FunctionsHost, serve_in_thread
from scim.model.limits import MAX_MULTI_VALUES, MAX_PATCH_OPERATIONS, MAX_PATCH_WORK, patch_work
from tools.azurite import Azurite

ROOT = Path(__file__).resolve().parents[1]
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SCHEMAS = (CORE, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
PROBE_INTERVAL_S = 0.02


def many(attribute: str, count: int, tag: str) -> list[dict[str, Any]]:
    """``count`` values of a multi-valued User attribute (RFC 7643 §4.1.2)."""
    if attribute == "addresses":
        return [{"streetAddress": f"{n} {tag} Street", "type": "work"} for n in range(count)]
    if attribute == "x509Certificates":
        return [{"value": base64.b64encode(f"{tag}-{n:04d}".encode()).decode()} for n in range(count)]
    if attribute == "photos":
        return [{"value": f"https://example.com/{tag}/{n:04d}.jpg", "type": "photo"} for n in range(count)]
    return [{"value": f"{tag}{n:04d}@example.com", "type": "work"} for n in range(count)]


MULTI_VALUED = ("emails", "phoneNumbers", "ims", "photos", "addresses", "entitlements", "roles")


def largest_user(tag: str) -> dict[str, Any]:
    """A user with ``MAX_MULTI_VALUES`` values in each of its multi-valued attributes."""
    body: dict[str, Any] = {"schemas": [CORE], "userName": f"{tag}@example.com"}
    for attribute in (*MULTI_VALUED, "x509Certificates"):
        body[attribute] = many(attribute, MAX_MULTI_VALUES, tag)
    return body


def patch_body(operations: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": operations}


def filtered_operations(tag: str, document: dict[str, Any], value: str) -> list[dict[str, Any]]:
    """As many value-filtered replaces over ``document``'s e-mails as ``MAX_PATCH_WORK`` allows."""
    operations: list[dict[str, Any]] = []
    while True:
        n = len(operations)
        following = {
            "op": "replace",
            "path": f'emails[value eq "{tag}{n:04d}@example.com"].type',
            "value": value,
        }
        if patch_work(patch_body([*operations, following]), document, SCHEMAS) > MAX_PATCH_WORK:
            return operations
        operations.append(following)


@dataclass
class Measure:
    scenario: str
    status: int
    body_bytes: int
    work: int | None
    wall_s: float
    cpu_s: float
    probes: list[float]

    def row(self) -> dict[str, Any]:
        probes = self.probes or [0.0]
        return {
            "scenario": self.scenario,
            "status": self.status,
            "body_kb": round(self.body_bytes / 1024),
            "work": self.work,
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "probes": len(self.probes),
            "probe_p50_ms": round(statistics.median(probes) * 1000, 1),
            "probe_max_ms": round(max(probes) * 1000, 1),
        }


class Prober:
    """Sends ``GET /Users/{id}`` every 20 ms from its own thread, recording each latency."""

    def __init__(self, client: httpx.Client, path: str) -> None:
        self._client, self._path = client, path
        self._stop = threading.Event()
        self.latencies: list[float] = []
        self._thread = threading.Thread(target=self._run, name="prober", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            response = self._client.get(self._path)
            self.latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"probe answered {response.status_code}")
            self._stop.wait(PROBE_INTERVAL_S)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def measured(
    client: httpx.Client, prober_client: httpx.Client, probe: str, scenario: str, send: Callable[[], Any]
) -> Measure:
    """Run ``send`` (returns the response, the body size and the work) while probing."""
    with Prober(prober_client, probe) as prober:
        time.sleep(0.1)  # the prober is running before the request starts
        cpu, wall = time.process_time(), time.perf_counter()
        response, size, work = send()
        wall_s, cpu_s = time.perf_counter() - wall, time.process_time() - cpu
        during = list(prober.latencies)
    if response.status_code >= 400 and not scenario.startswith("refused"):
        print(f"{scenario}: {response.status_code} {response.text[:300]}", file=sys.stderr)
    return Measure(scenario, response.status_code, size, work, wall_s, cpu_s, during[2:])


def scenarios(client: httpx.Client) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(name, send) for each hostile request; set-up requests are sent before ``send`` runs."""

    def post(body: dict[str, Any]) -> Callable[[], Any]:
        raw = json.dumps(body).encode()
        return lambda: (client.post("/Users", content=raw), len(raw), None)

    def patch(user: dict[str, Any], operations: list[dict[str, Any]]) -> Callable[[], Any]:
        body = patch_body(operations)
        raw = json.dumps(body).encode()
        work = patch_work(body, user, SCHEMAS)
        return lambda: (client.patch(f"/Users/{user['id']}", content=raw), len(raw), work)

    def user(tag: str, emails: int) -> dict[str, Any]:
        body = {"schemas": [CORE], "userName": f"{tag}@example.com", "emails": many("emails", emails, tag)}
        response = client.post("/Users", json=body)
        response.raise_for_status()
        return dict(response.json())

    yield "post_max", post(largest_user("pm" + uuid.uuid4().hex[:8]))
    tag = "pf" + uuid.uuid4().hex[:8]
    target = user(tag, MAX_MULTI_VALUES)
    yield "patch_filtered", patch(target, filtered_operations(tag, target, "home"))
    tag = "pg" + uuid.uuid4().hex[:8]
    target = user(tag, 0)
    yield "patch_growing", patch(target, filtered_operations(tag, target, "home"))
    target = user("pp" + uuid.uuid4().hex[:8], 1)
    plain = [{"op": "replace", "path": "displayName", "value": f"d{n}"} for n in range(MAX_PATCH_OPERATIONS)]
    yield "patch_plain", patch(target, plain)
    issue = {
        "schemas": [CORE],
        "userName": f"ri{uuid.uuid4().hex[:8]}",
        "emails": many("emails", 10_000, "r"),
    }
    yield "refused_10k_emails", post(issue)
    tag = "rp" + uuid.uuid4().hex[:8]
    target = user(tag, MAX_MULTI_VALUES)
    refused = [
        {"op": "replace", "path": f'emails[value eq "{tag}{n:04d}@example.com"].type', "value": "home"}
        for n in range(MAX_PATCH_OPERATIONS)
    ]
    yield "refused_1000_filtered_ops", patch(target, refused)


@contextlib.contextmanager
def endpoint(token: str, on_loop: bool) -> Iterator[str]:
    """Azurite + ``function_app`` through the local Functions host over loopback; yields the Tenant URL.

    ``off_loop`` is replaced (``--on-loop``) before the runtime indexes the app, so every request
    sees the replacement; the runtime imports ``function_app`` by name and gets this module.
    """
    with contextlib.ExitStack() as stack:
        azurite = stack.enter_context(Azurite())
        os.environ["SCIM_STORAGE_CONNECTION_STRING"] = azurite.connection_string
        os.environ["SCIM_BEARER_TOKEN"] = token
        os.environ["SCIM_CHANGE_QUEUE"] = "off"
        if on_loop:

            async def inline(function: Callable[..., Any], *arguments: Any) -> Any:
                return function(*arguments)

            stack.enter_context(mock.patch.object(scim.service.operations, "off_loop", inline))
            stack.enter_context(mock.patch.object(scim.web.api, "off_loop", inline))
        import function_app

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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--on-loop", action="store_true", help="run the CPU-heavy steps on the event loop")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every scenario (default 1)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"CPU-heavy work: {'on the event loop (--on-loop)' if args.on_loop else 'off the event loop'}")
    token = secrets.token_urlsafe(32)
    rows: list[dict[str, Any]] = []
    with endpoint(token, args.on_loop) as tenant_url:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
        options: dict[str, Any] = {"base_url": tenant_url, "headers": headers, "timeout": 600.0}
        with httpx.Client(**options) as client, httpx.Client(**options) as prober_client:
            created = client.post("/Users", json={"schemas": [CORE], "userName": "probe@example.com"})
            probe = f"/Users/{created.json()['id']}"
            for _ in range(5):  # warm-up
                prober_client.get(probe)
            idle = []
            for _ in range(20):
                started = time.perf_counter()
                prober_client.get(probe)
                idle.append(time.perf_counter() - started)
                time.sleep(PROBE_INTERVAL_S)
            baseline = {
                "p50_ms": round(statistics.median(idle) * 1000, 1),
                "max_ms": round(max(idle) * 1000, 1),
            }
            for _ in range(args.repeat):
                for name, send in scenarios(client):
                    rows.append(measured(client, prober_client, probe, name, send).row())
    print(f"idle probe (GET /Users/{{id}}): p50 {baseline['p50_ms']} ms, max {baseline['max_ms']} ms")
    print(f"limits: MAX_MULTI_VALUES {MAX_MULTI_VALUES:,}, MAX_PATCH_WORK {MAX_PATCH_WORK:,}")
    columns = (
        "scenario",
        "status",
        "body_kb",
        "work",
        "wall_s",
        "cpu_s",
        "probes",
        "probe_p50_ms",
        "probe_max_ms",
    )
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(str(row[column]) for column in columns))
    print("JSON: " + json.dumps({"on_loop": args.on_loop, "idle_probe": baseline, "scenarios": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
