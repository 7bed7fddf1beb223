"""How an operator's schema-extensions file reaches the app, and the example and docs that describe it.

Offline checks of files, and of the docs against the loader (``scim.model.schemafile``):

- examples/schema-extensions.yaml and the snippets of docs/schema-extensions.md load; the example has
  the attributes the docs walk through and uses only keys the docs document;
- each error message docs/schema-extensions.md shows is the one the loader gives for that mistake;
- the Functions package (``.funcignore``) keeps a schema file at the app root and leaves examples/ out;
- the on-premises stack mounts deploy/on-premises/schema/ read-only where .env.example points, in every
  container that reads the settings;
- local.settings.example.json carries both settings with their defaults;
- every relative link in README.md and docs/ points at a file and heading that exist.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import pytest
import yaml

from scim.model.schemafile import SchemaFileError, load_schema_file, parse_schema_text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "schema-extensions.yaml"
GUIDE = ROOT / "docs" / "schema-extensions.md"
DEPLOY = ROOT / "deploy" / "on-premises"
USER_EXTENSION = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User"
GROUP_EXTENSION = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:Group"
BUILT_IN = {
    "urn:ietf:params:scim:schemas:core:2.0:User",
    "urn:ietf:params:scim:schemas:core:2.0:Group",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
}
ATTRNAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")  # RFC 7643 §2.1


@pytest.fixture(scope="module")
def example() -> dict:
    loaded = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def documented_keys(table_title: str) -> set[str]:
    """First-column names of the table under ``**<table_title>**`` in docs/schema-extensions.md."""
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split(f"\n**{table_title}**", 1)[1].split("\n\n", 2)[1]
    return {re.findall(r"`([A-Za-z]+)`", line.split("|")[1])[0] for line in section.splitlines()[2:]}


def test_the_guide_documents_the_three_tables() -> None:
    assert documented_keys("Top level") == {"version", "uniqueExternalId", "extensions"}
    assert {"schema", "resourceType", "attributes", "required"} <= documented_keys("An extension")
    assert {"name", "type", "uniqueness", "indexed", "subAttributes"} <= documented_keys("An attribute")


def test_the_example_uses_only_documented_keys(example: dict) -> None:
    assert set(example) <= documented_keys("Top level")
    extension_keys, attribute_keys = documented_keys("An extension"), documented_keys("An attribute")
    for extension in example["extensions"]:
        assert set(extension) <= extension_keys, extension["schema"]
        for attribute in extension["attributes"]:
            assert set(attribute) <= attribute_keys, attribute["name"]


def test_the_example_declares_the_walk_through_attributes(example: dict) -> None:
    assert example["version"] == 1
    assert example["uniqueExternalId"] == []
    extensions = {e["schema"]: e for e in example["extensions"]}
    assert set(extensions) == {USER_EXTENSION, GROUP_EXTENSION}
    assert extensions[USER_EXTENSION]["resourceType"] == "User"
    assert extensions[GROUP_EXTENSION]["resourceType"] == "Group"
    user = {a["name"]: a for a in extensions[USER_EXTENSION]["attributes"]}
    assert {name: a["type"] for name, a in user.items()} == {
        "tag": "string",
        "badge": "string",
        "siteCode": "string",
        "hireDate": "dateTime",
        "isContractor": "boolean",
        "clearanceLevel": "integer",
    }
    assert user["badge"]["uniqueness"] == "server"
    assert user["siteCode"]["indexed"] is True
    group = {a["name"]: a["type"] for a in extensions[GROUP_EXTENSION]["attributes"]}
    assert group == {"description": "string"}


def test_the_example_follows_the_documented_rules(example: dict) -> None:
    schemas = [e["schema"] for e in example["extensions"]]
    assert len(set(schemas)) == len(schemas)
    for extension in example["extensions"]:
        assert extension["schema"].startswith("urn:") and extension["schema"] not in BUILT_IN
        names = [a["name"] for a in extension["attributes"]]
        assert len({n.lower() for n in names}) == len(names)
        for attribute in extension["attributes"]:
            assert ATTRNAME.fullmatch(attribute["name"])
            if attribute.get("uniqueness", "none") != "none" or attribute.get("indexed"):
                assert attribute["type"] in {"string", "reference"} and not attribute.get("multiValued")


def test_the_example_loads() -> None:
    declared = load_schema_file(EXAMPLE.name, EXAMPLE.parent)
    indexed = {e.urn: e.indexed for e in declared.extensions}
    assert indexed == {USER_EXTENSION: ("badge", "siteCode"), GROUP_EXTENSION: ()}


def guide_section(number: int) -> str:
    text = GUIDE.read_text(encoding="utf-8")
    return text.split(f"\n## {number}. ", 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize(("language", "source"), [("yaml", "s.yaml"), ("json", "s.json")])
def test_the_guides_snippets_load(language: str, source: str) -> None:
    snippet = guide_section(3).split(f"```{language}\n", 1)[1].split("```", 1)[0]
    assert [e.urn for e in parse_schema_text(snippet, source).extensions] == [USER_EXTENSION]


def _file(attributes: str, head: str = f"  - schema: {USER_EXTENSION}\n    resourceType: User\n") -> str:
    return "version: 1\nextensions:\n" + head + "    attributes:\n" + attributes


# One mistake per row of the guide's table (section 4), by the row's first column.
MISTAKES = {
    "YAML syntax": "version: 1\nextensions:\n  - schema: x\n   resourceType: User\n",
    "JSON syntax": '{"version": 1,\n "extensions": [\n  {"schema": "urn:a:b",}\n ]\n}',
    "Unknown key (a typo)": _file("      - name: badge\n        uniquness: server\n"),
    "Version": "version: 2\n",
    "Schema URN": _file("      - name: tag\n", "  - schema: CustomExtensionName\n    resourceType: User\n"),
    "Built-in URN": _file(
        "      - name: tag\n",
        "  - schema: urn:ietf:params:scim:schemas:extension:enterprise:2.0:User\n    resourceType: User\n",
    ),
    "Each URN once": "version: 1\nextensions:\n"
    + f"  - schema: {USER_EXTENSION}\n    resourceType: User\n    attributes:\n      - name: tag\n" * 2,
    "Resource type": _file("      - name: tag\n", f"  - schema: {USER_EXTENSION}\n    resourceType: Users\n"),
    "At least one attribute": f"version: 1\nextensions:\n  - schema: {USER_EXTENSION}\n    resourceType: User\n",
    "Attribute name": _file("      - name: 2fa\n"),
    "Each name once": _file("      - name: tag\n      - name: Tag\n"),
    "Type": _file("      - name: tag\n        type: text\n"),
    "No `writeOnly`": _file("      - name: pin\n        mutability: writeOnly\n"),
    "Where `uniqueness` fits": _file(
        "      - name: badges\n        multiValued: true\n        uniqueness: server\n"
    ),
    "Where `indexed` fits": _file("      - name: hired\n        type: dateTime\n        indexed: true\n"),
    "Complex needs sub-attributes": _file("      - name: site\n        type: complex\n"),
    "One level of complex": _file(
        "      - name: site\n        type: complex\n        subAttributes:\n"
        "          - name: room\n            type: complex\n"
    ),
    "`referenceTypes` only on references": _file("      - name: tag\n        referenceTypes: [User]\n"),
    "`uniqueExternalId`": "version: 1\nuniqueExternalId: [Users]\n",
}


def documented_errors() -> dict[str, str]:
    rows = {}
    for line in guide_section(4).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("| ") else []
        if len(cells) == 2 and cells[1].startswith("`") and cells[1].endswith("`"):
            rows[cells[0]] = cells[1][1:-1]
    return rows


def _message(rule: str, tmp_path: Path) -> str:
    try:
        if rule == "The file cannot be read":
            load_schema_file("schema-extensions.yaml", tmp_path)
        elif rule == "The file's extension":
            load_schema_file("schema.txt", tmp_path)
        else:
            source = "schema-extensions.json" if rule == "JSON syntax" else "schema-extensions.yaml"
            parse_schema_text(MISTAKES[rule], source)
    except SchemaFileError as error:
        return str(error)
    raise AssertionError(f"{rule}: the loader accepted the mistake")


def test_every_documented_error_has_a_mistake() -> None:
    rules = set(documented_errors())
    assert rules == {*MISTAKES, "The file cannot be read", "The file's extension"}


@pytest.mark.parametrize("rule", sorted(documented_errors()))
def test_the_documented_error_is_the_loaders(rule: str, tmp_path: Path) -> None:
    documented = documented_errors()[rule]
    actual = _message(rule, tmp_path)
    if documented.endswith("…"):
        assert actual.startswith(documented[:-1]), actual
    else:
        assert actual == documented


# ------------------------------------------------------------------------- the Functions package


def funcignored(rules: str, path: str) -> bool:
    """Whether a .funcignore (gitignore syntax) leaves ``path`` out of the package.

    Enough of the syntax for this file: comments, negation, patterns with and without a slash.
    """
    parts = path.split("/")
    ignored = False
    for raw in rules.splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negated = rule.startswith("!")
        pattern = rule.removeprefix("!").rstrip("/")
        if "/" in pattern.lstrip("/"):
            hit = fnmatch.fnmatchcase(path, pattern.lstrip("/")) or any(
                fnmatch.fnmatchcase("/".join(parts[: n + 1]), pattern.lstrip("/")) for n in range(len(parts))
            )
        else:
            hit = any(fnmatch.fnmatchcase(part, pattern) for part in parts)
        if hit:
            ignored = not negated
    return ignored


def test_the_funcignore_matcher() -> None:
    rules = "examples\n*.md\n.git*\n!README.md\n"
    assert funcignored(rules, "examples/schema-extensions.yaml")
    assert funcignored(rules, "docs/x.md")
    assert funcignored(rules, ".gitignore")
    assert not funcignored(rules, "README.md")
    assert not funcignored(rules, "schema-extensions.yaml")


@pytest.mark.parametrize(
    "path", ["schema-extensions.yaml", "schema-extensions.yml", "schema-extensions.json"]
)
def test_the_package_keeps_a_schema_file_at_the_app_root(path: str) -> None:
    rules = (ROOT / ".funcignore").read_text(encoding="utf-8")
    assert not funcignored(rules, path)
    assert not funcignored(rules, "function_app.py") and not funcignored(rules, "host.json")


def test_the_package_leaves_the_example_out() -> None:
    assert funcignored((ROOT / ".funcignore").read_text(encoding="utf-8"), "examples/schema-extensions.yaml")


# ------------------------------------------------------------------------- on-premises


def env_example() -> dict[str, str]:
    values = {}
    for line in (DEPLOY / ".env.example").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if match:
            values[match.group(1)] = match.group(2).strip()
    return values


def test_the_env_example_carries_both_settings_with_their_defaults() -> None:
    values = env_example()
    assert values["SCIM_SCHEMA_FILE"] == ""
    assert values["SCIM_UNKNOWN_ATTRIBUTES"] == "reject"
    assert "SCIM_SCHEMA_FILE=/schema/schema-extensions.yaml" in (DEPLOY / ".env.example").read_text()


def test_every_container_reading_the_env_file_mounts_the_schema_folder_read_only() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    readers = {name: s for name, s in compose["services"].items() if ".env" in (s.get("env_file") or [])}
    assert set(readers) == {"scim", "relay"}
    for name, service in readers.items():
        assert "./schema:/schema:ro" in service.get("volumes", []), name


# ------------------------------------------------------------------------- local settings


def test_local_settings_example_carries_both_settings() -> None:
    values = json.loads((ROOT / "local.settings.example.json").read_text(encoding="utf-8"))["Values"]
    assert values["SCIM_SCHEMA_FILE"] == ""
    assert values["SCIM_UNKNOWN_ATTRIBUTES"] == "reject"


# ------------------------------------------------------------------------- links between the docs


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors: lower case, punctuation dropped (``-`` and ``_`` kept), spaces to ``-``."""
    anchors = set()
    for line in markdown.splitlines():
        match = re.match(r"^#{1,6}\s+(.*)$", line)
        if match:
            anchors.add(re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-"))
    return anchors


def test_heading_anchors_follow_github() -> None:
    text = "## 9. `externalId`: indexed, not unique\n### 13.8 400 naming an attribute, or 503\n"
    assert heading_anchors(text) == {"9-externalid-indexed-not-unique", "138-400-naming-an-attribute-or-503"}
    assert heading_anchors("## From the terminal: `python -m scim token`\n") == {
        "from-the-terminal-python--m-scim-token"
    }


@pytest.mark.parametrize(
    "page",
    [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))],
    ids=lambda p: p.relative_to(ROOT).as_posix(),
)
def test_relative_links_resolve(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md":
            if anchor not in heading_anchors(destination.read_text(encoding="utf-8")):
                broken.append(f"{target}: no such heading")
    assert broken == []
