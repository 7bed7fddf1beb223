"""Identity-based Table Storage access (SCIM_STORAGE_TABLE_ENDPOINT + a token credential).

Azure AD cannot be reached from here: Azurite serves HTTPS with a certificate
made in the test and checks bearer tokens' ``iss``/``aud``/``exp`` (``--oauth
basic``, not signatures); a local credential mints such tokens, standing in
for DefaultAzureCredential's managed identity.
"""

from __future__ import annotations

import time

import jwt
import pytest
from azure.core.credentials import AccessToken

from scim.storage.tables import TableRepository, connect_with_identity
from scim.web.api import ScimApi
from tests.integration.conftest import ScimClient, make_settings
from tests.integration.test_users_entra import entra_user
from tools.azurite import Azurite
from tools.certs import write_loopback_certificate

pytestmark = pytest.mark.integration

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def self_signed(tmp_path):
    cert_path, key_path = write_loopback_certificate(tmp_path, "azurite")
    return str(cert_path), str(key_path)


class LocalCredential:
    """Mints storage tokens like a managed identity would (unsigned: Azurite does not check)."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        self.scopes.append(scopes)
        now = int(time.time())
        claims = {
            "aud": "https://storage.azure.com",
            "iss": f"https://sts.windows.net/{TENANT}/",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "oid": "00000000-0000-0000-0000-000000000001",
        }
        return AccessToken(jwt.encode(claims, key="", algorithm="none"), now + 3600)

    async def close(self) -> None:
        pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *args) -> None:
        pass


async def test_scim_over_identity_based_storage(tmp_path, store):
    cert, key = self_signed(tmp_path)
    with Azurite(tls=(cert, key)) as azurite:
        credential = LocalCredential()
        client = connect_with_identity(azurite.table_endpoint, "identity", credential, connection_verify=cert)
        repository = TableRepository(client, credential=credential)
        scim = ScimClient(
            ScimApi(make_settings(store, storage_table_endpoint=azurite.table_endpoint), repository)
        )
        try:
            created = await scim.post("/Users", entra_user("identity@x.com"))
            assert created.status == 201, created.json()
            found = (await scim.get('/Users?filter=userName eq "IDENTITY@x.com"')).json()
            assert found["totalResults"] == 1
            assert ("https://storage.azure.com/.default",) in credential.scopes
        finally:
            await repository.close()
