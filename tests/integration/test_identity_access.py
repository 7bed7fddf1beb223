"""Identity-based Table Storage access (SCIM_STORAGE_TABLE_ENDPOINT + a token credential).

Azure AD cannot be reached from here: Azurite serves HTTPS with a certificate
made in the test and checks bearer tokens' ``iss``/``aud``/``exp`` (``--oauth
basic``, not signatures); a local credential mints such tokens, standing in
for DefaultAzureCredential's managed identity.
"""

from __future__ import annotations

import datetime
import ipaddress
import time

import jwt
import pytest
from azure.core.credentials import AccessToken
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from scim.api import ScimApi
from scim.tables import TableRepository, connect_with_identity
from tests.integration.conftest import ScimClient, make_settings
from tests.integration.test_users_entra import entra_user
from tools.azurite import Azurite

pytestmark = pytest.mark.integration

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def self_signed(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
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
