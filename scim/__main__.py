"""``scim`` (``python -m scim``): the command line of the SCIM endpoint (a host, like ``function_app.py``).

``make install`` installs it as ``.venv/bin/scim``, which runs from any
directory without activating the venv (``[project.scripts]`` in pyproject.toml).

Commands:
    check [--repair] [--json]   scan the table for anomalies (``scim.service.consistency``),
                                and repair them with ``--repair``
    audit [prune] [filters]     who changed what, when (``scim.admin.changelog``)
    feed relay | replay         publish pending changes; re-send recorded events since a time
    export [--audit] [-o FILE]  write the whole directory as JSON lines (``scim.admin.backup``)
    import [FILE]               restore an export into an empty table (``scim.admin.backup``)
    token new | check URL       make a Secret Token; probe an endpoint like Entra's Test Connection
    directory add | list | rotate-token | disable | enable | remove
                                manage named directories (``scim.admin.directories``)
    entra login | connect | provision | start | pause | status | logs
                                set up and watch Entra provisioning through Microsoft Graph
                                (``scim.admin``)

``check``, ``audit`` and ``feed`` take their settings from the same ``SCIM_*`` variables as the endpoint
(only the storage ones are needed); with ``--directory NAME`` they, ``export`` and ``import`` act
on that named directory instead of the default one (``scim.admin.directories.settings_of``).
Exit status: 0 done (consistent, or all repaired), 1 anomalies remain / the check or step
failed, 2 bad usage or configuration (a missing table or an unknown directory included),
storage or Graph unavailable, 130 interrupted (Ctrl-C), 141 stdout closed early
(``scim audit --json | head -2``: the status of a command killed by SIGPIPE, 128 + 13,
as ``yes | head`` gives; nothing is printed).

An error is one ``error: …`` line on stderr (``entra`` may add a ``What to do:``
line; a usage error is argparse's usage line and its ``error:`` line), never a
traceback: ``scim --debug COMMAND`` shows the library log lines and the traceback.

It may import ``scim.admin``, ``scim.service``, ``scim.feed``, ``scim.storage``, ``scim.model``,
``scim.config`` and ``scim.logs``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence

from scim.admin import backup, changelog, directories
from scim.admin.cli import UsageError, add_commands, run
from scim.config import ConfigurationError, Settings, check_connection_string
from scim.model.errors import ScimError
from scim.model.resources import build_kinds
from scim.model.schemafile import SchemaFileError, load_schema_file
from scim.service.consistency import REPAIRED, RESOLVED, check, repair
from scim.storage.directories import DirectoryError

PROGRESS_AFTER_S = 1.5
"""A scan shorter than this prints no progress line."""
PROGRESS_EVERY_S = 2.0
"""Then one line every this many seconds."""


class ScanProgress:
    """Rows scanned, on stderr: first after :data:`PROGRESS_AFTER_S`, then every :data:`PROGRESS_EVERY_S`."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        say: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True),
    ) -> None:
        self.rows = 0
        self._clock = clock
        self._say = say
        self._due = clock() + PROGRESS_AFTER_S

    def __call__(self, rows: int) -> None:
        """Note the running count; print it when a line is due."""
        self.rows = rows
        now = self._clock()
        if now >= self._due:
            self._due = now + PROGRESS_EVERY_S
            self._say(f"... {rows:,} rows scanned")


async def _check(settings: Settings, *, fix: bool, as_json: bool) -> int:
    """Scan (and repair); one line per anomaly, then the summary, always (with ``--json`` also on stdout).

    A table that does not exist is :class:`scim.admin.changelog.MissingTableError`, not "0 anomalies".
    """
    kinds = build_kinds(load_schema_file(settings.schema_file))
    repository = await changelog.open_existing(settings)
    progress = ScanProgress()
    try:
        print(f"Scanning table {settings.table_name} (tenant {settings.tenant}) ...", file=sys.stderr)
        anomalies = await check(repository, kinds, progress=progress)
        outcomes = await repair(anomalies) if fix else [(a, "found") for a in anomalies]
    finally:
        await repository.close()
    for anomaly, outcome in outcomes:
        if as_json:
            print(json.dumps({"code": anomaly.code, "detail": anomaly.detail, "outcome": outcome}))
        else:
            print(f"{anomaly.code:<24} {outcome:<16} {anomaly.detail}")
    remaining = sum(1 for _, outcome in outcomes if outcome not in (REPAIRED, RESOLVED))
    summary = {
        "table": settings.table_name,
        "tenant": settings.tenant,
        "rows": progress.rows,
        "anomalies": len(anomalies),
        "repaired": sum(1 for _, outcome in outcomes if outcome == REPAIRED),
        "resolved": sum(1 for _, outcome in outcomes if outcome == RESOLVED),
        "remaining": remaining,
    }
    if as_json:
        print(json.dumps({"summary": summary}))
    print(
        f"{len(anomalies)} anomalies found, {len(anomalies) - remaining} repaired "
        f"({progress.rows:,} rows scanned).",
        file=sys.stderr,
    )
    return 1 if remaining else 0


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The exceptions ``error`` was raised from, nearest first."""
    seen: set[int] = set()
    current = error.__cause__ or error.__context__
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def describe_storage_failure(error: ScimError, settings: Settings | None) -> str:
    """One line for a storage failure: where (the endpoint and the setting naming it), why, what to check.

    ``scim.storage.tables`` maps every azure-core error to the SCIM error tree with the
    original chained; this reads it back by duck typing (``status_code``,
    ``error_code``, class names), so the command line imports no azure package.
    """
    if settings is None or error.status not in (500, 503):
        return error.detail
    endpoint, setting = changelog.storage_location(settings)
    causes = list(_causes(error))
    statuses = [getattr(c, "status_code", None) for c in causes]
    status = next((s for s in statuses if isinstance(s, int)), None)
    codes = [getattr(c, "error_code", None) for c in causes]
    code = next((str(getattr(c, "value", c)) for c in codes if c), "")  # an enum member, or its text
    names = {kind.__name__ for c in causes for kind in type(c).__mro__}
    reason = f"{status} {code}".strip() if status else (_first_line(causes[0]) if causes else error.detail)
    if status in (401, 403) or "ClientAuthenticationError" in names:
        fix = (
            "sign in (az login, or the managed identity) as an identity with the role "
            "Storage Table Data Contributor on the account"
            if setting == "SCIM_STORAGE_TABLE_ENDPOINT"
            else f"check the AccountKey (or SharedAccessSignature) in {setting}"
        )
        return f"Table Storage at {endpoint} refused the credentials ({reason}): {fix}"
    if status is None:
        return (
            f"cannot reach Table Storage at {endpoint} ({reason}): check {setting} "
            "and that the storage is running (make run starts Azurite and prints its connection string)"
        )
    return f"Table Storage at {endpoint} ({setting}) failed ({reason}): {error.detail}"


def _fail(message: str, *, debug: bool) -> int:
    """The one ``error:`` line (after the traceback with ``--debug``); exit status 2."""
    if debug:
        traceback.print_exc()
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(prog="scim", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--debug", action="store_true", help="show library log lines, and the traceback of an error"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    checker = commands.add_parser("check", help="report (and with --repair fix) table inconsistencies")
    checker.add_argument("--repair", action="store_true", help="fix what can be fixed")
    checker.add_argument(
        "--json", action="store_true", help='one JSON object per anomaly, then {"summary": {...}}'
    )
    directories.directory_option(checker)
    add_commands(commands)
    changelog.add_commands(commands)
    backup.add_commands(commands)
    directories.add_commands(commands)
    arguments = parser.parse_args(argv)
    if arguments.command in ("token", "entra"):
        return run(arguments, os.environ)
    settings: Settings | None = None
    try:
        settings = Settings.from_env(os.environ)
        if not settings.storage_connection_string and not settings.storage_table_endpoint:
            raise ConfigurationError(
                "SCIM_STORAGE_CONNECTION_STRING (or, identity-based, SCIM_STORAGE_TABLE_ENDPOINT) is not "
                "set: export the one the endpoint uses (make run prints its Azurite's)"
            )
        if settings.storage_connection_string:
            check_connection_string(settings.storage_connection_string)
        if arguments.command == "directory":
            return directories.run(settings, arguments)
        settings = directories.settings_of(settings, arguments)  # --directory NAME, else unchanged
        if arguments.command in ("export", "import"):
            return backup.run(settings, arguments)
        if arguments.command != "check":
            return changelog.run(settings, arguments)
        return asyncio.run(_check(settings, fix=arguments.repair, as_json=arguments.json))
    except (
        ConfigurationError,
        DirectoryError,
        SchemaFileError,
        UsageError,
        changelog.QueueUnavailableError,
    ) as error:
        return _fail(str(error), debug=arguments.debug)
    except ScimError as error:
        return _fail(describe_storage_failure(error, settings), debug=arguments.debug)


def _quiet_logging(debug: bool) -> None:
    """Each failure is reported once, as the ``error:`` line: library log lines only with ``--debug``.

    The relay's warnings (``scim.feed.relay``: which changes wait, and why) stay visible: they
    are ``feed relay``'s account of a partial run, which exits 1 without an error line.
    """
    if debug:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        return
    feed = logging.getLogger("scim.feed.relay")
    if any(handler.get_name() == "scim-cli" for handler in feed.handlers):
        return  # already set up (cli called again in one process)
    logging.getLogger().addHandler(logging.NullHandler())  # no "last resort" printing of warnings
    relay = logging.StreamHandler(sys.stderr)
    relay.set_name("scim-cli")
    relay.setLevel(logging.WARNING)
    relay.setFormatter(logging.Formatter("warning: %(message)s"))
    feed.addHandler(relay)


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush cannot fail again.

    The recipe of the Python documentation (``signal`` module, *Note on SIGPIPE*).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def cli(argv: Sequence[str] | None = None) -> int:
    """The ``scim`` console command and ``python -m scim``: :func:`main`, and never a traceback.

    - stdout closed early (a pager or ``head`` quit): exit quietly with 141;
    - Ctrl-C: ``interrupted``, exit 130 (``feed relay --watch`` stops with 0);
    - anything else unexpected: one ``error:`` line naming it, exit 1 (``--debug`` re-raises).
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in arguments
    _quiet_logging(debug)
    try:
        status = main(arguments)
        sys.stdout.flush()  # stdout is block-buffered in a pipe: a closed pipe shows here
    except BrokenPipeError:
        _discard_stdout()
        return 141
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if debug:
            raise
        print(
            f"error: unexpected {type(error).__name__}: {_first_line(error)} (scim --debug ... shows where)",
            file=sys.stderr,
        )
        return 1
    return status


if __name__ == "__main__":
    sys.exit(cli())
