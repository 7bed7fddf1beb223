"""The resource definitions: one source for validation, PATCH and discovery.

The models are scim2-models' RFC 7643 models with the few changes Microsoft
Entra needs; /Schemas and /ResourceTypes are generated from these very
classes (``scim.model.discovery``), so what is advertised is what is validated.

Deviations from the library, each forced by what Entra sends:

* ``emails.value`` is a plain string. The library's ``EmailStr`` rejects or
  rewrites some directory addresses, while Entra expects values "stored
  exactly as sent" (Entra SCIM tutorial, *Create User*).
* ``manager.$ref`` is optional. Entra sends the manager as a bare id
  (``scim.model.entra``), never with ``$ref`` (LOGICAPP ``SCIM_Update_Manager_Test``).
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Union

import scim2_models as sm
from pydantic import Field
from scim2_models import AnyExtension, Extension, Mutability, Reference, Required, Resource, ScimPolicy

from scim.model.schemafile import DeclaredExtension, DeclaredSchemas

__all__ = [
    "ENTRA_POLICY",
    "GROUP",
    "USER",
    "EnterpriseUser",
    "IndexEntry",
    "IndexedAttribute",
    "ResourceKind",
    "User",
    "UserResource",
    "build_kinds",
    "case_exact_key",
    "case_insensitive_key",
]


class Email(sm.Email):
    """An e-mail address, kept as sent (no address validation or rewriting)."""

    value: str | None = None
    """Email addresses for the user."""


class Role(sm.Role):
    """RFC 7643 §4.1.2 role, with the sub-attributes Entra's app roles carry.

    Entra's ``AppRoleAssignmentsComplex`` mapping sends ``displayName`` (some
    tenants) and, in PATCH values, the app role's ``id`` (entra-scim-behavior
    §11); both are kept rather than dropped.
    """

    display_name: str | None = None
    """The app role's display name, as Entra sends it."""

    id: str | None = None
    """The Entra app role id (a GUID), as Entra sends it."""


class User(sm.User[AnyExtension]):
    """RFC 7643 §4.1 User, with e-mail values kept verbatim and Entra's app roles."""

    # Narrowing a field type in a subclass is what pydantic supports for this.
    emails: list[Email] | None = None  # type: ignore[assignment]
    """Email addresses for the User."""

    roles: list[Role] | None = None  # type: ignore[assignment]
    """The User's roles (Entra app role assignments)."""


class Manager(sm.Manager):
    """RFC 7643 §4.3 manager, whose ``$ref`` Entra never sends."""

    ref: Annotated[Reference[User] | None, Mutability.read_write] = Field(  # type: ignore[assignment,type-arg]
        None, serialization_alias="$ref", validation_alias="$ref"
    )
    """The URI of the SCIM resource representing the User's manager."""


class EnterpriseUser(sm.EnterpriseUser):
    """RFC 7643 §4.3 enterprise extension, with an Entra-compatible manager."""

    manager: Manager | None = None
    """The User's manager: the ``id`` of another User in ``value``."""


UserResource = User[EnterpriseUser]
"""The User resource type served at /Users: core schema + enterprise extension."""

ENTRA_POLICY = ScimPolicy(
    # Entra only sends mapped attributes; an attribute we do not declare must
    # not fail the whole provisioning operation (it is dropped, not stored).
    unknown=ScimPolicy.Unknown.ignore,
    # `{"op":"Remove","path":"members","value":[{"value":id}]}` removes only the
    # listed members (entra-scim-behavior §4.4; MicrosoftDocs/azure-docs#30826).
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
    # `Replace emails[type eq "work"].value` creates the work e-mail when there
    # is none yet, instead of RFC 7644's noTarget (Entra SCIM tutorial, table).
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
)
"""How far Entra may depart from RFC 7643/7644 in what it sends."""


def case_insensitive_key(value: str) -> str:
    """Comparison form of a ``caseExact: false`` string: NFC, lower-cased, NFC.

    The same mapping scim2-models applies when it evaluates filters, so an
    index hit and a filter match can never disagree (entra-scim-behavior §6:
    a filter/uniqueness mismatch is what makes Entra loop on 409).
    """
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", value).lower())


def case_exact_key(value: str) -> str:
    """Comparison form of a ``caseExact: true`` string: NFC only."""
    return unicodedata.normalize("NFC", value)


@dataclass(frozen=True)
class IndexEntry:
    """An index row a resource needs: the attribute's index name and the value's comparison key.

    A ``unique`` entry's row is keyed by the value alone (a second resource
    with the value fails the write: 409 ``uniqueness``); otherwise the row also
    carries the resource id, and several resources may share the value.
    """

    index: str
    key: str
    unique: bool
    name: str = ""
    """The attribute as clients name it (for error messages)."""


@dataclass(frozen=True)
class IndexedAttribute:
    """An attribute with an index row per resource, in the resource's partition.

    The row is written in the same transaction as the resource (DESIGN §5), so
    ``attr eq "v"`` is answered by the index instead of a scan. A ``unique``
    attribute's row is keyed by the value alone, so a duplicate fails the
    transaction atomically with 409 ``uniqueness``; a non-unique attribute's row
    also carries the resource id, so several resources can share the value.

    Attributes:
        name: The attribute as a filter names it: ``userName``, or the full
            ``urn:…:attr`` path of an extension attribute.
        index: The name its index rows are stored under.
        key: The comparison form of a value (``caseExact``, RFC 7643 §2.2).
        unique: Whether two resources may not share a value.
        schema: The extension URN holding it (None: the core schema).
        attribute: The attribute's name within its schema.
    """

    name: str
    index: str
    key: Callable[[str], str]
    unique: bool
    schema: str | None = None
    attribute: str = ""

    def value_of(self, document: Mapping[str, Any]) -> str | None:
        """The value in a stored document, or None when unset."""
        holder: Any = document
        if self.schema is not None:
            holder = next((v for k, v in document.items() if k.lower() == self.schema.lower()), None)
        if not isinstance(holder, Mapping):
            return None
        value = next((v for k, v in holder.items() if k.lower() == self.attribute.lower()), None)
        return value if isinstance(value, str) and value != "" else None

    def names(self, uri: str | None, attribute: str, core: str) -> bool:
        """Whether a filter's attribute path (``uri``, ``attribute``) names this attribute."""
        schema = (uri or core).lower()
        return schema == (self.schema or core).lower() and attribute.lower() == self.attribute.lower()


def _core(name: str, key: Callable[[str], str], *, unique: bool) -> IndexedAttribute:
    return IndexedAttribute(name, name, key, unique, None, name)


def _declared(extension: DeclaredExtension, name: str) -> IndexedAttribute:
    """The index of a declared attribute (``indexed`` or ``uniqueness`` server/global)."""
    attribute = next(a for a in extension.schema.attributes or [] if a.name == name)
    unique = attribute.uniqueness is not None and attribute.uniqueness.value != "none"
    case_exact = bool(attribute.case_exact) or (
        attribute.type is not None and attribute.type.value == "reference"
    )
    digest = hashlib.sha256(f"{extension.urn.lower()}:{name.lower()}".encode()).hexdigest()[:12]
    key = case_exact_key if case_exact else case_insensitive_key
    return IndexedAttribute(f"{extension.urn}:{name}", f"x{digest}", key, unique, extension.urn, name)


@dataclass(frozen=True)
class ResourceKind:
    """A SCIM resource type as the service handles it (RFC 7643 §6).

    Attributes:
        name: The resource type name, also ``meta.resourceType``.
        endpoint: The path under the SCIM base, e.g. ``/Users``.
        model: The scim2-models class that validates and serialises it, with
            the built-in and the declared extensions.
        indexed: The attributes with index rows (unique or not).
        declared: The operator-declared extensions (``scim.model.schemafile``).
    """

    name: str
    endpoint: str
    model: type[Resource[Any]]
    indexed: tuple[IndexedAttribute, ...]
    declared: tuple[DeclaredExtension, ...] = ()

    @property
    def schema(self) -> str:
        """The core schema URN."""
        return str(self.model.__schema__)

    def index_entries(self, document: Mapping[str, Any]) -> tuple[IndexEntry, ...]:
        """The index rows a stored document needs, one per indexed attribute that is set."""
        entries = []
        for attribute in self.indexed:
            value = attribute.value_of(document)
            if value is not None:
                entries.append(
                    IndexEntry(attribute.index, attribute.key(value), attribute.unique, attribute.name)
                )
        return tuple(entries)

    def indexed_attribute(self, uri: str | None, attribute: str) -> IndexedAttribute | None:
        """The indexed attribute a filter path (``uri``, ``attribute``) names, if any."""
        for candidate in self.indexed:
            if candidate.names(uri, attribute, self.schema):
                return candidate
        return None

    @property
    def hidden(self) -> dict[str, tuple[str, ...]]:
        """Declared attributes a response leaves out by default (``returned`` never or request), by URN.

        They are stored all the same; responses are filtered (RFC 7643 §7 ``returned``).
        """
        hidden = {}
        for extension in self.declared:
            names = tuple(
                str(a.name)
                for a in extension.schema.attributes or []
                if a.returned is not None and a.returned.value in ("never", "request")
            )
            if names:
                hidden[extension.urn] = names
        return hidden

    def index_named(self, index: str) -> IndexedAttribute | None:
        """The indexed attribute stored under ``index``."""
        return next((a for a in self.indexed if a.index == index), None)


def _with_extensions(base: type[Resource[Any]], extensions: list[Any]) -> type[Resource[Any]]:
    if not extensions:
        return base
    union = extensions[0] if len(extensions) == 1 else Union[tuple(extensions)]  # noqa: UP007
    return base[union]  # type: ignore[index,no-any-return]


def _extension_model(extension: DeclaredExtension) -> Any:
    model = Extension.from_schema(extension.schema)
    return Annotated[model, Required.true] if extension.required else model


def build_kinds(declared: DeclaredSchemas | None = None) -> tuple[ResourceKind, ResourceKind]:
    """The /Users and /Groups resource types: built-in schemas plus the declared extensions.

    Uniqueness follows RFC 7643 unless the operator asks for more:
    ``userName`` is unique (§4.1.1) and group ``displayName`` too (Entra
    matches groups on it, Entra SCIM tutorial "Groups"); ``externalId`` is
    indexed but unique only where declared (``uniqueExternalId``), since
    Entra's ``mailNickname`` → ``externalId`` mapping is not unique among
    users and Microsoft's Postman suite sends four users with one.
    """
    declared = declared or DeclaredSchemas()
    kinds = []
    for name, endpoint, base, core_indexes, built_in in (
        ("User", "/Users", User, ("userName",), [EnterpriseUser]),
        ("Group", "/Groups", sm.Group, ("displayName",), []),
    ):
        extensions = declared.of(name)
        indexed = (
            *(_core(attribute, case_insensitive_key, unique=True) for attribute in core_indexes),
            _core("externalId", case_exact_key, unique=name in declared.unique_external_id),
            *(_declared(extension, attribute) for extension in extensions for attribute in extension.indexed),
        )
        model = _with_extensions(base, [*built_in, *(_extension_model(e) for e in extensions)])
        kinds.append(ResourceKind(name, endpoint, model, indexed, extensions))
    return kinds[0], kinds[1]


USER, GROUP = build_kinds()
"""The /Users and /Groups resource types with no declared extension."""
