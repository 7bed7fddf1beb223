"""Discovery documents (RFC 7644 §4; RFC 7643 §5–7), generated from the models.

/Schemas and /ResourceTypes are produced from the same scim2-models classes
that validate requests (``scim.model.resources``), so the attributes advertised are
exactly those accepted. The on-premises SCIM app reads /Schemas to build its
attribute list, and turns ``type`` sub-attributes with ``canonicalValues`` into
mappable paths such as ``emails[type eq "work"].value`` (entra-scim-behavior §7).
/ServiceProviderConfig claims only what the code does.
"""

from __future__ import annotations

from typing import Any

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    ETag,
    Filter,
    Meta,
    Pagination,
    Patch,
    ResourceType,
    Schema,
    ServiceProviderConfig,
    Sort,
)

from scim.model.resources import EnterpriseUser, ResourceKind, User

__all__ = ["Discovery"]

_NOT_STORED = {"password"}
"""Attributes the service drops instead of storing, so it does not advertise them.

``password`` is writeOnly (RFC 7643 §4.1.1); keeping it would mean storing a
credential, which this directory does not do.
"""

_SCHEMA_NAMES = {
    str(User.__schema__): ("User", "User Account"),
    str(EnterpriseUser.__schema__): ("EnterpriseUser", "Enterprise User"),
    "urn:ietf:params:scim:schemas:core:2.0:Group": ("Group", "Group"),
}


def _schema_document(schema: Schema, base_url: str) -> dict[str, Any]:
    name, description = _SCHEMA_NAMES.get(str(schema.id), (schema.name, schema.description))
    schema = schema.model_copy(
        update={
            "name": name,
            "description": description,
            "attributes": [a for a in schema.attributes or [] if a.name not in _NOT_STORED],
            "meta": Meta(resource_type="Schema", location=f"{base_url}/Schemas/{schema.id}"),
        }
    )
    return schema.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)


class Discovery:
    """The three discovery endpoints for a set of resource kinds."""

    def __init__(
        self, kinds: tuple[ResourceKind, ...], *, max_results: int, bulk: tuple[int, int] = (100, 1_048_576)
    ) -> None:
        self._kinds = kinds
        self._max_results = max_results
        self._bulk = bulk
        self._schemas: list[Schema] = []
        for kind in kinds:
            self._schemas.append(kind.model.to_schema())
            for extension in kind.model.get_extension_models().values():
                self._schemas.append(extension.to_schema())

    def service_provider_config(self, base_url: str) -> dict[str, Any]:
        """RFC 7643 §5: the capabilities this service implements, and only those."""
        config = ServiceProviderConfig(
            documentation_uri=None,
            patch=Patch(supported=True),
            bulk=Bulk(supported=True, max_operations=self._bulk[0], max_payload_size=self._bulk[1]),
            filter=Filter(supported=True, max_results=self._max_results),
            change_password=ChangePassword(supported=False),
            sort=Sort(supported=True),
            pagination=Pagination(
                cursor=True,
                index=True,
                default_pagination_method=Pagination.DefaultPaginationMethod.index,
                default_page_size=self._max_results,
                max_page_size=self._max_results,
            ),
            etag=ETag(supported=True),
            authentication_schemes=[
                AuthenticationScheme(
                    type="oauthbearertoken",
                    name="OAuth Bearer Token",
                    description="The Secret Token of the Entra provisioning page, "
                    "sent as 'Authorization: Bearer <token>'.",
                    spec_uri="https://www.rfc-editor.org/rfc/rfc6750",
                    primary=True,
                )
            ],
            meta=Meta(resource_type="ServiceProviderConfig", location=f"{base_url}/ServiceProviderConfig"),
        )
        return config.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)

    def resource_types(self, base_url: str) -> list[dict[str, Any]]:
        """RFC 7643 §6: one ResourceType per served endpoint."""
        documents = []
        for kind in self._kinds:
            resource_type = ResourceType.from_resource(kind.model)
            resource_type.meta = Meta(
                resource_type="ResourceType", location=f"{base_url}/ResourceTypes/{resource_type.id}"
            )
            documents.append(resource_type.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))
        return documents

    def schemas(self, base_url: str) -> list[dict[str, Any]]:
        """RFC 7643 §7: the schema of every resource and extension served."""
        return [_schema_document(schema, base_url) for schema in self._schemas]
