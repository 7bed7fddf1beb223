r"""Entra application provisioning through Microsoft Graph v1.0 (the synchronization API).

Each function is one documented Graph step (Microsoft Learn, *Configure
provisioning using Microsoft Graph APIs* and the ``synchronization`` reference):

- the enterprise app is a ``servicePrincipal``; its provisioning is a
  ``synchronizationJob`` made from one of its ``synchronizationTemplate``\\ s;
- the Tenant URL and Secret Token are the secrets ``BaseAddress`` and
  ``SecretToken`` (``PUT …/synchronization/secrets``);
- *Test Connection* is ``POST …/jobs/{id}/validateCredentials`` (204 when valid);
- *Provision on demand* is ``POST …/jobs/{id}/provisionOnDemand`` with the id of
  the job schema's synchronization rule, answering the steps as a JSON string;
- the provisioning logs are ``GET /auditLogs/provisioning``
  (``provisioningObjectSummary``), newest first.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from scim.admin.advice import ActionableError
from scim.admin.graph import GraphClient, GraphError, Need
from scim.admin.meanings import meaning

APPS = Need(
    delegated="Application.Read.All",
    application="Application.Read.All",
    roles="Application Administrator or Cloud Application Administrator",
)
WRITE_APPS = Need(
    delegated="Application.ReadWrite.All",
    application="Application.ReadWrite.OwnedBy (or Application.ReadWrite.All)",
    roles="Application Administrator or Cloud Application Administrator",
)
USERS = Need(
    delegated="User.Read.All",
    application="User.Read.All",
    roles="a member of the tenant with User.Read.All consented",
)
SYNC = Need(
    delegated="Synchronization.ReadWrite.All",
    application="Synchronization.ReadWrite.All (or Application.ReadWrite.OwnedBy, as the app's owner)",
    roles="Application Administrator or Cloud Application Administrator (Hybrid Identity Administrator for "
    "the on-premises SCIM app)",
)
LOGS = Need(
    delegated="AuditLog.Read.All",
    application="AuditLog.Read.All",
    roles="Reports Reader, Security Reader or Security Administrator",
)

_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


class ProvisioningError(ActionableError):
    """A provisioning step that cannot go on; ``hint`` says what to do."""


def odata_literal(value: str) -> str:
    """An OData string literal: single quotes, inner quotes doubled (OData ABNF ``SQUOTE-in-string``)."""
    return "'" + value.replace("'", "''") + "'"


def find_service_principal(graph: GraphClient, app: str) -> dict[str, Any]:
    """The enterprise app by object id, appId or exact display name."""
    if _GUID.match(app):
        try:
            return graph.get(f"servicePrincipals/{app}", APPS)
        except GraphError as error:
            if error.status != 404:
                raise
        found = list(graph.pages("servicePrincipals", APPS, {"$filter": f"appId eq {odata_literal(app)}"}))
    else:
        found = list(
            graph.pages("servicePrincipals", APPS, {"$filter": f"displayName eq {odata_literal(app)}"})
        )
    if not found:
        raise ProvisioningError(
            f"no enterprise app {app!r} in this tenant",
            "give the app's object id (Enterprise apps > the app > Overview) or its exact display name; "
            "`entra connect APP --create` creates a non-gallery app of that name.",
        )
    if len(found) > 1:
        ids = ", ".join(str(sp["id"]) for sp in found)
        raise ProvisioningError(
            f"{len(found)} enterprise apps are named {app!r}: {ids}", "give the object id."
        )
    return found[0]


#: Entra's "Integrate any other application you don't find in the gallery (Non-gallery)".
NON_GALLERY_TEMPLATE = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"


def create_app(
    graph: GraphClient,
    name: str,
    *,
    wait: float = 60.0,
    progress: Callable[[str], None] = lambda _: None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Create a non-gallery enterprise app named ``name``; its service principal, once readable.

    Graph answers the new service principal at once, but reads (and the
    synchronization API) see it only after directory replication, so this
    polls ``GET /servicePrincipals/{id}`` for up to ``wait`` seconds.
    """
    created = graph.post(
        f"applicationTemplates/{NON_GALLERY_TEMPLATE}/instantiate", WRITE_APPS, {"displayName": name}
    )
    sp_id = str(((created or {}).get("servicePrincipal") or {}).get("id", ""))
    if not sp_id:
        raise ProvisioningError(
            "Graph created the app but answered no service principal", "run the command again."
        )
    progress(f"Created enterprise app {name!r} (service principal {sp_id}); waiting for the directory ...")
    deadline = time.monotonic() + wait
    while True:
        try:
            return graph.get(f"servicePrincipals/{sp_id}", APPS)
        except GraphError as error:
            if error.status != 404 or time.monotonic() > deadline:
                raise
        sleep(2.0)


def jobs_of(graph: GraphClient, sp_id: str) -> list[dict[str, Any]]:
    """The app's synchronization jobs."""
    return list(graph.pages(f"servicePrincipals/{sp_id}/synchronization/jobs", SYNC))


def the_job(graph: GraphClient, sp_id: str) -> dict[str, Any]:
    """The app's provisioning job; an error saying to run ``entra connect`` when there is none."""
    jobs = jobs_of(graph, sp_id)
    if not jobs:
        raise ProvisioningError(
            "provisioning is not set up for this app (it has no synchronization job)",
            "run `python -m scim entra connect` first.",
        )
    if len(jobs) > 1:
        raise ProvisioningError(
            f"this app has {len(jobs)} provisioning jobs: " + ", ".join(str(j["id"]) for j in jobs),
            "give --job with one of them.",
        )
    return jobs[0]


def choose_template(templates: list[dict[str, Any]], wanted: str | None) -> dict[str, Any]:
    """The template to create the job from: ``wanted``, else the app's default, else the only one."""
    if wanted:
        for template in templates:
            if template.get("id") == wanted:
                return template
        raise ProvisioningError(
            f"the app has no template {wanted!r}",
            "choose one of: " + (", ".join(str(t.get("id")) for t in templates) or "(none)"),
        )
    defaults = [t for t in templates if t.get("default")] or templates
    if len(defaults) == 1:
        return defaults[0]
    raise ProvisioningError(
        "the app has no provisioning template"
        if not templates
        else "the app has several provisioning templates",
        "create the app as 'Integrate any other application you don't find in the gallery' or as the "
        "'On-premises SCIM app'"
        if not templates
        else "give --template with one of: " + ", ".join(str(t.get("id")) for t in templates),
    )


def ensure_job(graph: GraphClient, sp_id: str, template: str | None) -> tuple[dict[str, Any], bool]:
    """The app's job, created from the right template if it has none; and whether it was created."""
    jobs = jobs_of(graph, sp_id)
    if template:
        jobs = [j for j in jobs if j.get("templateId") == template]
    if len(jobs) == 1:
        return jobs[0], False
    if len(jobs) > 1:
        raise ProvisioningError(
            "this app has several provisioning jobs", "give --template to choose by template id."
        )
    templates = list(graph.pages(f"servicePrincipals/{sp_id}/synchronization/templates", SYNC))
    chosen = choose_template(templates, template)
    created = graph.post(
        f"servicePrincipals/{sp_id}/synchronization/jobs", SYNC, {"templateId": chosen["id"]}
    )
    if created is None:
        raise ProvisioningError("Graph created the job but returned no body", "run `entra status` to see it.")
    return created, True


def credentials(tenant_url: str, token: str) -> list[dict[str, str]]:
    """The ``synchronizationSecretKeyStringValuePair`` list for a SCIM app."""
    return [{"key": "BaseAddress", "value": tenant_url}, {"key": "SecretToken", "value": token}]


def validate_credentials(
    graph: GraphClient, sp_id: str, job: dict[str, Any], tenant_url: str, token: str
) -> None:
    """Entra's *Test Connection*; raises ``GraphError`` with Entra's reason when it fails."""
    graph.post(
        f"servicePrincipals/{sp_id}/synchronization/jobs/{job['id']}/validateCredentials",
        SYNC,
        {
            "useSavedCredentials": False,
            "templateId": job["templateId"],
            "credentials": credentials(tenant_url, token),
        },
    )


def save_secrets(graph: GraphClient, sp_id: str, tenant_url: str, token: str) -> None:
    """Store the Tenant URL and Secret Token as the app's provisioning credentials."""
    graph.put(
        f"servicePrincipals/{sp_id}/synchronization/secrets", SYNC, {"value": credentials(tenant_url, token)}
    )


def start(graph: GraphClient, sp_id: str, job_id: str) -> None:
    """Start (or resume) provisioning cycles; also how a quarantined job is retried."""
    graph.post(f"servicePrincipals/{sp_id}/synchronization/jobs/{job_id}/start", SYNC)


def pause(graph: GraphClient, sp_id: str, job_id: str) -> None:
    """Pause provisioning cycles (state is kept; ``start`` resumes)."""
    graph.post(f"servicePrincipals/{sp_id}/synchronization/jobs/{job_id}/pause", SYNC)


def find_user(graph: GraphClient, user: str) -> dict[str, Any]:
    """The directory user by object id or userPrincipalName."""
    try:
        return graph.get(
            f"users/{quote(user, safe='@')}",
            USERS,
            {"$select": "id,userPrincipalName,displayName,accountEnabled"},
        )
    except GraphError as error:
        if error.status == 404:
            raise ProvisioningError(
                f"no user {user!r} in this tenant", "give the object id or the UPN."
            ) from error
        raise


def user_rule(graph: GraphClient, sp_id: str, job_id: str) -> str:
    """The id of the job schema's synchronization rule that provisions users."""
    schema = graph.get(f"servicePrincipals/{sp_id}/synchronization/jobs/{job_id}/schema", SYNC)
    rules = schema.get("synchronizationRules") or []
    for rule in rules:
        for mapping in rule.get("objectMappings") or []:
            if mapping.get("sourceObjectName") == "User" and mapping.get("enabled", True):
                return str(rule["id"])
    if len(rules) == 1:
        return str(rules[0]["id"])
    raise ProvisioningError(
        "the job's schema has no rule that provisions users", "check the app's attribute mappings."
    )


@dataclass(frozen=True)
class Step:
    """One step of a provisioning run (Graph ``provisioningStep``)."""

    name: str
    kind: str
    status: str
    description: str
    details: dict[str, str] = field(default_factory=dict)


def _steps_of(summary: Any) -> list[Step]:
    if isinstance(summary, list):
        summary = summary[0] if summary else {}
    raw = summary.get("provisioningSteps") or [] if isinstance(summary, dict) else []
    return [
        Step(
            name=str(step.get("name", "")),
            # provisionOnDemand's document says "type"/"Success"; the logs "provisioningStepType"/"success".
            kind=str(step.get("provisioningStepType") or step.get("type") or ""),
            status=str(step.get("status", "")).lower(),
            description=str(step.get("description", "")),
            details={str(k): str(v) for k, v in (step.get("details") or {}).items()},
        )
        for step in raw
    ]


def provision_on_demand(
    graph: GraphClient, sp_id: str, job_id: str, user_id: str, rule_id: str
) -> list[Step]:
    """Provision one user now; the steps Entra took and their results.

    Graph answers a ``stringKeyStringValuePair`` whose ``value`` is a JSON
    document with the ``provisioningSteps`` of the run.
    """
    answer = graph.post(
        f"servicePrincipals/{sp_id}/synchronization/jobs/{job_id}/provisionOnDemand",
        SYNC,
        {"parameters": [{"ruleId": rule_id, "subjects": [{"objectId": user_id, "objectTypeName": "User"}]}]},
    )
    try:
        document = json.loads((answer or {}).get("value") or "{}")
    except ValueError as error:
        raise ProvisioningError(
            "Graph's provision-on-demand answer is not JSON", "run `entra logs`."
        ) from error
    return _steps_of(document)


@dataclass(frozen=True)
class JobStatus:
    """What ``entra status`` reports of a ``synchronizationJob``."""

    job_id: str
    template: str
    state: str
    code: str
    interval: str
    last_state: str
    last_began: str
    last_ended: str
    last_error: str
    last_success: str
    counts: dict[str, int]
    quarantine: str
    failures_in_a_row: int


def _describe_quarantine(quarantine: dict[str, Any] | None) -> str:
    if not quarantine:
        return ""
    error = quarantine.get("error") or {}
    code = str(error.get("code") or quarantine.get("reason") or "")
    text = meaning(code, str(error.get("message") or ""))
    since = quarantine.get("currentBegan") or quarantine.get("seriesBegan") or "?"
    retry = quarantine.get("nextAttempt") or "?"
    return f"{code} since {since}, next attempt {retry}: {text}"


def job_status(job: dict[str, Any]) -> JobStatus:
    """Summarise a job's ``schedule`` and ``status`` (``synchronizationStatus``)."""
    status = job.get("status") or {}
    last = status.get("lastExecution") or {}
    error = last.get("error") or {}
    success = status.get("lastSuccessfulExecution") or {}
    return JobStatus(
        job_id=str(job.get("id", "")),
        template=str(job.get("templateId", "")),
        state=str((job.get("schedule") or {}).get("state", "")),
        code=str(status.get("code", "")),
        interval=str((job.get("schedule") or {}).get("interval", "")),
        last_state=str(last.get("state", "") or "never ran"),
        last_began=str(last.get("timeBegan", "") or ""),
        last_ended=str(last.get("timeEnded", "") or ""),
        last_error=(
            f"{error.get('code')}: {meaning(error.get('code'), error.get('message'))}" if error else ""
        ),
        last_success=str(success.get("timeEnded", "") or ""),
        counts={str(p["key"]): int(p["value"]) for p in status.get("synchronizedEntryCountByType") or []},
        quarantine=_describe_quarantine(status.get("quarantine")),
        failures_in_a_row=int(status.get("countSuccessiveCompleteFailures") or 0),
    )


@dataclass(frozen=True)
class LogEntry:
    """One row of ``entra logs``: a ``provisioningObjectSummary``, summarised."""

    time: str
    action: str
    source: str
    target: str
    status: str
    error_code: str
    meaning: str
    change_id: str

    def as_dict(self) -> dict[str, str]:
        """For ``--json``."""
        return dict(self.__dict__)


def _summarise(entry: dict[str, Any]) -> LogEntry:
    info = entry.get("provisioningStatusInfo") or {}
    error = info.get("errorInformation") or {}
    source = entry.get("sourceIdentity") or {}
    target = entry.get("targetIdentity") or {}
    code = str(error.get("errorCode") or "")
    return LogEntry(
        time=str(entry.get("activityDateTime", "")),
        action=str(entry.get("provisioningAction", "")),
        source=str(source.get("displayName") or source.get("id") or ""),
        target=str(target.get("id") or target.get("displayName") or ""),
        status=str(info.get("status", "")),
        error_code=code,
        meaning=meaning(code, str(error.get("reason") or "")) if code or error else "",
        change_id=str(entry.get("changeId", "")),
    )


def log_filter(
    sp_id: str, *, since: datetime | None, until: datetime | None, status: str | None, user: str | None
) -> str:
    """The ``$filter`` of ``/auditLogs/provisioning`` for the command's options."""
    clauses = [f"servicePrincipal/id eq {odata_literal(sp_id)}"]
    if since is not None:
        clauses.append(f"activityDateTime ge {since.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    if until is not None:
        clauses.append(f"activityDateTime le {until.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    if status:
        clauses.append(f"provisioningStatusInfo/status eq {odata_literal(status)}")
    if user:
        attribute = "sourceIdentity/id" if _GUID.match(user) else "sourceIdentity/displayName"
        clauses.append(f"{attribute} eq {odata_literal(user)}")
    return " and ".join(clauses)


def logs(graph: GraphClient, sp_id: str, *, query: str, limit: int) -> Iterator[LogEntry]:
    """Recent provisioning log entries of the app (newest first), following ``@odata.nextLink``."""
    params = {"$filter": query, "$top": str(min(limit, 500))}
    for entry in graph.pages("auditLogs/provisioning", LOGS, params, limit=limit):
        yield _summarise(entry)
