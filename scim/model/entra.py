r"""The one place where Microsoft Entra's departures from RFC 7644 are normalised.

Entra's provisioning service (cloud, and the on-premises agent) sends a few
request shapes that RFC-literal code rejects or misreads. Each rule below turns
one of them into its RFC form *before* scim2-models validates or applies it,
and names its source (tags as in ``shared/reference/entra-scim-behavior.md``).
What scim2-models already tolerates under :data:`scim.model.resources.ENTRA_POLICY`
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
6. **App roles** (``AppRoleAssignmentsComplex``) — PATCHes on ``roles`` carry each
   role as a JSON string in ``value``: ``{"value": "{\"id\":\"<guid>\",\"value\":
   \"Admin\",\"displayName\":\"Admin\"}"}``; creates send ``{"display": "Admin",
   "value": "Admin", …}``, some tenants ``displayName`` [obs MicrosoftDocs/azure-docs#50772,
   #72002; MicrosoftDocs/entra-docs#215, #391; entra-scim-behavior §11]. A string that
   parses as a JSON object is replaced by its ``value``/``display``/``displayName``/
   ``type``/``primary``/``id`` members (a string that does not stays a plain value), and
   ``display``/``displayName`` mirror each other, so a role has one shape whatever
   request wrote it; a list naming one value twice keeps one merged role. A role is
   identified by its ``value``, its "significant value" (RFC 7643 §2.4): ``add``
   and ``remove`` on ``roles`` (with a path, or a path-less ``add``) become one op
   per role on ``roles[value eq "<value>"]``, so an add merges into the role already
   there (or creates it) instead of appending a second shape, and a remove matches
   the stored role whatever other sub-attributes either carries.
   ``replace`` of the whole list (``AssertiveAppRoleAssignmentsComplex``) keeps its
   list; ``roles[primary eq "True"].value`` is left to the library.
7. **A reference compared as a whole** — ``filter=id eq "<id>" and manager eq "<managerId>"``
   (legacy TUT *Example 4*: Entra checks a reference this way) compares a complex
   attribute with a string. RFC 7644 §3.4.2.2 compares sub-attributes, so the
   path gains ``.value``: ``urn:…:enterprise:2.0:User:manager.value eq "<id>"``.
   Applies to the manager and to declared single-valued complex attributes with
   a ``value`` sub-attribute (named by their full URN path).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

__all__ = ["ENTERPRISE_USER", "normalize_filter", "normalize_patch", "normalize_resource"]

ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
_MANAGER_PATHS = {"manager", f"{ENTERPRISE_USER}:manager".lower()}
_ENTERPRISE_ATTRIBUTES = {"employeenumber", "costcenter", "organization", "division", "department", "manager"}
"""Enterprise-extension attribute names; none is also a core User attribute."""
_SELECTED_MANAGER = re.compile(re.escape(f"{ENTERPRISE_USER}:manager") + r"\s*\[", re.IGNORECASE)
_LEADING_NAME = re.compile(r"^\s*([A-Za-z][\w$-]*)(?=$|[.\[\s])")
_ROLES_PATHS = {"roles", "urn:ietf:params:scim:schemas:core:2.0:user:roles"}
_ROLE_KEYS = {key.lower(): key for key in ("value", "display", "displayName", "type", "primary", "id")}
"""The sub-attributes of a role (``scim.model.resources.Role``), by lower-cased name."""


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


def _is_roles_path(path: str) -> bool:
    return path.strip().lower() in _ROLES_PATHS


def _role(item: Any) -> Any:
    """Rule 6: one role in its single shape, a JSON-string ``value`` unpacked."""
    if not isinstance(item, dict):
        return item
    role = dict(item)
    value = role.get("value")
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):
            parsed = None  # not JSON: a plain role value
        if isinstance(parsed, dict):
            del role["value"]
            role.update(
                {_ROLE_KEYS[key.lower()]: v for key, v in parsed.items() if key.lower() in _ROLE_KEYS}
            )
    if "displayName" in role and "display" not in role:
        role["display"] = role["displayName"]
    elif "display" in role and "displayName" not in role:
        role["displayName"] = role["display"]
    return role


def _role_key(value: str) -> str:
    """How role values compare: ``caseExact: false`` (``scim.model.resources.case_insensitive_key``)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", value).lower())


def _role_value(role: Any) -> str | None:
    value = role.get("value") if isinstance(role, dict) else None
    return value if isinstance(value, str) and value != "" else None


def _roles(value: Any) -> Any:
    """Rule 6 for a whole role list: each role unpacked, one role per ``value``."""
    if not isinstance(value, list):
        return _role(value)
    merged: dict[str, dict[str, Any]] = {}
    result: list[Any] = []
    for role in map(_role, value):
        name = _role_value(role)
        if name is None:
            result.append(role)
        elif _role_key(name) in merged:
            merged[_role_key(name)].update(role)
        else:
            merged[_role_key(name)] = role
            result.append(role)
    return result


def _role_operations(operation: dict[str, Any]) -> list[Any]:
    """Rule 6 for a PATCH on ``roles``: add and remove select each role by its ``value``."""
    op, path, value = str(operation["op"]), str(operation["path"]), operation["value"]
    if op.lower() not in {"add", "remove"}:
        return [{**operation, "value": _roles(value)}]
    selected: list[Any] = []
    rest: list[Any] = []
    for role in _roles(value if isinstance(value, list) else [value]):
        name = _role_value(role)
        if name is None:
            rest.append(role)  # nothing to select it by: the library's own matching
            continue
        # RFC 7644 §3.10 compValue: a JSON string literal, escapes included.
        selector = {"op": op, "path": f"{path.strip()}[value eq {json.dumps(name, ensure_ascii=False)}]"}
        selected.append(selector if op.lower() == "remove" else {**selector, "value": role})
    return selected + ([{"op": op, "path": path, "value": rest}] if rest else [])


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
    value = operation.get("value")
    if isinstance(op, str) and isinstance(path, str) and _is_roles_path(path) and not _is_empty(value):
        return _role_operations(operation)
    if not isinstance(op, str) or op.lower() not in {"add", "replace"}:
        return [operation]
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
    """Rule 2 for a path-less ``replace``: empty keys become ``remove`` ops.

    Rule 6: ``roles`` of a path-less ``add`` become per-role adds too.
    """
    kept: dict[str, Any] = {}
    split: list[Any] = []
    for key, item in value.items():
        if _is_empty(item):
            split.append({"op": "remove", "path": key})
        elif _is_manager_path(key):
            kept[key] = _manager_value(item)
        elif key.lower() == ENTERPRISE_USER.lower() and isinstance(item, dict):
            kept[key] = _normalize_extension(item)
        elif _is_roles_path(key) and op.lower() == "add":
            split.extend(_role_operations({"op": op, "path": key, "value": item}))
        elif _is_roles_path(key):
            kept[key] = _roles(item)
        else:
            kept[key] = item
    operations: list[Any] = [{"op": op, "value": kept}] if kept else []
    return operations + split


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
    """Return a POST/PUT resource body with Entra's forms rewritten (rules 3, 5, 6)."""
    if not isinstance(body, dict):
        return body
    known = {schema.lower() for schema in known_schemas}
    result = dict(body)
    for key, value in body.items():
        if key.lower() == "schemas" and isinstance(value, list):
            result[key] = [s for s in value if not isinstance(s, str) or s.lower() in known]
        elif key.lower() == ENTERPRISE_USER.lower() and isinstance(value, dict):
            result[key] = _normalize_extension(value)
        elif key.lower() == "roles" and isinstance(value, list):
            result[key] = _roles(value)
    return result


_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_UNQUALIFIED_MANAGER = re.compile(r"(?<![\w:.\[])manager\.(?=value\b)", re.IGNORECASE)
_COMPARISON = r"(\s+)(eq|ne|co|sw|ew|gt|ge|lt|le)(?=\s)"


def _whole_value_paths(names: Iterable[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))
    return re.compile(rf"(?<![\w:.\[])({alternatives})(?![\w.:\[])" + _COMPARISON, re.IGNORECASE)


def normalize_filter(text: str, complex_values: Iterable[str] = ()) -> str:
    """Rule 7: compare a complex reference attribute by its ``value``.

    ``complex_values`` are the full URN paths of the other single-valued complex
    attributes that have a ``value`` sub-attribute; the manager is always one,
    also unqualified (rule 4). Quoted strings are never rewritten.
    """
    pattern = _whole_value_paths({f"{ENTERPRISE_USER}:manager", "manager", *complex_values})

    def rewrite(unquoted: str) -> str:
        return _UNQUALIFIED_MANAGER.sub(f"{ENTERPRISE_USER}:manager.", pattern.sub(_with_value, unquoted))

    pieces, last = [], 0
    for quoted in _QUOTED.finditer(text):
        pieces.append(rewrite(text[last : quoted.start()]))
        pieces.append(quoted.group(0))
        last = quoted.end()
    pieces.append(rewrite(text[last:]))
    return "".join(pieces)


def _with_value(match: re.Match[str]) -> str:
    path = match.group(1)
    if ":" not in path:
        path = f"{ENTERPRISE_USER}:{path}"
    return f"{path}.value{match.group(2)}{match.group(3)}"
