"""``scim directory …`` and ``--directory NAME``, run as an operator runs them (issue 17, items 2 and 3).

Each command is the installed console command (``.venv/bin/scim``) in a subprocess, with the
settings of the test's table in its environment (as in ``test_cli_errors.py``), against real
Azurite. What a token is worth is proven in process: the directory's :class:`ScimApi` is built
as the endpoint builds it (:func:`scim.storage.directories.settings_for` and
``TableRepository.for_tenant``) from what the command stored in the registry. Every row count
is read back from the raw table, independently of the code that deletes or exports.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from scim.config import token_digest
from scim.feed.relay import source_of
from scim.storage.directories import Directory, DirectoryRegistry, settings_for
from scim.storage.repository import IndexRow
from scim.storage.tables import connect
from scim.web.api import ScimApi
from tests.conftest import TOKEN
from tests.integration.conftest import ROOT, ScimClient, Store, make_settings
from tests.integration.test_cli_errors import SCIM, Result, assert_one_error, on, run
from tests.integration.test_users_entra import create

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def installed() -> None:
    if not SCIM.exists():
        pytest.fail(f"{SCIM} is missing: `make install` installs the scim command (pyproject.toml)")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A working directory outside the clone: the command must not depend on where it runs."""
    return tmp_path


async def scim_cli(store: Store, home: Path, *argv: str, **env: str) -> Result:
    """The command against the test's table, stdin /dev/null (not a terminal), off the event loop."""
    return await asyncio.to_thread(run, *argv, env=on(store, **env), cwd=home)


async def directory(store: Store, name: str) -> Directory:
    found = await DirectoryRegistry(store.repository, ttl=0).get(name)
    assert found is not None, name
    return found


async def client(store: Store, name: str, token: str) -> ScimClient:
    """A client of directory ``name``'s API as the endpoint builds it now, sending ``token``."""
    settings = settings_for(make_settings(store), await directory(store, name))
    api = ScimApi(settings, store.repository.for_tenant(name))
    return ScimClient(api, token=token)


def default_client(store: Store, token: str = TOKEN) -> ScimClient:
    return ScimClient(ScimApi(make_settings(store), store.repository), token=token)


async def accepted(store: Store, name: str, token: str) -> bool:
    """Whether directory ``name`` serves ``token`` (200), or refuses it as a wrong one (401)."""
    response = await (await client(store, name, token)).get("/Users")
    assert response.status in (200, 401), response.json()
    return response.status == 200


async def raw_rows(store: Store) -> dict[tuple[str, str], str]:
    """Every row of the table, read with a client of its own: ``(PartitionKey, RowKey) -> ETag``."""
    table = connect(store.connection_string, store.table_name)
    try:
        return {
            (str(entity["PartitionKey"]), str(entity["RowKey"])): str(entity.metadata["etag"])
            async for entity in table.list_entities()
        }
    finally:
        await table.close()


def of_tenant(rows: dict[tuple[str, str], str], tenant: str) -> dict[tuple[str, str], str]:
    return {key: etag for key, etag in rows.items() if key[0].startswith(f"{tenant}|")}


def added_token(result: Result) -> str:
    assert result.status == 0, result.err
    lines = dict(line.split(":  ", 1) for line in result.out.splitlines() if ":  " in line)
    return lines["Secret Token"].strip()


# -- add ------------------------------------------------------------------------------------------


async def test_add_prints_the_tenant_url_and_a_token_once_that_only_its_directory_accepts(store, home):
    public = {"SCIM_PUBLIC_BASE_URL": "https://scim.example.com/scim/v2"}
    result = await scim_cli(store, home, "directory", "add", "Acme", **public)
    token = added_token(result)
    assert "Tenant URL:    https://scim.example.com/scim/acme/v2" in result.out.splitlines()
    assert "will not be shown again" in result.err and "within 10 s on every instance" in result.err
    acme = await directory(store, "acme")  # the name is stored lower-cased
    assert acme.token_digests == (token_digest(token),) and not acme.disabled
    assert token not in json.dumps(await store.repository.read_directories(), default=str)

    assert await accepted(store, "acme", token)
    assert not await accepted(store, "acme", TOKEN)  # the default directory's token
    assert (await default_client(store, token).get("/Users")).status == 401  # and the other way round

    listed = await scim_cli(store, home, "directory", "list")
    assert token not in listed.out + listed.err  # shown once: never again


async def test_the_tenant_url_host_comes_from_base_url_else_a_placeholder(store, home):
    given = await scim_cli(store, home, "directory", "add", "beta", "--base-url", "https://id.example.org/")
    assert "Tenant URL:    https://id.example.org/scim/beta/v2" in given.out
    unknown = await scim_cli(store, home, "directory", "add", "gamma", "--json")
    assert unknown.status == 0, unknown.err
    shown = json.loads(unknown.out)
    assert shown["tenantUrl"] == "https://<your-host>/scim/gamma/v2" and "<your-host>" in unknown.err
    assert await accepted(store, "gamma", shown["secretToken"])


async def test_a_name_taken_is_status_1_and_a_bad_name_status_2_each_one_line(store, home):
    assert (await scim_cli(store, home, "directory", "add", "acme")).status == 0
    before = await store.repository.read_directories()
    assert_one_error(await scim_cli(store, home, "directory", "add", "acme"), 1, "'acme'", "already exists")
    for name, fragment in [("health", "reserved"), ("default", "reserved"), ("a_b", "not a directory name")]:
        assert_one_error(await scim_cli(store, home, "directory", "add", name), 2, fragment)
    assert await store.repository.read_directories() == before  # nothing changed, token kept


async def test_options_are_checked_before_anything_is_stored(store, home):
    bad_tenant = await scim_cli(store, home, "directory", "add", "acme", "--entra-tenant-id", "contoso")
    assert bad_tenant.status == 2 and "not a tenant id" in bad_tenant.err
    missing = await scim_cli(store, home, "directory", "add", "acme", "--schema-file", "nowhere.yaml")
    assert_one_error(missing, 2, "nowhere.yaml")
    assert await store.repository.read_directories() == []


# -- list, rotate-token, disable, enable ------------------------------------------------------------


async def test_list_shows_each_directory_with_its_state_and_options(store, home):
    tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    schema = str(ROOT / "examples" / "schema-extensions.yaml")
    await scim_cli(store, home, "directory", "add", "acme", "--entra-tenant-id", tenant, "--queue", "acme-q")
    await scim_cli(store, home, "directory", "add", "beta", "--schema-file", schema)
    await scim_cli(store, home, "directory", "disable", "beta")
    listed = await scim_cli(store, home, "directory", "list", "--json")
    assert listed.status == 0, listed.err
    rows = {row["name"]: row for row in map(json.loads, listed.out.splitlines())}
    assert set(rows) == {"acme", "beta"}
    assert rows["acme"] | {"created": ""} == {
        "name": "acme", "state": "enabled", "rotationInProgress": False, "tokens": 1,
        "entraTenantId": tenant, "schemaFile": "", "queue": "acme-q", "created": "",
    }  # fmt: skip
    assert rows["acme"]["created"] == (await directory(store, "acme")).created != ""
    assert rows["beta"]["state"] == "disabled" and rows["beta"]["schemaFile"] == schema
    text = await scim_cli(store, home, "directory", "list")
    header, *lines = text.out.splitlines()
    assert header.split()[:3] == ["NAME", "STATE", "ROTATION"]
    assert [line.split()[:2] for line in lines] == [["acme", "enabled"], ["beta", "disabled"]]


async def test_rotation_accepts_both_tokens_then_only_the_new_one(store, home):
    first = added_token(await scim_cli(store, home, "directory", "add", "acme"))
    rotated = await scim_cli(store, home, "directory", "rotate-token", "acme")
    assert rotated.status == 0, rotated.err
    second = rotated.out.split(":  ", 1)[1].strip()
    assert second != first and "will not be shown again" in rotated.err and "--finish" in rotated.err
    assert await accepted(store, "acme", first) and await accepted(store, "acme", second)
    listed = json.loads((await scim_cli(store, home, "directory", "list", "--json")).out)
    assert listed["rotationInProgress"] is True and listed["tokens"] == 2

    again = await scim_cli(store, home, "directory", "rotate-token", "acme")  # would drop the token in use
    assert_one_error(again, 2, "rotation in progress", "--finish")
    assert await accepted(store, "acme", first)

    finished = await scim_cli(store, home, "directory", "rotate-token", "acme", "--finish")
    assert finished.status == 0 and second not in finished.out, finished.err
    assert await accepted(store, "acme", second) and not await accepted(store, "acme", first)
    none = await scim_cli(store, home, "directory", "rotate-token", "acme", "--finish")
    assert_one_error(none, 2, "no rotation in progress")
    unknown = await scim_cli(store, home, "directory", "rotate-token", "nosuch")
    assert_one_error(unknown, 2, "no directory 'nosuch'")


async def test_disable_and_enable_change_the_registry_state(store, home):
    await scim_cli(store, home, "directory", "add", "acme")
    disabled = await scim_cli(store, home, "directory", "disable", "acme")
    assert disabled.status == 0 and "401" in disabled.out, disabled.err
    assert (await directory(store, "acme")).disabled is True
    enabled = await scim_cli(store, home, "directory", "enable", "acme")
    assert enabled.status == 0, enabled.err
    assert (await directory(store, "acme")).disabled is False
    assert_one_error(await scim_cli(store, home, "directory", "disable", "nosuch"), 2, "no directory")


# -- remove -----------------------------------------------------------------------------------------


async def fill(store: Store, name: str, token: str, users: int) -> list[str]:
    """Create ``users`` users and a group of them in directory ``name``; their ids."""
    scim = await client(store, name, token)
    ids = [(await create(scim, userName=f"u{i}@{name}.example"))["id"] for i in range(users)]
    group = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": f"all of {name}",
             "members": [{"value": i} for i in ids]}  # fmt: skip
    assert (await scim.post("/Groups", group)).status == 201
    return ids


async def test_remove_refuses_without_a_terminal_then_deletes_every_row_and_the_registry_row(store, home):
    token = added_token(await scim_cli(store, home, "directory", "add", "acme"))
    await fill(store, "acme", token, users=3)
    await create(default_client(store), userName="stays@default.example")
    before = await raw_rows(store)
    written = of_tenant(before, "acme")
    assert len(written) > 3 and of_tenant(before, "default")

    refused = await scim_cli(store, home, "directory", "remove", "acme")  # stdin is /dev/null
    assert_one_error(refused, 2, "not a terminal", "--yes")
    assert await raw_rows(store) == before and not (await directory(store, "acme")).disabled

    removed = await scim_cli(store, home, "directory", "remove", "acme", "--yes")
    assert removed.status == 0, removed.err
    assert removed.out.strip() == f"Removed directory acme: {len(written):,} rows deleted."
    assert "Disabled directory acme" in removed.err
    after = await raw_rows(store)
    assert of_tenant(after, "acme") == {}
    assert of_tenant(after, "default") == of_tenant(before, "default")  # same rows, same ETags
    assert await store.repository.read_directory("acme") is None
    assert_one_error(await scim_cli(store, home, "directory", "remove", "acme", "--yes"), 2, "no directory")


async def test_remove_at_a_terminal_changes_nothing_unless_the_name_is_typed(store, home):
    await scim_cli(store, home, "directory", "add", "acme")
    main, terminal = pty.openpty()
    try:
        os.write(main, b"acme-corp\n")
        done = await asyncio.to_thread(
            subprocess.run,
            [str(SCIM), "directory", "remove", "acme"],
            stdin=terminal, capture_output=True, text=True, env=on(store), cwd=home, timeout=60, check=False,
        )  # fmt: skip
    finally:
        os.close(main)
        os.close(terminal)
    assert done.returncode == 1, done.stderr
    assert "Type the directory's name (acme) to confirm" in done.stderr
    # The prompt's line ends where the terminal echoed the answer; the error follows it.
    assert done.stderr.endswith("to confirm: error: the name typed does not match: nothing was changed\n")
    assert (await directory(store, "acme")).disabled is False


# -- --directory on check, audit, feed, export, import ------------------------------------------------


async def two_directories(store: Store, home: Path) -> tuple[str, list[str], list[str]]:
    """Users in directory acme and in the default directory: acme's token, and the ids of each."""
    token = added_token(await scim_cli(store, home, "directory", "add", "acme"))
    acme = await fill(store, "acme", token, users=2)
    default = [(await create(default_client(store), userName="someone@default.example"))["id"]]
    return token, acme, default


def summary(result: Result) -> dict[str, Any]:
    return dict(json.loads(result.out.splitlines()[-1])["summary"])


async def test_check_acts_on_the_named_directory_only(store, home):
    await two_directories(store, home)
    acme_rows = len(of_tenant(await raw_rows(store), "acme"))
    clean = await scim_cli(store, home, "check", "--json", "--directory", "acme")
    assert clean.status == 0 and summary(clean)["tenant"] == "acme", clean.err
    assert 0 < summary(clean)["rows"] <= acme_rows
    assert "(tenant acme)" in clean.err

    repository = store.repository.for_tenant("acme")
    index = next(row for row in [r async for r in repository.inventory("User")] if isinstance(row, IndexRow))
    await repository.delete_index_row(index.kind, index.row_key)
    broken = await scim_cli(store, home, "check", "--json", "--directory", "acme")
    assert broken.status == 1 and summary(broken)["anomalies"] == 1, broken.out
    default = await scim_cli(store, home, "check", "--json")
    assert default.status == 0 and summary(default) | {"rows": 0} == {
        "table": store.table_name, "tenant": "default", "rows": 0,
        "anomalies": 0, "repaired": 0, "resolved": 0, "remaining": 0,
    }, default.out  # fmt: skip
    same = await scim_cli(store, home, "check", "--json", "--directory", "default")
    assert summary(same) == summary(default)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("nosuch", "no directory 'nosuch'"), ("admin", "reserved"), ("A!", "not a directory name")],
)
async def test_an_unknown_or_bad_directory_is_one_line_and_status_2(store, home, name, fragment):
    await scim_cli(store, home, "directory", "add", "acme")
    commands = [
        ["check"], ["audit"], ["audit", "prune", "--days", "1"], ["feed", "replay", "--since", "1h"],
        ["feed", "relay"], ["export"], ["import", "-"],
    ]  # fmt: skip
    for argv in commands:
        result = await scim_cli(store, home, *argv, "--directory", name)
        assert_one_error(result, 2, fragment)
        assert result.out == "", argv


async def test_export_and_import_round_trip_one_directory(store, home, tmp_path):
    token, acme, default = await two_directories(store, home)
    scim = await client(store, "acme", token)
    users = [(await scim.get(f"/Users/{user_id}")).json() for user_id in acme]
    before = await raw_rows(store)
    backup = tmp_path / "acme.jsonl"
    exported = await scim_cli(store, home, "export", "--directory", "acme", "-o", str(backup))
    assert exported.status == 0, exported.err
    header, *rows, trailer = (json.loads(line) for line in backup.read_text().splitlines())
    assert header["tenant"] == "acme" and trailer["trailer"]["rows"] == len(rows)
    assert {(r["PartitionKey"], r["RowKey"]) for r in rows} == set(of_tenant(before, "acme"))
    assert not any(user_id in backup.read_text() for user_id in default)

    deleted = await store.repository.for_tenant("acme").delete_directory_rows()
    assert deleted == len(rows) and of_tenant(await raw_rows(store), "acme") == {}
    into_default = await scim_cli(store, home, "import", str(backup))
    assert into_default.status == 1 and into_default.lines[-1].startswith("error: "), into_default.err
    assert "export of directory 'acme'" in into_default.lines[-1] and "--directory acme" in into_default.err
    imported = await scim_cli(store, home, "import", str(backup), "--directory", "acme")
    assert imported.status == 0, imported.err

    after = await raw_rows(store)
    assert set(of_tenant(after, "acme")) == set(of_tenant(before, "acme"))
    assert of_tenant(after, "default") == of_tenant(before, "default")
    assert [(await scim.get(f"/Users/{user_id}")).json() for user_id in acme] == users  # ids, versions
    again = await scim_cli(store, home, "import", str(backup), "--directory", "acme")
    assert again.status == 1 and "already holds rows of directory 'acme'" in again.lines[-1], again.err


async def test_audit_and_replay_show_only_the_named_directorys_changes(store, home):
    _, acme, default = await two_directories(store, home)
    named = await scim_cli(store, home, "audit", "--json", "--since", "1h", "--directory", "acme")
    assert named.status == 0, named.err
    changed = Counter(json.loads(line)["id"] for line in named.out.splitlines())
    assert set(acme) <= set(changed) and not set(default) & set(changed)
    unnamed = await scim_cli(store, home, "audit", "--json", "--since", "1h")
    assert {json.loads(line)["id"] for line in unnamed.out.splitlines()} == set(default)

    replayed = await scim_cli(store, home, "feed", "replay", "--since", "1h", "--directory", "acme")
    assert replayed.status == 0, replayed.err
    events = [json.loads(line) for line in replayed.out.splitlines()]
    assert events and {event["source"] for event in events} == {source_of("acme")}
    assert sum(1 for e in events if e.get("subject", "").endswith(tuple(acme))) >= len(acme)
