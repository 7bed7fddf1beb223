"""``python -m scim token|entra`` end to end: msal and Graph over real HTTPS, the endpoint over real HTTP.

Microsoft Graph and the identity platform cannot be reached from here, so the
commands run against ``tools.graph_standin`` (HTTPS on loopback, answering with
the documented shapes, paging, throttling and errors). Its Test Connection and
provision on demand call the dev server — this project's endpoint — for real.
"""

from __future__ import annotations

import json
import stat

import pytest
import requests

from scim.__main__ import main
from tests.conftest import TOKEN
from tools.graph_standin import DEFAULT_CLIENT_SECRET, DEFAULT_SECRET_CLIENT_ID, GraphStandIn

APP = "Contoso SCIM"


@pytest.fixture(scope="module")
def graph():
    with GraphStandIn(auto_approve_after=0.2, on_demand_rate=None) as standin:
        yield standin


@pytest.fixture
def cli(graph, tmp_path, monkeypatch, capsys):
    """Run ``python -m scim`` in-process with the stand-in's settings; returns (status, stdout, stderr)."""
    monkeypatch.setenv("SCIM_GRAPH_URL", graph.graph_url)
    monkeypatch.setenv("SCIM_GRAPH_AUTHORITY", graph.authority_host)
    monkeypatch.setenv("SCIM_GRAPH_TENANT", graph.tenant_id)
    monkeypatch.setenv("SCIM_GRAPH_CLIENT_ID", graph.client_id)
    monkeypatch.setenv("SCIM_GRAPH_TOKEN_CACHE", str(tmp_path / "cache.json"))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", graph.ca_file)
    monkeypatch.setenv("SCIM_BEARER_TOKEN", TOKEN)

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        status = main(list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    return run


def scim_get(base: str, path: str) -> dict:
    response = requests.get(base + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    return response.json()


def test_token_new_prints_a_token_and_its_digest(cli):
    status, out, _ = cli("token", "new", "--json")
    fresh = json.loads(out)
    assert status == 0 and len(fresh["token"]) >= 43 and len(fresh["sha256"]) == 64


def test_token_check_passes_with_the_right_token_and_explains_a_wrong_one(cli, http_base_url, monkeypatch):
    status, out, err = cli("token", "check", http_base_url)
    assert status == 0, out + err
    assert "ok    probe" in out and "empty ListResponse" in out and "would pass" in err
    monkeypatch.setenv("SCIM_BEARER_TOKEN", "not-the-token")
    status, out, err = cli("token", "check", http_base_url)
    assert status == 1 and "FAIL  probe" in out and "401" in out and "SCIM_BEARER_TOKEN" in out
    status, out, _ = cli("token", "check", "http://127.0.0.1:9/scim/v2")
    assert status == 1 and "could not connect" in out


def test_device_code_sign_in_is_cached_for_the_next_command(cli, graph, tmp_path):
    status, out, err = cli("entra", "login")
    assert status == 0 and "Signed in to tenant" in out
    assert "enter the code" in err.lower() or "devicelogin" in err.lower()
    cache = tmp_path / "cache.json"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    asked = sum(1 for r in graph.requests if r.path.endswith("/devicecode"))
    assert cli("entra", "logs", APP)[0] == 0  # signs in silently from the cache
    assert sum(1 for r in graph.requests if r.path.endswith("/devicecode")) == asked


def test_connect_tests_the_real_endpoint_and_saves_only_good_credentials(
    cli, graph, http_base_url, monkeypatch
):
    sp = next(s for s in graph.service_principals if s.displayName == APP)
    monkeypatch.setenv("WRONG", "not-the-token")
    status, out, err = cli("entra", "connect", APP, "--tenant-url", http_base_url, "--token-env", "WRONG")
    assert status == 1 and "Test Connection FAILED" in out and "not saved" in err
    assert not graph.secrets.get(sp.id)

    status, out, err = cli("entra", "connect", APP, "--tenant-url", http_base_url)
    assert status == 0, out + err
    assert "Test Connection succeeded" in out and "Saved the Tenant URL" in out
    assert graph.secrets[sp.id] == {"BaseAddress": http_base_url, "SecretToken": TOKEN}
    (job,) = graph.jobs[sp.id].values()
    assert job["templateId"] == "scim"
    status, _, err = cli("entra", "connect", APP, "--tenant-url", http_base_url)
    assert status == 0 and "Found provisioning job" in err  # idempotent: no second job
    assert len(graph.jobs[sp.id]) == 1


def test_provision_on_demand_creates_the_user_in_the_endpoint(cli, graph, http_base_url):
    assert cli("entra", "connect", APP, "--tenant-url", http_base_url)[0] == 0
    status, out, err = cli("entra", "provision", APP, "ada@contoso.example")
    assert status == 0, out + err
    assert "STEP" in out and "success" in out and "Provisioned." in err
    found = scim_get(http_base_url, '/Users?filter=userName eq "ada@contoso.example"')
    assert found["totalResults"] == 1
    status, out, _ = cli("entra", "provision", APP, "nobody@contoso.example")
    assert status == 2 and "no user" in out + _


def test_start_pause_and_status_report_the_job(cli, graph, http_base_url):
    assert cli("entra", "connect", APP, "--tenant-url", http_base_url)[0] == 0
    status, out, _ = cli("entra", "start", APP)
    assert status == 0 and "Started provisioning job" in out
    status, out, _ = cli("entra", "status", APP)
    assert status == 0 and "state:" in out and "Active" in out
    sp = next(s for s in graph.service_principals if s.displayName == APP)
    (job_id,) = graph.jobs[sp.id]
    graph.quarantine_job(
        job_id,
        reason="EncounteredQuarantineException",
        code="SystemForCrossDomainIdentityManagementUnauthorized",
        message="401",
    )
    status, out, _ = cli("entra", "status", APP, "--json")
    summary = json.loads(out)
    assert summary["code"] == "Quarantine" and "Secret Token" in summary["quarantine"]
    assert cli("entra", "pause", APP)[0] == 0
    assert json.loads(cli("entra", "status", APP, "--json")[1])["state"] == "Paused"


def test_logs_are_summarised_filtered_and_paged(cli, graph):
    status, out, err = cli("entra", "logs", APP, "--since", "7d")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["TIME", "ACTION", "USER"]
    seeded = [e for e in graph.provisioning_logs if e["servicePrincipal"]["displayName"] == APP]
    assert len(lines) - 1 == len(seeded) > graph.page_size  # every page was followed
    status, out, _ = cli("entra", "logs", APP, "--since", "7d", "--status", "failure", "--json")
    failures = [json.loads(line) for line in out.splitlines()]
    assert failures and all(f["status"] == "failure" and f["error_code"] and f["meaning"] for f in failures)
    query = [r for r in graph.requests if r.path.endswith("/auditLogs/provisioning")][-1].query
    assert "provisioningStatusInfo/status eq 'failure'" in query["$filter"]


def test_errors_say_what_to_do(cli, graph, monkeypatch):
    graph.fail_next[("GET", "/auditLogs/provisioning")] = (403, "Authorization_RequestDenied", {})
    status, _, err = cli("entra", "logs", APP)
    assert status == 2 and "AuditLog.Read.All" in err and "Reports Reader" in err

    graph.fail_next[("GET", "/synchronization/jobs$")] = (429, "TooManyRequests", {"Retry-After": "1"})
    status, _, err = cli("entra", "status", APP)
    assert "retrying in 1 s" in err  # throttled once, then served

    status, _, err = cli("entra", "status", "No Such App")
    assert status == 2 and "no enterprise app" in err

    monkeypatch.setenv("SCIM_GRAPH_TENANT", "nowhere.example")
    status, _, err = cli("entra", "status", APP)
    assert status == 2 and "Sign-in failed" in err and "--tenant" in err


def test_client_credentials_with_a_secret(cli, monkeypatch):
    monkeypatch.setenv("SCIM_GRAPH_CLIENT_ID", DEFAULT_SECRET_CLIENT_ID)
    monkeypatch.setenv("SCIM_GRAPH_CLIENT_SECRET", DEFAULT_CLIENT_SECRET)
    status, out, _ = cli("entra", "login")
    assert status == 0 and f"application {DEFAULT_SECRET_CLIENT_ID}" in out
    monkeypatch.setenv("SCIM_GRAPH_CLIENT_SECRET", "wrong-secret")
    status, _, err = cli("entra", "login")
    assert status == 2 and "secret is wrong" in err


def test_connect_create_makes_the_enterprise_app_and_waits_for_the_directory(cli, graph, http_base_url):
    name = "Fabrikam SCIM " + str(len(graph.service_principals))
    status, _, err = cli("entra", "connect", name, "--tenant-url", http_base_url)
    assert status == 2 and "--create" in err  # not there, and the advice says how to create it
    status, out, err = cli("entra", "connect", name, "--tenant-url", http_base_url, "--create")
    assert status == 0, out + err
    assert f"Created enterprise app {name!r}" in err and "Test Connection succeeded" in out
    created = next(sp for sp in graph.service_principals if sp.displayName == name)
    assert graph.secrets[created.id]["BaseAddress"] == http_base_url
    reads = [
        r for r in graph.requests if r.method == "GET" and r.path.endswith(f"/servicePrincipals/{created.id}")
    ]
    assert len(reads) >= 2  # a 404 while the directory replicates, then the service principal
    instantiate = next(r for r in graph.requests if r.path.endswith("/instantiate"))
    assert instantiate.json == {"displayName": name}
    assert (
        cli("entra", "connect", name, "--tenant-url", http_base_url, "--create")[0] == 0
    )  # found, not re-created
    assert sum(1 for sp in graph.service_principals if sp.displayName == name) == 1
