"""The registry of directories (``scim.storage.directories``) over a real table: names, cache, rotation, isolation of rows."""

from __future__ import annotations

import pytest

from scim.config import Settings, token_digest
from scim.model.errors import ConflictError, PreconditionFailedError
from scim.storage.directories import (
    CACHE_SECONDS,
    Directory,
    DirectoryError,
    DirectoryRegistry,
    check_name,
    settings_for,
)
from tests.integration.test_users_entra import entra_user

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    "name", ["ab", "a" * 41, "1abc", "-abc", "abc-", "a_b", "a.b", "ünï", "v2", "health", "default"]
)
def test_names_that_cannot_be_directories(name: str) -> None:
    with pytest.raises(DirectoryError):
        check_name(name)


def test_names_are_lower_cased_and_the_default_tenant_is_reserved() -> None:
    assert check_name(" Acme-Corp ") == "acme-corp"
    with pytest.raises(DirectoryError, match="reserved"):
        check_name("main", default_tenant="main")


async def test_the_registry_keeps_digests_only_and_caches_for_its_ttl(store) -> None:
    clock = Clock()
    registry = DirectoryRegistry(store.repository, clock=clock)
    reader = DirectoryRegistry(store.repository, clock=clock)  # another instance of the endpoint
    assert await reader.get("acme") is None  # cached as absent
    directory, token = await registry.add("acme", entra_tenant_id="t-1")
    assert directory.token_digests == (token_digest(token),) and len(token) >= 40
    rows = await store.repository.read_directories()
    assert [name for name, _, _ in rows] == ["acme"] and token not in str(rows)
    assert await reader.get("acme") is None  # still the cached answer
    clock.now += CACHE_SECONDS
    found = await reader.get("acme")
    assert (
        found is not None
        and found.entra_tenant_id == "t-1"
        and found.token_digests == directory.token_digests
    )


async def test_a_name_is_taken_once(store) -> None:
    registry = DirectoryRegistry(store.repository)
    await registry.add("acme")
    with pytest.raises(ConflictError):
        await registry.add("acme")


async def test_rotation_accepts_both_tokens_then_only_the_new_one(store) -> None:
    registry = DirectoryRegistry(store.repository, ttl=0)
    _, first = await registry.add("acme")
    rotated, second = await registry.rotate_token("acme")
    assert second is not None
    assert rotated.token_digests == (token_digest(second), token_digest(first))
    finished, none = await registry.rotate_token("acme", finish=True)
    assert none is None and finished.token_digests == (token_digest(second),)
    with pytest.raises(DirectoryError, match="no rotation"):
        await registry.rotate_token("acme", finish=True)


async def test_concurrent_changes_do_not_overwrite_each_other(store) -> None:
    registry = DirectoryRegistry(store.repository)
    await registry.add("acme")
    name_row = await store.repository.read_directory("acme")
    assert name_row is not None
    await registry.set_disabled("acme", True)
    with pytest.raises(PreconditionFailedError):  # a write based on the row as it was before
        await store.repository.write_directory("acme", name_row[0], name_row[1])
    assert (await registry.list())[0].disabled


async def test_a_directory_repository_reaches_only_its_own_rows(store, scim) -> None:
    registry = DirectoryRegistry(store.repository)
    await registry.add("acme")
    created = await scim.post("/Users", entra_user("shared@example.com"))
    assert created.status == 201
    acme = store.repository.for_tenant("acme")
    rows = [row async for row in acme.dump_rows(audit=True)]
    assert rows == []
    default_rows = [row async for row in store.repository.dump_rows(audit=True)]
    assert default_rows and all(str(r["PartitionKey"]).startswith("default|") for r in default_rows)
    assert await acme.delete_directory_rows() == 0
    assert [row async for row in store.repository.dump_rows(audit=True)] == default_rows
    await acme.close()  # a sibling's close leaves the shared client open
    assert (await registry.list())[0].name == "acme"


def test_directory_settings_keep_the_deployment_and_take_the_directory() -> None:
    base = Settings(
        storage_connection_string="UseDevelopmentStorage=true",
        token_digests=(b"default",),
        public_base_url="https://scim.example.com/scim/v2",
        schema_file="base.yaml",
        change_queue="scim-changes",
    )
    directory = Directory(name="acme", token_digests=(b"acme",), entra_tenant_id="tid", change_queue="acme-q")
    settings = settings_for(base, directory)
    assert settings.tenant == "acme" and settings.token_digests == (b"acme",)
    assert settings.public_base_url == "https://scim.example.com/scim/acme/v2"
    assert settings.jwt_issuer == "https://sts.windows.net/tid/"
    assert (settings.schema_file, settings.change_queue) == ("base.yaml", "acme-q")
    assert settings.storage_connection_string == base.storage_connection_string


async def test_requests_for_many_unknown_names_keep_the_cache_bounded(store, monkeypatch) -> None:
    import scim.storage.directories

    monkeypatch.setattr(scim.storage.directories, "MAX_CACHED", 5)
    registry = DirectoryRegistry(store.repository)
    for index in range(12):
        assert await registry.get(f"nope{index}") is None
    assert len(registry._cache) == 5


async def test_a_second_rotation_before_the_first_is_finished_is_refused(store) -> None:
    registry = DirectoryRegistry(store.repository, ttl=0)
    await registry.add("acme")
    rotating, _ = await registry.rotate_token("acme")
    with pytest.raises(DirectoryError, match="already rotating"):
        await registry.rotate_token("acme")
    assert (await registry.list())[0].token_digests == rotating.token_digests
