"""Offline checks of the Azure template in ``infra/`` and of ``azure.yaml``.

No Bicep compiler runs here (azure-notes §4.3), so this is what can be checked without one:

(a) every ``.bicep`` file parses with tree-sitter-bicep, without ERROR or MISSING nodes;
(b) the security and wiring properties the deployment relies on, read from the syntax tree
    (:mod:`tests.infra.bicep`) — each check is also run against a deliberately broken copy of the
    template, so a check that can no longer fail is itself a failure;
(c) every ``SCIM_*`` app setting the template sets is documented in the settings table of
    docs/configuration.md (the operator's reference; the README links to it);
(d) checkov's Bicep policies (integration: a subprocess, ~5-30 s), with the skips of
    ``infra/.checkov.yaml``, each justified there.

Type checking of resource properties and API versions, the Bicep linter, compilation to ARM JSON and
``what-if`` need the Bicep CLI and Azure: they are not covered here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from scim.config import Settings
from tests.infra.bicep import Call, Declaration, Expr, Infra, Interpolated, Ref, syntax_errors

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
CONFIGURATION_DOC = ROOT / "docs" / "configuration.md"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
CHECKOV_CONFIG = INFRA / ".checkov.yaml"
CHECKOV_PIN = "checkov==3.3.30"

MAIN = "main.bicep"

PYTHON_VERSION = "3.13"
"""Flex Consumption's runtime version: the Python that requirements.txt is locked for (azure-functions 2.x)."""
HOST_LIMIT_FACTOR = 4
"""FUNCTIONS_REQUEST_BODY_SIZE_LIMIT = this x SCIM_MAX_BODY_BYTES, as on-premises and under ``make run``.

A body over the host's limit fails inside the host with an empty 500, not a 413
(Azure/azure-functions-host#10519): the app's limit, whose 413 carries a SCIM error body, must be the lower one.
"""
MAX_REQUEST_LENGTH = 104_857_600
"""The HTTP request length Azure Functions accepts: 100 MB (Microsoft Learn, HTTP trigger, "Limits")."""

# Built-in role definition ids.
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
STORAGE_QUEUE_DATA_MESSAGE_SENDER = "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"

TABLE = "Microsoft.Storage/storageAccounts/tableServices/tables"
QUEUE = "Microsoft.Storage/storageAccounts/queueServices/queues"
CONTAINER = "Microsoft.Storage/storageAccounts/blobServices/containers"
# Every built-in Table and Queue data role: whoever gets one, gets it on one table or queue, never on the
# account (where it would reach the host's and any future table or queue).
DATA_ROLES_BELOW_ACCOUNT = {
    STORAGE_TABLE_DATA_CONTRIBUTOR: TABLE,
    "76199698-9eea-4c19-bc75-cec21354c6b6": TABLE,  # Storage Table Data Reader
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": QUEUE,  # Storage Queue Data Contributor
    "8a0f0c08-91a1-4084-bc3d-661d67233fed": QUEUE,  # Storage Queue Data Message Processor
    STORAGE_QUEUE_DATA_MESSAGE_SENDER: QUEUE,
    "19e7f393-937e-4f77-808e-94535e297925": QUEUE,  # Storage Queue Data Reader
    # Blob data roles: one container each, never the account (which holds the deployment package).
    STORAGE_BLOB_DATA_OWNER: CONTAINER,
    STORAGE_BLOB_DATA_CONTRIBUTOR: CONTAINER,
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": CONTAINER,  # Storage Blob Data Reader
}

# The app settings the SCIM code and the Functions host read (docs/configuration.md's settings table).
REQUIRED_APP_SETTINGS = {
    "SCIM_STORAGE_TABLE_ENDPOINT",
    "SCIM_TABLE_NAME",
    "SCIM_STORAGE_QUEUE_ENDPOINT",
    "SCIM_CHANGE_QUEUE",
    "SCIM_BEARER_TOKEN",
    "SCIM_PUBLIC_BASE_URL",
    "SCIM_ENTRA_TENANT_ID",
    "SCIM_SCHEMA_FILE",
    "SCIM_UNKNOWN_ATTRIBUTES",
    "SCIM_MAX_BODY_BYTES",
    "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT",
    "AZURE_CLIENT_ID",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
}
# Shared-key connection strings cannot work (allowSharedKeyAccess: false); the others are deprecated on Flex.
FORBIDDEN_APP_SETTINGS = {
    "AzureWebJobsStorage",
    "SCIM_STORAGE_CONNECTION_STRING",
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
}


@pytest.fixture(scope="module")
def infra() -> Infra:
    return Infra(INFRA)


# ----------------------------------------------------------------------------------------- helpers


def _one(infra: Infra, resource_type: str, problems: list[str]) -> tuple[str, Declaration] | None:
    found = infra.resources(resource_type)
    if len(found) != 1:
        problems.append(f"expected exactly one {resource_type}, found {len(found)}")
        return None
    return found[0]


def _get(mapping: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(mapping, dict) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


def _expect(problems: list[str], where: str, actual: Any, expected: Any) -> None:
    if actual != expected:
        problems.append(f"{where}: expected {expected!r}, got {actual!r}")


def _resource_of(infra: Infra, file: str, ref: Any, resource_type: str) -> Declaration | None:
    """The resource ``ref`` names (``Ref('identity')`` or the first part of ``identity.id``), if of that type."""
    if not isinstance(ref, Ref):
        return None
    resource = infra[file].resources.get(ref.parts[0])
    if resource is None or resource.resource_type.lower() != resource_type.lower():
        return None
    return resource


def _is_identity_attribute(infra: Infra, file: str, value: Any, attribute: str) -> bool:
    """Whether ``value`` resolves to ``<a user-assigned identity>.<attribute>``."""
    file, value = infra.resolve(file, value)
    return (
        isinstance(value, Ref)
        and ".".join(value.parts[1:]) == attribute
        and _resource_of(infra, file, value, "Microsoft.ManagedIdentity/userAssignedIdentities") is not None
    )


def _identity_of(infra: Infra, file: str, value: Any, attribute: str) -> str | None:
    """The name of the user-assigned identity (its Bicep symbol) ``value`` is the ``attribute`` of."""
    file, value = infra.resolve(file, value)
    if _is_identity_attribute(infra, file, value, attribute):
        return str(value.parts[0])
    return None


def _app_settings(infra: Infra) -> tuple[str, dict[str, Any]]:
    configs = [
        (file, resource)
        for file, resource in infra.resources("Microsoft.Web/sites/config")
        if resource.body.get("name") == "appsettings"
    ]
    assert len(configs) == 1, f"expected one sites/config 'appsettings', found {len(configs)}"
    file, resource = configs[0]
    return file, resource.body.get("properties", {})


def _interpolated_ref(value: Any, pattern: str) -> Ref | None:
    """The single ``${name}`` of an interpolated string matching ``pattern`` (``{}`` marks the hole)."""
    if not isinstance(value, Interpolated):
        return None
    regex = re.escape(pattern).replace(re.escape("{}"), r"\$\{([A-Za-z_][\w.]*)\}")
    match = re.fullmatch(regex, value.raw)
    return Ref(match.group(1)) if match else None


# ------------------------------------------------------------------------------------------- checks
# Each check returns its problems: [] when the template is right.


def site_problems(infra: Infra) -> list[str]:
    problems: list[str] = []
    found = _one(infra, "Microsoft.Web/sites", problems)
    if found is None:
        return problems
    file, site = found
    body = site.body
    properties = body.get("properties", {})
    kind = str(body.get("kind", ""))
    if "functionapp" not in kind or "linux" not in kind:
        problems.append(f"site kind {kind!r} is not a Linux function app")
    _expect(problems, "site httpsOnly", properties.get("httpsOnly"), True)
    _expect(problems, "site siteConfig.minTlsVersion", _get(properties, "siteConfig.minTlsVersion"), "1.2")
    _expect(problems, "site siteConfig.ftpsState", _get(properties, "siteConfig.ftpsState"), "Disabled")
    runtime = _get(properties, "functionAppConfig.runtime")
    _expect(problems, "functionAppConfig.runtime", runtime, {"name": "python", "version": PYTHON_VERSION})
    auth = _get(properties, "functionAppConfig.deployment.storage.authentication.type")
    _expect(problems, "deployment storage authentication", auth, "UserAssignedIdentity")
    _expect(problems, "site identity.type", _get(body, "identity.type"), "UserAssigned")
    if not _is_identity_attribute(infra, file, properties.get("keyVaultReferenceIdentity"), "id"):
        problems.append("site keyVaultReferenceIdentity is not the user-assigned identity's id")
    deployer = _identity_of(
        infra,
        file,
        _get(
            properties, "functionAppConfig.deployment.storage.authentication.userAssignedIdentityResourceId"
        ),
        "id",
    )
    if deployer != DEPLOYMENT_IDENTITY:
        problems.append(f"the deployment package is read with {deployer!r}, not the {DEPLOYMENT_IDENTITY!r}")
    tags = body.get("tags")
    service_tags = [a for a in tags.args if isinstance(a, dict)] if isinstance(tags, Call) else [tags]
    if not any(isinstance(t, dict) and t.get("azd-service-name") == "api" for t in service_tags):
        problems.append("site lacks the tag azd-service-name: 'api'")
    plan = _resource_of(infra, file, properties.get("serverFarmId"), "Microsoft.Web/serverfarms")
    if plan is None:
        problems.append("site serverFarmId is not a plan of this file")
    else:
        _expect(problems, "plan sku", plan.body.get("sku"), {"tier": "FlexConsumption", "name": "FC1"})
        _expect(problems, "plan reserved (Linux)", _get(plan.body, "properties.reserved"), True)
    return problems


def publishing_problems(infra: Infra) -> list[str]:
    problems: list[str] = []
    policies = {
        resource.body.get("name"): resource
        for _, resource in infra.resources("Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    }
    for name in ("ftp", "scm"):
        policy = policies.get(name)
        if policy is None:
            problems.append(f"no basicPublishingCredentialsPolicies '{name}'")
        else:
            _expect(
                problems, f"basic publishing '{name}' allow", _get(policy.body, "properties.allow"), False
            )
    return problems


def storage_problems(infra: Infra) -> list[str]:
    problems: list[str] = []
    accounts = infra.resources("Microsoft.Storage/storageAccounts")
    if not accounts:
        problems.append("no storage account")
    for _, account in accounts:
        properties = account.body.get("properties", {})
        where = f"storage {account.name}"
        _expect(problems, f"{where} minimumTlsVersion", properties.get("minimumTlsVersion"), "TLS1_2")
        _expect(problems, f"{where} allowSharedKeyAccess", properties.get("allowSharedKeyAccess"), False)
        _expect(
            problems, f"{where} supportsHttpsTrafficOnly", properties.get("supportsHttpsTrafficOnly"), True
        )
        _expect(problems, f"{where} allowBlobPublicAccess", properties.get("allowBlobPublicAccess"), False)
    return problems


def _storage_child_problems(infra: Infra, child_type: str, what: str, name: str) -> list[str]:
    """Exactly one ``child_type`` named ``name``, under a ``…Services`` parent under a storage account."""
    problems: list[str] = []
    found = _one(infra, child_type, problems)
    if found is None:
        return problems
    file, child = found
    service_type = child_type.rsplit("/", 1)[0]
    service_name = service_type.rsplit("/", 1)[1]
    _expect(problems, f"{what} name", infra.literal(file, child.body.get("name")), name)
    service = _resource_of(infra, file, child.body.get("parent"), service_type)
    if service is None:
        problems.append(
            f"the {what}'s parent is not a {service_name} resource (declare it top-level with parent:)"
        )
    elif _resource_of(infra, file, service.body.get("parent"), "Microsoft.Storage/storageAccounts") is None:
        problems.append(f"the {service_name}' parent is not a storage account of this file")
    return problems


def table_problems(infra: Infra) -> list[str]:
    return _storage_child_problems(infra, TABLE, "table", "scim")


def queue_problems(infra: Infra) -> list[str]:
    """The change-feed queue: made by the template, so the app's identity needs no right to create it."""
    return _storage_child_problems(infra, QUEUE, "queue", "scim-changes")


def _secure_params(infra: Infra) -> list[tuple[str, Declaration]]:
    return [(f, p) for f, b in infra.files.items() for p in b.params.values() if "secure" in p.decorators]


def token_parameter_problems(infra: Infra) -> list[str]:
    problems: list[str] = []
    token = infra[MAIN].params.get("scimBearerToken")
    if token is None:
        return ["main.bicep has no parameter scimBearerToken"]
    for file, bicep in infra.files.items():
        for param in bicep.params.values():
            secret_like = re.search(r"token|secret|password|key", param.name, re.IGNORECASE)
            # Not secrets: a URI or name of a secret, the naming hash (resourceToken), non-strings.
            not_secret = re.search(r"(Uri|Url|Name|Id)$|^resourceToken$", param.name)
            if param.type != "string" or not secret_like or not_secret:
                continue
            if "secure" not in param.decorators:
                problems.append(f"{file}: parameter {param.name} is not @secure()")
            if param.value is not None:
                problems.append(f"{file}: parameter {param.name} has a default value")
    secure = {p.name for _, p in _secure_params(infra)}
    for file, bicep in infra.files.items():
        for output in bicep.outputs.values():
            text = json.dumps(output.value, default=repr)
            if any(re.search(rf"\b{re.escape(name)}\b", text) for name in secure):
                problems.append(f"{file}: output {output.name} exposes a @secure() parameter")
    return problems


def key_vault_problems(infra: Infra) -> list[str]:
    problems: list[str] = []
    found = _one(infra, "Microsoft.KeyVault/vaults", problems)
    if found is None:
        return problems
    file, vault = found
    properties = vault.body.get("properties", {})
    _expect(problems, "key vault enableRbacAuthorization", properties.get("enableRbacAuthorization"), True)
    _expect(problems, "key vault enablePurgeProtection", properties.get("enablePurgeProtection"), True)
    _expect(problems, "key vault enableSoftDelete", properties.get("enableSoftDelete"), True)
    if "accessPolicies" in properties:
        problems.append("key vault has access policies; use RBAC only")
    # An unresolved Key Vault reference reaches the app as the literal '@Microsoft.KeyVault(SecretUri=…)'
    # text: the vault's name must not follow from the public host name, so it hashes the subscription id.
    _, vault_name = infra.resolve(file, vault.body.get("name"))
    if not (isinstance(vault_name, Interpolated) and "subscription().id" in vault_name.raw):
        problems.append(f"key vault name {vault_name!r} does not hash the subscription id")
    secrets = infra.resources("Microsoft.KeyVault/vaults/secrets")
    if len(secrets) != 1:
        return [*problems, f"expected one Key Vault secret, found {len(secrets)}"]
    secret_file, secret = secrets[0]
    if _resource_of(infra, secret_file, secret.body.get("parent"), "Microsoft.KeyVault/vaults") is None:
        problems.append("the secret's parent is not the vault")
    _, value = infra.resolve(secret_file, _get(secret.body, "properties.value"))
    _, top = infra.resolve(MAIN, Ref("scimBearerToken"))
    if value != top:
        problems.append(f"the secret's value is {value!r}, not the scimBearerToken parameter")
    return problems


def app_insights_problems(infra: Infra) -> list[str]:
    problems: list[str] = []
    found = _one(infra, "Microsoft.Insights/components", problems)
    if found is None:
        return problems
    _, component = found
    _expect(
        problems, "App Insights DisableLocalAuth", _get(component.body, "properties.DisableLocalAuth"), True
    )
    if _get(component.body, "properties.WorkspaceResourceId") is None:
        problems.append("App Insights is not workspace-based (no WorkspaceResourceId)")
    return problems


def _role_id(infra: Infra, file: str, role_definition: Any) -> str:
    if isinstance(role_definition, Call):
        role_definition = role_definition.args[-1] if role_definition.args else None
    value = infra.literal(file, role_definition)
    return value if isinstance(value, str) else repr(value)


APP_IDENTITY = "identity"
"""The identity the host and the SCIM code run as (AZURE_CLIENT_ID)."""
DEPLOYMENT_IDENTITY = "deploymentIdentity"
"""The identity that only reads and writes the deployment package."""

ROLES = [
    # (role id, role name, the identity holding it, the resources it is scoped to: type and Bicep symbol)
    (STORAGE_TABLE_DATA_CONTRIBUTOR, "Storage Table Data Contributor", APP_IDENTITY, [(TABLE, "scimTable")]),
    (
        STORAGE_QUEUE_DATA_MESSAGE_SENDER,
        "Storage Queue Data Message Sender",
        APP_IDENTITY,
        [(QUEUE, "changeQueue")],
    ),
    (
        STORAGE_BLOB_DATA_OWNER,
        "Storage Blob Data Owner",
        APP_IDENTITY,
        [(CONTAINER, "hostLeasesContainer"), (CONTAINER, "hostKeysContainer")],
    ),
    (
        STORAGE_BLOB_DATA_CONTRIBUTOR,
        "Storage Blob Data Contributor",
        DEPLOYMENT_IDENTITY,
        [(CONTAINER, "deploymentContainer")],
    ),
    (
        MONITORING_METRICS_PUBLISHER,
        "Monitoring Metrics Publisher",
        APP_IDENTITY,
        [("Microsoft.Insights/components", "appInsights")],
    ),
    (
        KEY_VAULT_SECRETS_USER,
        "Key Vault Secrets User",
        APP_IDENTITY,
        [("Microsoft.KeyVault/vaults/secrets", "bearerTokenSecret")],
    ),
]


def _scope_of(infra: Infra, file: str, assignment: Declaration, scope_type: str) -> tuple[str, str] | None:
    """``(type, Bicep symbol)`` of the resource an assignment is scoped to, if of ``scope_type``."""
    scope = assignment.body.get("scope")
    if not isinstance(scope, Ref) or _resource_of(infra, file, scope, scope_type) is None:
        return None
    return scope_type, str(scope.parts[0])


def role_assignment_problems(infra: Infra) -> list[str]:
    problems: list[str] = []
    assignments = infra.resources("Microsoft.Authorization/roleAssignments")
    for role_id, role_name, holder, scopes in ROLES:
        matching = [
            (file, a)
            for file, a in assignments
            if _role_id(infra, file, _get(a.body, "properties.roleDefinitionId")).endswith(role_id)
        ]
        if len(matching) != len(scopes):
            problems.append(
                f"{role_name} ({role_id}) is assigned {len(matching)} times, expected {len(scopes)}"
            )
            continue
        found = []
        for file, assignment in matching:
            principal = _identity_of(
                infra, file, _get(assignment.body, "properties.principalId"), "properties.principalId"
            )
            if principal != holder:
                problems.append(f"{role_name} is assigned to {principal!r}, not the {holder!r}")
            _expect(
                problems,
                f"{role_name} principalType",
                _get(assignment.body, "properties.principalType"),
                "ServicePrincipal",
            )
            scope = _scope_of(infra, file, assignment, scopes[0][0])
            if scope is None:
                problems.append(
                    f"{role_name} is not scoped to a {scopes[0][0]}: scope {assignment.body.get('scope')!r}"
                )
            found.append(scope)
        if all(found) and sorted(found, key=repr) != sorted(scopes, key=repr):
            problems.append(f"{role_name} is scoped to {sorted(found, key=repr)}, expected {sorted(scopes)}")
    for symbol, name in (
        ("hostLeasesContainer", "azure-webjobs-hosts"),
        ("hostKeysContainer", "azure-webjobs-secrets"),
    ):
        declared = [r for f, r in infra.resources(CONTAINER) if r.name == symbol]
        names = [infra.resolve("app/resources.bicep", r.body.get("name"))[1] for r in declared]
        if names != [name]:
            problems.append(f"{symbol} is not the host's container {name!r}: {names!r}")
    # Any principal, any Table, Queue or Blob data role (not only the identity's): one table, queue or
    # container, never more.
    for file, assignment in assignments:
        role_id = _role_id(infra, file, _get(assignment.body, "properties.roleDefinitionId"))
        scope = assignment.body.get("scope")
        for data_role, scope_type in DATA_ROLES_BELOW_ACCOUNT.items():
            if role_id.endswith(data_role) and _resource_of(infra, file, scope, scope_type) is None:
                problems.append(
                    f"{file}: {assignment.name} assigns the data role {data_role} above a single "
                    f"{ {TABLE: 'table', QUEUE: 'queue', CONTAINER: 'container'}[scope_type] }: scope {scope!r}"
                )
    return problems


def _endpoint_problems(infra: Infra, file: str, settings: dict[str, Any]) -> list[str]:
    """SCIM_STORAGE_TABLE/QUEUE_ENDPOINT: https://<account>.table|queue.<suffix>, of the same account."""
    problems: list[str] = []
    accounts: dict[str, str] = {}
    for name, service in (("SCIM_STORAGE_TABLE_ENDPOINT", "table"), ("SCIM_STORAGE_QUEUE_ENDPOINT", "queue")):
        _, endpoint = infra.resolve(file, settings[name])
        match = isinstance(endpoint, Interpolated) and re.fullmatch(
            rf"https://(\$\{{[\w.]+\}})\.{service}\..+", endpoint.raw
        )
        if not match:
            problems.append(f"{name} is not https://<account>.{service}.<suffix>: {endpoint!r}")
        else:
            accounts[name] = match.group(1)
    if len(set(accounts.values())) > 1:
        problems.append(f"the table and the queue endpoints name different accounts: {accounts}")
    return problems


def app_settings_problems(infra: Infra) -> list[str]:
    problems: list[str] = []
    file, settings = _app_settings(infra)
    problems += [f"app setting {name} is missing" for name in sorted(REQUIRED_APP_SETTINGS - settings.keys())]
    problems += [
        f"app setting {name} must not be set" for name in sorted(FORBIDDEN_APP_SETTINGS & settings.keys())
    ]
    if not {"AzureWebJobsStorage__blobServiceUri", "AzureWebJobsStorage__accountName"} & settings.keys():
        problems.append(
            "no AzureWebJobsStorage__blobServiceUri (or __accountName): host storage is not identity-based"
        )
    if problems:
        return problems

    def literal(name: str) -> Any:
        return infra.literal(file, settings[name])

    _expect(problems, "SCIM_TABLE_NAME", literal("SCIM_TABLE_NAME"), "scim")
    _expect(problems, "SCIM_CHANGE_QUEUE", literal("SCIM_CHANGE_QUEUE"), "scim-changes")
    _expect(
        problems,
        "AzureWebJobsStorage__credential",
        literal("AzureWebJobsStorage__credential"),
        "managedidentity",
    )
    for name in ("AZURE_CLIENT_ID", "AzureWebJobsStorage__clientId"):
        if not _is_identity_attribute(infra, file, settings[name], "properties.clientId"):
            problems.append(f"{name} is not the user-assigned identity's client id")
    client = _interpolated_ref(
        settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"], "ClientId={};Authorization=AAD"
    )
    if client is None or not _is_identity_attribute(infra, file, client, "properties.clientId"):
        problems.append(
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING is not ClientId=<identity client id>;Authorization=AAD"
        )
    problems += _endpoint_problems(infra, file, settings)
    uri = _interpolated_ref(settings["SCIM_BEARER_TOKEN"], "@Microsoft.KeyVault(SecretUri={})")
    if uri is None:
        problems.append(f"SCIM_BEARER_TOKEN is not a Key Vault reference: {settings['SCIM_BEARER_TOKEN']!r}")
    else:
        secret_file, secret_uri = infra.resolve(file, uri)
        secret = _resource_of(infra, secret_file, secret_uri, "Microsoft.KeyVault/vaults/secrets")
        if (
            secret is None
            or not isinstance(secret_uri, Ref)
            or secret_uri.parts[1:] != ["properties", "secretUri"]
        ):
            problems.append(
                f"SCIM_BEARER_TOKEN does not reference a secret's versionless secretUri: {secret_uri!r}"
            )
    base = settings["SCIM_PUBLIC_BASE_URL"]
    host = _interpolated_ref(base, "https://{}/scim/v2")
    if (
        host is None
        or _resource_of(infra, file, host, "Microsoft.Web/sites") is None
        or host.parts[-1] != "defaultHostName"
    ):
        problems.append(f"SCIM_PUBLIC_BASE_URL is not https://<site default host name>/scim/v2: {base!r}")
    problems += _main_parameter_problems(
        infra, file, settings["SCIM_ENTRA_TENANT_ID"], "SCIM_ENTRA_TENANT_ID", ""
    )
    # Operator-declared schema extensions: both settings are parameters the operator sets through azd.
    problems += _main_parameter_problems(infra, file, settings["SCIM_SCHEMA_FILE"], "SCIM_SCHEMA_FILE", "")
    problems += _main_parameter_problems(
        infra,
        file,
        settings["SCIM_UNKNOWN_ATTRIBUTES"],
        "SCIM_UNKNOWN_ATTRIBUTES",
        "reject",
        ["reject", "ignore"],
    )
    return problems


def _main_parameter_problems(
    infra: Infra, file: str, value: Any, setting: str, default: str, allowed: list[str] | None = None
) -> list[str]:
    """An app setting that is a main.bicep parameter with this default (and these allowed values)."""
    param_file, ref = infra.resolve(file, value)
    param = infra[param_file].params.get(ref.path) if isinstance(ref, Ref) else None
    if param_file != MAIN or param is None or param.value != default:
        return [f"{setting} is not a main.bicep parameter defaulting to {default!r}: {ref!r}"]
    if allowed is not None and param.decorators.get("allowed") != (allowed,):
        return [
            f"{setting}: parameter {param.name} allows {param.decorators.get('allowed')!r}, not {allowed!r}"
        ]
    return []


def _scaled_parameter(infra: Infra, file: str, value: Any) -> tuple[int, str, str] | None:
    """``(factor, file, parameter)`` when ``value`` is ``string(<parameter>)`` or ``string(<factor> * <parameter>)``.

    Variables and module parameters are followed to the top-level parameter (:meth:`Infra.resolve`); a literal,
    or anything but a whole-number multiple of one parameter, gives ``None``.
    """
    if not (isinstance(value, Call) and value.name == "string" and len(value.args) == 1):
        return None
    file, inner = infra.resolve(file, value.args[0])
    factor = 1
    if isinstance(inner, Expr):
        product = re.fullmatch(r"(\d+)\s*\*\s*([A-Za-z_]\w*)|([A-Za-z_]\w*)\s*\*\s*(\d+)", inner.text)
        if inner.kind != "binary_expression" or product is None:
            return None
        factor = int(product.group(1) or product.group(4))
        file, inner = infra.resolve(file, Ref(product.group(2) or product.group(3)))
    if not isinstance(inner, Ref) or inner.path not in infra[file].params:
        return None
    return factor, file, inner.path


def body_limit_problems(infra: Infra) -> list[str]:
    """SCIM_MAX_BODY_BYTES is a main.bicep parameter; FUNCTIONS_REQUEST_BODY_SIZE_LIMIT is 4 x that parameter.

    Both come from the one parameter, so raising the app's limit raises the host's with it, and the host's stays
    above the app's (Azure/azure-functions-host#10519: over the host's limit, an empty 500 instead of the app's
    413). The parameter defaults to the app's own default, and its ``@maxValue`` keeps the host's limit within
    the 100 MB request length of Azure Functions.
    """
    file, settings = _app_settings(infra)
    app = _scaled_parameter(infra, file, settings.get("SCIM_MAX_BODY_BYTES"))
    host = _scaled_parameter(infra, file, settings.get("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"))
    problems: list[str] = []
    if app is None or app[0] != 1 or app[1] != MAIN:
        return [
            f"SCIM_MAX_BODY_BYTES is not string(<main.bicep parameter>): {settings.get('SCIM_MAX_BODY_BYTES')!r}"
        ]
    _, _, name = app
    if host is None or host[1:] != (MAIN, name):
        problems.append(
            f"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT is not derived from the parameter {name}: {host!r}"
        )
    elif host[0] != HOST_LIMIT_FACTOR:
        problems.append(
            f"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT is {host[0]} x {name}, not {HOST_LIMIT_FACTOR} x (above the app's)"
        )
    param = infra[MAIN].params[name]
    _expect(problems, f"{name} default", param.value, Settings.max_body_bytes)
    ceiling = param.decorators.get("maxValue")
    if (
        ceiling is None
        or not isinstance(ceiling[0], int)
        or HOST_LIMIT_FACTOR * ceiling[0] > MAX_REQUEST_LENGTH
    ):
        problems.append(
            f"{name} @maxValue {ceiling!r}: {HOST_LIMIT_FACTOR} x it must stay within {MAX_REQUEST_LENGTH} bytes"
        )
    return problems


def tag_and_output_problems(infra: Infra) -> list[str]:
    problems: list[str] = []
    main = infra[MAIN]
    _expect(problems, "main.bicep targetScope", main.target_scope, "subscription")
    tags = infra.literal(MAIN, Ref("tags"))
    if not isinstance(tags, dict) or tags.get("azd-env-name") != Ref("environmentName"):
        problems.append(f"main.bicep tags lack azd-env-name: environmentName: {tags!r}")
    for file, bicep in infra.files.items():
        for resource in bicep.resources.values():
            if "location" in resource.body and "tags" not in resource.body:
                problems.append(f"{file}: resource {resource.name} has no tags")
    # The change feed's consumers need to know where the queue is.
    required = ("AZURE_LOCATION", "AZURE_FUNCTION_APP_NAME", "SCIM_TENANT_URL")
    for name in (*required, "SCIM_STORAGE_QUEUE_ENDPOINT", "SCIM_CHANGE_QUEUE"):
        if name not in main.outputs:
            problems.append(f"main.bicep has no output {name}")
    if "SCIM_TENANT_URL" in main.outputs:
        file, url = infra.resolve(MAIN, main.outputs["SCIM_TENANT_URL"].value)
        host = _interpolated_ref(url, "https://{}/scim/v2")
        if host is None or _resource_of(infra, file, host, "Microsoft.Web/sites") is None:
            problems.append(f"SCIM_TENANT_URL is not https://<site default host name>/scim/v2: {url!r}")
    return problems


CHECKS: dict[str, Callable[[Infra], list[str]]] = {
    "site": site_problems,
    "publishing": publishing_problems,
    "storage": storage_problems,
    "table": table_problems,
    "queue": queue_problems,
    "token_parameter": token_parameter_problems,
    "key_vault": key_vault_problems,
    "app_insights": app_insights_problems,
    "role_assignments": role_assignment_problems,
    "app_settings": app_settings_problems,
    "body_limits": body_limit_problems,
    "tags_and_outputs": tag_and_output_problems,
}


SETTINGS_HEADING = "\n## Settings\n"
"""The heading of the table of ``SCIM_*`` settings in docs/configuration.md."""


def documented_settings(configuration_doc: str) -> set[str]:
    """Variable names in the first column of the table under docs/configuration.md's ``## Settings``.

    Only that section counts (up to the next ``##`` heading): a name mentioned in prose or in
    another table (the limits, the command line's ``SCIM_GRAPH_*``) is not documentation of an app
    setting.
    """
    assert SETTINGS_HEADING in configuration_doc, "docs/configuration.md has no '## Settings' section"
    section = configuration_doc.split(SETTINGS_HEADING, 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            names.update(re.findall(r"`([A-Za-z][A-Za-z0-9_]*)`", line.split("|")[1]))
    return names


def documentation_problems(infra: Infra, configuration_doc: str) -> list[str]:
    """``SCIM_*`` app settings of the template that docs/configuration.md's settings table lacks."""
    _, settings = _app_settings(infra)
    documented = documented_settings(configuration_doc)
    return [
        f"app setting {name} is not in docs/configuration.md's settings table"
        for name in sorted(settings)
        if name.startswith("SCIM_") and name not in documented
    ]


# --------------------------------------------------------------------------------------------- tests


def test_infra_has_the_expected_files(infra: Infra) -> None:
    assert set(infra.files) == {"main.bicep", "app/api.bicep", "app/resources.bicep"}
    modules = {infra.module_target(MAIN, m) for m in infra[MAIN].modules.values()}
    assert modules == {"app/api.bicep", "app/resources.bicep"}


@pytest.mark.parametrize(
    "path", sorted(INFRA.rglob("*.bicep")), ids=lambda p: p.relative_to(INFRA).as_posix()
)
def test_bicep_parses_without_errors(path: Path) -> None:
    assert syntax_errors(path.read_bytes()) == []


def test_the_syntax_check_reports_errors() -> None:
    assert syntax_errors(b"param a string\nresource x 'A/b@1' = {\n  name: 'x'\n") != []
    assert syntax_errors(b"var a = {\n  b: \n}\n") != []
    assert syntax_errors(b"var a = {\n  b: 'c'\n}\n") == []


@pytest.mark.parametrize("name", CHECKS)
def test_template_property(infra: Infra, name: str) -> None:
    assert CHECKS[name](infra) == []


def test_scim_app_settings_are_documented_in_docs_configuration(infra: Infra) -> None:
    assert documentation_problems(infra, CONFIGURATION_DOC.read_text(encoding="utf-8")) == []


def test_parameters_file_matches_main_bicep(infra: Infra) -> None:
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = infra[MAIN].params
    assert set(parameters) <= set(declared), (
        "main.parameters.json sets parameters main.bicep does not declare"
    )
    required = {name for name, p in declared.items() if p.value is None}
    assert required <= set(parameters), "a parameter without default is missing from main.parameters.json"
    for name, param in declared.items():
        if "secure" in param.decorators and name in parameters:
            # Never a literal secret in the repository: azd substitutes (or prompts for) the value.
            assert re.fullmatch(r"\$\{[A-Z][A-Z0-9_]*\}", parameters[name]["value"]), name
    assert parameters["scimBearerToken"]["value"] == "${SCIM_BEARER_TOKEN}"
    # The schema settings come from the azd environment under their app-setting names (docs/deploy-azure.md);
    # azd substitutes an unset variable with '' (or the default after '='), which @allowed must accept.
    assert parameters["schemaFile"]["value"] == "${SCIM_SCHEMA_FILE}"
    assert parameters["unknownAttributes"]["value"] == "${SCIM_UNKNOWN_ATTRIBUTES=reject}"


def test_azure_yaml_describes_the_function_service() -> None:
    project = yaml.safe_load((ROOT / "azure.yaml").read_text())
    assert project["infra"]["path"] == "infra"
    assert project["infra"].get("provider", "bicep") == "bicep"
    assert project["services"] == {"api": {"project": ".", "language": "python", "host": "function"}}


def _mutated(tmp_path: Path, file: str, old: str, new: str) -> Infra:
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy)
    target = copy / file
    text = target.read_text()
    assert old in text, f"mutation anchor not found in {file}: {old!r}"
    target.write_text(text.replace(old, new, 1))
    return Infra(copy)


QUEUE_ROLE = "  scope: changeQueue\n  properties: {\n    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataMessageSenderRoleId)\n    principalId: identity.properties.principalId"
# Another principal reading every queue of the account: the identity's own roles stay right.
ACCOUNT_QUEUE_READER = """resource queueReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, 'readers', 'queue-reader')
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '19e7f393-937e-4f77-808e-94535e297925')
    principalId: '00000000-0000-0000-0000-000000000000'
    principalType: 'Group'
  }
}

resource metricsPublisher """

TABLE_ROLE = "  scope: scimTable\n  properties: {\n    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRoleId)\n    principalId: identity.properties.principalId"

MUTATIONS = [
    # (check, file, old, new): each must make the check report a problem.
    ("site", "app/api.bicep", "httpsOnly: true", "httpsOnly: false"),
    ("site", "app/api.bicep", "minTlsVersion: '1.2'", "minTlsVersion: '1.0'"),
    ("site", "app/api.bicep", "ftpsState: 'Disabled'", "ftpsState: 'AllAllowed'"),
    ("site", "app/api.bicep", "version: '3.13'", "version: '3.12'"),
    (
        "site",
        "app/api.bicep",
        "keyVaultReferenceIdentity: identityId",
        "keyVaultReferenceIdentity: 'SystemAssigned'",
    ),
    ("site", "app/api.bicep", "'azd-service-name': 'api'", "'azd-service-name': 'web'"),
    ("site", "app/api.bicep", "name: 'FC1'", "name: 'Y1'"),
    ("publishing", "app/api.bicep", "allow: false", "allow: true"),
    ("storage", "app/resources.bicep", "allowSharedKeyAccess: false", "allowSharedKeyAccess: true"),
    ("storage", "app/resources.bicep", "minimumTlsVersion: 'TLS1_2'", "minimumTlsVersion: 'TLS1_0'"),
    ("storage", "app/resources.bicep", "supportsHttpsTrafficOnly: true", "supportsHttpsTrafficOnly: false"),
    ("storage", "app/resources.bicep", "allowBlobPublicAccess: false", "allowBlobPublicAccess: true"),
    ("table", "app/resources.bicep", "var scimTableName = 'scim'", "var scimTableName = 'other'"),
    ("table", "app/resources.bicep", "  parent: tableService\n", "  parent: blobService\n"),
    ("queue", "app/resources.bicep", "var changeQueueName = 'scim-changes'", "var changeQueueName = 'other'"),
    ("queue", "app/resources.bicep", "  parent: queueService\n", "  parent: tableService\n"),
    (
        "queue",
        "app/resources.bicep",
        "resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {\n  parent: storage\n",
        "resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {\n  parent: blobService\n",
    ),
    ("token_parameter", "main.bicep", "@secure()\n@minLength(32)", "@minLength(32)"),
    ("token_parameter", "main.bicep", "param scimBearerToken string", "param scimBearerToken string = 'x'"),
    (
        "token_parameter",
        "app/resources.bicep",
        "output keyVaultName string",
        "output leak string = scimBearerToken\noutput keyVaultName string",
    ),
    ("key_vault", "app/resources.bicep", "enableRbacAuthorization: true", "enableRbacAuthorization: false"),
    ("key_vault", "app/resources.bicep", "enablePurgeProtection: true", "enablePurgeProtection: false"),
    ("key_vault", "app/resources.bicep", "value: scimBearerToken", "value: 'not-the-parameter'"),
    ("key_vault", "app/resources.bicep", "name: keyVaultName", "name: 'kv-${resourceToken}'"),
    ("app_insights", "app/resources.bicep", "DisableLocalAuth: true", "DisableLocalAuth: false"),
    ("role_assignments", "app/resources.bicep", "  scope: scimTable\n", "  scope: storage\n"),
    (
        "role_assignments",
        "app/resources.bicep",
        f"'{STORAGE_TABLE_DATA_CONTRIBUTOR}'",
        "'acdd72a7-3385-48ef-bd42-f606fba81ae7'",
    ),
    (
        "role_assignments",
        "app/resources.bicep",
        TABLE_ROLE,
        TABLE_ROLE.replace("identity.properties.principalId", "'00000000-0000-0000-0000-000000000000'"),
    ),
    ("role_assignments", "app/resources.bicep", "  scope: bearerTokenSecret\n", "  scope: keyVault\n"),
    ("role_assignments", "app/resources.bicep", "  scope: changeQueue\n", "  scope: storage\n"),
    ("role_assignments", "app/resources.bicep", "  scope: changeQueue\n", "  scope: queueService\n"),
    (
        "role_assignments",
        "app/resources.bicep",
        f"'{STORAGE_QUEUE_DATA_MESSAGE_SENDER}'",
        "'974c5e8b-45b9-4653-ba55-5f855dd0fb88'",  # Storage Queue Data Contributor: more than sending
    ),
    (
        "role_assignments",
        "app/resources.bicep",
        QUEUE_ROLE,
        QUEUE_ROLE.replace("identity.properties.principalId", "'00000000-0000-0000-0000-000000000000'"),
    ),
    ("role_assignments", "app/resources.bicep", "resource metricsPublisher ", ACCOUNT_QUEUE_READER),
    # Blob rights: the host's containers only, and the deployment package for its own identity only.
    ("role_assignments", "app/resources.bicep", "  scope: hostLeasesContainer\n", "  scope: storage\n"),
    ("role_assignments", "app/resources.bicep", "  scope: hostKeysContainer\n", "  scope: blobService\n"),
    ("role_assignments", "app/resources.bicep", "  scope: deploymentContainer\n", "  scope: storage\n"),
    (
        "role_assignments",
        "app/resources.bicep",
        "  scope: hostKeysContainer\n",
        "  scope: deploymentContainer\n",
    ),
    (
        "role_assignments",
        "app/resources.bicep",
        "principalId: deploymentIdentity.properties.principalId",
        "principalId: identity.properties.principalId",
    ),
    (
        "role_assignments",
        "app/resources.bicep",
        "var hostKeysContainerName = 'azure-webjobs-secrets'",
        "var hostKeysContainerName = 'keys'",
    ),
    (
        "site",
        "app/api.bicep",
        "userAssignedIdentityResourceId: deploymentIdentityId",
        "userAssignedIdentityResourceId: identityId",
    ),
    ("app_settings", "app/api.bicep", "    SCIM_TABLE_NAME: tableName\n", ""),
    ("app_settings", "app/api.bicep", "    SCIM_CHANGE_QUEUE: queueName\n", ""),
    ("app_settings", "app/api.bicep", "    SCIM_STORAGE_QUEUE_ENDPOINT: queueEndpoint\n", ""),
    ("app_settings", "app/api.bicep", "SCIM_CHANGE_QUEUE: queueName", "SCIM_CHANGE_QUEUE: 'off'"),
    (
        "app_settings",
        "app/api.bicep",
        "SCIM_STORAGE_QUEUE_ENDPOINT: queueEndpoint",
        "SCIM_STORAGE_QUEUE_ENDPOINT: tableEndpoint",
    ),
    (
        "app_settings",
        "app/resources.bicep",
        "'https://${storage.name}.queue.${environment().suffixes.storage}'",
        "'https://${logAnalytics.name}.queue.${environment().suffixes.storage}'",
    ),
    ("app_settings", "app/api.bicep", "SCIM_TABLE_NAME: tableName", "SCIM_TABLE_NAME: 'tableName'"),
    (
        "app_settings",
        "app/resources.bicep",
        "bearerTokenSecret.properties.secretUri",
        "bearerTokenSecret.properties.secretUriWithVersion",
    ),
    (
        "app_settings",
        "app/api.bicep",
        "'@Microsoft.KeyVault(SecretUri=${bearerTokenSecretUri})'",
        "bearerTokenSecretUri",
    ),
    (
        "app_settings",
        "app/api.bicep",
        "AzureWebJobsStorage__credential: 'managedidentity'",
        "AzureWebJobsStorage: 'UseDevelopmentStorage=true'",
    ),
    ("app_settings", "app/api.bicep", "AZURE_CLIENT_ID: identityClientId", "AZURE_CLIENT_ID: identityId"),
    (
        "app_settings",
        "app/api.bicep",
        "'ClientId=${identityClientId};Authorization=AAD'",
        "'Authorization=AAD'",
    ),
    (
        "app_settings",
        "app/api.bicep",
        "SCIM_PUBLIC_BASE_URL: 'https://${site.properties.defaultHostName}/scim/v2'",
        "SCIM_PUBLIC_BASE_URL: 'https://${site.properties.defaultHostName}/api'",
    ),
    (
        "app_settings",
        "main.bicep",
        "param scimEntraTenantId string = ''",
        "param scimEntraTenantId string = 'contoso'",
    ),
    ("app_settings", "app/api.bicep", "    SCIM_SCHEMA_FILE: schemaFile\n", ""),
    ("app_settings", "app/api.bicep", "    SCIM_UNKNOWN_ATTRIBUTES: unknownAttributes\n", ""),
    ("app_settings", "app/api.bicep", "SCIM_SCHEMA_FILE: schemaFile", "SCIM_SCHEMA_FILE: 'schema.yaml'"),
    (
        "app_settings",
        "app/api.bicep",
        "SCIM_UNKNOWN_ATTRIBUTES: unknownAttributes",
        "SCIM_UNKNOWN_ATTRIBUTES: schemaFile",
    ),
    ("app_settings", "main.bicep", "param schemaFile string = ''", "param schemaFile string = 'x.yaml'"),
    (
        "app_settings",
        "main.bicep",
        "param unknownAttributes string = 'reject'",
        "param unknownAttributes string = 'ignore'",
    ),
    ("app_settings", "main.bicep", "  'reject'\n  'ignore'\n", "  'reject'\n  'ignore'\n  'drop'\n"),
    # The host's body limit: from the app's limit, and above it.
    (
        "body_limits",
        "app/api.bicep",
        "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT: string(hostBodySizeLimit)",
        "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT: '4194304'",
    ),
    (
        "body_limits",
        "app/api.bicep",
        "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT: string(hostBodySizeLimit)",
        "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT: string(4194304)",
    ),
    (
        "body_limits",
        "app/api.bicep",
        "var hostBodySizeLimit = 4 * scimMaxBodyBytes",
        "var hostBodySizeLimit = scimMaxBodyBytes",
    ),
    (
        "body_limits",
        "app/api.bicep",
        "var hostBodySizeLimit = 4 * scimMaxBodyBytes",
        "var hostBodySizeLimit = 4 * maximumInstanceCount",
    ),
    (
        "body_limits",
        "app/api.bicep",
        "var hostBodySizeLimit = 4 * scimMaxBodyBytes",
        "var hostBodySizeLimit = 4 * 1048576",
    ),
    (
        "body_limits",
        "app/api.bicep",
        "SCIM_MAX_BODY_BYTES: string(scimMaxBodyBytes)",
        "SCIM_MAX_BODY_BYTES: '1048576'",
    ),
    (
        "body_limits",
        "main.bicep",
        "param scimMaxBodyBytes int = 1048576",
        "param scimMaxBodyBytes int = 4194304",
    ),
    ("body_limits", "main.bicep", "@maxValue(26214400)", "@maxValue(104857600)"),
    ("tags_and_outputs", "main.bicep", "'azd-env-name': environmentName", "'env': environmentName"),
    ("tags_and_outputs", "main.bicep", "output SCIM_TENANT_URL string", "output TENANT_URL string"),
    ("tags_and_outputs", "main.bicep", "output SCIM_CHANGE_QUEUE string", "output CHANGE_QUEUE string"),
    (
        "tags_and_outputs",
        "app/resources.bicep",
        "  location: location\n  tags: tags\n",
        "  location: location\n",
    ),
]


def _mutation_id(mutation: tuple[str, str, str, str]) -> str:
    check, _, old, _ = mutation
    return f"{check}-{re.sub(r'[^A-Za-z0-9]+', '_', old).strip('_')[:48]}"


@pytest.mark.parametrize(("check", "file", "old", "new"), MUTATIONS, ids=[_mutation_id(m) for m in MUTATIONS])
def test_each_check_fails_on_a_broken_template(
    tmp_path: Path, check: str, file: str, old: str, new: str
) -> None:
    assert CHECKS[check](_mutated(tmp_path, file, old, new)) != []


def test_every_check_has_a_mutation() -> None:
    assert {m[0] for m in MUTATIONS} == set(CHECKS)


def test_the_queue_sender_at_account_scope_is_reported(tmp_path: Path) -> None:
    problems = role_assignment_problems(
        _mutated(tmp_path, "app/resources.bicep", "  scope: changeQueue\n", "  scope: storage\n")
    )
    assert problems == [
        f"Storage Queue Data Message Sender is not scoped to a {QUEUE}: scope Ref(path='storage')",
        f"app/resources.bicep: queueMessageSender assigns the data role {STORAGE_QUEUE_DATA_MESSAGE_SENDER} "
        "above a single queue: scope Ref(path='storage')",
    ]


def test_any_principal_with_a_queue_role_at_account_scope_is_reported(tmp_path: Path) -> None:
    """Not only the app's identity: a queue reader on the whole account would read the change feed too."""
    infra = _mutated(tmp_path, "app/resources.bicep", "resource metricsPublisher ", ACCOUNT_QUEUE_READER)
    assert role_assignment_problems(infra) == [
        "app/resources.bicep: queueReader assigns the data role 19e7f393-937e-4f77-808e-94535e297925 "
        "above a single queue: scope Ref(path='storage')"
    ]


def test_the_documentation_check_fails_on_an_undocumented_setting(tmp_path: Path) -> None:
    infra = _mutated(
        tmp_path,
        "app/api.bicep",
        "    SCIM_TABLE_NAME:",
        "    SCIM_NOT_DOCUMENTED: 'x'\n    SCIM_TABLE_NAME:",
    )
    assert documentation_problems(infra, CONFIGURATION_DOC.read_text(encoding="utf-8")) == [
        "app setting SCIM_NOT_DOCUMENTED is not in docs/configuration.md's settings table"
    ]


def test_the_settings_table_is_read() -> None:
    documented = documented_settings(CONFIGURATION_DOC.read_text(encoding="utf-8"))
    assert {"SCIM_BEARER_TOKEN", "SCIM_TABLE_NAME", "SCIM_JWT_ISSUER", "SCIM_JWKS_URL"} <= documented
    assert "SCIM_GRAPH_TENANT" not in documented, "the command line's settings are not app settings"


def test_the_settings_table_is_the_only_source() -> None:
    """A name outside the ``## Settings`` section, or in another column, does not count."""
    page = (
        "# Configuration\n\nProse naming `SCIM_IN_PROSE`.\n\n## Settings\n\n"
        "| Variable | Default | Meaning |\n|---|---|---|\n| `SCIM_A`, `SCIM_B` | `x` | see `SCIM_IN_MEANING` |\n"
        "\n## Fixed limits\n\n| `SCIM_AFTER` | 1 | 2 |\n"
    )
    assert documented_settings(page) == {"SCIM_A", "SCIM_B"}
    with pytest.raises(AssertionError, match="no '## Settings' section"):
        documented_settings("# Configuration\n\n| `SCIM_A` | x | y |\n")


# ------------------------------------------------------------------------------------------ checkov


def _checkov_skips() -> list[tuple[str, str]]:
    """``(check id, justification)`` for every entry of infra/.checkov.yaml's skip-check list."""
    entries = []
    for line in CHECKOV_CONFIG.read_text().splitlines():
        match = re.fullmatch(r"\s*-\s*(\S+)\s*(?:#\s*(.*))?", line)
        if match:
            entries.append((match.group(1), (match.group(2) or "").strip()))
    return entries


def test_every_checkov_skip_is_justified() -> None:
    skips = _checkov_skips()
    assert yaml.safe_load(CHECKOV_CONFIG.read_text())["skip-check"] == [check for check, _ in skips]
    assert len({check for check, _ in skips}) == len(skips), "a check is skipped twice"
    for check, reason in skips:
        assert re.fullmatch(r"CKV2?_AZURE_\d+", check), check
        assert len(reason.split()) >= 5, f"{check} is skipped without a justification comment"


def _run_checkov(directory: Path) -> dict[str, Any]:
    command = [
        str(CHECKOV),
        "-d",
        str(directory),
        "--framework",
        "bicep",
        "--skip-download",
        "--quiet",
        "--compact",
        "--config-file",
        str(directory / ".checkov.yaml"),
        "--output",
        "json",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)  # noqa: S603 - fixed argv
    assert done.returncode in (0, 1), f"checkov exited {done.returncode}: {done.stderr[-2000:]}"
    report = json.loads(done.stdout)
    reports = report if isinstance(report, list) else [report]
    bicep = [r for r in reports if r.get("check_type") == "bicep"]
    assert len(bicep) == 1, f"no bicep report from checkov: {done.stdout[:2000]}"
    return bicep[0]


def _failed(report: dict[str, Any]) -> list[str]:
    return [
        f"{c['check_id']} {c['check_name']} — {c['resource']} ({c['file_path']}:{c['file_line_range'][0]})"
        for c in report.get("results", {}).get("failed_checks", [])
    ]


def _require_checkov() -> None:
    if not CHECKOV.exists():
        pytest.skip(
            f"{CHECKOV.relative_to(ROOT)} not found: python3 -m venv .venv-checkov && "
            f".venv-checkov/bin/pip install {CHECKOV_PIN} (the Makefile does this)"
        )


@pytest.mark.integration
def test_checkov() -> None:
    _require_checkov()
    report = _run_checkov(INFRA)
    summary = report["summary"]
    # checkov exits 0 on a file it cannot parse (azure-notes §4.3): count, don't trust the exit code.
    assert summary["parsing_errors"] == 0, summary
    assert _failed(report) == []
    assert summary["failed"] == 0, summary
    assert summary["resource_count"] > 0 and summary["passed"] > 0, f"checkov checked nothing: {summary}"


@pytest.mark.integration
def test_checkov_reports_failures_and_parse_errors(tmp_path: Path) -> None:
    """The harness above can fail: checkov still flags an insecure property and counts a broken file."""
    _require_checkov()
    copy = _mutated(tmp_path, "app/api.bicep", "httpsOnly: true", "httpsOnly: false").root
    (copy / "broken.bicep").write_text("resource x 'Microsoft.Web/sites@2024-04-01' = {\n  name: 'x'\n")
    report = _run_checkov(copy)
    assert report["summary"]["parsing_errors"] >= 1, report["summary"]
    assert any(line.startswith("CKV_AZURE_70 ") for line in _failed(report)), _failed(report)
