"""Filter evaluation on our models (RFC 7644 §3.4.2.2) and what of it is pushed to storage."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from scim2_models import Context, Meta, ScimFilter

from scim.model.resources import UserResource
from scim.storage.pushdown import AllOf, AnyOf, ColumnTest, columns_of, prefix_upper_bound, pushdown

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
    columns = columns_of(USER.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))
    assert columns["c_un"] == "bjensen@example.com" and columns["c_dn"] == "babs jensen"
    assert columns["c_act"] is True and columns["c_lm"] == datetime(2025, 6, 1, tzinfo=UTC)
    assert "c_ext" not in columns


# -- issue 14, item 7: push-down at the ends of the code-point and time ranges -----------------

EDGE_CHARS = [
    "a",
    "\ud7fe",
    "\ud7ff",
    "\ue000",
    "\uffee",
    "\ufffe",
    "\uffff",
    "\U00010000",
    "\U0010fffe",
    "\U0010ffff",
]


def utf16(text: str) -> bytes:
    """Table Storage (and Azurite) order strings by UTF-16 code unit: big-endian bytes sort the same."""
    return text.encode("utf-16-be")


def edge_strings(length: int) -> list[str]:
    strings = [""]
    for _ in range(length):
        strings = [s + c for s in strings for c in EDGE_CHARS]
    return strings


@pytest.mark.parametrize("prefix", edge_strings(1) + edge_strings(2))
def test_a_prefix_range_holds_every_string_with_the_prefix_in_both_orders(prefix):
    upper = prefix_upper_bound(prefix)
    if upper is not None:
        upper.encode("utf-8")  # never a lone surrogate: it could not be sent
    for text in [prefix + rest for rest in edge_strings(2)]:
        assert prefix <= text and utf16(prefix) <= utf16(text)
        if upper is not None:
            assert text < upper and utf16(text) < utf16(upper), (prefix, text, upper)
    if prefix and not prefix.strip("\uffff\U0010ffff"):
        assert upper is None  # no finite bound: only the lower one is pushed


@pytest.mark.parametrize(
    ("prefix", "upper"),
    [
        ("ab", "ac"),
        ("a\ud7ff", "a\ue000"),
        ("a\uffff", "b"),
        ("a\U0010ffff", "b"),
        ("a\U0010fffe", "a\U0010ffff"),
        ("\uffff\U0010ffff", None),
    ],
)
def test_prefix_upper_bounds(prefix, upper):
    assert prefix_upper_bound(prefix) == upper


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (
            'userName sw "a\U0010ffff"',
            AllOf((ColumnTest("c_un", "ge", "a\U0010ffff"), ColumnTest("c_un", "lt", "b"))),
        ),
        ('userName sw "\uffff"', ColumnTest("c_un", "ge", "\uffff")),
        ('userName gt "x\ue000y"', ColumnTest("c_un", "ge", "x")),  # UTF-16 puts astral below U+E000
        ('userName gt "\ue000"', None),
        ('userName lt "x\U00010000y"', ColumnTest("c_un", "lt", "y")),
        ('userName le "\U00010000"', None),
        ('userName gt "x\U00010000"', ColumnTest("c_un", "gt", "x\U00010000")),
        ('meta.created gt "0001-01-01T00:00:00Z"', None),  # before Edm.DateTime's 1601: not sent
        ('meta.created ge "0001-01-01T00:00:00+05:00"', None),  # not even representable in UTC
        ('meta.created le "9999-12-31T23:59:59-05:00"', None),
        ('meta.created gt "2000-01-01T00:00:00"', None),  # no offset: no instant to compare
        (
            'meta.created lt "2000-01-01T05:00:00+05:00"',
            ColumnTest("c_cr", "lt", datetime(2000, 1, 1, tzinfo=UTC)),
        ),
    ],
)
def test_what_is_pushed_at_the_ends_of_the_ranges(expression, expected):
    assert pushdown(ast(expression), CORE) == expected


@pytest.mark.parametrize(
    "expression",
    [
        'meta.created gt "0001-01-01T00:00:00Z"',
        'meta.created ge "0001-01-01T00:00:00+05:00"',
        'meta.lastModified lt "9999-12-31T23:59:59Z"',
        'meta.lastModified le "9999-12-31T23:59:59-05:00"',
    ],
)
def test_time_bounds_at_the_ends_of_the_range_still_match(expression):
    assert ScimFilter[UserResource](expression).match(USER) is True
