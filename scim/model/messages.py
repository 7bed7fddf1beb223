"""Validation failures in words a SCIM client understands (issue 16, item 3).

Entra ID shows an error's ``detail`` verbatim in its provisioning logs
(RFC 7644 §3.12 makes ``detail`` the human-readable part of an error), so a
refused value must be explained per attribute, in SCIM terms, with the fix —
for instance that ``active`` must be a boolean: true/false, or Entra's
"True"/"False" strings, and what was sent instead. pydantic's own text ("Input should be a valid boolean",
``[type=bool_parsing]``, a link to its documentation) means nothing to the
person reading that log.

:func:`describe` builds that text from the structured ``ValidationError.errors()``
(``loc``, ``type``, ``input``, ``ctx``) — never from ``str(error)``:

* the attribute is named by its SCIM path (RFC 7644 §3.10 notation: sub-attributes
  after a dot, extension attributes after their schema URN and a colon; the
  index of a multi-valued value in brackets, e.g. ``emails[0].value``);
* the expected type is named as RFC 7643 §2.3 names it (boolean, string,
  integer, decimal, dateTime, binary, reference, complex) or as multi-valued (§2.4);
* the rejected value is shown as JSON, shortened and with control characters
  escaped (:func:`scim.logs.printable`), so it can neither flood nor forge a log line;
* where Entra has a usual form the service accepts, the hint says so (booleans as
  ``"True"``/``"False"`` strings; the manager as a bare id, :mod:`scim.model.entra` rule 3).

One sentence per failing attribute; at most :data:`MAX_SENTENCES` are shown,
then "and N more". Messages that scim2-models writes itself for RFC errors
(``scim_*`` types) are already SCIM text and are kept, prefixed with the path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from scim2_models import PatchOp, Resource, SCIMException, ScimPolicy

from scim.logs import printable
from scim.model.entra import ENTERPRISE_USER

__all__ = [
    "LIBRARY_TEXT",
    "MAX_SENTENCES",
    "attribute_path",
    "describe",
    "describe_error",
    "failing_operation",
]

MAX_SENTENCES = 3
"""Sentences shown in one ``detail``; the rest are counted ("and 2 more")."""

_VALUE_CHARS = 40
"""Characters of a rejected value quoted back (its JSON form)."""
_PATH_CHARS = 160
"""Characters of an attribute path (an extension URN plus a name fits)."""
_LIBRARY_CHARS = 300
"""Characters of a message scim2-models wrote (it may quote the client's text)."""

BOOLEAN = 'a boolean: true/false, or Entra\'s "True"/"False" strings'
STRING = "a string"
INTEGER = "an integer (a whole number such as 42)"
DECIMAL = "a decimal number (such as 2.5)"
DATETIME = "a dateTime in xsd:dateTime / RFC 3339 form, such as 2024-05-01T09:30:00Z"
BINARY = "binary data as a base64 string (RFC 4648)"
REFERENCE = "a reference: a URI as a string (RFC 3986), absolute or a path starting with /"
COMPLEX = "a complex value: a JSON object of its sub-attributes"
MULTI_VALUED = "a multi-valued attribute: a JSON array of values, even for one value"
MANAGER = 'a complex value {"value": "<the manager\'s id>"}, or the manager\'s id as a string'
"""The two manager forms :func:`scim.model.entra.normalize_resource` / ``normalize_patch`` accept."""

_MANAGER_PATHS = {f"{ENTERPRISE_USER}:manager".lower(), "manager"}
"""The manager's path in a body, and relative to the extension a PATCH of it writes into."""

_EXPECTED_BY_TYPE = {
    "bool_type": BOOLEAN,
    "bool_parsing": BOOLEAN,
    "model_type": COMPLEX,
    "model_attributes_type": COMPLEX,
    "dict_type": COMPLEX,
    "dataclass_type": COMPLEX,
    "list_type": MULTI_VALUED,
    "tuple_type": MULTI_VALUED,
    "set_type": MULTI_VALUED,
    "frozen_set_type": MULTI_VALUED,
    "iterable_type": MULTI_VALUED,
    "base64_decode": BINARY,
}
"""pydantic error types (``pydantic_core`` ``ErrorType``) whose expected SCIM type is known exactly."""

_EXPECTED_BY_PREFIX = (
    ("string_", STRING),
    ("str_", STRING),
    ("uuid_", STRING),
    ("int_", INTEGER),
    ("float_", DECIMAL),
    ("decimal_", DECIMAL),
    ("datetime_", DATETIME),
    ("date_", DATETIME),
    ("time_", DATETIME),
    ("timezone_", DATETIME),
    ("bytes_", BINARY),
    ("url_", REFERENCE),
)
"""The other type families, by the prefix pydantic gives each of its error types."""

_REFERENCE_ERRORS = ("Expected string, got ", "Invalid URI: ")
"""The ``ValueError`` texts of scim2-models' ``Reference`` validator (scim2_models/reference.py)."""
_CANONICAL_ERROR = "is not a valid string value for"
"""The ``ValueError`` text of a non-string given to an attribute with canonical values."""
LIBRARY_TEXT = re.compile(r"errors\.pydantic\.dev|\[type=|Input should|validation errors? for ")
"""Marks of ``str(ValidationError)``: text that must never reach a client's ``detail``."""
_LIBRARY_TYPES = ("schema_error", "unknown_extension_schema")
"""scim2-models error types whose message is already SCIM text (as are all ``scim_*`` types)."""


def attribute_path(loc: Sequence[str | int]) -> str:
    """The SCIM attribute path of a pydantic error location.

    ``("emails", 0, "value")`` is ``emails[0].value``; ``(<enterprise URN>, "manager")``
    is ``<enterprise URN>:manager`` (RFC 7644 §3.10). Parts pydantic adds for
    the member of a union it tried (``function-after[...]``) are no attribute
    name (RFC 7643 §2.1 allows no brackets or parentheses) and are left out, as
    is a resource's schema URN after a list index.
    """
    path = ""
    previous: str | int | None = None
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif "[" in part or "(" in part:
            continue
        elif _is_urn(part) and isinstance(previous, int):
            previous = None
            continue
        elif not path:
            path = part
        elif _is_urn(previous):
            path += f":{part}"
        else:
            path += f".{part}"
        previous = part
    return path


def _is_urn(part: str | int | None) -> bool:
    return isinstance(part, str) and part.lower().startswith("urn:")


def _shown(value: Any) -> str:
    """``value`` as the client sent it (JSON), shortened, control characters escaped."""
    if isinstance(value, Decimal):  # scim.web.api parses JSON numbers with a fraction as Decimal
        text = str(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = str(value)
    return printable(text, _VALUE_CHARS)


def _expected(error: Mapping[str, Any], path: str) -> str | None:
    """The SCIM type the attribute at ``path`` needs, or None when the error is not about a type."""
    error_type = str(error["type"])
    if path.lower() in _MANAGER_PATHS and error_type in {"model_type", "model_attributes_type", "dict_type"}:
        return MANAGER
    if error_type in _EXPECTED_BY_TYPE:
        return _EXPECTED_BY_TYPE[error_type]
    if error_type == "value_error":
        cause = str(error.get("ctx", {}).get("error", ""))
        if cause.startswith(_REFERENCE_ERRORS):
            return REFERENCE
        if cause.startswith("Expected str"):  # e.g. a search filter that is not text
            return STRING
        if _CANONICAL_ERROR in cause:
            return STRING
        return None
    expected = error.get("ctx", {}).get("expected")
    if error_type == "enum" and not isinstance(error.get("input"), str):
        # Canonical values (RFC 7643 §2.3.1) accept any other string too: only a non-string fails.
        return f"a string, such as {printable(expected, _LIBRARY_CHARS)}" if expected else STRING
    if error_type in {"literal_error", "enum"}:
        return f"one of {printable(expected, _LIBRARY_CHARS)}" if expected else None
    for prefix, expected in _EXPECTED_BY_PREFIX:
        if error_type.startswith(prefix):
            return expected
    return None


def _named(loc: Sequence[str | int], error: Mapping[str, Any]) -> str:
    """The path of an error raised for a named field of the object at ``loc`` (``ctx.field_name``)."""
    field_name = error.get("ctx", {}).get("field_name")
    return attribute_path([*loc, str(field_name)]) if field_name else attribute_path(loc)


def describe_error(error: Mapping[str, Any]) -> tuple[str, str]:
    """``(path, sentence)`` for one entry of ``ValidationError.errors()``; the sentence has no final stop."""
    error_type = str(error["type"])
    loc = tuple(error.get("loc", ()))
    ctx = error.get("ctx", {})
    if error_type in {"required_error", "mutability_error", "primary_uniqueness_error"}:
        path = _named(loc, error)
    else:
        path = attribute_path(loc)
    subject = f"`{printable(path, _PATH_CHARS)}`" if path else "The request body"
    message = str(error.get("msg", ""))
    if (error_type.startswith("scim_") or error_type in _LIBRARY_TYPES) and not LIBRARY_TEXT.search(message):
        text = printable(message.rstrip(". "), _LIBRARY_CHARS)
        return path, f"{subject}: {text}" if path else text
    if error_type in {"required_error", "missing"}:
        return path, f"{subject} is required and must not be empty or null"
    if error_type == "mutability_error":
        mutability = printable(ctx.get("field_mutability", "not writable"), _VALUE_CHARS)
        return path, f"{subject} is {mutability} and cannot be set by this request"
    if error_type == "primary_uniqueness_error":
        count = printable(ctx.get("count", "several"), _VALUE_CHARS)
        return path, f"{subject} marks {count} values as primary; at most one may be (RFC 7643 §2.4)"
    if error_type == "extra_forbidden":
        return path, f"{subject} is not an attribute of this schema"
    expected = _expected(error, path)
    shown = _shown(error.get("input"))
    if expected is not None:
        return path, f"{subject} must be {expected} (got {shown})"
    if error_type == "value_error" and ctx.get("error") is not None:
        reason = printable(str(ctx["error"]).rstrip(". "), _LIBRARY_CHARS)
        return path, f"{subject} is not valid: {reason} (got {shown})" if path else reason
    return path, f"{subject} has a value this attribute does not accept (got {shown})"


def describe(errors: Sequence[Mapping[str, Any]], *, within: str | None = None) -> str:
    """One ``detail`` for all of ``errors``: one sentence per failing attribute, capped.

    ``within`` names the PATCH operation the errors happened in (see
    :func:`failing_operation`); their paths are then relative to the value it wrote.
    """
    sentences: list[str] = []
    seen: set[str] = set()
    for error in errors:
        path, sentence = describe_error(error)
        key = path or sentence
        if key not in seen:  # a union tries several members; one sentence per attribute
            seen.add(key)
            sentences.append(sentence)
    if not sentences:
        return "A value in the request is not valid."
    shown, rest = sentences[:MAX_SENTENCES], len(sentences) - MAX_SENTENCES
    text = "; ".join(shown) + (f"; and {rest} more" if rest > 0 else "") + "."
    return f"In {within}: {text}" if within else text


def failing_operation(patch: PatchOp[Any], resource: Resource[Any], policy: ScimPolicy) -> str | None:
    """Which operation of ``patch`` fails on ``resource``: ``the replace of `emails[type eq "work"].value```.

    scim2-models applies a PatchOp as a whole and, when a written value is not
    valid, reports the error relative to the object it was written into (an
    ``Email``, a ``Manager``), without the operation. To name it, the operations
    are applied again one at a time, in order, on a copy of ``resource``: the first
    that raises is the one. Only called on the error path; ``resource`` is not changed.
    """
    trial = resource.model_copy(deep=True)
    for operation in patch.operations or []:
        single = type(patch).model_construct(operations=[operation])
        try:
            single.patch(trial, scim_policy=policy)
        except (ValidationError, SCIMException):
            op = printable(getattr(operation.op, "value", operation.op), _VALUE_CHARS)
            if operation.path is None or not str(operation.path):
                return f"the path-less {op}"
            return f"the {op} of `{printable(operation.path, _PATH_CHARS)}`"
    return None
