"""Operator-declared schema extensions: the file, its rules, and its errors (DESIGN §10).

An operator declares the attributes an application needs beyond RFC 7643's
core and enterprise schemas in one JSON or YAML file (``SCIM_SCHEMA_FILE``,
reference: ``docs/schema-extensions.md``)::

    version: 1
    uniqueExternalId: []            # resource types whose externalId is unique
    extensions:
      - schema: urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User
        resourceType: User
        attributes:
          - {name: tag, type: string}

Each attribute is an RFC 7643 §7 attribute definition (``type`` from §2.3,
``multiValued``, ``caseExact``, ``required``, ``mutability``, ``returned``,
``uniqueness``, ``canonicalValues``, ``referenceTypes``, ``subAttributes``),
plus ``indexed``: an ``eq`` filter on it is answered by an index row.

The file is checked whole when the endpoint starts: every error names the
file, the line and the rule, and a bad file keeps the endpoint from serving
(``GET /scim/health`` repeats the error). From the declarations this module
builds scim2-models ``Schema`` documents; ``scim.model.resources`` turns them into
the models that validate, patch, filter and describe resources, so one
declaration drives everything (no second hand-kept list).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from scim2_models import Attribute, Schema

__all__ = [
    "BUILT_IN_SCHEMAS",
    "DeclaredExtension",
    "DeclaredSchemas",
    "SchemaFileError",
    "load_schema_file",
    "parse_schema_text",
]

BUILT_IN_SCHEMAS = frozenset(
    {
        "urn:ietf:params:scim:schemas:core:2.0:user",
        "urn:ietf:params:scim:schemas:core:2.0:group",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user",
    }
)
"""Schemas the service serves itself (lower-case): a file cannot redeclare them."""

RESOURCE_TYPES = ("User", "Group")
MAX_ATTRIBUTES = 100
"""Attributes per extension (sub-attributes included): keeps every model and /Schemas small."""

_ATTRNAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
"""RFC 7643 §2.1: ``ATTRNAME = ALPHA *(nameChar)``, ``nameChar = "-" / "_" / DIGIT / ALPHA``."""
_URN = re.compile(r"^urn:[A-Za-z0-9][A-Za-z0-9-]{0,31}:[\x21-\x7e]+$")
"""RFC 8141 URN syntax (NID and an NSS of printable characters), as RFC 7643 §3 requires of schema ids."""
_TYPES = ("string", "boolean", "integer", "decimal", "dateTime", "reference", "binary", "complex")
_MUTABILITY = ("readWrite", "immutable", "readOnly")
_RETURNED = ("default", "always", "request", "never")
_UNIQUENESS = ("none", "server", "global")
_INDEXABLE = ("string", "reference")

_FILE_KEYS = {"version", "uniqueExternalId", "extensions"}
_EXTENSION_KEYS = {"schema", "resourceType", "name", "description", "required", "attributes"}
_ATTRIBUTE_KEYS = {
    "name",
    "type",
    "multiValued",
    "description",
    "required",
    "caseExact",
    "mutability",
    "returned",
    "uniqueness",
    "indexed",
    "canonicalValues",
    "referenceTypes",
    "subAttributes",
}


class SchemaFileError(ValueError):
    """The schema file cannot be used; the message names the file, the line and the rule."""


@dataclass(frozen=True)
class DeclaredExtension:
    """One declared extension schema of a resource type.

    Attributes:
        resource_type: ``User`` or ``Group``.
        schema: The RFC 7643 §7 schema document (scim2-models ``Schema``).
        required: Whether every resource of the type must carry it (RFC 7643 §6).
        indexed: Names of top-level attributes with an index row, unique or not.
    """

    resource_type: str
    schema: Schema
    required: bool = False
    indexed: tuple[str, ...] = ()

    @property
    def urn(self) -> str:
        """The extension's schema URN."""
        return str(self.schema.id)


@dataclass(frozen=True)
class DeclaredSchemas:
    """Everything a schema file declares (empty: the built-in schemas only)."""

    extensions: tuple[DeclaredExtension, ...] = ()
    unique_external_id: frozenset[str] = frozenset()
    source: str = ""
    """Where the declarations came from (for logs)."""

    def of(self, resource_type: str) -> tuple[DeclaredExtension, ...]:
        """The extensions declared for ``resource_type``."""
        return tuple(e for e in self.extensions if e.resource_type == resource_type)


@dataclass
class _Lines:
    """Line numbers of the values in the file, by their path of keys and indexes."""

    by_path: dict[tuple[str | int, ...], int] = field(default_factory=dict)

    def of(self, path: tuple[str | int, ...]) -> int | None:
        while path:
            if path in self.by_path:
                return self.by_path[path]
            path = path[:-1]
        return self.by_path.get(())


def _lines_of(text: str) -> _Lines:
    """Map each key path to its line, from the YAML node tree (JSON is read the same way)."""
    lines = _Lines()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines

    def walk(node: Any, path: tuple[str | int, ...]) -> None:
        lines.by_path.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = str(key.value)
                lines.by_path[(*path, name)] = key.start_mark.line + 1
                walk(value, (*path, name))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*path, index))

    if root is not None:
        walk(root, ())
    return lines


class _Checker:
    """Validates the parsed file, naming the line and the rule of the first error."""

    def __init__(self, source: str, lines: _Lines) -> None:
        self._source = source
        self._lines = lines

    def fail(self, path: tuple[str | int, ...], rule: str) -> SchemaFileError:
        line = self._lines.of(path)
        where = f"{self._source}: line {line}" if line is not None else self._source
        dotted = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
        return SchemaFileError(f"{where}: {dotted + ': ' if dotted else ''}{rule}")

    def mapping(self, value: Any, path: tuple[str | int, ...], allowed: set[str]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, "must be a mapping of keys to values")
        for key in value:
            if not isinstance(key, str) or key not in allowed:
                raise self.fail(
                    (*path, str(key)), f"unknown key {key!r}; the keys are {', '.join(sorted(allowed))}"
                )
        return value

    def sequence(self, value: Any, path: tuple[str | int, ...]) -> Sequence[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(path, "must be a list")
        return value

    def boolean(self, value: Any, path: tuple[str | int, ...], default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(path, "must be true or false")
        return value

    def text(self, value: Any, path: tuple[str | int, ...], *, required: bool = False) -> str | None:
        if value is None:
            if required:
                raise self.fail(path, "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, "must be a non-empty string")
        return value

    def choice(self, value: Any, path: tuple[str | int, ...], choices: Sequence[str], default: str) -> str:
        if value is None:
            return default
        if value not in choices:
            hint = " (writeOnly values would be stored in plaintext; it is not supported)" * (
                value == "writeOnly"
            )
            raise self.fail(path, f"{value!r} is not one of {', '.join(choices)}{hint}")
        return str(value)

    def strings(self, value: Any, path: tuple[str | int, ...]) -> list[str] | None:
        items = self.sequence(value, path)
        if not all(isinstance(item, str) and item for item in items):
            raise self.fail(path, "must be a list of non-empty strings")
        return list(items) or None


def _attribute(check: _Checker, raw: Any, path: tuple[str | int, ...], depth: int) -> tuple[Attribute, bool]:
    """One RFC 7643 §7 attribute definition; also whether it is ``indexed``."""
    data = check.mapping(raw, path, _ATTRIBUTE_KEYS)
    name = check.text(data.get("name"), (*path, "name"), required=True)
    assert name is not None  # noqa: S101 - required=True
    if not _ATTRNAME.match(name):
        raise check.fail((*path, "name"), f"{name!r} is not an attribute name (RFC 7643 §2.1: a letter, "
                         "then letters, digits, '-' or '_')")  # fmt: skip
    kind = check.choice(data.get("type"), (*path, "type"), _TYPES, "string")
    multi = check.boolean(data.get("multiValued"), (*path, "multiValued"), False)
    uniqueness = check.choice(data.get("uniqueness"), (*path, "uniqueness"), _UNIQUENESS, "none")
    indexed = check.boolean(data.get("indexed"), (*path, "indexed"), False) or uniqueness != "none"
    if indexed and (depth or multi or kind not in _INDEXABLE):
        key = "uniqueness" if uniqueness != "none" else "indexed"
        raise check.fail(
            (*path, key), f"{key} needs a top-level, single-valued string or reference attribute"
        )
    sub_attributes: list[Attribute] | None = None
    if kind == "complex":
        if depth:
            raise check.fail((*path, "type"), "a sub-attribute cannot be complex (RFC 7643 §2.3.8)")
        raws = check.sequence(data.get("subAttributes"), (*path, "subAttributes"))
        if not raws:
            raise check.fail((*path, "subAttributes"), "a complex attribute needs subAttributes")
        sub_attributes = [_attribute(check, item, (*path, "subAttributes", i), 1)[0] for i, item in
                          enumerate(raws)]  # fmt: skip
        _no_duplicates(check, [a.name or "" for a in sub_attributes], (*path, "subAttributes"))
    elif data.get("subAttributes"):
        raise check.fail((*path, "subAttributes"), "only a complex attribute has subAttributes")
    references = check.strings(data.get("referenceTypes"), (*path, "referenceTypes"))
    if references and kind != "reference":
        raise check.fail((*path, "referenceTypes"), "only a reference attribute has referenceTypes")
    attribute = Attribute(
        name=name,
        type=Attribute.Type(kind),
        multi_valued=multi,
        description=check.text(data.get("description"), (*path, "description")),
        required=check.boolean(data.get("required"), (*path, "required"), False),
        case_exact=check.boolean(data.get("caseExact"), (*path, "caseExact"), False),
        mutability=check.choice(data.get("mutability"), (*path, "mutability"), _MUTABILITY, "readWrite"),
        returned=check.choice(data.get("returned"), (*path, "returned"), _RETURNED, "default"),
        uniqueness=uniqueness,
        canonical_values=check.strings(data.get("canonicalValues"), (*path, "canonicalValues")),
        reference_types=references or (["external"] if kind == "reference" else None),
        sub_attributes=sub_attributes,
    )
    return attribute, indexed


def _no_duplicates(check: _Checker, names: list[str], path: tuple[str | int, ...]) -> None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name.lower() in seen:
            raise check.fail(
                (*path, index, "name"), f"{name!r} is declared twice (names are case-insensitive)"
            )
        seen.add(name.lower())


def _default_name(urn: str) -> str:
    """A schema name from its URN: ``…:CustomExtensionName:2.0:User`` → ``CustomExtensionNameUser``."""
    parts = [p for p in urn.split(":")[1:] if p and not p[0].isdigit()]
    return "".join(parts[-2:]) if len(parts) >= 2 else (parts[-1] if parts else "Extension")


def _extension(check: _Checker, raw: Any, path: tuple[str | int, ...]) -> DeclaredExtension:
    data = check.mapping(raw, path, _EXTENSION_KEYS)
    urn = check.text(data.get("schema"), (*path, "schema"), required=True)
    assert urn is not None  # noqa: S101 - required=True
    if not _URN.match(urn):
        raise check.fail((*path, "schema"), f"{urn!r} is not a URN (RFC 7643 §3: a schema id is a URN)")
    if urn.lower() in BUILT_IN_SCHEMAS:
        raise check.fail((*path, "schema"), f"{urn} is built in; declare an extension with its own URN")
    resource_type = check.choice(data.get("resourceType"), (*path, "resourceType"), RESOURCE_TYPES, "")
    if not resource_type:
        raise check.fail((*path, "resourceType"), "is required (User or Group)")
    raws = check.sequence(data.get("attributes"), (*path, "attributes"))
    if not raws:
        raise check.fail((*path, "attributes"), "an extension needs at least one attribute")
    declared = [_attribute(check, item, (*path, "attributes", i), 0) for i, item in enumerate(raws)]
    attributes = [attribute for attribute, _ in declared]
    _no_duplicates(check, [a.name or "" for a in attributes], (*path, "attributes"))
    total = sum(1 + len(a.sub_attributes or []) for a in attributes)
    if total > MAX_ATTRIBUTES:
        raise check.fail(
            (*path, "attributes"), f"{total} attributes; an extension holds at most {MAX_ATTRIBUTES}"
        )
    name = check.text(data.get("name"), (*path, "name")) or _default_name(urn)
    schema = Schema(
        id=urn,
        name=name,
        description=check.text(data.get("description"), (*path, "description")) or name,
        attributes=attributes,
    )
    return DeclaredExtension(
        resource_type=resource_type,
        schema=schema,
        required=check.boolean(data.get("required"), (*path, "required"), False),
        indexed=tuple(str(a.name) for a, indexed in declared if indexed),
    )


def _parse(text: str, source: str) -> Any:
    try:
        if source.lower().endswith(".json"):
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as error:
        raise SchemaFileError(f"{source}: line {error.lineno}: not valid JSON: {error.msg}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise SchemaFileError(f"{source}: {where}not valid YAML: {problem}") from None


def parse_schema_text(text: str, source: str = "schema file") -> DeclaredSchemas:
    """Validate a schema file's text and return its declarations.

    Raises:
        SchemaFileError: The first rule the file breaks, with its line.
    """
    data = _parse(text, source)
    check = _Checker(source, _lines_of(text))
    if data is None:
        return DeclaredSchemas(source=source)
    root = check.mapping(data, (), _FILE_KEYS)
    if root.get("version", 1) != 1:
        raise check.fail(("version",), "only version 1 is known")
    unique = check.strings(root.get("uniqueExternalId"), ("uniqueExternalId",)) or []
    for index, name in enumerate(unique):
        if name not in RESOURCE_TYPES:
            raise check.fail(
                ("uniqueExternalId", index), f"{name!r} is not one of {', '.join(RESOURCE_TYPES)}"
            )
    raws = check.sequence(root.get("extensions"), ("extensions",))
    extensions = tuple(_extension(check, item, ("extensions", i)) for i, item in enumerate(raws))
    seen: set[str] = set()
    for index, extension in enumerate(extensions):
        if extension.urn.lower() in seen:
            raise check.fail(("extensions", index, "schema"), f"{extension.urn} is declared twice")
        seen.add(extension.urn.lower())
    return DeclaredSchemas(extensions, frozenset(unique), source)


def load_schema_file(path: str, root: str | Path = ".") -> DeclaredSchemas:
    """Read and validate ``SCIM_SCHEMA_FILE`` (empty: no declarations).

    A relative ``path`` is resolved against ``root``, the app's folder.

    Raises:
        SchemaFileError: The file cannot be read or breaks a rule.
    """
    if not path.strip():
        return DeclaredSchemas()
    location = Path(path.strip())
    if not location.is_absolute():
        location = Path(root) / location
    if location.suffix.lower() not in (".json", ".yaml", ".yml"):
        raise SchemaFileError(f"{path}: SCIM_SCHEMA_FILE must name a .json, .yaml or .yml file")
    try:
        text = location.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SchemaFileError(f"{path}: cannot read the schema file ({error.__class__.__name__}: "
                              f"{getattr(error, 'strerror', None) or error})") from None  # fmt: skip
    return parse_schema_text(text, path.strip())
