"""The ``token`` and ``entra`` commands of ``python -m scim``.

Results go to stdout (tables, or JSON lines with ``--json``); progress and
errors go to stderr. Exit status: 0 done, 1 the check or the provisioning step
failed (the output says why), 2 bad usage, sign-in failure or a Graph error.
Settings come from flags or ``SCIM_GRAPH_*`` variables (see the README), so the
commands work for national clouds and against the local stand-in; secrets
(client secret, Secret Token) are read from the environment or a file, never
from the command line, where other users of the machine could see them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from scim.admin import provisioning as prov
from scim.admin.graph import GraphClient, GraphError
from scim.admin.login import (
    DEFAULT_AUTHORITY,
    DEFAULT_CLIENT_ID,
    DEFAULT_GRAPH_URL,
    DELEGATED_SCOPES,
    Login,
    LoginError,
    LoginSettings,
)
from scim.admin.meanings import STATUSES
from scim.admin.tokens import check_endpoint, new_token

Environ = Mapping[str, str]


CREATE_SCOPES = ("Application.ReadWrite.All",)
"""What ``entra connect --create`` needs beyond the usual scopes (applicationTemplate: instantiate)."""


class UsageError(Exception):
    """A missing or bad option; the message says which."""


def progress(message: str) -> None:
    """Progress and advice: stderr, so stdout stays parseable."""
    print(message, file=sys.stderr, flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain text table, columns as wide as their widest cell."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


# --- token -----------------------------------------------------------------------------------------------


def _secret_token(arguments: argparse.Namespace, environ: Environ) -> str:
    """The Secret Token from ``--token-file`` or the variable named by ``--token-env``."""
    if arguments.token_file:
        token = Path(arguments.token_file).read_text().strip()
    else:
        token = environ.get(arguments.token_env, "").strip()
    if not token:
        source = arguments.token_file or f"${arguments.token_env}"
        raise UsageError(f"no Secret Token in {source}: set it, or give --token-env NAME / --token-file PATH")
    return token


def token_new(arguments: argparse.Namespace, environ: Environ) -> int:
    """Print a new Secret Token once, with the digest the endpoint can hold instead."""
    fresh = new_token()
    if arguments.json:
        print(json.dumps({"token": fresh.token, "sha256": fresh.sha256}))
        return 0
    print(f"Secret Token (paste into Entra; shown once):  {fresh.token}")
    print(f"Endpoint setting, either:  SCIM_BEARER_TOKEN={fresh.token}")
    print(f"                  or only: SCIM_BEARER_TOKEN_SHA256={fresh.sha256}")
    progress("Keep the token in your secret store; the digest cannot be turned back into it.")
    return 0


def token_check(arguments: argparse.Namespace, environ: Environ) -> int:
    """Probe the endpoint as Entra's Test Connection does, and say what to fix."""
    token = _secret_token(arguments, environ)
    progress(f"Probing {arguments.url} as Entra's Test Connection does ...")
    checks = check_endpoint(requests.Session(), arguments.url, token)
    for check in checks:
        if arguments.json:
            print(json.dumps(asdict(check)))
            continue
        print(f"{'ok  ' if check.passed else 'FAIL'}  {check.name:<20} {check.detail}")
        if check.hint:
            print(f"      {'':<20} what to do: {check.hint}")
    passed = all(c.passed for c in checks)
    progress("Entra's Test Connection would pass." if passed else "Entra's Test Connection would fail.")
    return 0 if passed else 1


# --- entra -----------------------------------------------------------------------------------------------


def login_settings(arguments: argparse.Namespace, environ: Environ) -> LoginSettings:
    """Sign-in settings from flags, then ``SCIM_GRAPH_*`` variables, then Microsoft's global cloud."""
    tenant = arguments.tenant or environ.get("SCIM_GRAPH_TENANT", "")
    if not tenant:
        raise UsageError("no tenant: give --tenant (tenant id or a verified domain) or set SCIM_GRAPH_TENANT")
    certificate = arguments.client_certificate or environ.get("SCIM_GRAPH_CLIENT_CERTIFICATE")
    cache_home = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return LoginSettings(
        tenant=tenant,
        authority_host=arguments.authority or environ.get("SCIM_GRAPH_AUTHORITY") or DEFAULT_AUTHORITY,
        graph_url=arguments.graph_url or environ.get("SCIM_GRAPH_URL") or DEFAULT_GRAPH_URL,
        client_id=arguments.client_id or environ.get("SCIM_GRAPH_CLIENT_ID") or DEFAULT_CLIENT_ID,
        client_secret=environ.get("SCIM_GRAPH_CLIENT_SECRET") or None,
        client_certificate=Path(certificate) if certificate else None,
        certificate_password=environ.get("SCIM_GRAPH_CERTIFICATE_PASSWORD") or None,
        cache_path=Path(
            environ.get("SCIM_GRAPH_TOKEN_CACHE") or cache_home / "scim-entra" / "msal-cache.json"
        ),
        scopes=DELEGATED_SCOPES
        + (("Application.ReadWrite.All",) if getattr(arguments, "create", False) else ()),
    )


@dataclass(frozen=True)
class Context:
    """What an ``entra`` command works with: Graph, the sign-in, and the environment."""

    graph: GraphClient
    login: Login
    environ: Environ

    @classmethod
    def open(cls, settings: LoginSettings, environ: Environ) -> Context:
        """One ``requests`` session for msal and Graph (it honours HTTPS_PROXY and REQUESTS_CA_BUNDLE)."""
        session = requests.Session()
        login = Login(settings, session, progress=progress)
        return cls(GraphClient(settings.graph_url, login.token, session, progress=progress), login, environ)


def entra_login(arguments: argparse.Namespace, context: Context) -> int:
    """Sign in now (device code, or client credentials) and keep the sign-in for the next commands."""
    context.login.token()
    who = (
        "application " + context.login.settings.client_id
        if context.login.settings.unattended
        else "your account"
    )
    settings = context.login.settings
    print(f"Signed in to tenant {settings.tenant} as {who}; Graph at {settings.graph_url}.")
    return 0


def entra_logout(arguments: argparse.Namespace, context: Context) -> int:
    """Forget the cached sign-in."""
    print("Signed out." if context.login.sign_out() else "There was no cached sign-in.")
    return 0


def _app(graph: GraphClient, name: str) -> dict[str, Any]:
    sp = prov.find_service_principal(graph, name)
    progress(f"Enterprise app: {sp.get('displayName')} (service principal {sp['id']})")
    return sp


def entra_connect(arguments: argparse.Namespace, context: Context) -> int:
    """Set up provisioning: job from the template, Test Connection, then save the credentials."""
    token = _secret_token(arguments, context.environ)
    try:
        sp = _app(context.graph, arguments.app)
    except prov.ProvisioningError:
        if not arguments.create:
            raise
        sp = prov.create_app(context.graph, arguments.app, progress=progress)
    job, created = prov.ensure_job(context.graph, sp["id"], arguments.template)
    progress(
        f"{'Created' if created else 'Found'} provisioning job {job['id']} (template {job.get('templateId')})"
    )
    progress(f"Testing the connection to {arguments.tenant_url} (Entra's Test Connection) ...")
    try:
        prov.validate_credentials(context.graph, sp["id"], job, arguments.tenant_url, token)
    except GraphError as error:
        if error.status != 400:
            raise
        print(f"Test Connection FAILED: {error.code}: {error.message}")
        progress(
            "What to do: run `python -m scim token check URL` from a host near Entra (or the agent) to see "
            "what the endpoint answers. The credentials were not saved"
            + (" (--force saves them)." if not arguments.force else "; saving (--force).")
        )
        if not arguments.force:
            return 1
    else:
        print("Test Connection succeeded.")
    prov.save_secrets(context.graph, sp["id"], arguments.tenant_url, token)
    print(f"Saved the Tenant URL and Secret Token for {sp.get('displayName')}.")
    progress("Next: `entra provision APP USER` for one user, then `entra start APP`.")
    return 0


def entra_provision(arguments: argparse.Namespace, context: Context) -> int:
    """Provision one user on demand and print each step's result."""
    sp = _app(context.graph, arguments.app)
    job = prov.the_job(context.graph, sp["id"])
    user = prov.find_user(context.graph, arguments.user)
    rule = prov.user_rule(context.graph, sp["id"], job["id"])
    progress(f"Provisioning {user.get('userPrincipalName')} ({user['id']}) on demand ...")
    steps = prov.provision_on_demand(context.graph, sp["id"], job["id"], str(user["id"]), rule)
    if arguments.json:
        for step in steps:
            print(json.dumps(asdict(step)))
    else:
        print(
            table(
                ["step", "type", "status", "description"],
                [[s.name, s.kind, s.status, s.description] for s in steps],
            )
        )
        for step in steps:
            if step.status.lower() == "failure" and step.details:
                for key, value in step.details.items():
                    print(f"  {step.name} / {key}: {value}")
    failed = not steps or any(s.status.lower() == "failure" for s in steps)
    progress("Provisioning FAILED (see the failing step)." if failed else "Provisioned.")
    return 1 if failed else 0


def entra_start(arguments: argparse.Namespace, context: Context) -> int:
    """Start (or resume, or retry from quarantine) provisioning."""
    sp = _app(context.graph, arguments.app)
    job = prov.the_job(context.graph, sp["id"])
    prov.start(context.graph, sp["id"], job["id"])
    print(
        f"Started provisioning job {job['id']}. `entra status` shows the cycle; the first can take a while."
    )
    return 0


def entra_pause(arguments: argparse.Namespace, context: Context) -> int:
    """Pause provisioning."""
    sp = _app(context.graph, arguments.app)
    job = prov.the_job(context.graph, sp["id"])
    prov.pause(context.graph, sp["id"], job["id"])
    print(f"Paused provisioning job {job['id']}.")
    return 0


def entra_status(arguments: argparse.Namespace, context: Context) -> int:
    """The job's state, last cycle, counts and quarantine."""
    sp = _app(context.graph, arguments.app)
    status = prov.job_status(prov.the_job(context.graph, sp["id"]))
    if arguments.json:
        print(json.dumps(asdict(status)))
        return 0
    counts = ", ".join(f"{k}: {v}" for k, v in status.counts.items()) or "none yet"
    rows = [
        ("job", f"{status.job_id} (template {status.template})"),
        ("state", f"{status.state or '?'} (status {status.code or '?'}, every {status.interval or '?'})"),
        ("last cycle", f"{status.last_state} {status.last_began} → {status.last_ended}".rstrip(" →")),
        ("last success", status.last_success or "never"),
        ("failures in a row", str(status.failures_in_a_row)),
        ("provisioned", counts),
    ]
    if status.last_error:
        rows.append(("last error", status.last_error))
    rows.append(("quarantine", status.quarantine or "no"))
    for label, value in rows:
        print(f"{label + ':':<19}{value}")
    return 0


_SPAN = re.compile(r"^(\d+)([mhd])$")


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """``30m``, ``24h``, ``7d`` (ago) or an ISO 8601 time (UTC when no offset is given)."""
    now = now or datetime.now(UTC)
    match = _SPAN.match(text.strip())
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        return now - timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[unit]: amount})
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as error:
        raise UsageError(
            f"not a time: {text!r}; give minutes, hours or days ago (30m, 24h, 7d) or an ISO 8601 "
            "date or time (2026-11-30, 2026-11-30T08:00:00Z; UTC unless it has an offset)"
        ) from error
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def time_argument(text: str) -> str:
    """The argparse ``type`` of ``--since``/``--until``: ``text`` if :func:`parse_time` reads it.

    Checked while the arguments are parsed, so a bad time is a usage error
    (argparse's usage line and one ``error:`` line, exit status 2) before any
    storage or Graph call; the moment itself is computed when the command runs.
    """
    try:
        parse_time(text)
    except UsageError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def entra_logs(arguments: argparse.Namespace, context: Context) -> int:
    """Recent provisioning log entries of the app, as a table or JSON lines."""
    sp = _app(context.graph, arguments.app)
    query = prov.log_filter(
        sp["id"],
        since=parse_time(arguments.since),
        until=parse_time(arguments.until) if arguments.until else None,
        status=arguments.status,
        user=arguments.user,
    )
    entries = list(prov.logs(context.graph, sp["id"], query=query, limit=arguments.top))
    if arguments.json:
        for entry in entries:
            print(json.dumps(entry.as_dict()))
        return 0
    if not entries:
        progress(f"No provisioning log entries since {arguments.since} for these filters.")
        return 0
    headers = ["time", "action", "user", "target id", "status", "error", "meaning"]
    rows = [[e.time, e.action, e.source, e.target, e.status, e.error_code, e.meaning] for e in entries]
    print(table(headers, rows))
    progress(f"{len(entries)} entries (newest first; --top {arguments.top}).")
    return 0


# --- parser ----------------------------------------------------------------------------------------------

Handler = Callable[..., int]


def _token_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token-env", default="SCIM_BEARER_TOKEN", metavar="NAME", help="variable holding the Secret Token"
    )
    parser.add_argument("--token-file", metavar="PATH", help="file holding the Secret Token")


def _graph_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Microsoft Graph (flags override SCIM_GRAPH_* variables)")
    group.add_argument("--tenant", help="tenant id or verified domain [SCIM_GRAPH_TENANT]")
    group.add_argument("--authority", help=f"login host [SCIM_GRAPH_AUTHORITY, {DEFAULT_AUTHORITY}]")
    group.add_argument("--graph-url", help=f"Graph base URL [SCIM_GRAPH_URL, {DEFAULT_GRAPH_URL}]")
    group.add_argument(
        "--client-id",
        help="app registration to sign in with [SCIM_GRAPH_CLIENT_ID, Microsoft "
        "Graph Command Line Tools]; its secret comes from SCIM_GRAPH_CLIENT_SECRET",
    )
    group.add_argument(
        "--client-certificate",
        metavar="PATH",
        help="PEM (key + certificate) or PFX for client credentials [SCIM_GRAPH_CLIENT_CERTIFICATE]",
    )


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``token`` and ``entra`` on the ``python -m scim`` sub-parsers."""
    token = commands.add_parser("token", help="create a Secret Token, or check an endpoint with one")
    token_commands = token.add_subparsers(dest="action", required=True)
    fresh = token_commands.add_parser("new", help="generate a strong Secret Token and its SHA-256 digest")
    fresh.add_argument("--json", action="store_true")
    fresh.set_defaults(handler=token_new, needs_graph=False)
    check = token_commands.add_parser("check", help="probe a Tenant URL as Entra's Test Connection does")
    check.add_argument("url", help="the Tenant URL, e.g. https://scim.example.com/scim/v2")
    _token_source(check)
    check.add_argument("--json", action="store_true")
    check.set_defaults(handler=token_check, needs_graph=False)

    entra = commands.add_parser("entra", help="set up and watch Entra provisioning through Microsoft Graph")
    entra_commands = entra.add_subparsers(dest="action", required=True)

    def command(name: str, handler: Handler, text: str, *, app: bool = True) -> argparse.ArgumentParser:
        parser = entra_commands.add_parser(name, help=text, description=text)
        if app:
            parser.add_argument("app", help="enterprise app: object id, appId or display name")
        _graph_options(parser)
        parser.set_defaults(handler=handler, needs_graph=True)
        return parser

    command("login", entra_login, "sign in (device code) and keep the sign-in", app=False)
    command("logout", entra_logout, "forget the cached sign-in", app=False)
    connect = command("connect", entra_connect, "create the provisioning job, test and save the credentials")
    connect.add_argument("--tenant-url", required=True, help="the endpoint's Tenant URL (…/scim/v2)")
    connect.add_argument("--template", help="synchronization template id (default: the app's default)")
    connect.add_argument("--force", action="store_true", help="save the credentials even if the test fails")
    connect.add_argument(
        "--create", action="store_true", help="create a non-gallery enterprise app named APP if there is none"
    )
    _token_source(connect)
    provision = command("provision", entra_provision, "provision one user on demand, step by step")
    provision.add_argument("user", help="the user's object id or userPrincipalName")
    provision.add_argument("--json", action="store_true")
    command("start", entra_start, "start or resume provisioning (also retries a quarantined job)")
    command("pause", entra_pause, "pause provisioning")
    status = command("status", entra_status, "state, last cycle, counts and quarantine")
    status.add_argument("--json", action="store_true")
    logs = command("logs", entra_logs, "recent provisioning log entries, with plain meanings of errors")
    logs.add_argument(
        "--since", default="24h", type=time_argument, help="30m, 24h, 7d or an ISO time (default 24h)"
    )
    logs.add_argument("--until", type=time_argument, help="ISO time or 30m/24h/7d ago")
    logs.add_argument("--status", choices=STATUSES)
    logs.add_argument("--user", help="source user: object id or display name")
    logs.add_argument("--top", type=int, default=50, help="at most this many entries (default 50)")
    logs.add_argument("--json", action="store_true")


def run(arguments: argparse.Namespace, environ: Environ) -> int:
    """Run a ``token`` or ``entra`` command; errors become advice and exit status 2."""
    try:
        if not arguments.needs_graph:
            return int(arguments.handler(arguments, environ))
        context = Context.open(login_settings(arguments, environ), environ)
        return int(arguments.handler(arguments, context))
    except (GraphError, LoginError, prov.ProvisioningError) as error:
        print(f"error: {error.explain()}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise  # stdout closed early: ``scim.__main__.cli`` ends quietly
    except (UsageError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
