"""
FILE: feed.py

DESCRIPTION:
    The change feed's costs (docs/change-feed.md), on Azurite (tables and queues, in memory):

    1. Write path: storage round trips of POST and PATCH with the change record riding in the
       transaction (must equal the budgets in docs/architecture.md: 1 and 2), and the CPU a write spends.
    2. Relay throughput: N users created and disabled (2N changes) are relayed to the queue:
       events/s, and round trips per event (table reads, settle transactions, queue sends).
    3. Latency from a write's response to its event being readable from the queue, with the relay
       running every --interval seconds (1 s here; `make run` and the timer trigger in Azure run
       every 10 s, so add ~5 s on average there) and a consumer polling the queue.

    ``scim.web.api.ScimApi`` is driven directly (no HTTP). Prints a table and a ``JSON:`` line.

USAGE:
    .venv/bin/python -m bench.feed [--users N] [--latency-writes M] [--interval S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy

from bench.users import entra_user, machine, patch_body, percentile
from scim.config import Settings, token_digest
from scim.feed.relay import Relay
from scim.storage.queue import open_publisher, open_reader
from scim.storage.tables import TableRepository, connect
from scim.web.api import Request, ScimApi
from tools.azurite import Azurite

BASE = "http://bench.invalid/scim/v2"
TOKEN = "bench-feed-" + uuid.uuid4().hex


class Counting(SansIOHTTPPolicy[Any, Any]):
    """Counts table requests by kind: ``batch`` (transactions) and ``read`` (queries, point reads)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def on_request(self, request: PipelineRequest[Any]) -> None:
        path = urlsplit(request.http_request.url).path
        self.counts["batch" if path.endswith("$batch") else "read"] += 1


async def call(api: ScimApi, method: str, path: str, body: Any = None) -> Any:
    segments = path.strip("/").split("/")
    request = Request(
        method=method,
        url=BASE + path,
        headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/scim+json"},
        query={},
        route={"id": segments[1]} if len(segments) > 1 else {},
        body=json.dumps(body).encode() if body is not None else b"",
    )
    handler = api.users if len(segments) == 1 else api.user
    response = await handler(request)
    if response.status >= 300:
        raise RuntimeError(f"{method} {path} -> {response.status}: {response.body[:200]!r}")
    return response.json()


async def measure(connection_string: str, users: int, latency_writes: int, interval: float) -> dict[str, Any]:
    table = "feed" + uuid.uuid4().hex[:12]
    counter = Counting()
    client = connect(connection_string, table, per_retry_policies=[counter])
    await client.create_table()
    repository = TableRepository(client)
    settings = Settings(
        storage_connection_string=connection_string,
        table_name=table,
        token_digests=(token_digest(TOKEN),),
        change_queue="bench-" + uuid.uuid4().hex[:12],
    )
    api = ScimApi(settings, repository)
    publisher = open_publisher(settings)
    reader = open_reader(settings)
    assert publisher is not None
    await reader.create_queue()
    result: dict[str, Any] = {}
    try:
        # 1. the write path
        counter.counts.clear()
        cpu = time.process_time()
        ids = [(await call(api, "POST", "/Users", entra_user()))["id"] for _ in range(users)]
        result["post_round_trips"] = sum(counter.counts.values()) / users
        counter.counts.clear()
        disable = patch_body({"op": "Replace", "path": "active", "value": False})
        for resource_id in ids:
            await call(api, "PATCH", f"/Users/{resource_id}", disable)
        result["patch_round_trips"] = sum(counter.counts.values()) / users
        result["write_cpu_ms"] = (time.process_time() - cpu) * 1000 / (2 * users)
        print(f"  wrote {2 * users} changes", file=sys.stderr, flush=True)

        # 2. relay throughput
        counter.counts.clear()
        relay = Relay(repository, publisher, source="urn:scim:tenant:bench", retention_days=0)
        started = time.perf_counter()
        report = await relay.drain()
        elapsed = time.perf_counter() - started
        events = report.published
        result.update(
            events=events,
            relay_events_per_s=events / elapsed,
            relay_table_reads_per_event=counter.counts["read"] / events,
            relay_table_batches_per_event=counter.counts["batch"] / events,
            relay_queue_sends_per_event=1.0,
        )
        print(f"  relayed {events} events in {elapsed:.1f} s", file=sys.stderr, flush=True)
        await reader.clear_messages()

        # 3. latency, write response -> event readable
        stop = asyncio.Event()

        async def relay_loop() -> None:
            while not stop.is_set():
                await relay.run_once()
                await asyncio.sleep(interval)

        written: dict[str, float] = {}
        seen: dict[str, float] = {}

        async def consume() -> None:
            while len(seen) < latency_writes:
                async for message in reader.receive_messages(max_messages=32, visibility_timeout=30):
                    event = json.loads(message.content)
                    if event["data"]["id"] in written:
                        seen.setdefault(event["data"]["id"], time.perf_counter())
                    await reader.delete_message(message)
                await asyncio.sleep(0.05)

        relaying, consuming = asyncio.create_task(relay_loop()), asyncio.create_task(consume())
        for _ in range(latency_writes):
            resource_id = (await call(api, "POST", "/Users", entra_user()))["id"]
            written[resource_id] = time.perf_counter()
            await asyncio.sleep(interval / 3)
        await asyncio.wait_for(consuming, timeout=60 + latency_writes * interval)
        stop.set()
        await relaying
        latencies = [(seen[r] - written[r]) * 1000 for r in written]
        result.update(
            latency_p50_ms=percentile(latencies, 0.5),
            latency_p95_ms=percentile(latencies, 0.95),
            latency_max_ms=max(latencies),
        )
    finally:
        await publisher.close()
        await reader.delete_queue()
        await reader.close()
        await client.delete_table()
        await client.close()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The change feed's costs (see the module docstring).")
    parser.add_argument("--users", type=int, default=500, help="users created then disabled (default 500)")
    parser.add_argument(
        "--latency-writes", type=int, default=40, help="writes timed to the queue (default 40)"
    )
    parser.add_argument("--interval", type=float, default=1.0, help="relay interval in seconds (default 1)")
    arguments = parser.parse_args(argv)
    print(f"machine: {machine()}", flush=True)
    with Azurite() as tables, Azurite(service="queue") as queues:
        result = asyncio.run(
            measure(
                tables.connection_string_with(queues),
                arguments.users,
                arguments.latency_writes,
                arguments.interval,
            )
        )
    rows = [
        (
            "POST user: storage round trips",
            f"{result['post_round_trips']:.2f}",
            "budget 1: the record rides along",
        ),
        ("PATCH user: storage round trips", f"{result['patch_round_trips']:.2f}", "budget 2"),
        ("write CPU per request", f"{result['write_cpu_ms']:.2f} ms", "process CPU, no HTTP"),
        ("relay throughput", f"{result['relay_events_per_s']:.0f} events/s", f"{result['events']} events"),
        ("relay table reads per event", f"{result['relay_table_reads_per_event']:.3f}", "1 query per 1,000"),
        (
            "relay table transactions per event",
            f"{result['relay_table_batches_per_event']:.2f}",
            "move to audit",
        ),
        ("relay queue sends per event", f"{result['relay_queue_sends_per_event']:.2f}", ""),
        (
            f"write -> readable from the queue (relay every {arguments.interval:g} s)",
            f"p50 {result['latency_p50_ms']:.0f} / p95 {result['latency_p95_ms']:.0f} ms",
            f"max {result['latency_max_ms']:.0f} ms",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>22}  {note}")
    print("JSON: " + json.dumps({"machine": machine(), **arguments.__dict__, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
