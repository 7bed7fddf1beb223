"""The outbox, the relay, the queue and the audit trail, against Azurite (tables and queues).

Every write leaves exactly the expected change records; the relay publishes
each once it commits, in version order per resource, and never one that did
not commit; failures between the change and the publish only delay events.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.core.pipeline.policies import SansIOHTTPPolicy

from scim.feed.relay import Relay, message_of
from scim.model.errors import ServiceUnavailableError
from scim.storage.queue import open_publisher, open_reader
from scim.storage.tables import TableRepository, connect
from scim.web.api import ScimApi
from tests.integration.conftest import ScimClient, make_settings
from tests.integration.test_groups_entra import create_group, members_of, users
from tests.integration.test_users_entra import create, patch

SOURCE = "urn:scim:tenant:default"


class Collector:
    """A publisher that keeps what it is sent (and can be told to fail)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.failing = False
        self.refused: set[tuple[str, int]] = set()
        """(resource id, sequence) of the events whose publish fails."""

    async def send(self, message: str) -> None:
        event = json.loads(message)
        if self.failing or (event["data"]["id"], event["data"]["sequence"]) in self.refused:
            raise ServiceUnavailableError("queue down (injected)")
        self.messages.append(event)

    def of(self, resource_id: str) -> list[tuple[str, int]]:
        return [
            (m["data"]["operation"], m["data"]["sequence"])
            for m in self.messages
            if m["data"]["id"] == resource_id
        ]


@pytest.fixture
def collector() -> Collector:
    return Collector()


@pytest.fixture
def relay(store, collector) -> Relay:
    return Relay(store.repository, collector, source=SOURCE)


async def test_every_user_write_is_one_event_in_version_order(scim, relay, collector):
    user = await create(scim)
    uid = user["id"]
    assert user["meta"]["version"] == 'W/"1"'
    await scim.patch(f"/Users/{uid}", patch({"op": "Replace", "path": "active", "value": False}))
    await scim.patch(f"/Users/{uid}", patch({"op": "Replace", "path": "active", "value": False}))  # no change
    body = (await scim.get(f"/Users/{uid}")).json()
    assert body["meta"]["version"] == 'W/"2"'
    body["displayName"] = "Renamed"
    replaced = await scim.put(f"/Users/{uid}", body)
    assert replaced.json()["meta"]["version"] == 'W/"3"'
    assert collector.messages == []  # nothing is published before the relay runs
    await scim.delete(f"/Users/{uid}")

    report = await relay.drain()
    assert (report.published, report.recorded) == (4, 4)
    assert collector.of(uid) == [("create", 1), ("patch", 2), ("replace", 3), ("delete", 4)]
    create_event, disable, _, delete = collector.messages
    assert create_event["specversion"] == "1.0" and create_event["type"] == "scim.change.v1"
    assert create_event["subject"] == f"Users/{uid}" and create_event["source"] == SOURCE
    assert create_event["data"]["resource"]["userName"] == user["userName"]
    assert disable["data"]["resource"]["active"] is False and disable["data"]["attributes"] == ["active"]
    assert disable["data"]["version"] == 'W/"2"' and disable["sequence"] == "000000000002"
    assert "resource" not in delete["data"]
    assert len({m["id"] for m in collector.messages}) == 4
    assert (await relay.run_once()).published == 0  # the outbox is empty: nothing twice


async def test_group_writes_and_member_batches_are_events(scim, store, relay, collector):
    ids = await users(scim, 3)
    group = await create_group(scim, members=members_of(ids[0]))
    gid = group["id"]
    await scim.patch(f"/Groups/{gid}", patch({"op": "Add", "path": "members", "value": members_of(*ids[1:])}))
    await scim.patch(
        f"/Groups/{gid}", patch({"op": "Remove", "path": "members", "value": members_of(ids[0])})
    )
    await scim.patch(f"/Groups/{gid}", patch({"op": "Replace", "path": "displayName", "value": "Renamed"}))
    assert (await scim.get(f"/Groups/{gid}")).json()["meta"]["version"] == 'W/"5"'
    await scim.delete(f"/Groups/{gid}")
    await relay.drain()

    assert collector.of(gid) == [
        ("create", 1),
        ("members", 2),
        ("members", 3),
        ("members", 4),
        ("patch", 5),
        ("delete", 6),
    ]
    events = [m["data"] for m in collector.messages if m["data"]["id"] == gid]
    assert "members" not in events[0]["resource"]
    assert events[1]["members"] == {"added": [ids[0]], "removed": []}
    assert events[2]["members"] == {"added": ids[1:], "removed": []}
    assert events[3]["members"] == {"added": [], "removed": [ids[0]]}
    assert events[4]["resource"]["displayName"] == "Renamed"
    # Users: their own creates only; membership is versioned on the group.
    assert all(collector.of(u) == [("create", 1)] for u in ids)


async def test_a_large_member_add_is_one_event_per_batch(scim, relay, collector):
    ids = await users(scim, 120)
    group = await create_group(scim)
    await scim.patch(
        f"/Groups/{group['id']}", patch({"op": "Add", "path": "members", "value": members_of(*ids)})
    )
    await relay.drain()
    batches = [m["data"] for m in collector.messages if m["data"]["id"] == group["id"]][1:]
    assert [len(b["members"]["added"]) for b in batches] == [98, 22]
    assert sorted(u for b in batches for u in b["members"]["added"]) == sorted(ids)


async def test_concurrent_writes_yield_events_in_version_order(scim, relay, collector):
    user = await create(scim)
    names = [f"Name {i}" for i in range(8)]
    responses = await asyncio.gather(
        *(
            scim.patch(f"/Users/{user['id']}", patch({"op": "Replace", "path": "displayName", "value": n}))
            for n in names
        )
    )
    assert all(r.status == 200 for r in responses)
    ids = await users(scim, 8)
    group = await create_group(scim)
    responses = await asyncio.gather(
        *(
            scim.patch(
                f"/Groups/{group['id']}", patch({"op": "Add", "path": "members", "value": members_of(u)})
            )
            for u in ids
        )
    )
    assert all(r.status == 204 for r in responses)
    await relay.drain()

    user_events = [m["data"] for m in collector.messages if m["data"]["id"] == user["id"]]
    assert [e["sequence"] for e in user_events] == list(range(1, 10))
    final = (await scim.get(f"/Users/{user['id']}")).json()
    assert user_events[-1]["resource"]["displayName"] == final["displayName"]  # the last event is the state
    group_events = [m["data"] for m in collector.messages if m["data"]["id"] == group["id"]]
    assert [e["sequence"] for e in group_events] == list(range(1, 10))
    assert sorted(u for e in group_events[1:] for u in e["members"]["added"]) == sorted(ids)


async def test_a_failed_publish_delays_the_event_and_keeps_the_order(scim, relay, collector):
    user = await create(scim)
    await scim.patch(f"/Users/{user['id']}", patch({"op": "Replace", "path": "active", "value": False}))
    collector.failing = True
    report = await relay.run_once()
    assert (report.published, report.recorded, report.waiting) == (0, 0, 2)
    collector.failing = False
    await relay.drain()
    assert collector.of(user["id"]) == [("create", 1), ("patch", 2)]


async def test_a_failed_publish_holds_back_the_resources_later_events(scim, store, relay, collector):
    """Issue 14: event N of a resource fails, so N+1 must wait for the next run (order over progress)."""
    user = await create(scim)
    uid = user["id"]
    for value in (False, True):
        await scim.patch(f"/Users/{uid}", patch({"op": "Replace", "path": "active", "value": value}))
    other = await create(scim)
    collector.refused = {(uid, 2)}
    report = await relay.run_once()
    assert collector.of(uid) == [("create", 1)]  # not v3 past the failed v2
    assert collector.of(other["id"]) == [("create", 1)]  # other resources go on
    assert (report.published, report.recorded, report.waiting) == (2, 2, 2)
    assert [p.change.sequence for p in await store.repository.pending_changes("User")] == [2, 3]
    collector.refused = set()
    await relay.drain()
    assert collector.of(uid) == [("create", 1), ("patch", 2), ("patch", 3)]


async def test_a_crash_after_the_publish_republishes_the_same_event(
    scim, store, relay, collector, monkeypatch
):
    user = await create(scim)

    async def crash(*args, **kwargs):
        raise ServiceUnavailableError("crashed before recording (injected)")

    with monkeypatch.context() as patched:
        patched.setattr(store.repository, "settle_changes", crash)
        with pytest.raises(ServiceUnavailableError):  # the run fails after publishing
            await relay.run_once()
    await relay.drain()
    assert collector.of(user["id"]) == [("create", 1), ("create", 1)]  # at least once ...
    first, again = collector.messages
    assert first["id"] == again["id"]  # ... with one id to deduplicate on
    records = [c async for c, _ in store.repository.audit_records("User")]
    assert len(records) == 1


class FailBatches(SansIOHTTPPolicy[Any, Any]):
    """Fails every transaction before it is sent: the commit never happens."""

    def on_request(self, request):
        if request.http_request.url.endswith("$batch"):
            raise ServiceRequestError("connection reset (injected)")


async def test_a_failure_before_the_commit_yields_neither_change_nor_event(scim, store, relay, collector):
    user = await create(scim)
    failing = connect(store.connection_string, store.table_name, per_retry_policies=[FailBatches()])
    broken = ScimClient(ScimApi(make_settings(store), TableRepository(failing)))
    try:
        response = await broken.patch(
            f"/Users/{user['id']}", patch({"op": "Replace", "path": "active", "value": False})
        )
        assert response.status == 503
        response = await broken.post("/Users", {"userName": "never@example.com"})
        assert response.status == 503
    finally:
        await failing.close()
    await relay.drain()
    assert collector.of(user["id"]) == [("create", 1)]
    assert (await scim.get(f"/Users/{user['id']}")).json()["active"] is True
    assert (await scim.get('/Users?filter=userName eq "never@example.com"')).json()["totalResults"] == 0
    assert len(collector.messages) == 1


async def test_the_audit_trail_says_who_disabled_a_user_and_when(scim, store, relay):
    user = await create(scim)
    await scim.patch(
        f"/Users/{user['id']}",
        patch({"op": "Replace", "path": "active", "value": False}),
        headers={"x-ms-request-id": "entra-req-42"},
    )
    before = [(c.operation, published) async for c, published in store.repository.audit_records("User")]
    assert before == [("create", False), ("patch", False)]  # recorded at commit, published later
    await relay.drain()
    records = [c async for c, published in store.repository.audit_records("User") if published]
    disable = next(c for c in records if c.operation == "patch" and "active" in c.attributes)
    entry = disable.audit(published=True)
    assert entry["actor"] == "secret-token-1" and entry["requestId"] == "entra-req-42"
    assert entry["values"] == {"active": [True, False]}
    assert entry["time"] == disable.time and entry["version"] == 2
    assert "emails" not in entry["values"]  # names only for personal data
    assert (
        (await scim.get(f"/Users/{user['id']}")).json()["meta"]["lastModified"].startswith(disable.time[:19])
    )


async def test_retention_prunes_old_audit_records(scim, store, collector):
    await create(scim)
    await Relay(store.repository, collector, source=SOURCE).drain()
    later = Relay(
        store.repository, collector, source=SOURCE, retention_days=30,
        clock=lambda: datetime.now(UTC) + timedelta(days=31),
    )  # fmt: skip
    assert (await later.run_once()).pruned == 1
    assert [c async for c, _ in store.repository.audit_records("User")] == []


async def test_events_reach_an_azure_storage_queue(scim, store):
    settings = make_settings(store, change_queue="feed-" + uuid.uuid4().hex[:12])
    publisher = open_publisher(settings)
    assert publisher is not None
    reader = open_reader(settings)
    try:
        user = await create(scim)
        await scim.patch(f"/Users/{user['id']}", patch({"op": "Replace", "path": "active", "value": False}))
        await Relay(store.repository, publisher, source=SOURCE).drain()  # creates the queue on first use
        received = [json.loads(m.content) async for m in reader.receive_messages(max_messages=32)]
        by_resource: dict[str, list[int]] = defaultdict(list)
        for event in received:
            by_resource[event["data"]["id"]].append(event["data"]["sequence"])
        assert by_resource == {user["id"]: [1, 2]}
    finally:
        await publisher.close()
        await reader.close()


def test_an_event_too_large_for_a_queue_message_leaves_the_resource_out():
    from scim.model.changes import Change

    big = Change.of(
        "User", "u1", "create", 1, "2026-11-30T00:00:00.000000Z", after={"userName": "x" * 60_000}
    )
    event = json.loads(message_of(big, SOURCE))
    assert event["data"]["resource"] is None and event["data"]["truncated"] is True


async def run_cli(monkeypatch, capsys, store, *argv: str) -> tuple[int, str, str]:
    """``python -m scim`` in a worker thread (it runs its own event loop), over the test's table."""
    from scim.__main__ import main

    monkeypatch.setenv("SCIM_STORAGE_CONNECTION_STRING", store.connection_string)
    monkeypatch.setenv("SCIM_TABLE_NAME", store.table_name)
    monkeypatch.setenv("SCIM_CHANGE_QUEUE", "cli-" + store.table_name.lower())
    capsys.readouterr()
    status = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return status, out, err


async def test_the_audit_command_answers_who_disabled_a_user_and_when(scim, store, monkeypatch, capsys):
    user = await create(scim)
    await scim.patch(f"/Users/{user['id']}", patch({"op": "Replace", "path": "displayName", "value": "Ada"}))
    await scim.patch(
        f"/Users/{user['id']}",
        patch({"op": "Replace", "path": "active", "value": False}),
        headers={"x-ms-request-id": "entra-req-7"},
    )
    status, out, _ = await run_cli(
        monkeypatch, capsys, store, "audit", "--resource", user["id"], "--attribute", "active"
    )
    assert status == 0
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["TIME", "ACTOR", "OPERATION"]
    assert len(rows) == 2  # the create (active: true) and the disable
    disable = rows[-1]
    assert "secret-token-1" in disable and "patch" in disable and "active: true→false" in disable
    assert "entra-req-7" in disable and "pending" in disable  # recorded, not yet relayed

    status, out, err = await run_cli(monkeypatch, capsys, store, "feed", "relay")
    assert status == 0 and "published 3, recorded 3" in err

    status, out, _ = await run_cli(monkeypatch, capsys, store, "audit", "--operation", "patch", "--json")
    entries = [json.loads(line) for line in out.splitlines()]
    assert [e["attributes"] for e in entries] == [["displayName"], ["active"]]
    assert all(e["published"] for e in entries)

    status, out, err = await run_cli(monkeypatch, capsys, store, "feed", "replay", "--since", "1h")
    replayed = [json.loads(line) for line in out.splitlines()]
    assert [e["data"]["sequence"] for e in replayed] == [1, 2, 3] and "Replayed 3 event(s)" in err

    status, out, _ = await run_cli(monkeypatch, capsys, store, "audit", "prune", "--days", "1")
    assert status == 0 and "Pruned 0 audit record(s)" in out  # all are recent


async def test_two_relays_at_once_record_each_change_once(scim, store, collector):
    ids = [(await create(scim))["id"] for _ in range(60)]  # more than one settle transaction (50)
    first, second = (
        Relay(store.repository, collector, source=SOURCE),
        Relay(store.repository, collector, source=SOURCE),
    )
    reports = await asyncio.gather(first.run_once(), second.run_once())
    assert sum(r.recorded for r in reports) == 60  # every change moved once, by one relay or the other
    assert len({m["id"] for m in collector.messages}) == 60  # duplicates allowed, none lost
    records = [c async for c, published in store.repository.audit_records("User") if published]
    assert sorted(c.resource_id for c in records) == sorted(ids)
    assert await store.repository.pending_changes("User") == []
