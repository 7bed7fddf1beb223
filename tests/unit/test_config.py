from __future__ import annotations

import hashlib

import pytest

from scim.config import ConfigurationError, Settings, token_digest


def test_defaults_and_tokens():
    settings = Settings.from_env(
        {
            "SCIM_BEARER_TOKEN": " tok ",
            "SCIM_BEARER_TOKEN_NEXT": "",
            "SCIM_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
        }
    )
    assert settings.token_digests == (token_digest("tok"),)
    assert settings.table_name == "scim" and settings.tenant == "default"
    assert settings.max_page_size == 200
    settings.check_serving()


def test_secrets_never_appear_in_repr():
    settings = Settings.from_env(
        {"SCIM_BEARER_TOKEN": "supersecret", "SCIM_STORAGE_CONNECTION_STRING": "AccountKey=k3y"}
    )
    assert "supersecret" not in repr(settings) and "k3y" not in repr(settings)


@pytest.mark.parametrize(
    "environ",
    [
        {"SCIM_TABLE_NAME": "bad-name"},
        {"SCIM_TABLE_NAME": "ab"},
        {"SCIM_TENANT": "a|b"},
        {"SCIM_MAX_PAGE_SIZE": "many"},
        {"SCIM_MAX_PAGE_SIZE": "0"},
    ],
)
def test_malformed_settings_name_the_variable(environ):
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(environ)
    assert next(iter(environ)) in str(caught.value)


def test_serving_needs_storage_and_a_token():
    with pytest.raises(ConfigurationError, match="SCIM_STORAGE_CONNECTION_STRING"):
        Settings(token_digests=(b"x",)).check_serving()
    with pytest.raises(ConfigurationError, match="SCIM_BEARER_TOKEN"):
        Settings(storage_connection_string="UseDevelopmentStorage=true").check_serving()


def test_hashed_tokens_and_jwt_settings():
    digest = hashlib.sha256(b"tok").hexdigest()
    settings = Settings.from_env(
        {
            "SCIM_BEARER_TOKEN_SHA256": f" {digest.upper()} ,",
            "SCIM_ENTRA_TENANT_ID": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        }
    )
    assert settings.token_digests == (token_digest("tok"),)
    assert settings.jwt_issuer == "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/"
    assert settings.jwks_url.endswith("/72f988bf-86f1-41af-91ab-2d7cd011db47/discovery/keys")
    Settings(storage_connection_string="UseDevelopmentStorage=true", entra_tenant_id="t").check_serving()
    with pytest.raises(ConfigurationError, match="SCIM_BEARER_TOKEN_SHA256"):
        Settings.from_env({"SCIM_BEARER_TOKEN_SHA256": "nothex"})
    with pytest.raises(ConfigurationError, match="SCIM_ENTRA_TENANT_ID"):
        Settings.from_env({"SCIM_ENTRA_TENANT_ID": "contoso.com"})


def test_identity_based_storage_endpoint():
    settings = Settings.from_env({"SCIM_STORAGE_TABLE_ENDPOINT": "https://acct.table.core.windows.net/"})
    assert settings.storage_table_endpoint == "https://acct.table.core.windows.net"
    Settings(storage_table_endpoint="https://a", token_digests=(b"x",)).check_serving()
    with pytest.raises(ConfigurationError, match="https"):
        Settings.from_env({"SCIM_STORAGE_TABLE_ENDPOINT": "http://acct.table.core.windows.net"})


def test_an_unresolved_key_vault_reference_is_never_a_token():
    reference = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/scim-token)"
    with pytest.raises(ConfigurationError, match="Key Vault"):
        Settings.from_env({"SCIM_BEARER_TOKEN": reference})


def test_change_feed_settings():
    default = Settings.from_env({})
    assert (default.change_queue, default.audit_retention_days) == ("scim-changes", 365)
    assert Settings.from_env({"SCIM_CHANGE_QUEUE": "off"}).change_queue == ""
    derived = Settings.from_env({"SCIM_STORAGE_TABLE_ENDPOINT": "https://acct.table.core.windows.net/"})
    assert derived.storage_queue_endpoint == "https://acct.queue.core.windows.net"
    given = Settings.from_env({"SCIM_STORAGE_QUEUE_ENDPOINT": "https://other.queue.core.windows.net"})
    assert given.storage_queue_endpoint == "https://other.queue.core.windows.net"
    assert Settings.from_env({"SCIM_AUDIT_RETENTION_DAYS": "0"}).audit_retention_days == 0


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"SCIM_CHANGE_QUEUE": "Bad_Name"}, "SCIM_CHANGE_QUEUE"),
        ({"SCIM_CHANGE_QUEUE": "a--b"}, "SCIM_CHANGE_QUEUE"),
        (
            {"SCIM_STORAGE_QUEUE_ENDPOINT": "http://acct.queue.core.windows.net"},
            "SCIM_STORAGE_QUEUE_ENDPOINT",
        ),
        ({"SCIM_AUDIT_RETENTION_DAYS": "-1"}, "SCIM_AUDIT_RETENTION_DAYS"),
    ],
)
def test_bad_change_feed_settings_name_the_variable(environ, named):
    with pytest.raises(ConfigurationError, match=named):
        Settings.from_env(environ)


_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


@pytest.mark.parametrize(
    "url",
    [
        "http://login.microsoftonline.com/t/discovery/keys",
        "HTTP://keys.example.com/jwks",
        "http://10.0.0.5/keys",
        "ftp://keys.example.com/jwks",
        "keys.example.com/jwks",
        "https:///no-host",
    ],
)
def test_jwks_url_must_be_https(url):
    with pytest.raises(ConfigurationError, match=r"SCIM_JWKS_URL must be an https:// URL"):
        Settings.from_env({"SCIM_ENTRA_TENANT_ID": _TENANT, "SCIM_JWKS_URL": url})


@pytest.mark.parametrize(
    "url",
    [
        "https://login.microsoftonline.us/t/discovery/keys",
        "http://127.0.0.1:8123/t/discovery/keys",
        "http://localhost:8123/keys",
        "http://[::1]:8123/keys",
    ],
)
def test_jwks_url_https_or_loopback_stand_in_accepted(url):
    assert Settings.from_env({"SCIM_ENTRA_TENANT_ID": _TENANT, "SCIM_JWKS_URL": url}).jwks_url == url
