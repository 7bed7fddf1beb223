"""The resource definitions: one source for validation, PATCH and discovery.

The models are scim2-models' RFC 7643 models with the few changes Microsoft
Entra needs; /Schemas and /ResourceTypes are generated from these very
classes (``scim.discovery``), so what is advertised is what is validated.

Deviations from the library, each forced by what Entra sends:

* ``emails.value`` is a plain string. The library's ``EmailStr`` rejects or
  rewrites some directory addresses, while Entra expects values "stored
  exactly as sent" (Entra SCIM tutorial, *Create User*).
* ``manager.$ref`` is optional. Entra sends the manager as a bare id
  (``scim.entra``), never with ``$ref`` (LOGICAPP ``SCIM_Update_Manager_Test``).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import scim2_models as sm
from pydantic import Field
from scim2_models import AnyExtension, Mutability, Reference, Resource, ScimPolicy

__all__ = [
    "ENTRA_POLICY",
    "GROUP",
    "USER",
    "EnterpriseUser",
    "ResourceKind",
    "UniqueAttribute",
    "User",
    "UserResource",
    "case_exact_key",
    "case_insensitive_key",
]


class Email(sm.Email):
    """An e-mail address, kept as sent (no address validation or rewriting)."""

    value: str | None = None
    """Email addresses for the user."""


class User(sm.User[AnyExtension]):
    """RFC 7643 §4.1 User, with e-mail values kept verbatim."""

    # Narrowing a field type in a subclass is what pydantic supports for this.
    emails: list[Email] | None = None  # type: ignore[assignment]
    """Email addresses for the User."""


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
class UniqueAttribute:
    """An attribute whose value identifies at most one resource of a type.

    Each gets an index row in the resource's partition, written in the same
    transaction as the resource (DESIGN §5), so ``attr eq "v"`` is a point read
    and a duplicate fails atomically with 409 ``uniqueness``.
    """

    name: str
    key: Callable[[str], str]

    def value_of(self, resource: Resource[Any]) -> str | None:
        """The resource's value of this attribute, or None when unset."""
        value = getattr(resource, _FIELD_NAMES[self.name], None)
        return value if isinstance(value, str) and value != "" else None


_FIELD_NAMES = {"userName": "user_name", "externalId": "external_id", "displayName": "display_name"}


@dataclass(frozen=True)
class ResourceKind:
    """A SCIM resource type as the service handles it (RFC 7643 §6).

    Attributes:
        name: The resource type name, also ``meta.resourceType``.
        endpoint: The path under the SCIM base, e.g. ``/Users``.
        model: The scim2-models class that validates and serialises it.
        unique: The attributes that are unique among resources of this type.
    """

    name: str
    endpoint: str
    model: type[Resource[Any]]
    unique: tuple[UniqueAttribute, ...]

    def unique_keys(self, resource: Resource[Any]) -> dict[str, str]:
        """Index name -> comparison key, for each unique attribute that is set."""
        keys = {}
        for attribute in self.unique:
            value = attribute.value_of(resource)
            if value is not None:
                keys[attribute.name] = attribute.key(value)
        return keys

    def unique_attribute(self, name: str) -> UniqueAttribute | None:
        """The unique attribute called ``name`` (case-insensitive), if any."""
        for attribute in self.unique:
            if attribute.name.lower() == name.lower():
                return attribute
        return None


USER = ResourceKind(
    name="User",
    endpoint="/Users",
    model=UserResource,
    unique=(
        # RFC 7643 §4.1.1: userName is unique and caseExact false.
        UniqueAttribute("userName", case_insensitive_key),
        # RFC 7643 §3.1: externalId is caseExact. Entra matches on it (e.g.
        # mailNickname / objectId), so two users must never share one.
        UniqueAttribute("externalId", case_exact_key),
    ),
)
"""The /Users resource type."""

GROUP = ResourceKind(
    name="Group",
    endpoint="/Groups",
    model=sm.Group,
    unique=(
        # Not an RFC rule, but Entra matches groups by displayName and requires
        # it unique (Entra SCIM tutorial, "Groups"); caseExact false (RFC 7643 §4.2).
        UniqueAttribute("displayName", case_insensitive_key),
        # Entra maps objectId to externalId.
        UniqueAttribute("externalId", case_exact_key),
    ),
)
"""The /Groups resource type. Members are stored as edges, never in the group row."""
