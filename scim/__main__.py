"""``python -m scim``: the command line of the SCIM endpoint (a host, like ``function_app.py``).

Commands:
    check [--repair] [--json]   scan the table for anomalies (``scim.consistency``),
                                and repair them with ``--repair``
    audit [prune] [filters]     who changed what, when (``scim.changelog``)
    feed relay | replay         publish pending changes; re-send recorded events since a time
    token new | check URL       make a Secret Token; probe an endpoint like Entra's Test Connection
    entra login | connect | provision | start | pause | status | logs
                                set up and watch Entra provisioning through Microsoft Graph
                                (``scim.admin``)

``check``, ``audit`` and ``feed`` take their settings from the same ``SCIM_*`` variables as the endpoint
(only the storage ones are needed). Exit status: 0 done (consistent, or all
repaired), 1 anomalies remain / the check or step failed, 2 bad configuration,
storage or Graph unavailable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence

from scim import changelog
from scim.admin.cli import add_commands, run
from scim.config import ConfigurationError, Settings
from scim.consistency import REPAIRED, RESOLVED, check, repair
from scim.errors import ScimError
from scim.resources import build_kinds
from scim.schemafile import SchemaFileError, load_schema_file
from scim.tables import open_repository


async def _check(settings: Settings, *, fix: bool, as_json: bool) -> int:
    repository = open_repository(settings)
    try:
        print(f"Scanning table {settings.table_name} (tenant {settings.tenant}) ...", file=sys.stderr)
        kinds = build_kinds(load_schema_file(settings.schema_file))
        anomalies = await check(repository, kinds)
        outcomes = await repair(anomalies) if fix else [(a, "found") for a in anomalies]
    finally:
        await repository.close()
    for anomaly, outcome in outcomes:
        if as_json:
            print(json.dumps({"code": anomaly.code, "detail": anomaly.detail, "outcome": outcome}))
        else:
            print(f"{anomaly.code:<24} {outcome:<16} {anomaly.detail}")
    remaining = sum(1 for _, outcome in outcomes if outcome not in (REPAIRED, RESOLVED))
    print(f"{len(anomalies)} anomalies found, {len(anomalies) - remaining} repaired.", file=sys.stderr)
    return 1 if remaining else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m scim", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    checker = commands.add_parser("check", help="report (and with --repair fix) table inconsistencies")
    checker.add_argument("--repair", action="store_true", help="fix what can be fixed")
    checker.add_argument("--json", action="store_true", help="one JSON object per anomaly")
    add_commands(commands)
    changelog.add_commands(commands)
    arguments = parser.parse_args(argv)
    if arguments.command in ("token", "entra"):
        return run(arguments, os.environ)
    try:
        settings = Settings.from_env(os.environ)
        if not settings.storage_connection_string and not settings.storage_table_endpoint:
            raise ConfigurationError(
                "SCIM_STORAGE_CONNECTION_STRING (or SCIM_STORAGE_TABLE_ENDPOINT) is not set"
            )
        if arguments.command != "check":
            return changelog.run(settings, arguments)
        return asyncio.run(_check(settings, fix=arguments.repair, as_json=arguments.json))
    except (ConfigurationError, ScimError, SchemaFileError) as error:
        print(f"error: {getattr(error, 'detail', error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
