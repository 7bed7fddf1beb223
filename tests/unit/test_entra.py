"""Entra's request shapes are rewritten to RFC 7644 form, one rule at a time."""

from __future__ import annotations

from scim.model.entra import ENTERPRISE_USER, normalize_patch, normalize_resource

MANAGER = f"{ENTERPRISE_USER}:manager"


def ops(*operations):
    return {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": list(operations)}


def normalized(*operations):
    return normalize_patch(ops(*operations))["Operations"]


def test_manager_bare_id_becomes_complex():
    assert normalized({"op": "Add", "path": MANAGER, "value": "m1"}) == [
        {"op": "Add", "path": MANAGER, "value": {"value": "m1"}}
    ]


def test_manager_legacy_list_becomes_its_element():
    element = {"$ref": "http://x/Users/m1", "value": "m1"}
    assert normalized({"op": "Add", "path": "manager", "value": [element]}) == [
        {"op": "Add", "path": MANAGER, "value": element}
    ]


def test_unqualified_extension_paths_get_the_urn():
    assert normalized({"op": "replace", "path": "department", "value": "x"})[0]["path"] == (
        f"{ENTERPRISE_USER}:department"
    )
    assert normalized({"op": "replace", "path": "displayName", "value": "x"})[0]["path"] == "displayName"
    # a core attribute whose name starts like an extension one is left alone
    assert normalized({"op": "replace", "path": "managerial", "value": "x"})[0]["path"] == "managerial"


def test_selected_manager_remove_becomes_a_remove():
    assert normalized({"op": "remove", "path": 'manager[value eq "m1"]'}) == [
        {"op": "remove", "path": MANAGER}
    ]


def test_empty_or_null_value_on_a_path_becomes_remove():
    for empty in ("", None, []):
        assert normalized({"op": "Replace", "path": "title", "value": empty}) == [
            {"op": "remove", "path": "title"}
        ]
    assert normalized({"op": "replace", "path": MANAGER, "value": ""}) == [{"op": "remove", "path": MANAGER}]


def test_pathless_replace_splits_out_empty_keys():
    result = normalized({"op": "replace", "value": {"displayName": "A", "nickName": "", "title": None}})
    assert result == [
        {"op": "replace", "value": {"displayName": "A"}},
        {"op": "remove", "path": "nickName"},
        {"op": "remove", "path": "title"},
    ]


def test_pathless_replace_manager_keys():
    result = normalized({"op": "replace", "value": {MANAGER: "m1", ENTERPRISE_USER: {"manager": "m2"}}})
    assert result == [
        {"op": "replace", "value": {MANAGER: {"value": "m1"}, ENTERPRISE_USER: {"manager": {"value": "m2"}}}}
    ]


def test_other_operations_and_shapes_pass_through():
    untouched = [
        {"op": "Add", "path": "members", "value": [{"value": "u1"}]},
        {"op": "Remove", "path": "members", "value": [{"value": "u1"}]},
        {"op": "Replace", "path": "active", "value": "False"},
        "not an object",
        {"op": 3},
    ]
    assert normalized(*untouched) == untouched
    assert normalize_patch(["not", "an", "object"]) == ["not", "an", "object"]
    assert normalize_patch({"schemas": []}) == {"schemas": []}


def test_operations_key_is_case_insensitive():
    body = {"operations": [{"op": "Add", "path": "title", "value": ""}]}
    assert normalize_patch(body) == {"operations": [{"op": "remove", "path": "title"}]}


def test_resource_foreign_schemas_dropped_and_manager_normalised():
    known = ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE_USER]
    body = {
        "schemas": [known[0], "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/User"],
        ENTERPRISE_USER: {"manager": "m1", "department": "D"},
        "userName": "u",
    }
    assert normalize_resource(body, known) == {
        "schemas": [known[0]],
        ENTERPRISE_USER: {"manager": {"value": "m1"}, "department": "D"},
        "userName": "u",
    }
    assert normalize_resource({ENTERPRISE_USER: {"manager": ""}}, known) == {ENTERPRISE_USER: {}}
    assert normalize_resource("x", known) == "x"
