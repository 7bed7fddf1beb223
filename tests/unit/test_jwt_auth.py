"""Entra-issued JWTs (Secret Token left blank in Entra), with keys generated in the test."""

from __future__ import annotations

import time

import jwt
import pytest

from scim.config import token_digest
from scim.model.errors import UnauthorizedError
from scim.web.auth import Authenticator, JwtPolicy
from tests.jwt_helpers import ISSUER, TENANT, SigningKey

KEY = SigningKey()
OTHER = SigningKey()


class StaticKeys:
    def __init__(self, *keys: SigningKey) -> None:
        self.keys = {k.kid: k.public for k in keys}
        self.asked: list[str] = []

    async def key(self, kid: str):
        self.asked.append(kid)
        return self.keys.get(kid)


def authenticator(**policy):
    return Authenticator(
        (token_digest("secret"),), policy=JwtPolicy(TENANT, ISSUER, **policy), keys=StaticKeys(KEY)
    )


async def test_a_valid_entra_token_is_accepted():
    assert await authenticator().authenticate(f"Bearer {KEY.token()}") == (
        "entra-app:00000014-0000-0000-c000-000000000000"
    )


async def test_the_secret_token_still_works_beside_jwts():
    assert await authenticator().authenticate("Bearer secret") == "secret-token-1"


@pytest.mark.parametrize(
    "token",
    [
        KEY.token(iss="https://sts.windows.net/00000000-0000-0000-0000-000000000000/"),  # another tenant
        KEY.token(tid="00000000-0000-0000-0000-000000000000"),  # right issuer, wrong tid
        KEY.token(aud="api://something-else"),
        KEY.token(exp=int(time.time()) - 3600),
        KEY.token(nbf=int(time.time()) + 3600),
        KEY.token(exp=None),
        OTHER.token(),  # a key the tenant does not publish
        KEY.token()[:-8] + "AAAAAAAA",  # tampered signature
        jwt.encode({"iss": ISSUER, "aud": "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"}, key="", algorithm="none"),
        "eyJhbGciOiJIUzI1NiJ9.e30.x",
    ],
)
async def test_bad_tokens_are_refused(token):
    with pytest.raises(UnauthorizedError):
        await authenticator().authenticate(f"Bearer {token}")


async def test_small_clock_skew_is_tolerated():
    token = KEY.token(exp=int(time.time()) - 30)
    assert (await authenticator().authenticate(f"Bearer {token}")).startswith("entra-app:")


async def test_hs256_signed_with_the_public_key_is_refused():
    public_pem = KEY.public.public_bytes(
        encoding=__import__(
            "cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]
        ).Encoding.PEM,
        format=__import__(
            "cryptography.hazmat.primitives.serialization", fromlist=["PublicFormat"]
        ).PublicFormat.SubjectPublicKeyInfo,
    )
    forged = jwt.encode(
        {"iss": ISSUER}, public_pem.decode()[:32], algorithm="HS256", headers={"kid": KEY.kid}
    )
    with pytest.raises(UnauthorizedError):
        await authenticator().authenticate(f"Bearer {forged}")


async def test_jwts_are_refused_when_the_mode_is_off():
    plain = Authenticator((token_digest("secret"),))
    with pytest.raises(UnauthorizedError):
        await plain.authenticate(f"Bearer {KEY.token()}")
