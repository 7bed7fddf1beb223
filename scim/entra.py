"""The one place where Microsoft Entra's departures from RFC 7644 are normalised.

Entra's provisioning service (cloud, and the on-premises agent) sends a few
request shapes that RFC-literal code rejects or misreads. Each rule below turns
one of them into its RFC form *before* scim2-models validates or applies it,
and names its source (tags as in ``shared/reference/entra-scim-behavior.md``).
What scim2-models already tolerates under :data:`scim.resources.ENTRA_POLICY`
(capitalised ``op``, ``"True"``/``"False"`` strings, value-filtered paths that
create their element, ``Remove members`` with a ``value``, path-less replace
with dotted and URN keys) is not repeated here.

Rules:

1. **Manager as a bare id** — ``{"op":"Add","path":"urn:…:enterprise:2.0:User:manager",
   "value":"<id>"}`` becomes ``"value": {"value": "<id>"}`` [MS-val LOGICAPP;
   obs Captain-P-Goldfish/SCIM-SDK#686]. The legacy list form
   ``[{"$ref": …, "value": "<id>"}]`` becomes its single element [doc TUT Example 5].
2. **Clearing with ``""`` or ``null``** — ``replace``/``add`` of an empty string or
   null on a path (or under a key of a path-less ``replace``) removes the
   attribute [MS-val LOGICAPP "replace with empty string/null clears"].
3. **Manager in a resource body** — a bare-id manager in POST/PUT bodies is
   read the same way as in rule 1; an empty one is dropped.
4. **Unqualified extension paths** — ``"path": "manager"`` or
   ``manager[value eq "<id>"]`` (no URN) is qualified with the enterprise
   extension URN, which RFC 7644 §3.10 allows a server to infer when the
   name is unambiguous [doc TUT Example 5; obs thomaspoignant/scim-patch#453].
   Without this the library would not find the attribute and drop the op.
   ``remove manager[value eq "<id>"]`` removes the manager: the manager is
   single-valued, so RFC value selection does not apply, and Entra sends this
   only to remove the manager it set (the source of truth re-adds any other).
5. **Foreign schema URIs** — ``schemas`` entries we do not serve (Entra adds
   ``http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/…``)
   are dropped rather than rejected [doc TUT *Create Group*; COMPAT].
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["ENTERPRISE_USER", "normalize_patch", "normalize_resource"]

ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
_MANAGER_PATHS = {"manager", f"{ENTERPRISE_USER}:manager".lower()}
_ENTERPRISE_ATTRIBUTES = {"employeenumber", "costcenter", "organization", "division", "department", "manager"}
"""Enterprise-extension attribute names; none is also a core User attribute."""
_SELECTED_MANAGER = re.compile(re.escape(f"{ENTERPRISE_USER}:manager") + r"\s*\[", re.IGNORECASE)
_LEADING_NAME = re.compile(r"^\s*([A-Za-z][\w$-]*)(?=$|[.\[\s])")


def _qualify(path: str) -> str:
    """Rule 4: prefix an unqualified enterprise-extension path with its URN."""
    match = _LEADING_NAME.match(path)
    if match and match.group(1).lower() in _ENTERPRISE_ATTRIBUTES:
        return f"{ENTERPRISE_USER}:{path.strip()}"
    return path


def _is_manager_path(path: str) -> bool:
    return path.strip().lower() in _MANAGER_PATHS


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == []


def _manager_value(value: Any) -> Any:
    """Rules 1 and 3: the RFC complex form of a manager Entra sent as an id."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, str):
        return {"value": value}
    return value


def _normalize_operation(operation: Any) -> list[Any]:
    """Normalise one PATCH operation; may split a path-less one in several."""
    if not isinstance(operation, dict):
        return [operation]
    op = operation.get("op")
    path = operation.get("path")
    if isinstance(path, str):
        path = _qualify(path)
        if _SELECTED_MANAGER.match(path) and str(op).lower() == "remove":
            path = f"{ENTERPRISE_USER}:manager"
        operation = {**operation, "path": path}
    if not isinstance(op, str) or op.lower() not in {"add", "replace"}:
        return [operation]
    value = operation.get("value")
    if isinstance(path, str) and path.strip():
        if _is_empty(value):
            return [{"op": "remove", "path": path}]
        if _is_manager_path(path):
            return [{**operation, "value": _manager_value(value)}]
        return [operation]
    if isinstance(value, dict):
        return _split_pathless(op, value)
    return [operation]


def _split_pathless(op: str, value: dict[str, Any]) -> list[Any]:
    """Rule 2 for a path-less ``replace``: empty keys become ``remove`` ops."""
    kept: dict[str, Any] = {}
    removals: list[Any] = []
    for key, item in value.items():
        if _is_empty(item):
            removals.append({"op": "remove", "path": key})
        elif _is_manager_path(key):
            kept[key] = _manager_value(item)
        elif key.lower() == ENTERPRISE_USER.lower() and isinstance(item, dict):
            kept[key] = _normalize_extension(item)
        else:
            kept[key] = item
    operations: list[Any] = [{"op": op, "value": kept}] if kept else []
    return operations + removals


def normalize_patch(body: Any) -> Any:
    """Return a PatchOp body with Entra's forms rewritten to RFC 7644 §3.5.2.

    Anything that is not the expected shape is passed through untouched, for
    the validator to reject with the right ``scimType``.
    """
    if not isinstance(body, dict):
        return body
    for key, operations in body.items():
        if key.lower() == "operations" and isinstance(operations, list):
            normalized: list[Any] = []
            for operation in operations:
                normalized.extend(_normalize_operation(operation))
            return {**body, key: normalized}
    return body


def _normalize_extension(extension: dict[str, Any]) -> dict[str, Any]:
    result = dict(extension)
    for key in list(result):
        if key.lower() == "manager":
            if _is_empty(result[key]):
                del result[key]
            else:
                result[key] = _manager_value(result[key])
    return result


def normalize_resource(body: Any, known_schemas: Iterable[str]) -> Any:
    """Return a POST/PUT resource body with Entra's forms rewritten (rules 3, 4)."""
    if not isinstance(body, dict):
        return body
    known = {schema.lower() for schema in known_schemas}
    result = dict(body)
    for key, value in body.items():
        if key.lower() == "schemas" and isinstance(value, list):
            result[key] = [s for s in value if not isinstance(s, str) or s.lower() in known]
        elif key.lower() == ENTERPRISE_USER.lower() and isinstance(value, dict):
            result[key] = _normalize_extension(value)
    return result
