from __future__ import annotations

import pytest

from scim.config import token_digest
from scim.model.errors import UnauthorizedError
from scim.web.auth import authenticate, bearer_token

CURRENT, NEXT = "current-token", "next-token"
ACCEPTED = (token_digest(CURRENT), token_digest(NEXT))


@pytest.mark.parametrize(
    "header", [f"Bearer {CURRENT}", f"bearer {CURRENT}", f"BEARER  {NEXT} ", f"Bearer {NEXT}"]
)
def test_current_and_next_tokens_are_accepted(header):
    authenticate(header, ACCEPTED)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        f"Basic {CURRENT}",
        CURRENT,
        "Bearer wrong",
        f"Bearer {CURRENT}x",
        f"Bearer {CURRENT[:-1]}",
    ],
)
def test_anything_else_is_refused(header):
    with pytest.raises(UnauthorizedError) as caught:
        authenticate(header, ACCEPTED)
    assert CURRENT not in caught.value.detail and NEXT not in caught.value.detail
    assert caught.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_no_configured_token_accepts_nothing():
    with pytest.raises(UnauthorizedError):
        authenticate(f"Bearer {CURRENT}", ())


def test_bearer_token_extraction():
    assert bearer_token("Bearer  abc ") == "abc"
