"""Attributes no schema declares, and passwords: refused or reported, never dropped silently.

DESIGN §10: a 2xx means "stored". scim2-models validates with
``unknown=ignore`` (``scim.model.resources.ENTRA_POLICY``) and keeps what it dropped
on each model's ``unknown_attributes``; this module finds those names (in
bodies, and in PATCH paths and path-less value keys) and either refuses the
request with a 400 that says how to declare the attribute (the default,
``SCIM_UNKNOWN_ATTRIBUTES=reject``; the detail is what Entra shows in its
provisioning logs) or returns them for the log line and the audit record
(``ignore``).

``password`` (RFC 7643 §4.1.1, writeOnly) is refused in both modes: this
service does not store credentials (docs/schema-extensions.md, "Passwords are refused").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from scim2_models import Path, Resource

from scim.logs import printable
from scim.model.errors import InvalidPathError, InvalidValueError

__all__ = ["IGNORE", "REJECT", "check_password", "patch_unknown_names", "resource_unknown_names", "settle"]

log = logging.getLogger(__name__)

REJECT, IGNORE = "reject", "ignore"

_HOW = (
    "No schema of this endpoint declares it, so it cannot be stored. Declare it in the schema file "
    "(SCIM_SCHEMA_FILE, docs/schema-extensions.md) and restart the endpoint, or remove its mapping in Entra."
)
_CREDENTIALS_NOT_STORED = (
    "This endpoint does not store passwords; remove the password mapping "
    "from the application's attribute mappings in Entra."
)
_PASSWORD_PATHS = {"password", "urn:ietf:params:scim:schemas:core:2.0:user:password"}


def _walk(value: Any, prefix: str) -> Iterable[str]:
    if isinstance(value, list):
        for item in value:
            yield from _walk(item, prefix)
        return
    if not isinstance(value, BaseModel):
        return
    for name in getattr(value, "unknown_attributes", None) or {}:
        yield f"{prefix}{name}"
    for field_name, info in type(value).model_fields.items():
        child = getattr(value, field_name, None)
        if child is None:
            continue
        alias = info.serialization_alias or field_name
        extension = getattr(type(child), "__schema__", None)
        if extension is not None and not isinstance(child, Resource):
            yield from _walk(child, f"{extension}:")
        else:
            yield from _walk(child, f"{prefix}{alias}.")


def resource_unknown_names(resource: Resource[Any]) -> list[str]:
    """The attributes of a validated body that no schema declares, as paths (sorted, unique)."""
    return sorted(set(_walk(resource, "")))


def _operations(body: Any) -> list[Any]:
    if not isinstance(body, dict):
        return []
    key = next((k for k in body if isinstance(k, str) and k.lower() == "operations"), None)
    operations = body.get(key) if key else None
    return operations if isinstance(operations, list) else []


def _declared(model: type[Resource[Any]], path: str) -> bool:
    try:
        return Path[model](path).resolve() is not None  # type: ignore[valid-type]
    except Exception:  # noqa: BLE001 - a malformed path is the validator's to reject, with its scimType
        return True


def _pathless_keys(model: type[Resource[Any]], value: dict[str, Any]) -> Iterable[str]:
    extensions = {str(urn).lower() for urn in model.get_extension_models()}
    for key, item in value.items():
        if not isinstance(key, str) or key.lower() == "schemas":
            continue
        if key.lower() in extensions and isinstance(item, dict):
            yield from (f"{key}:{sub}" for sub in item if isinstance(sub, str))
        else:
            yield key


def patch_unknown_names(model: type[Resource[Any]], body: Any) -> tuple[list[str], list[str]]:
    """The undeclared attributes a (normalised) PatchOp names: (in paths, in path-less value keys)."""
    in_paths: list[str] = []
    in_values: list[str] = []
    for operation in _operations(body):
        if not isinstance(operation, dict):
            continue
        path, value = operation.get("path"), operation.get("value")
        extensions = {str(urn).lower() for urn in model.get_extension_models()}
        if isinstance(path, str) and path.strip().lower() in extensions:
            if isinstance(value, dict):  # the extension's attributes as an object
                names = (f"{path.strip()}:{key}" for key in value if isinstance(key, str))
                in_values.extend(name for name in names if not _declared(model, name))
        elif isinstance(path, str) and path.strip():
            if not _declared(model, path):
                in_paths.append(path.strip())
        elif isinstance(value, dict):
            in_values.extend(key for key in _pathless_keys(model, value) if not _declared(model, key))
    return sorted(set(in_paths)), sorted(set(in_values))


def check_password(resource: Resource[Any] | None = None, patch: Any = None) -> None:
    """Refuse ``password`` in a body or a PatchOp.

    Raises:
        InvalidValueError: It is there.
    """
    if resource is not None and getattr(resource, "password", None) is not None:
        raise InvalidValueError(_CREDENTIALS_NOT_STORED)
    for operation in _operations(patch):
        if not isinstance(operation, dict):
            continue
        path, value = operation.get("path"), operation.get("value")
        names = [path] if isinstance(path, str) else list(value) if isinstance(value, dict) else []
        if any(isinstance(n, str) and n.strip().lower() in _PASSWORD_PATHS for n in names):
            raise InvalidValueError(_CREDENTIALS_NOT_STORED)


def settle(mode: str, kind: str, in_values: list[str], in_paths: list[str] | None = None) -> tuple[str, ...]:
    """Refuse undeclared attributes (``reject``) or return their names to report (``ignore``).

    Raises:
        InvalidPathError: ``reject``, and a PATCH path names one (RFC 7644 §3.5.2: ``invalidPath``).
        InvalidValueError: ``reject``, and a body or a path-less value holds one.
    """
    in_paths = in_paths or []
    if mode == IGNORE or not (in_values or in_paths):
        ignored = tuple(sorted({*in_values, *in_paths}))
        if ignored:  # names only: values may be personal data
            shown = ", ".join(printable(name) for name in ignored[:10]) + (", …" if len(ignored) > 10 else "")
            log.warning("Ignored %d undeclared %s attributes: %s", len(ignored), kind, shown)
        return ignored
    names = ", ".join(repr(name) for name in [*in_paths, *in_values][:5])
    more = len(in_paths) + len(in_values) - 5
    listed = names + (f" and {more} more" if more > 0 else "")
    plural = "attributes" if len(in_paths) + len(in_values) > 1 else "attribute"
    detail = f"Unknown {kind} {plural} {listed}. {_HOW}"
    if in_paths:
        raise InvalidPathError(detail)
    raise InvalidValueError(detail)
