"""The bounds of scim.model.limits that price work before it starts (issue 14 item 2; DESIGN §11)."""

from __future__ import annotations

from typing import Any

import pytest

from scim.model.errors import InvalidValueError, PayloadTooLargeError
from scim.model.limits import (
    MAX_MULTI_VALUES,
    MAX_PATCH_WORK,
    check_multi_valued,
    check_patch_values,
    check_patch_work,
    patch_work,
)

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
EXT = "urn:example:2.0:User"
SCHEMAS = (CORE, EXT)
OVER = [{"value": str(n)} for n in range(MAX_MULTI_VALUES + 1)]


def body(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": list(operations)}


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ({"emails": OVER}, "emails"),
        ({EXT: {"badges": OVER}}, f"{EXT}:badges"),
        ({EXT: {"profile": {"skills": OVER}}}, f"{EXT}:profile.skills"),
        ({"addresses": [{"lines": OVER}]}, "addresses.lines"),
        ({f"{CORE}:emails": OVER}, f"{CORE}:emails"),
    ],
)
def test_a_multi_valued_attribute_over_the_limit_is_refused_by_name(document, named):
    with pytest.raises(InvalidValueError) as raised:
        check_multi_valued(document)
    assert raised.value.detail.startswith(f"{named} has {MAX_MULTI_VALUES + 1:,} values")
    assert f"{MAX_MULTI_VALUES:,}" in raised.value.detail


def test_at_the_limit_and_exempt_edges_pass():
    check_multi_valued({"emails": OVER[:-1], EXT: {"badges": OVER[:-1]}})
    check_multi_valued({"members": OVER}, exempt=("Members",))


def test_patch_values_are_checked_before_validation():
    with pytest.raises(InvalidValueError, match="'emails'"):
        check_patch_values(body({"op": "add", "path": "emails", "value": OVER}))
    with pytest.raises(InvalidValueError, match="phoneNumbers"):
        check_patch_values(body({"op": "add", "value": {"phoneNumbers": OVER}}))
    check_patch_values(body({"op": "add", "path": "members", "value": OVER}), exempt=("members",))


def emails(count: int) -> list[dict[str, str]]:
    return [{"value": f"u{n}@x"} for n in range(count)]


def test_work_counts_the_values_of_the_attribute_each_operation_targets():
    document = {"emails": emails(100), "displayName": "d", EXT: {"badges": ["a"] * 40}}
    filtered = {"op": "replace", "path": 'emails[value eq "u1@x"].type', "value": "home"}
    assert patch_work(body({"op": "replace", "path": "displayName", "value": "e"}), document, SCHEMAS) == 2
    assert patch_work(body(filtered), document, SCHEMAS) == 1 + 100 + 1
    # The core URN qualifies a core attribute; an extension's attribute is its own.
    qualified = {"op": "remove", "path": f'{CORE}:emails[value eq "u1@x"]'}
    assert patch_work(body(qualified), document, SCHEMAS) == 1 + 100
    assert patch_work(body({"op": "remove", "path": f"{EXT}:badges"}), document, SCHEMAS) == 1 + 40
    # Path-less values: each key is priced on its own.
    pathless = {"op": "replace", "value": {"emails": emails(3), EXT: {"badges": ["b"]}}}
    assert patch_work(body(pathless), document, SCHEMAS) == (1 + 100 + 3) + (1 + 40 + 1)


def test_work_multiplies_by_the_comparisons_of_the_value_filter():
    document = {"emails": emails(100)}
    terms = " or ".join(f'value eq "u{n}@x and type eq z"' for n in range(5))  # quoted words don't count
    operation = {"op": "remove", "path": f"emails[{terms} or type pr]"}
    assert patch_work(body(operation), document, SCHEMAS) == 1 + 100 * 6


def test_work_follows_the_attribute_as_operations_grow_it():
    """A value-filtered replace that matches nothing creates the element (Entra's form)."""
    growing = [
        {"op": "replace", "path": f'emails[value eq "n{n}@x"].type', "value": "work"} for n in range(4)
    ]
    assert patch_work(body(*growing), {}, SCHEMAS) == sum(1 + n + 1 for n in range(4))
    added = [
        {"op": "add", "path": "emails", "value": emails(10)},
        {"op": "remove", "path": "emails[type pr]"},
    ]
    assert patch_work(body(*added), {}, SCHEMAS) == (1 + 0 + 10) + (1 + 10)


def test_a_patch_over_the_budget_is_refused_naming_the_limit():
    document = {"emails": emails(MAX_MULTI_VALUES)}
    operation = {"op": "replace", "path": 'emails[value eq "u1@x"].type', "value": "home"}
    fits = MAX_PATCH_WORK // (MAX_MULTI_VALUES + 2) - 1
    check_patch_work(body(*[operation] * fits), document, SCHEMAS)
    with pytest.raises(PayloadTooLargeError) as raised:
        check_patch_work(body(*[operation] * (fits + 2)), document, SCHEMAS)
    assert f"{MAX_PATCH_WORK:,}" in raised.value.detail


def test_malformed_operations_cost_one_and_are_left_to_the_validator():
    assert patch_work(body("nonsense", {"op": "add"}, {"path": 3}), {}, SCHEMAS) == 3
    assert patch_work({"Operations": "x"}, {}, SCHEMAS) == 0
