from __future__ import annotations

import pytest
from pydantic import ValidationError
from scim2_models import Context, InvalidFilterException, NoTargetException, UniquenessException

from scim.model.errors import (
    InvalidFilterError,
    InvalidValueError,
    MethodNotAllowedError,
    NoTargetError,
    ServiceUnavailableError,
    UniquenessError,
    from_library_error,
)
from scim.model.resources import UserResource


def test_body_follows_rfc7644_3_12():
    assert UniquenessError("userName is taken").to_body() == {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": "409",
        "scimType": "uniqueness",
        "detail": "userName is taken",
    }
    assert "scimType" not in MethodNotAllowedError().to_body()


def test_headers_of_special_statuses():
    assert MethodNotAllowedError(allow=("GET", "POST")).headers == {"Allow": "GET, POST"}
    assert ServiceUnavailableError(retry_after=7).headers == {"Retry-After": "7"}


@pytest.mark.parametrize(
    ("library_error", "expected"),
    [
        (InvalidFilterException(detail="bad"), InvalidFilterError),
        (NoTargetException(detail="none"), NoTargetError),
        (UniquenessException(detail="dup"), UniquenessError),
    ],
)
def test_library_exceptions_are_translated(library_error, expected):
    translated = from_library_error(library_error)
    assert type(translated) is expected
    assert translated.detail == library_error.detail


def test_plain_validation_errors_become_invalid_value():
    with pytest.raises(ValidationError) as caught:
        UserResource.model_validate(
            {"userName": "x", "active": "maybe"}, scim_ctx=Context.RESOURCE_CREATION_REQUEST
        )
    translated = from_library_error(caught.value)
    assert isinstance(translated, InvalidValueError)
    assert "active" in translated.detail
