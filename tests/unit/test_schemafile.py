"""The schema-extension file: what it accepts, and errors that name the line and the rule."""

from __future__ import annotations

import json

import pytest

from scim.config import Settings
from scim.model.resources import build_kinds
from scim.model.schemafile import SchemaFileError, load_schema_file, parse_schema_text
from scim.runtime import Runtime

URN = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User"

GOOD = f"""version: 1
uniqueExternalId: [User]
extensions:
  - schema: {URN}
    resourceType: User
    attributes:
      - name: tag
      - name: badge
        uniqueness: server
      - name: site
        type: complex
        subAttributes:
          - {{name: value, type: string}}
          - {{name: type, type: string, canonicalValues: [work, home]}}
"""


def test_a_valid_file_builds_models_indexes_and_schemas():
    declared = parse_schema_text(GOOD, "ext.yaml")
    user, group = build_kinds(declared)
    assert [e.urn for e in declared.of("User")] == [URN]
    assert declared.of("Group") == ()
    assert URN in user.model.get_extension_models()
    indexed = {a.name: a.unique for a in user.indexed}
    assert indexed == {"userName": True, "externalId": True, f"{URN}:badge": True}
    assert {a.name: a.unique for a in group.indexed} == {"displayName": True, "externalId": False}
    site = next(a for a in declared.extensions[0].schema.attributes if a.name == "site")
    assert [s.name for s in site.sub_attributes] == ["value", "type"]


def test_json_is_read_the_same_way(tmp_path):
    path = tmp_path / "ext.json"
    path.write_text(json.dumps({"extensions": [{"schema": URN, "resourceType": "User",
                                                "attributes": [{"name": "tag"}]}]}))  # fmt: skip
    assert [e.urn for e in load_schema_file(str(path)).extensions] == [URN]
    assert load_schema_file("").extensions == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("extensions:\n  - schema: x\n", "ext.yaml: line 2: extensions[0].schema: 'x' is not a URN"),
        (f"extensions:\n  - schema: {URN}\n    resourceType: Account\n",
         "ext.yaml: line 3: extensions[0].resourceType: 'Account' is not one of User, Group"),
        (f"extensions:\n  - schema: {URN}\n    resourceType: User\n    attributes:\n      - name: a\n"
         "        tpye: string\n", "ext.yaml: line 6: extensions[0].attributes[0].tpye: unknown key 'tpye'"),
        (f"extensions:\n  - schema: {URN}\n    resourceType: User\n    attributes:\n      - name: a\n"
         "        multiValued: true\n        uniqueness: server\n",
         "ext.yaml: line 7: extensions[0].attributes[0].uniqueness: uniqueness needs a top-level, single-valued"),
        (f"extensions:\n  - schema: {URN}\n    resourceType: User\n    attributes:\n      - name: a\n"
         "        mutability: writeOnly\n", "line 6: extensions[0].attributes[0].mutability: 'writeOnly' is not one of"),
        (f"extensions:\n  - schema: {URN}\n    resourceType: User\n    attributes:\n      - name: a\n"
         "      - name: A\n", "line 6: extensions[0].attributes[1].name: 'A' is declared twice"),
        (f"extensions:\n  - schema: {URN}\n    resourceType: User\n    attributes:\n      - name: 1a\n",
         "line 5: extensions[0].attributes[0].name: '1a' is not an attribute name"),
        (f"extensions:\n  - schema: {URN}\n    resourceType: User\n    attributes:\n      - name: c\n"
         "        type: complex\n", "line 5: extensions[0].attributes[0].subAttributes: a complex attribute needs"),
        ("extensions:\n  - schema: urn:ietf:params:scim:schemas:core:2.0:User\n    resourceType: User\n",
         "line 2: extensions[0].schema: urn:ietf:params:scim:schemas:core:2.0:User is built in"),
        ("uniqueExternalId: [Users]\n", "line 1: uniqueExternalId[0]: 'Users' is not one of User, Group"),
        ("extensions: [\n", "ext.yaml: line 2: not valid YAML"),
    ],
)  # fmt: skip
def test_errors_name_the_line_and_the_rule(text, expected):
    with pytest.raises(SchemaFileError) as raised:
        parse_schema_text(text, "ext.yaml")
    assert expected in str(raised.value)


def test_a_json_syntax_error_names_its_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "extensions": [\n    {"schema": }\n  ]\n}\n')
    with pytest.raises(SchemaFileError, match=r"bad.json: line 3: not valid JSON"):
        load_schema_file(str(path))


def test_a_missing_file_or_wrong_suffix_is_an_error(tmp_path):
    with pytest.raises(SchemaFileError, match="cannot read"):
        load_schema_file("absent.yaml", tmp_path)
    with pytest.raises(SchemaFileError, match=r"\.json, \.yaml or \.yml"):
        load_schema_file("schema.txt", tmp_path)


async def test_a_bad_file_keeps_the_endpoint_from_serving_and_health_says_why(tmp_path):
    (tmp_path / "ext.yaml").write_text("extensions:\n  - schema: nope\n")
    settings = Settings(storage_connection_string="UseDevelopmentStorage=true", token_digests=(b"x" * 32,),
                        schema_file="ext.yaml")  # fmt: skip
    runtime = Runtime(lambda: settings, root=tmp_path)
    health = runtime.health()
    assert health.status == 503
    assert json.loads(health.body)["detail"].startswith("ext.yaml: line 2: extensions[0].schema")
    from scim.web.api import Request

    response = await runtime.handle("users", Request("GET", "http://h/scim/v2/Users", {}, {}, {}, b""))
    assert response.status == 503
    assert "schema file is invalid" in json.loads(response.body)["detail"]
    assert response.headers["Retry-After"] == "60"
