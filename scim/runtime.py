"""Wiring for hosts: settings → storage client → :class:`scim.web.api.ScimApi`, built lazily.

The host (``function_app.py``, also under ``make run``) imports this at start-up; nothing
here touches the network until the first request (DESIGN §2: cold start).
The async table client binds to the event loop it first runs on, so the API
is built once per loop — once per worker process under the Functions host. This is the one
place the rooms are put together for the endpoint: the API over the Table repository, the
directories and the relay over the queue. It may import ``scim.web``, ``scim.feed``,
``scim.storage``, ``scim.model``, ``scim.config`` and ``scim.logs``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from scim.config import WEAK_TOKEN_CHARS, ConfigurationError, Settings
from scim.feed.relay import Relay, RelayReport, source_of
from scim.model.errors import ScimError, ServiceUnavailableError
from scim.model.schemafile import DeclaredSchemas, SchemaFileError, load_schema_file
from scim.storage.directories import Directory, DirectoryError, DirectoryRegistry, check_name, settings_for
from scim.storage.tables import TableRepository, open_repository
from scim.web.api import Request, Response, ScimApi, error_response

if TYPE_CHECKING:
    from scim.storage.queue import QueuePublisher

__all__ = ["Runtime"]

log = logging.getLogger("scim.runtime")

ROUTES: dict[str, Callable[[ScimApi, Request], Awaitable[Response]]] = {
    "users": ScimApi.users,
    "user": ScimApi.user,
    "groups": ScimApi.groups,
    "group": ScimApi.group,
    "users_search": ScimApi.users_search,
    "groups_search": ScimApi.groups_search,
    "root_search": ScimApi.root_search,
    "bulk": ScimApi.bulk,
    "service_provider_config": ScimApi.service_provider_config,
    "resource_types": ScimApi.resource_types,
    "schemas": ScimApi.schemas,
    "unknown_endpoint": ScimApi.unknown_endpoint,
}
"""Handler of each route template, by the name hosts use for it."""


class Runtime:
    """Holds the one long-lived :class:`ScimApi` of a process (per event loop)."""

    def __init__(self, settings: Callable[[], Settings], *, root: str | Path = ".") -> None:
        self._settings = settings
        self._root = Path(root)
        self._declared: dict[str, DeclaredSchemas] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._api: ScimApi | None = None
        self._repository: TableRepository | None = None
        self._relay: Relay | None = None
        self._publisher: QueuePublisher | None = None
        self._built: Settings | None = None
        self._problems: dict[str, str | None] = {"endpoint": None, "change feed": None}
        self._registry: DirectoryRegistry | None = None
        self._directory_apis: dict[str, tuple[Directory, ScimApi]] = {}
        self._directory_relays: dict[str, tuple[Directory, Relay, QueuePublisher | None]] = {}
        self._refusing: ScimApi | None = None

    def declared(self, settings: Settings) -> DeclaredSchemas:
        """The operator's schema extensions (read once per file name).

        Raises:
            SchemaFileError: The file is missing or breaks a rule (the message says which and where).
        """
        if settings.schema_file not in self._declared:
            declared = load_schema_file(settings.schema_file, self._root)
            for extension in declared.extensions:
                log.info(
                    "Schema extension %s for %s: %d attributes",
                    extension.urn, extension.resource_type, len(extension.schema.attributes or []),
                )  # fmt: skip
            self._declared[settings.schema_file] = declared
        return self._declared[settings.schema_file]

    def _report(self, part: str, problem: str | None) -> None:
        """Log a configuration problem once per change of state, not once per request or timer tick."""
        if self._problems.get(part) == problem:
            return
        if problem is not None:
            log.error("The SCIM %s is not usable: %s", part, problem)
        elif self._problems.get(part) is not None:
            log.info("The SCIM %s is usable again", part)
        self._problems[part] = problem

    def _build(self) -> ScimApi:
        settings = self._settings()
        settings.check_serving()
        declared = self.declared(settings)
        for name in settings.weak_tokens:
            log.warning(
                "%s is shorter than %d characters: anyone who can guess it can write your directory. "
                "Make a strong one with `python -m scim token new`.",
                name, WEAK_TOKEN_CHARS,
            )  # fmt: skip
        try:
            repository = open_repository(settings)
        except ValueError as error:  # the SDK's own check of the connection string
            raise ConfigurationError(f"SCIM_STORAGE_CONNECTION_STRING: {error}") from None
        self._repository, self._relay, self._built = repository, None, settings
        keys = None
        if settings.entra_tenant_id:
            # Imported here: aiohttp's import (~130 ms) belongs to JWT mode, not to every cold start.
            from scim.web.jwks import JwksKeys

            keys = JwksKeys(settings.jwks_url)
        log.info("SCIM service ready: table %s, tenant %s", settings.table_name, settings.tenant)
        return ScimApi(settings, repository, keys=keys, declared=declared)

    def api(self) -> ScimApi:
        """The API for the running event loop, built on first use."""
        loop = asyncio.get_running_loop()
        if self._api is None or self._loop is not loop:
            self._api = self._build()
            self._loop = loop
        return self._api

    def relay(self) -> Relay:
        """The change-feed relay (``scim.feed.relay``), sharing the API's storage client and loop."""
        self.api()
        if self._relay is None:
            # Imported here: the queue SDK's import belongs to the relay, not to HTTP cold starts.
            from scim.storage.queue import open_publisher

            settings, repository = self._built, self._repository
            assert settings is not None and repository is not None  # built by api()  # noqa: S101
            self._publisher = open_publisher(settings)
            self._relay = Relay(
                repository,
                self._publisher,
                source=source_of(settings.tenant),
                retention_days=settings.audit_retention_days,
            )
        return self._relay

    async def relay_once(self) -> RelayReport:
        """One relay run (the timer trigger's body) for every directory; errors are logged, never raised."""
        try:
            report = await self.relay().run_once()
            for relay in await self._relays_of_directories():
                report = _sum(report, await relay.run_once())
        except (ConfigurationError, SchemaFileError) as error:
            self._report("change feed", str(error))
            return RelayReport()
        except ScimError as error:
            log.warning("Change-feed relay stopped for this run: %s", error.detail)
            return RelayReport()
        self._report("change feed", None)
        if report:
            log.info(
                "Change feed: %d published, %d recorded, %d waiting, %d pruned",
                report.published, report.recorded, report.waiting, report.pruned,
            )  # fmt: skip
        return report

    async def _relays_of_directories(self) -> list[Relay]:
        """A relay per enabled named directory (its outbox, its queue), rebuilt when it changes."""
        base, repository = self._built, self._repository
        assert base is not None and repository is not None  # built by relay()  # noqa: S101
        from scim.storage.queue import open_publisher

        relays = []
        for directory in await self.directories().list():
            if directory.disabled:
                continue
            cached = self._directory_relays.get(directory.name)
            if cached is None or cached[0] != directory:
                if cached is not None and cached[2] is not None:
                    await cached[2].close()
                settings = settings_for(base, directory)
                publisher = open_publisher(settings)
                relay = Relay(
                    repository.for_tenant(directory.name),
                    publisher,
                    source=source_of(directory.name),
                    retention_days=settings.audit_retention_days,
                )
                cached = (directory, relay, publisher)
                self._directory_relays[directory.name] = cached
            relays.append(cached[1])
        return relays

    def health(self) -> Response:
        """Liveness for proxies and orchestrators: no credential needed, no storage touched.

        200 ``{"status": "ok"}`` when the settings can serve, else 503 naming
        what is missing or malformed (the setting, never its value).
        """
        try:
            settings = self._settings()
            settings.check_serving()
            self.declared(settings)
        except (ConfigurationError, SchemaFileError) as error:
            body = {"status": "misconfigured", "detail": str(error)}
            return Response(503, {"Content-Type": "application/json"}, json.dumps(body).encode())
        return Response(200, {"Content-Type": "application/json"}, b'{"status":"ok"}')

    async def aclose(self) -> None:
        """Close the storage client (call on the loop the API was built on)."""
        if self._repository is not None:
            await self._repository.close()
        if self._publisher is not None:
            await self._publisher.close()
        for _, _, publisher in self._directory_relays.values():
            if publisher is not None:
                await publisher.close()
        self._repository, self._publisher, self._relay = None, None, None
        self._api = None
        self._loop = None
        self._registry = None
        self._directory_apis.clear()
        self._refusing = None
        self._directory_relays.clear()

    async def handle(self, route: str, request: Request) -> Response:
        """Dispatch ``request`` to the handler named ``route`` (e.g. ``"users"``).

        A request under ``/scim/<directory>/v2`` (route parameter ``directory``) is served by that
        directory's API (:meth:`_directory_api`); every other by the default directory's.
        Settings that cannot serve give a 503 whose ``detail`` names the setting to fix (the
        operator's problem, not the client's; ``Retry-After`` lets Entra retry later), logged
        once per change of state.
        """
        try:
            api = self.api()
        except ConfigurationError as error:
            self._report("endpoint", str(error))
            detail = f"The SCIM endpoint is not configured, so it serves nothing until it is fixed: {error}"
            return error_response(ServiceUnavailableError(detail, retry_after=60))
        except SchemaFileError as error:
            self._report("endpoint", f"the schema file is invalid: {error}")
            detail = f"The endpoint's schema file is invalid, so it serves nothing until it is fixed: {error}"
            return error_response(ServiceUnavailableError(detail, retry_after=60))
        self._report("endpoint", None)
        name = request.route.get("directory")
        if name is not None:
            try:
                api = await self._directory_api(name)
            except ScimError as error:
                return error_response(error)
            except SchemaFileError as error:
                detail = f"This directory's schema file is invalid: {error}"
                return error_response(ServiceUnavailableError(detail, retry_after=60))
        return await ROUTES[route](api, request)

    def _settings_or_default(self) -> Settings:
        return self._built if self._built is not None else Settings()

    def directories(self) -> DirectoryRegistry:
        """The registry of named directories, over the default API's storage client."""
        self.api()
        if self._registry is None:
            assert self._repository is not None  # built by api()  # noqa: S101
            self._registry = DirectoryRegistry(self._repository)
        return self._registry

    async def _directory_api(self, name: str) -> ScimApi:
        """The API of the named directory; for an unknown or disabled one, an API that refuses all.

        Built once per registry version of the directory (a rotated token or a new schema file
        takes effect within :data:`scim.storage.directories.CACHE_SECONDS`), sharing the storage client.
        Every named directory's API answers a refused credential exactly as an unknown token, and
        the refusing API answers every request so — same status, body, headers and log line — so
        no response tells whether a directory exists, is disabled, or how it signs in.
        """
        try:
            name = check_name(name, self._settings_or_default().tenant)
        except DirectoryError:
            return self._refusing_api()
        directory = await self.directories().get(name)
        if directory is None or directory.disabled:
            return self._refusing_api()
        cached = self._directory_apis.get(name)
        if cached is not None and cached[0] == directory:
            return cached[1]
        base, repository = self._built, self._repository
        assert base is not None and repository is not None  # built by api()  # noqa: S101
        settings = settings_for(base, directory)
        keys = None
        if settings.entra_tenant_id:
            from scim.web.jwks import JwksKeys

            keys = JwksKeys(settings.jwks_url)
        declared = self.declared(settings)
        api = ScimApi(
            settings, repository.for_tenant(name), keys=keys, declared=declared, uniform_refusals=True
        )
        self._directory_apis[name] = (directory, api)
        log.info("Directory %s ready (tenant segment %s)", name, name)
        return api

    def _refusing_api(self) -> ScimApi:
        """An API that accepts no credential: what an unknown or disabled directory answers with."""
        if self._refusing is None:
            base, repository = self._built, self._repository
            assert base is not None and repository is not None  # built by api()  # noqa: S101
            nobody = replace(base, tenant="~refused", token_digests=(), entra_tenant_id="", schema_file="")
            self._refusing = ScimApi(nobody, repository.for_tenant("~refused"), uniform_refusals=True)
        return self._refusing


def _sum(first: RelayReport, second: RelayReport) -> RelayReport:
    return RelayReport(
        published=first.published + second.published,
        recorded=first.recorded + second.recorded,
        waiting=first.waiting + second.waiting,
        pruned=first.pruned + second.pruned,
    )
