"""Filter evaluation on our models (RFC 7644 §3.4.2.2) and what of it is pushed to storage."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from scim2_models import Meta, ScimFilter

from scim.pushdown import AllOf, AnyOf, ColumnTest, columns_of, pushdown
from scim.resources import UserResource

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
USER = UserResource.model_validate(
    {
        "userName": "BJensen@Example.com",
        "displayName": "Babs Jensen",
        "active": True,
        "title": "Tour Guide",
        "emails": [
            {"type": "work", "value": "bjensen@example.com", "primary": True},
            {"type": "home", "value": "babs@home.org"},
        ],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "employeeNumber": "701984",
            "manager": {"value": "m-1"},
        },
    }
)
USER.meta = Meta(
    resource_type="User",
    created=datetime(2024, 1, 1, tzinfo=UTC),
    last_modified=datetime(2025, 6, 1, tzinfo=UTC),
)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('userName eq "bjensen@example.com"', True),  # caseExact false
        ('userName ne "x"', True),
        ('userName co "jensen"', True),
        ('userName sw "bj"', True),
        ('userName ew "EXAMPLE.COM"', True),
        ('displayName co "xyz"', False),
        ("title pr", True),
        ("nickName pr", False),
        ('title gt "A"', True),
        ('title lt "A"', False),
        ('title ge "Tour Guide"', True),
        ('title le "Tour"', False),
        ("active eq true", True),
        ("active eq false", False),
        ('meta.lastModified gt "2025-01-01T00:00:00Z"', True),
        ('meta.lastModified lt "2025-01-01T00:00:00Z"', False),
        ('meta.created ge "2024-01-01T00:00:00Z"', True),
        ('emails.value co "@home.org"', True),  # any value of a multi-valued attribute
        ('emails[type eq "work" and value co "@example.com"]', True),
        ('emails[type eq "home" and primary eq true]', False),
        ('emails[type eq "work"].value eq "BJENSEN@example.com"', True),
        ('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984"', True),
        ('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "m-1"', True),
        ('not (title eq "Tour Guide")', False),
        ('title eq "x" or (active eq true and userName sw "b")', True),
        ('title eq "x" or active eq false', False),
    ],
)
def test_every_operator_on_strings_booleans_dates_and_complex_values(expression, expected):
    assert ScimFilter[UserResource](expression).match(USER) is expected


def ast(expression):
    return ScimFilter[UserResource](expression).ast


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('userName eq "BJensen"', ColumnTest("c_un", "eq", "bjensen")),
        ('externalId eq "AbC"', ColumnTest("c_ext", "eq", "AbC")),
        ("active eq false", ColumnTest("c_act", "eq", False)),
        ('userName sw "Ab"', AllOf((ColumnTest("c_un", "ge", "ab"), ColumnTest("c_un", "lt", "ac")))),
        (
            'meta.lastModified gt "2025-01-01T00:00:00Z"',
            ColumnTest("c_lm", "gt", datetime(2025, 1, 1, tzinfo=UTC)),
        ),
        ('title eq "x" and displayName eq "D"', ColumnTest("c_dn", "eq", "d")),
        (
            'displayName eq "a" or userName eq "b"',
            AnyOf((ColumnTest("c_dn", "eq", "a"), ColumnTest("c_un", "eq", "b"))),
        ),
        ('displayName eq "a" or title eq "b"', None),
        ('not (userName eq "a")', None),
        ('userName ne "a"', None),
        ("userName pr", None),
        ('userName co "a"', None),
        ('emails[type eq "work"]', None),
        (f'{CORE}:userName eq "A"', ColumnTest("c_un", "eq", "a")),
    ],
)
def test_what_is_pushed_to_storage(expression, expected):
    assert pushdown(ast(expression), CORE) == expected


def test_columns_hold_the_comparison_forms():
    columns = columns_of(USER)
    assert columns["c_un"] == "bjensen@example.com" and columns["c_dn"] == "babs jensen"
    assert columns["c_act"] is True and columns["c_lm"] == datetime(2025, 6, 1, tzinfo=UTC)
    assert "c_ext" not in columns
