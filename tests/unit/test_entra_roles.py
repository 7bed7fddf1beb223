"""Entra app roles (rule 6 of ``scim.model.entra``) converge to one role per value.

Requests are normalised and applied exactly as ``scim.service.operations`` does: a POST
body through ``normalize_resource`` then validation, a PATCH through
``normalize_patch`` then ``PatchOp[UserResource]`` applied under ENTRA_POLICY,
the user reloaded from its stored document in between (entra-scim-behavior §11).
"""

from __future__ import annotations

import json
from typing import Any

from scim2_models import Context, PatchOp, ScimFilter

from scim.model.entra import ENTERPRISE_USER, normalize_patch, normalize_resource
from scim.model.resources import ENTRA_POLICY, UserResource

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
KNOWN = (CORE, ENTERPRISE_USER)
GUID = "06b07648-ecfe-589f-9d2f-6325724a46ee"
AZURE_ROLE = "WindowsAzureActiveDirectoryRole"

POST_ADMIN = {"primary": False, "type": AZURE_ROLE, "display": "Admin", "value": "Admin"}
"""The create shape (MicrosoftDocs/azure-docs#50772)."""
STORED_ADMIN = {**POST_ADMIN, "displayName": "Admin"}
"""What a user created with POST_ADMIN holds."""


def json_role(value: str, display: str | None = None, role_id: str = GUID) -> dict[str, Any]:
    """The PATCH shape: the role as a JSON string in ``value`` (MicrosoftDocs/entra-docs#215)."""
    return {"value": json.dumps({"id": role_id, "value": value, "displayName": display or value})}


def patched_admin(role_id: str = GUID, display: str = "Admin") -> dict[str, Any]:
    return {"id": role_id, "value": "Admin", "displayName": display, "display": display}


def ops(*operations: Any) -> dict[str, Any]:
    return {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": list(operations)}


def created(*roles: Any) -> dict[str, Any]:
    """The stored document of a user created with these roles."""
    body = {
        "schemas": [CORE, "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/User"],
        "userName": "bjensen@example.com",
        "roles": list(roles),
    }
    user = UserResource.model_validate(
        normalize_resource(body, KNOWN), scim_ctx=Context.RESOURCE_CREATION_REQUEST, scim_policy=ENTRA_POLICY
    )
    return user.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)


def patched(document: dict[str, Any], *operations: Any) -> dict[str, Any]:
    """The stored document after one PATCH request with these operations."""
    patch = PatchOp[UserResource].model_validate(
        normalize_patch(ops(*operations)), scim_ctx=Context.RESOURCE_PATCH_REQUEST, scim_policy=ENTRA_POLICY
    )
    user = UserResource.model_validate(document, scim_policy=ENTRA_POLICY)
    patch.patch(user, scim_policy=ENTRA_POLICY)
    return user.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)


def roles(document: dict[str, Any]) -> Any:
    return document.get("roles")


# -- normalisation -------------------------------------------------------------


def test_json_string_role_becomes_a_role_selected_by_its_value():
    body = ops({"op": "add", "path": "roles", "value": [json_role("Admin")]})
    assert normalize_patch(body)["Operations"] == [
        {"op": "add", "path": 'roles[value eq "Admin"]', "value": patched_admin()}
    ]


def test_json_members_override_outer_keys_and_unknown_members_are_dropped():
    inner = {"value": "Admin", "type": "AppRole", "origin": "Application", "isEnabled": True}
    outer = {"primary": True, "type": AZURE_ROLE, "value": f"  {json.dumps(inner)} "}
    assert normalize_patch(ops({"op": "replace", "path": "roles", "value": [outer]}))["Operations"] == [
        {"op": "replace", "path": "roles", "value": [{"primary": True, "type": "AppRole", "value": "Admin"}]}
    ]


def test_post_body_roles_get_both_display_names_and_one_role_per_value():
    body = {
        "schemas": [CORE],
        "roles": [
            POST_ADMIN,
            {"value": "Reader", "displayName": "Readers"},
            json_role("admin", "Administrators"),
            "not an object",
        ],
    }
    assert normalize_resource(body, KNOWN)["roles"] == [
        {
            **POST_ADMIN,
            "displayName": "Administrators",
            "display": "Administrators",
            "value": "admin",
            "id": GUID,
        },
        {"value": "Reader", "displayName": "Readers", "display": "Readers"},
        "not an object",
    ]


def test_remove_and_value_quoting():
    tricky = 'A "quoted" \\ role\n'
    assert normalize_patch(
        ops({"op": "Remove", "path": "roles", "value": [json_role(tricky), {"display": "x"}]})
    )["Operations"] == [
        {"op": "Remove", "path": 'roles[value eq "A \\"quoted\\" \\\\ role\\n"]'},
        {"op": "Remove", "path": "roles", "value": [{"display": "x", "displayName": "x"}]},
    ]


def test_primary_value_path_and_empty_values_are_left_to_other_rules():
    untouched = [
        {"op": "replace", "path": 'roles[primary eq "True"].value', "value": "Admin"},
        {"op": "remove", "path": "roles"},
        {"op": "remove", "path": "roles", "value": []},
    ]
    assert normalize_patch(ops(*untouched))["Operations"] == untouched
    assert normalize_patch(ops({"op": "add", "path": "roles", "value": ""}))["Operations"] == [
        {"op": "remove", "path": "roles"}
    ]


# -- applied as the service applies them -----------------------------------------


def test_patch_shape_merges_into_the_role_created_in_post_shape():
    after = patched(created(POST_ADMIN), {"op": "add", "path": "roles", "value": [json_role("Admin")]})
    assert roles(after) == [{**STORED_ADMIN, "id": GUID}]


def test_post_shape_merges_into_the_role_added_in_patch_shape():
    document = patched(created(), {"op": "add", "path": "roles", "value": [json_role("Admin")]})
    assert roles(document) == [patched_admin()]
    assert roles(patched(document, {"op": "add", "path": "roles", "value": [POST_ADMIN]})) == [
        {**STORED_ADMIN, "id": GUID}
    ]


def test_add_twice_is_idempotent():
    add = {"op": "add", "path": "roles", "value": [json_role("Admin")]}
    once = patched(created(), add)
    assert roles(patched(once, add)) == [patched_admin()]
    assert roles(patched(created(), add, add)) == [patched_admin()]
    both_shapes = {"op": "add", "path": "roles", "value": [json_role("Admin"), POST_ADMIN]}
    assert roles(patched(created(), both_shapes)) == [{**STORED_ADMIN, "id": GUID}]


def test_add_creates_a_role_beside_the_others():
    after = patched(
        created(POST_ADMIN), {"op": "Add", "path": "roles", "value": [json_role("Reader", role_id="r1")]}
    )
    assert roles(after) == [
        STORED_ADMIN,
        {"id": "r1", "value": "Reader", "displayName": "Reader", "display": "Reader"},
    ]


def test_remove_in_json_shape_removes_the_role_added_in_post_shape():
    reader = {"value": "Reader", "display": "Reader"}
    document = created(POST_ADMIN, reader)
    remove = {"op": "remove", "path": "roles", "value": [json_role("Admin")]}
    after = patched(document, remove)
    assert roles(after) == [{**reader, "displayName": "Reader"}]
    # removing a role that is not there is a success that changes nothing (RFC 7644 §3.5.2.2)
    assert roles(patched(after, remove)) == [{**reader, "displayName": "Reader"}]


def test_replace_of_the_whole_list():
    replace = {
        "op": "replace",
        "path": "roles",
        "value": [json_role("Reader", role_id="r1"), json_role("Writer")],
    }
    assert roles(patched(created(POST_ADMIN), replace)) == [
        {"id": "r1", "value": "Reader", "displayName": "Reader", "display": "Reader"},
        {"id": GUID, "value": "Writer", "displayName": "Writer", "display": "Writer"},
    ]


def test_capitalised_ops_and_urn_paths():
    path = "URN:ietf:params:scim:schemas:core:2.0:User:Roles"
    document = patched(created(), {"op": "Add", "path": path, "value": [json_role("Admin")]})
    assert roles(document) == [patched_admin()]
    document = patched(document, {"op": "Replace", "path": "Roles", "value": [json_role("Admin", "Admins")]})
    assert roles(document) == [patched_admin(display="Admins")]
    assert roles(patched(document, {"op": "Remove", "path": path, "value": [json_role("Admin")]})) is None


def test_invalid_json_string_stays_a_plain_value():
    add = {"op": "add", "path": "roles", "value": [{"value": "{not json", "primary": False}]}
    document = patched(created(), add)
    assert roles(document) == [{"value": "{not json", "primary": False}]
    assert (
        roles(patched(document, {"op": "remove", "path": "roles", "value": [{"value": "{not json"}]})) is None
    )


def test_pathless_forms():
    document = patched(
        created(POST_ADMIN), {"op": "replace", "value": {"roles": [json_role("Reader", role_id="r1")]}}
    )
    assert roles(document) == [{"id": "r1", "value": "Reader", "displayName": "Reader", "display": "Reader"}]
    add = {"op": "Add", "value": {"title": "Guide", "roles": [json_role("Reader", "Readers", role_id="r1")]}}
    after = patched(document, add)
    assert after["title"] == "Guide"
    assert roles(after) == [{"id": "r1", "value": "Reader", "displayName": "Readers", "display": "Readers"}]


def test_primary_role_value_path_and_filters_find_roles_by_value():
    document = created({**POST_ADMIN, "primary": True})
    after = patched(document, {"op": "replace", "path": 'roles[primary eq "True"].value', "value": "Reader"})
    assert roles(after) == [{**STORED_ADMIN, "primary": True, "value": "Reader"}]
    user = UserResource.model_validate(
        patched(created(), {"op": "add", "path": "roles", "value": [json_role("Admin")]})
    )
    assert ScimFilter[UserResource]('roles[value eq "admin"]').match(user) is True
    assert ScimFilter[UserResource]('roles.display eq "Admin"').match(user) is True
