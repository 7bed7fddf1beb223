"""Validation failures in words a SCIM client understands (issue 16, item 3); no I/O.

Entra shows ``detail`` verbatim in its provisioning logs, so each refused value
must be named by its SCIM path, with the SCIM type it needs and the value that
was sent — never pydantic's text, its error types or its documentation links.
The bodies go through the same steps as ``ResourceService._validate`` /
``_parse_patch`` / ``patch`` (Entra normalisation, then scim2-models under
``ENTRA_POLICY``), without storage.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from scim2_models import Context, InvalidValueException, PatchOp, SCIMException

from scim.model import entra
from scim.model.errors import InvalidSyntaxError, InvalidValueError, ScimError, from_library_error
from scim.model.messages import describe, failing_operation
from scim.model.resources import ENTRA_POLICY, USER, build_kinds
from scim.model.schemafile import parse_schema_text

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
EXT = "urn:ietf:params:scim:schemas:extension:Acme:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
BOOLEAN = 'must be a boolean: true/false, or Entra\'s "True"/"False" strings'
LIBRARY_TEXT = ("pydantic", "http", "Input should", "type=", "validation error", "For further information")

DECLARED = parse_schema_text(
    f"""extensions:
  - schema: {EXT}
    resourceType: User
    attributes:
      - {{name: badge, type: integer}}
      - {{name: hired, type: dateTime}}
      - {{name: vip, type: boolean}}
      - {{name: rate, type: decimal}}
      - {{name: homepage, type: reference, referenceTypes: [external]}}
      - {{name: tags, multiValued: true}}
      - name: site
        type: complex
        subAttributes:
          - {{name: value, type: string}}
""",
    "acme.yaml",
)
ACME_USER, _ = build_kinds(DECLARED)


def refused(body: dict[str, Any], kind: Any = USER) -> ScimError:
    """The error a POST /Users of ``body`` answers with (the steps of ``ResourceService._validate``)."""
    body = entra.normalize_resource(body, [str(kind.model.__schema__), ENTERPRISE, EXT])
    try:
        kind.model.model_validate(body, scim_ctx=Context.RESOURCE_CREATION_REQUEST, scim_policy=ENTRA_POLICY)
    except (ValidationError, SCIMException) as error:
        return from_library_error(error)
    raise AssertionError(f"accepted: {body!r}")


def patched(*operations: dict[str, Any], user: dict[str, Any] | None = None) -> ScimError:
    """The error a PATCH of ``operations`` on ``user`` answers with (``_parse_patch`` then ``patch``)."""
    model = USER.model
    resource = model.model_validate(user or {"userName": "u"}, scim_policy=ENTRA_POLICY)
    body = entra.normalize_patch({"schemas": [PATCH_OP], "Operations": list(operations)})
    try:
        patch = PatchOp[model].model_validate(  # type: ignore[name-defined]
            body, scim_ctx=Context.RESOURCE_PATCH_REQUEST, scim_policy=ENTRA_POLICY
        )
    except (ValidationError, SCIMException) as error:
        return from_library_error(error)
    try:
        patch.patch(resource, scim_policy=ENTRA_POLICY)
    except (ValidationError, SCIMException) as error:
        return from_library_error(error, operation=failing_operation(patch, resource, ENTRA_POLICY))
    raise AssertionError(f"applied: {operations!r}")


def assert_no_library_text(detail: str) -> None:
    for text in LIBRARY_TEXT:
        assert text.lower() not in detail.lower(), detail


# -- one sentence per SCIM type ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"active": "maybe"}, f'`active` {BOOLEAN} (got "maybe").'),
        ({"active": 3}, f"`active` {BOOLEAN} (got 3)."),
        ({"emails": [{"value": "a@b.c", "primary": "no way"}]}, f'`emails[0].primary` {BOOLEAN} (got "no way").'),
        ({"title": 42}, "`title` must be a string (got 42)."),
        ({"emails": [{"value": 5}]}, "`emails[0].value` must be a string (got 5)."),
        ({"name": "Ada Lovelace"},
         '`name` must be a complex value: a JSON object of its sub-attributes (got "Ada Lovelace").'),
        ({"emails": {"value": "a@b.c"}},
         "`emails` must be a multi-valued attribute: a JSON array of values, even for one value "
         '(got {"value": "a@b.c"}).'),
        ({"emails": ["a@b.c"]},
         '`emails[0]` must be a complex value: a JSON object of its sub-attributes (got "a@b.c").'),
        ({"profileUrl": 7},
         "`profileUrl` must be a reference: a URI as a string (RFC 3986), absolute or a path starting "
         "with / (got 7)."),
        ({"x509Certificates": [{"value": "!!x"}]},
         '`x509Certificates[0].value` must be binary data as a base64 string (RFC 4648) (got "!!x").'),
        ({"meta": {"created": "yesterday"}},
         "`meta.created` must be a dateTime in xsd:dateTime / RFC 3339 form, such as 2024-05-01T09:30:00Z "
         '(got "yesterday").'),
        ({ENTERPRISE: {"manager": 12}},
         f"`{ENTERPRISE}:manager` must be a complex value {{\"value\": \"<the manager's id>\"}}, "
         "or the manager's id as a string (got 12)."),
        ({ENTERPRISE: {"manager": {"value": 12}}}, f"`{ENTERPRISE}:manager.value` must be a string (got 12)."),
        ({ENTERPRISE: {"employeeNumber": ["1"]}}, f'`{ENTERPRISE}:employeeNumber` must be a string (got ["1"]).'),
    ],
)  # fmt: skip
def test_each_scim_type_has_its_sentence(body, expected):
    error = refused({"userName": "u", **body})
    assert type(error) is InvalidValueError and error.scim_type == "invalidValue"
    assert error.detail == expected


@pytest.mark.parametrize(
    ("attribute", "value", "expected"),
    [
        ("badge", "twelve", 'must be an integer (a whole number such as 42) (got "twelve")'),
        ("badge", 1.5, "must be an integer (a whole number such as 42) (got 1.5)"),
        ("hired", "2024-13-01T00:00:00Z",
         'must be a dateTime in xsd:dateTime / RFC 3339 form, such as 2024-05-01T09:30:00Z (got "2024-13-01T00:00:00Z")'),
        ("vip", "sometimes", f'{BOOLEAN} (got "sometimes")'),
        ("rate", "cheap", 'must be a decimal number (such as 2.5) (got "cheap")'),
        ("homepage", "::", 'must be a reference: a URI as a string (RFC 3986), absolute or a path starting with / (got "::")'),
        ("tags", "one", 'must be a multi-valued attribute: a JSON array of values, even for one value (got "one")'),
        ("site", "x", 'must be a complex value: a JSON object of its sub-attributes (got "x")'),
    ],
)  # fmt: skip
def test_a_declared_extension_attribute_is_named_by_its_urn(attribute, value, expected):
    error = refused({"userName": "u", EXT: {attribute: value}}, ACME_USER)
    assert error.detail == f"`{EXT}:{attribute}` {expected}."


def test_a_missing_required_attribute_is_named():
    assert refused({"displayName": "no userName"}).detail == (
        "`userName` is required and must not be empty or null."
    )
    manager = refused({"userName": "u", ENTERPRISE: {"manager": {"$ref": "../Users/1"}}})
    assert manager.detail == f"`{ENTERPRISE}:manager.value` is required and must not be empty or null."


def test_the_entra_hint_is_true_for_what_it_names():
    """The boolean hint promises "True"/"False" strings work, and the manager hint a bare id: both are accepted."""
    for value in ("True", "False", "true", True):
        USER.model.model_validate(
            {"userName": "u", "active": value},
            scim_ctx=Context.RESOURCE_CREATION_REQUEST,
            scim_policy=ENTRA_POLICY,
        )
    body = entra.normalize_resource({"userName": "u", ENTERPRISE: {"manager": "boss-id"}}, [ENTERPRISE])
    user = USER.model.model_validate(
        body, scim_ctx=Context.RESOURCE_CREATION_REQUEST, scim_policy=ENTRA_POLICY
    )
    assert user[ENTERPRISE].manager.value == "boss-id"


def test_the_scim_type_is_kept():
    """RFC 7644 §3.12: a value of the wrong type is invalidValue, a body against its schema invalidSyntax."""
    try:  # not through entra.normalize_resource, which drops a schema URI the endpoint does not serve
        USER.model.model_validate(
            {"userName": "u", "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"]}
        )
    except ValidationError as error:
        wrong_schema = from_library_error(error)
    assert type(wrong_schema) is InvalidSyntaxError and wrong_schema.scim_type == "invalidSyntax"
    assert wrong_schema.detail == (
        "schemas must contain the base schema 'urn:ietf:params:scim:schemas:core:2.0:User'."
    )


# -- the rejected value ------------------------------------------------------------------------


def test_the_rejected_value_is_shortened_and_escaped():
    error = refused({"userName": "u", "active": "no\nX-Forged: 1\u2028" + "y" * 5_000})
    assert "\n" not in error.detail and "\u2028" not in error.detail
    # JSON escapes the newline, then printable() escapes U+2028 (which JSON leaves as it is).
    assert '(got "no\\nX-Forged: 1\\u2028yyy' in error.detail
    assert "…(+" in error.detail and len(error.detail) < 200


def test_numbers_are_shown_as_sent():
    """scim.web.api reads JSON fractions as Decimal; the detail shows 1.50, not "1.50" or a float."""
    assert refused({"userName": "u", "active": Decimal("1.50")}).detail == f"`active` {BOOLEAN} (got 1.50)."


# -- several failures --------------------------------------------------------------------------


def test_several_failures_are_joined_then_counted():
    three = refused({"userName": 1, "title": 2, "active": "x"})
    assert three.detail == (
        "`userName` must be a string (got 1); `title` must be a string (got 2); "
        f'`active` {BOOLEAN} (got "x").'
    )
    five = refused({"userName": 1, "title": 2, "nickName": 3, "locale": 4, "timezone": 5})
    assert five.detail.count("must be a string") == 3
    assert five.detail.endswith("; and 2 more.")


def test_one_sentence_per_attribute():
    errors = [
        {"type": "string_type", "loc": ("title",), "input": 1},
        {"type": "int_type", "loc": ("title", "function-after[check(), str]"), "input": 1},
        {"type": "bool_parsing", "loc": ("active",), "input": "x"},
    ]
    assert describe(errors) == f'`title` must be a string (got 1); `active` {BOOLEAN} (got "x").'


def test_an_unknown_error_type_still_names_the_attribute_and_the_value():
    errors = [
        {"type": "some_future_check", "loc": ("nickName",), "msg": "Input should be nice", "input": "x"}
    ]
    assert describe(errors) == '`nickName` has a value this attribute does not accept (got "x").'


def test_a_library_sentence_carrying_pydantic_text_is_replaced():
    errors = [
        {"type": "scim_invalidValue", "loc": ("nickName",), "input": 3,
         "msg": "1 validation error for X [type=int_type] See https://errors.pydantic.dev/2.14/v/int_type"},
    ]  # fmt: skip
    assert describe(errors) == "`nickName` has a value this attribute does not accept (got 3)."


# -- PATCH ---------------------------------------------------------------------------------------


def test_patch_names_the_operation_that_wrote_the_value():
    active = patched(
        {"op": "Replace", "path": "title", "value": "ok"},
        {"op": "Replace", "path": "active", "value": "maybe"},
    )
    assert type(active) is InvalidValueError
    assert active.detail == f'In the replace of `active`: `active` {BOOLEAN} (got "maybe").'
    work = patched({"op": "replace", "path": 'emails[type eq "work"].value', "value": 3})
    assert (
        work.detail == 'In the replace of `emails[type eq "work"].value`: `value` must be a string (got 3).'
    )
    pathless = patched({"op": "replace", "value": {"active": "perhaps"}})
    assert pathless.detail == f'In the path-less replace: `active` {BOOLEAN} (got "perhaps").'
    manager = patched({"op": "Add", "path": f"{ENTERPRISE}:manager", "value": 7})
    assert manager.detail == (
        f"In the add of `{ENTERPRISE}:manager`: `manager` must be a complex value "
        '{"value": "<the manager\'s id>"}, or the manager\'s id as a string (got 7).'
    )


def test_patch_structure_errors_keep_the_library_sentence_with_its_path():
    bad_op = patched({"op": "explode", "path": "title", "value": "x"})
    assert bad_op.detail == "`Operations[0].op`: 'explode' is not a PATCH operation: add, remove or replace."


def test_failing_operation_leaves_the_resource_alone():
    resource = USER.model.model_validate({"userName": "u", "title": "before"}, scim_policy=ENTRA_POLICY)
    patch = PatchOp[USER.model].model_validate(  # type: ignore[name-defined]
        {"schemas": [PATCH_OP], "Operations": [
            {"op": "replace", "path": "title", "value": "after"},
            {"op": "add", "path": "emails", "value": [{"value": 3}]},
        ]},
        scim_ctx=Context.RESOURCE_PATCH_REQUEST, scim_policy=ENTRA_POLICY,
    )  # fmt: skip
    assert failing_operation(patch, resource, ENTRA_POLICY) == "the add of `emails`"
    assert resource.title == "before"
    fine = PatchOp[USER.model].model_validate(  # type: ignore[name-defined]
        {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "title", "value": "after"}]},
        scim_ctx=Context.RESOURCE_PATCH_REQUEST, scim_policy=ENTRA_POLICY,
    )  # fmt: skip
    assert failing_operation(fine, resource, ENTRA_POLICY) is None


# -- no library text, ever ------------------------------------------------------------------------


def test_a_library_exception_carrying_pydantic_text_is_never_passed_on():
    """scim2-models puts ``str(ValidationError)`` in a detail; its cause is described instead, or nothing."""
    try:
        USER.model.model_validate(
            {"userName": "u", "active": "maybe"}, scim_ctx=Context.RESOURCE_CREATION_REQUEST
        )
    except ValidationError as cause:
        wrapped = InvalidValueException(detail=str(cause))
        wrapped.__cause__ = cause
        assert "errors.pydantic.dev" in wrapped.detail  # what reached Entra before (issue 16)
        assert from_library_error(wrapped).detail == f'`active` {BOOLEAN} (got "maybe").'
    orphan = InvalidValueException(
        detail="1 validation error for X\n  Input should be a valid boolean [type=b]"
    )
    assert from_library_error(orphan).detail == InvalidValueError.default_detail


_SAFE_TEXT = st.text(max_size=30).filter(lambda s: not any(t.lower() in s.lower() for t in LIBRARY_TEXT))
"""Client text, minus the library's marks (a value is quoted back; the property is about library text)."""
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _SAFE_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_SAFE_TEXT, inner, max_size=3),
    max_leaves=8,
)
_PATHS = [
    "active", "userName", "title", "name", "emails", "phoneNumbers", "addresses", "roles", "profileUrl",
    "x509Certificates", "groups", "meta", "schemas", "externalId", "locale",
    ENTERPRISE, EXT,
]  # fmt: skip
_SUB = ["value", "primary", "type", "givenName", "manager", "badge", "hired", "vip", "site", "created", "$ref"]  # fmt: skip


@st.composite
def bad_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A user body with random JSON under core, enterprise and declared attributes (and one level below)."""
    body: dict[str, Any] = {"userName": "u"}
    for path in draw(st.lists(st.sampled_from(_PATHS), min_size=1, max_size=6, unique=True)):
        value = draw(_JSON)
        if draw(st.booleans()):
            value = {draw(st.sampled_from(_SUB)): value}
            if draw(st.booleans()):
                value = [value]
        body[path] = value
    return body


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bad_documents())
def test_no_detail_ever_carries_library_text(body):
    body = json.loads(json.dumps(body))
    normalized = entra.normalize_resource(body, [str(ACME_USER.model.__schema__), ENTERPRISE, EXT])
    try:
        ACME_USER.model.model_validate(
            normalized, scim_ctx=Context.RESOURCE_CREATION_REQUEST, scim_policy=ENTRA_POLICY
        )
    except (ValidationError, SCIMException) as error:
        translated = from_library_error(error)
        assert translated.scim_type in {"invalidValue", "invalidSyntax"}
        assert_no_library_text(translated.detail)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(["add", "replace"]), st.sampled_from(_PATHS[:14]), _JSON),
        min_size=1,
        max_size=4,
    )
)
def test_no_patch_detail_ever_carries_library_text(operations):
    ops = [{"op": op, "path": path, "value": value} for op, path, value in operations]
    try:
        error = patched(*ops)
    except AssertionError:
        return  # every operation was valid
    assert_no_library_text(error.detail)
