"""Discovery documents are generated from the models and claim only what works."""

from __future__ import annotations

from scim.model.discovery import Discovery
from scim.model.resources import GROUP, USER

BASE = "https://scim.example/scim/v2"
discovery = Discovery((USER, GROUP), max_results=123)


def attribute(schema, name):
    return next(a for a in schema["attributes"] if a["name"] == name)


def test_service_provider_config_is_honest():
    config = discovery.service_provider_config(BASE)
    assert config["patch"] == {"supported": True}
    assert config["filter"] == {"supported": True, "maxResults": 123}
    assert config["etag"] == {"supported": True}
    assert config["bulk"] == {"supported": True, "maxOperations": 100, "maxPayloadSize": 1_048_576}
    assert config["sort"] == {"supported": True}
    assert config["pagination"] == {
        "cursor": True,
        "index": True,
        "defaultPaginationMethod": "index",
        "defaultPageSize": 123,
        "maxPageSize": 123,
    }
    assert config["changePassword"] == {"supported": False}
    assert config["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    assert config["meta"]["location"] == f"{BASE}/ServiceProviderConfig"


def test_resource_types():
    user, group = discovery.resource_types(BASE)
    assert group["id"] == "Group" and group["endpoint"] == "/Groups" and "schemaExtensions" not in group
    assert user["id"] == "User" and user["endpoint"] == "/Users"
    assert user["schema"] == "urn:ietf:params:scim:schemas:core:2.0:User"
    assert user["schemaExtensions"] == [
        {"schema": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", "required": False}
    ]
    assert user["meta"] == {"resourceType": "ResourceType", "location": f"{BASE}/ResourceTypes/User"}


def test_schemas_declare_canonical_types_for_entra_discovery():
    core, enterprise, group = discovery.schemas(BASE)
    assert group["id"] == "urn:ietf:params:scim:schemas:core:2.0:Group" and group["name"] == "Group"
    assert attribute(group, "displayName")["required"] is True
    assert {s["name"] for s in attribute(group, "members")["subAttributes"]} >= {"value", "$ref", "type"}
    assert core["id"] == "urn:ietf:params:scim:schemas:core:2.0:User" and core["name"] == "User"
    assert enterprise["name"] == "EnterpriseUser"
    for name, expected in [
        ("emails", {"work", "home", "other"}),
        ("phoneNumbers", {"work", "mobile", "fax"}),
        ("addresses", {"work", "home", "other"}),
    ]:
        type_ = next(s for s in attribute(core, name)["subAttributes"] if s["name"] == "type")
        assert expected <= set(type_["canonicalValues"]), name
    assert attribute(core, "userName")["uniqueness"] == "server"
    assert attribute(core, "userName")["caseExact"] is False


def test_schemas_advertise_only_stored_attributes():
    core, _, _ = discovery.schemas(BASE)
    assert "password" not in {a["name"] for a in core["attributes"]}


def test_manager_ref_is_optional_and_value_required():
    _, enterprise, _ = discovery.schemas(BASE)
    manager = attribute(enterprise, "manager")
    subs = {s["name"]: s for s in manager["subAttributes"]}
    assert subs["value"]["required"] is True
    assert subs["$ref"]["required"] is False


def _walk(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)
    else:
        yield value


def test_no_null_values_anywhere():
    documents = [
        discovery.service_provider_config(BASE),
        *discovery.resource_types(BASE),
        *discovery.schemas(BASE),
    ]
    assert None not in list(_walk(documents))
