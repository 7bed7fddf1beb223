"""As a new user would: the endpoint over HTTP, Entra's lifecycle, the relay, and the example consumer.

The dev server serves ``function_app`` over Azurite (tables and queues); the
relay is the timer trigger's code; ``examples/feed_consumer.py`` runs as its
own process, as documented, reading the queue into SQLite. Its copy must then
match the directory exactly: every user and group (as a GET returns them),
every version and every membership — including the resources other tests
created through the same dev server. Then a consumer that fell behind is
rebuilt from ``python -m scim feed replay`` alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import requests

import function_app
from tests.conftest import TOKEN
from tests.integration.test_users_entra import entra_user

ROOT = Path(__file__).resolve().parents[2]
CONSUMER = ROOT / "examples" / "feed_consumer.py"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"}
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def call(method: str, url: str, body: Any = None) -> requests.Response:
    response = requests.request(method, url, json=body, headers=HEADERS, timeout=30)
    assert response.status_code < 300, (method, url, response.status_code, response.text)
    return response


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def entra_lifecycle(base: str) -> None:
    """What Entra does in a first cycle and after: users, manager, disable, groups, members, deletes."""
    ids = []
    for _ in range(6):
        body = entra_user()
        probe = call(
            "GET", f'{base}/Users?filter=userName eq "{body["userName"]}"'
        ).json()  # Entra matches first
        assert probe["totalResults"] == 0
        ids.append(call("POST", f"{base}/Users", body).json()["id"])
    call(
        "PATCH",
        f"{base}/Users/{ids[1]}",
        patch(
            {
                "op": "Add",
                "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
                "value": ids[0],
            }
        ),
    )
    call("PATCH", f"{base}/Users/{ids[2]}", patch({"op": "Replace", "path": "active", "value": "False"}))
    call(
        "PATCH",
        f"{base}/Users/{ids[3]}",
        patch({"op": "Replace", "path": 'emails[type eq "work"].value', "value": "new@contoso.com"}),
    )
    group = call(
        "POST",
        f"{base}/Groups",
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": f"Team {uuid.uuid4()}",
            "externalId": str(uuid.uuid4()),
        },
    ).json()
    gid = group["id"]
    call(
        "PATCH",
        f"{base}/Groups/{gid}",
        patch({"op": "Add", "path": "members", "value": [{"value": u} for u in ids[:5]]}),
    )
    call(
        "PATCH",
        f"{base}/Groups/{gid}",
        patch({"op": "Remove", "path": "members", "value": [{"value": ids[4]}]}),
    )
    call(
        "PATCH",
        f"{base}/Groups/{gid}",
        patch({"op": "Replace", "path": "displayName", "value": f"Renamed {gid}"}),
    )
    other = call(
        "POST", f"{base}/Groups", {"displayName": f"Gone {uuid.uuid4()}", "members": [{"value": ids[0]}]}
    ).json()
    call("DELETE", f"{base}/Groups/{other['id']}")
    call("DELETE", f"{base}/Users/{ids[3]}")  # a member: leaves the group too
    call("DELETE", f"{base}/Users/{ids[5]}")


def directory(base: str) -> dict[str, Any]:
    """Every user and group as the endpoint serves them, in the consumer's dump format."""

    def strip(resource: dict[str, Any]) -> tuple[dict[str, Any], int]:
        meta = dict(resource["meta"])
        version = int(meta.pop("version").removeprefix('W/"').removesuffix('"'))
        meta.pop("location")
        return {
            **{k: v for k, v in resource.items() if k not in ("groups", "members")},
            "meta": meta,
        }, version

    found: dict[str, Any] = {"Users": {}, "Groups": {}}
    for kind in ("Users", "Groups"):
        url = f"{base}/{kind}?cursor=&count=200" + ("&excludedAttributes=members" if kind == "Groups" else "")
        while url:
            page = call("GET", url).json()
            for listed in page["Resources"]:
                resource = call("GET", f"{base}/{kind}/{listed['id']}").json()
                body, version = strip(resource)
                entry: dict[str, Any] = {"version": version, "resource": body}
                if kind == "Groups":
                    entry["members"] = sorted(m["value"] for m in resource.get("members", []))
                found[kind][listed["id"]] = entry
            cursor = page.get("nextCursor")
            url = f"{base}/{kind}?cursor={cursor}&count=200" if cursor else ""
    return found


def run_consumer(connection_string: str, *arguments: str, stdin: str | None = None, queue: str = "") -> str:
    # The session's dev server also serves other tests, some of whose users are too large for a
    # queue message: the consumer fetches those by GET, as its docs say (SCIM_BEARER_TOKEN).
    environment = {
        **os.environ, "SCIM_STORAGE_CONNECTION_STRING": connection_string, "SCIM_BEARER_TOKEN": TOKEN,
    }  # fmt: skip
    if queue:
        environment["SCIM_CHANGE_QUEUE"] = queue
    result = subprocess.run(  # noqa: S603 - our own example, as a user runs it
        [sys.executable, str(CONSUMER), *arguments], input=stdin, capture_output=True, text=True,
        env=environment, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, f"the consumer exited {result.returncode}: {result.stderr[-3000:]}"
    return result.stdout


def relay_everything(dev_server) -> None:
    """What the timer trigger does, until the outbox is empty (other tests' changes included)."""
    for _ in range(1000):
        report = dev_server.run_coroutine(function_app.runtime.relay_once())
        if not report.recorded:
            return
    raise AssertionError("the outbox never emptied")


def test_a_consumer_may_start_before_the_first_event(storage_connection_string, tmp_path):
    database = str(tmp_path / "early.sqlite")
    run_consumer(storage_connection_string, "--db", database, "--once", queue="early-" + uuid.uuid4().hex[:8])
    assert json.loads(run_consumer(storage_connection_string, "--db", database, "--dump")) == {
        "Groups": {},
        "Users": {},
    }


def test_the_example_consumer_copy_matches_the_directory(dev_server, storage_connection_string, tmp_path):
    base = dev_server.tenant_url
    entra_lifecycle(base)
    relay_everything(dev_server)
    database = str(tmp_path / "copy.sqlite")
    run_consumer(storage_connection_string, "--db", database, "--once", "--tenant-url", base)
    copy = json.loads(run_consumer(storage_connection_string, "--db", database, "--dump"))
    for group in copy["Groups"].values():
        group["members"] = sorted(group["members"])
    expected = directory(base)
    assert copy["Users"].keys() == expected["Users"].keys()
    assert copy == expected

    # A consumer that fell behind: rebuilt from the recorded events alone.
    replayed = subprocess.run(
        [sys.executable, "-m", "scim", "feed", "replay", "--since", "1d"], capture_output=True, text=True,
        env={**os.environ, "SCIM_STORAGE_CONNECTION_STRING": storage_connection_string,
             "SCIM_TABLE_NAME": dev_server.table_name},
        cwd=ROOT, timeout=120, check=True,
    )  # fmt: skip
    fresh = str(tmp_path / "fresh.sqlite")
    run_consumer(
        storage_connection_string, "--db", fresh, "--stdin", "--tenant-url", base, stdin=replayed.stdout
    )
    rebuilt = json.loads(run_consumer(storage_connection_string, "--db", fresh, "--dump"))
    for group in rebuilt["Groups"].values():
        group["members"] = sorted(group["members"])
    assert rebuilt == expected
