"""The consistency checker finds what interrupted writes and hand edits leave, and repairs it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from scim.consistency import check, repair
from scim.repository import IndexEntry
from tests.integration.test_groups_entra import create_group, members_of, users
from tests.integration.test_membership_crash import crashing
from tests.integration.test_users_entra import assert_error, patch

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


async def codes(store) -> list[str]:
    return sorted(a.code for a in await check(store.repository))


async def test_a_healthy_table_has_no_anomaly(scim, store):
    ids = await users(scim, 3)
    group = await create_group(scim)
    await scim.patch(
        f"/Groups/{group['id']}", patch({"op": "add", "path": "members", "value": members_of(*ids)})
    )
    await scim.patch(
        f"/Groups/{group['id']}", patch({"op": "remove", "path": "members", "value": members_of(ids[0])})
    )
    await scim.delete(f"/Users/{ids[1]}")
    assert await codes(store) == []


async def test_interrupted_writes_are_found_and_repaired(scim, store):
    ids = await users(scim, 4)
    group = await create_group(scim)
    path = f"/Groups/{group['id']}"
    add = patch({"op": "add", "path": "members", "value": members_of(ids[0], ids[1])})
    assert_error(await crashing(store, "stage_reverse_edges", 2).patch(path, add), 503)  # after phase 2
    await scim.patch(path, patch({"op": "add", "path": "members", "value": members_of(ids[2], ids[3])}))
    remove = patch({"op": "remove", "path": "members", "value": members_of(ids[2])})
    assert_error(await crashing(store, "delete_reverse_edges").patch(path, remove), 503)  # after phase 2
    assert_error(await crashing(store, "delete").delete(f"/Users/{ids[3]}"), 503)  # flagged, edges gone
    found = await codes(store)
    assert found == ["interrupted-delete", "pending-edge", "pending-edge", "pending-edge"], found
    outcomes = await repair(await check(store.repository))
    assert sorted(outcome for _, outcome in outcomes) == ["repaired"] * 3 + ["reported only"]
    assert await codes(store) == ["interrupted-delete"]
    assert (await scim.delete(f"/Users/{ids[3]}")).status == 204  # the client's retry finishes it
    assert await codes(store) == []
    members = sorted(m["value"] for m in (await scim.get(path)).json()["members"])
    assert members == sorted([ids[0], ids[1]])


async def test_hand_edits_are_found_and_repaired(scim, store):
    (user,) = await users(scim, 1)
    group = await create_group(scim)
    repository = store.repository
    ghost = str(uuid.uuid4())
    await repository.create_index_row("User", IndexEntry("userName", "ghost@x.com", True), ghost)  # orphaned
    me = (await scim.get(f"/Users/{user}")).json()
    entry = IndexEntry("userName", me["userName"].lower(), True)
    (row_key,) = repository.index_row_keys(await repository.get("User", user), [entry])
    await repository.delete_index_row("User", row_key)  # missing
    stored_group = await repository.get("Group", group["id"])
    await repository.write_member_edges(
        stored_group, modified="2026-01-01T00:00:00Z", add={ghost: None}
    )  # no user
    staged = await repository.stage_reverse_edges(group["id"], [user], pending=True)
    await repository.stage_reverse_edges(
        group["id"], [user], pending=False, etags=staged.etags
    )  # no member edge
    found = await codes(store)
    assert found == ["member-missing-user", "missing-index", "orphaned-index", "reverse-without-member"], (
        found
    )
    await repair(await check(repository))
    assert await codes(store) == []
    assert (await scim.get(f'/Users?filter=userName eq "{me["userName"]}"')).json()["totalResults"] == 1
    assert "groups" not in (await scim.get(f"/Users/{user}")).json()


def test_command_line(store):
    environment = {
        **os.environ,
        "SCIM_STORAGE_CONNECTION_STRING": store.connection_string,
        "SCIM_TABLE_NAME": store.table_name,
    }
    clean = subprocess.run(
        [sys.executable, "-m", "scim", "check"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert clean.returncode == 0, clean.stderr
    assert "0 anomalies found" in clean.stderr
    broken = subprocess.run(
        [sys.executable, "-m", "scim", "check", "--json"],
        cwd=ROOT,
        env={**environment, "SCIM_STORAGE_CONNECTION_STRING": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert broken.returncode == 2 and "SCIM_STORAGE_CONNECTION_STRING" in broken.stderr
