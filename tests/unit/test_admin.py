"""The admin CLI's pure parts: OData literals and filters, times, templates, summaries, advice."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import requests

from scim.admin import provisioning as prov
from scim.admin.cli import UsageError, parse_time, table
from scim.admin.graph import GraphError, Need, hint_for
from scim.admin.login import DELEGATED_SCOPES, Login, LoginError, LoginSettings, _hint_of
from scim.admin.meanings import MEANINGS, meaning
from scim.admin.tokens import check_endpoint, new_token
from scim.config import Settings
from scim.model.errors import UnauthorizedError
from scim.web.auth import authenticate

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_odata_literal_doubles_single_quotes():
    assert prov.odata_literal("O'Brien's app") == "'O''Brien''s app'"
    assert prov.odata_literal("") == "''"


def test_log_filter_combines_every_option():
    query = prov.log_filter(
        "0b7c3b0e-1111-2222-3333-444455556666",
        since=NOW - timedelta(hours=24),
        until=NOW,
        status="failure",
        user="Ada O'Hara",
    )
    assert query == (
        "servicePrincipal/id eq '0b7c3b0e-1111-2222-3333-444455556666'"
        " and activityDateTime ge 2026-11-29T12:00:00Z"
        " and activityDateTime le 2026-11-30T12:00:00Z"
        " and provisioningStatusInfo/status eq 'failure'"
        " and sourceIdentity/displayName eq 'Ada O''Hara'"
    )


def test_log_filter_by_user_object_id():
    user = "9f0e0e0e-aaaa-bbbb-cccc-000000000001"
    query = prov.log_filter("sp", since=None, until=None, status=None, user=user)
    assert query == f"servicePrincipal/id eq 'sp' and sourceIdentity/id eq '{user}'"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("24h", NOW - timedelta(hours=24)),
        ("7d", NOW - timedelta(days=7)),
        ("2026-11-30T08:00:00Z", datetime(2026, 11, 30, 8, tzinfo=UTC)),
        ("2026-11-30T08:00:00", datetime(2026, 11, 30, 8, tzinfo=UTC)),
        ("2026-11-30T09:00:00+01:00", datetime(2026, 11, 30, 8, tzinfo=UTC)),
    ],
)
def test_parse_time(text, expected):
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "24", "5w", ""])
def test_parse_time_refuses_what_it_cannot_read(text):
    with pytest.raises(UsageError, match="not a time"):
        parse_time(text, NOW)


def test_choose_template_prefers_the_wanted_then_the_default_then_the_only_one():
    templates = [{"id": "scim", "default": True}, {"id": "other"}]
    assert prov.choose_template(templates, None)["id"] == "scim"
    assert prov.choose_template(templates, "other")["id"] == "other"
    assert prov.choose_template([{"id": "only"}], None)["id"] == "only"


def test_choose_template_says_what_to_do():
    with pytest.raises(prov.ProvisioningError, match="no provisioning template") as none:
        prov.choose_template([], None)
    assert "gallery" in none.value.hint
    with pytest.raises(prov.ProvisioningError, match="several") as several:
        prov.choose_template([{"id": "a"}, {"id": "b"}], None)
    assert "--template" in several.value.hint and "a, b" in several.value.hint
    with pytest.raises(prov.ProvisioningError, match="no template 'x'"):
        prov.choose_template([{"id": "a"}], "x")


def test_job_status_summarises_a_quarantined_job():
    job = {
        "id": "scim.0123.abcd",
        "templateId": "scim",
        "schedule": {"interval": "PT40M", "state": "Active"},
        "status": {
            "code": "Quarantine",
            "countSuccessiveCompleteFailures": 3,
            "lastExecution": {
                "state": "Failed",
                "timeBegan": "2026-11-30T07:00:00Z",
                "timeEnded": "2026-11-30T07:01:00Z",
                "error": {"code": "SystemForCrossDomainIdentityManagementUnauthorized", "message": "401"},
            },
            "lastSuccessfulExecution": {"timeEnded": "2026-11-29T07:01:00Z"},
            "synchronizedEntryCountByType": [{"key": "user to user", "value": 12}],
            "quarantine": {
                "currentBegan": "2026-11-30T07:01:00Z",
                "nextAttempt": "2026-11-30T19:01:00Z",
                "reason": "EncounteredQuarantineException",
                "error": {"code": "SystemForCrossDomainIdentityManagementUnauthorized", "message": "401"},
            },
        },
    }
    status = prov.job_status(job)
    assert (status.state, status.code, status.failures_in_a_row) == ("Active", "Quarantine", 3)
    assert status.counts == {"user to user": 12}
    assert status.last_success == "2026-11-29T07:01:00Z"
    assert "Secret Token" in status.last_error
    assert status.quarantine.startswith(
        "SystemForCrossDomainIdentityManagementUnauthorized since 2026-11-30T07:01"
    )
    assert "next attempt 2026-11-30T19:01:00Z" in status.quarantine


def test_job_status_of_a_job_that_never_ran():
    status = prov.job_status({"id": "j", "templateId": "scim", "schedule": {}, "status": {"code": "NotRun"}})
    assert (status.last_state, status.quarantine, status.last_error, status.counts) == (
        "never ran",
        "",
        "",
        {},
    )


def test_steps_are_read_from_graphs_json_string():
    document = {
        "provisioningSteps": [
            {
                "name": "EntryImport",
                "provisioningStepType": "import",
                "status": "success",
                "description": "ok",
            },
            {
                "name": "EntryExportAdd",
                "provisioningStepType": "export",
                "status": "failure",
                "description": "409",
                "details": {"SCIM detail": "userName taken"},
            },
        ]
    }
    steps = prov._steps_of(json.loads(json.dumps(document)))
    assert [s.status for s in steps] == ["success", "failure"]
    assert steps[1].details == {"SCIM detail": "userName taken"}
    assert prov._steps_of([document])[0].name == "EntryImport"
    assert prov._steps_of({}) == []


def test_every_known_code_has_a_meaning_and_unknown_ones_fall_back_to_the_reason():
    assert all(text and not text.endswith(".") for text in MEANINGS.values())
    assert "token check" in meaning("SystemForCrossDomainIdentityManagementUnauthorized")
    assert meaning("SomethingNew", "The target said no.\nStack trace ...") == "The target said no."
    assert meaning(None) == ""


def test_graph_advice_names_the_permission_and_the_role():
    need = Need(delegated="AuditLog.Read.All", application="AuditLog.Read.All", roles="Reports Reader")
    advice = hint_for(403, "Authorization_RequestDenied", need)
    assert "AuditLog.Read.All" in advice and "Reports Reader" in advice and "admin consent" in advice
    assert "P1 or P2" in hint_for(403, "Authentication_RequestFromNonPremiumTenantOrB2CTenant", need)
    assert "wait" in hint_for(429, "TooManyRequests", None)
    assert "sign in again" in hint_for(401, "InvalidAuthenticationToken", None)
    assert hint_for(400, "BadRequest", None) == ""
    explained = GraphError(403, "Authorization_RequestDenied", "no", request_id="r-1", hint=advice).explain()
    assert explained.splitlines()[0] == "Microsoft Graph answered 403 Authorization_RequestDenied: no"
    assert "request-id r-1" in explained


@pytest.mark.parametrize(
    ("codes", "words"),
    [([90002], "tenant was not found"), ([7000215], "secret is wrong"), ([700016], "--client-id")],
)
def test_sign_in_advice_by_aadsts_code(codes, words):
    assert words in _hint_of({"error": "invalid_request", "error_codes": codes})
    assert (
        LoginError("x", _hint_of({"error_codes": codes}))
        .explain()
        .startswith("Sign-in failed: x\nWhat to do:")
    )


def test_login_settings_derive_authority_and_graph_resource():
    settings = LoginSettings(
        tenant="contoso.example",
        authority_host="https://login.microsoftonline.us/",
        graph_url="https://graph.microsoft.us/v1.0",
    )
    assert settings.authority == "https://login.microsoftonline.us/contoso.example"
    assert settings.graph_resource == "https://graph.microsoft.us"
    assert not settings.unattended
    assert "Synchronization.ReadWrite.All" in DELEGATED_SCOPES


def test_a_new_token_is_accepted_by_its_digest_alone():
    fresh = new_token()
    assert len(fresh.token) >= 43 and fresh.token != new_token().token
    settings = Settings.from_env(
        {"SCIM_BEARER_TOKEN_SHA256": fresh.sha256, "SCIM_STORAGE_CONNECTION_STRING": "x"}
    )
    authenticate(f"Bearer {fresh.token}", settings.token_digests)  # the printed digest accepts the token
    with pytest.raises(UnauthorizedError):
        authenticate(f"Bearer {new_token().token}", settings.token_digests)


def test_table_aligns_columns():
    assert table(["a", "bb"], [["1", "2"], ["333", "4"]]).splitlines() == ["A    BB", "1    2", "333  4"]


class _RecordingSession:
    """Stands in for requests.Session: records what would go on the wire, answers an empty list."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def get(self, url, *, params=None, headers=None, timeout=None):
        self.sent.append((url, dict(headers or {})))
        token = (headers or {}).get("Authorization", "")
        response = type("R", (), {})()
        response.status_code, response.reason = (
            (200, "OK") if "wrong-" not in token else (401, "Unauthorized")
        )
        body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": 0}
        response.json = lambda: body
        response.text = json.dumps(body)
        return response


@pytest.mark.parametrize(
    "url",
    [
        "http://scim.corp.example/scim/v2",
        "http://10.1.2.3:7071/scim/v2",
        "http://127.0.0.1.evil.example/scim/v2",
        "ftp://scim.corp.example/scim/v2",
        "https:///scim/v2",
    ],
)
def test_token_check_refuses_plain_http_to_a_remote_host_before_sending_the_token(url):
    session = _RecordingSession()
    checks = check_endpoint(session, url, "the-real-token")
    assert session.sent == []  # the token never went on the wire
    assert [(c.name, c.passed) for c in checks] == [("https", False)]
    assert "refused to send the Secret Token" in checks[0].detail and "\n" not in checks[0].detail


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:7071/scim/v2", "http://localhost:7071/scim/v2", "http://[::1]:7071/scim/v2"]
)
def test_token_check_allows_plain_http_to_loopback_for_make_run(url):
    session = _RecordingSession()
    checks = check_endpoint(session, url, "the-real-token")
    assert all(c.passed for c in checks), checks
    assert session.sent[0][1]["Authorization"] == "Bearer the-real-token"


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"AccessToken": [1]}', "\udcff"])
def test_a_corrupt_token_cache_is_ignored_with_one_warning(tmp_path, content):
    cache = tmp_path / "msal.json"
    cache.write_bytes(content.encode("utf-8", "surrogateescape"))
    said: list[str] = []
    login = Login(
        LoginSettings(tenant="contoso.example", cache_path=cache), requests.Session(), progress=said.append
    )
    assert len(said) == 1 and said[0].startswith("warning: ignoring the unreadable token cache")
    assert "\n" not in said[0]
    assert list(login._cache.search("AccessToken")) == []  # empty: the next sign-in replaces the file


def test_a_valid_token_cache_loads_without_a_warning(tmp_path):
    cache = tmp_path / "msal.json"
    cache.write_text(json.dumps({"AccessToken": {}, "Account": {}}))
    said: list[str] = []
    Login(LoginSettings(tenant="contoso.example", cache_path=cache), requests.Session(), progress=said.append)
    assert said == []
