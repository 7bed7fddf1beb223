"""The SCIM error hierarchy (RFC 7644 §3.12), independent of any transport.

Every failure the service reports is one of these classes; ``scim.web.api`` is
the one place that turns them into the wire body
``{"schemas": [...Error], "status": "404", "scimType": ..., "detail": ...}``.
Errors raised by scim2-models and pydantic are translated into this tree by
:func:`from_library_error`, and storage errors by ``scim.storage.tables`` — nowhere else.

::

    ScimError                          (400)
    ├── InvalidFilterError             400 invalidFilter   §3.4.2.2
    ├── TooManyError                   400 tooMany         §3.4.2.2
    ├── InvalidSyntaxError             400 invalidSyntax   §3.12
    ├── InvalidPathError               400 invalidPath     §3.5.2
    ├── NoTargetError                  400 noTarget        §3.5.2
    ├── InvalidValueError              400 invalidValue    §3.12
    ├── InvalidCursorError             400 invalidCursor   RFC 9865 §2.2
    ├── MutabilityError                400 mutability      §3.5.2
    ├── UnauthorizedError              401                 §3.12
    ├── NotFoundError                  404                 §3.12
    ├── MethodNotAllowedError          405                 §3.12
    ├── ConflictError                  409                 §3.12
    │   └── UniquenessError            409 uniqueness      §3.3
    ├── PreconditionFailedError        412                 §3.14
    ├── PayloadTooLargeError           413                 §3.12
    ├── UnsupportedMediaTypeError      415                 (RFC 9110 §15.5.16)
    ├── InternalError                  500                 §3.12
    ├── NotSupportedError           501                 §3.12
    └── ServiceUnavailableError        503 (+ Retry-After)  (RFC 9110 §15.6.4)
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import ValidationError
from scim2_models import Error, SCIMException

from scim.model.messages import LIBRARY_TEXT, describe

__all__ = [
    "ConflictError",
    "InternalError",
    "InvalidCursorError",
    "InvalidFilterError",
    "InvalidPathError",
    "InvalidSyntaxError",
    "InvalidValueError",
    "LengthRequiredError",
    "MethodNotAllowedError",
    "MutabilityError",
    "NoTargetError",
    "NotFoundError",
    "NotSupportedError",
    "PayloadTooLargeError",
    "PreconditionFailedError",
    "ScimError",
    "ServiceUnavailableError",
    "TooManyError",
    "TooManyRequestsError",
    "UnauthorizedError",
    "UniquenessError",
    "UnsupportedMediaTypeError",
    "from_library_error",
]


class ScimError(Exception):
    """Base of every SCIM error: an HTTP status, an optional ``scimType``, a detail.

    ``detail`` is shown verbatim in Entra's provisioning logs, so it should say
    what was wrong and how to fix it. It must never carry secrets or internals.
    """

    status: ClassVar[int] = 400
    scim_type: ClassVar[str | None] = None
    default_detail: ClassVar[str] = "The request is not valid."

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.default_detail
        super().__init__(self.detail)

    @property
    def headers(self) -> dict[str, str]:
        """Extra response headers this error needs (e.g. ``WWW-Authenticate``)."""
        return {}

    def to_body(self) -> dict[str, Any]:
        """The RFC 7644 §3.12 error body; ``status`` is a string there."""
        body: dict[str, Any] = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": str(self.status),
        }
        if self.scim_type:
            body["scimType"] = self.scim_type
        # A detail may quote client text; an unpaired surrogate in it (an id in a path) is not
        # Unicode text and could not be sent: it is shown as its escape (issue 14, item 7).
        body["detail"] = self.detail.encode("utf-8", "backslashreplace").decode("utf-8")
        return body


class InvalidFilterError(ScimError):
    """The filter syntax is invalid or names an unknown attribute (§3.4.2.2)."""

    scim_type = "invalidFilter"
    default_detail = "The filter is not valid."


class TooManyError(ScimError):
    """The query would examine or return more resources than allowed (§3.4.2.2)."""

    scim_type = "tooMany"
    default_detail = "The query matches too many resources; narrow the filter."


class InvalidSyntaxError(ScimError):
    """The body is not parsable JSON or not a valid SCIM message (§3.12)."""

    scim_type = "invalidSyntax"
    default_detail = "The request body is not a valid SCIM message."


class InvalidPathError(ScimError):
    """A PATCH path is malformed or names an unknown attribute (§3.5.2)."""

    scim_type = "invalidPath"
    default_detail = "The PATCH path is not valid."


class NoTargetError(ScimError):
    """A PATCH path filter selects nothing where a target is required (§3.5.2)."""

    scim_type = "noTarget"
    default_detail = "The PATCH path selects no value."


class InvalidValueError(ScimError):
    """A value is missing, of the wrong type, or not allowed (§3.12)."""

    scim_type = "invalidValue"
    default_detail = "A value in the request is not valid."


class InvalidCursorError(ScimError):
    """The ``cursor`` is not one this service issued (RFC 9865 §2.2)."""

    scim_type = "invalidCursor"
    default_detail = "The cursor is not valid; start again with an empty cursor."


class MutabilityError(ScimError):
    """The request changes a read-only or immutable attribute (§3.5.2)."""

    scim_type = "mutability"
    default_detail = "The request modifies an attribute that cannot be changed."


class UnauthorizedError(ScimError):
    """The bearer token is missing or not accepted (§3.12, RFC 6750 §3)."""

    status = 401
    default_detail = "Authorization failed: send the Secret Token as 'Authorization: Bearer <token>'."

    @property
    def headers(self) -> dict[str, str]:
        """RFC 6750 §3: a 401 names the scheme the client must use."""
        return {"WWW-Authenticate": 'Bearer realm="SCIM"'}


class NotFoundError(ScimError):
    """The resource or endpoint does not exist (§3.12)."""

    status = 404
    default_detail = "The resource does not exist."


class MethodNotAllowedError(ScimError):
    """The endpoint does not support the HTTP method (§3.12)."""

    status = 405
    default_detail = "The endpoint does not support this HTTP method."

    def __init__(self, detail: str | None = None, *, allow: tuple[str, ...] = ()) -> None:
        super().__init__(detail)
        self.allow = allow

    @property
    def headers(self) -> dict[str, str]:
        """RFC 9110 §15.5.6: a 405 lists the methods the endpoint supports."""
        return {"Allow": ", ".join(self.allow)} if self.allow else {}


class ConflictError(ScimError):
    """The request conflicts with the current state of the resource (§3.12)."""

    status = 409
    default_detail = "The request conflicts with the current state of the resource."


class UniquenessError(ConflictError):
    """A unique attribute value is already taken (§3.3, §3.5.1)."""

    scim_type = "uniqueness"
    default_detail = "A resource with this unique attribute value already exists."


class PreconditionFailedError(ScimError):
    """The ``If-Match`` version no longer matches the resource (§3.14)."""

    status = 412
    default_detail = "The resource has changed since the version given in If-Match."


class LengthRequiredError(ScimError):
    """A body was announced without ``Content-Length`` and did not arrive (RFC 9110 §15.5.12).

    The Azure Functions host forwards a request body to the function only when
    ``Content-Length > 0`` (Azure/azure-functions-host#4926, #7930): a chunked body is dropped
    on the way, so the only fix is on the client's side.
    """

    status = 411
    default_detail = (
        "The request body did not arrive: it was sent without a Content-Length header "
        "(chunked transfer encoding), which the Azure Functions host does not forward. "
        "Send the body with a Content-Length header."
    )


class PayloadTooLargeError(ScimError):
    """The body or a stored resource exceeds a limit (§3.12)."""

    status = 413
    default_detail = "The request is too large."


class UnsupportedMediaTypeError(ScimError):
    """The body is not JSON (RFC 9110 §15.5.16; RFC 7644 §3.1 asks for scim+json)."""

    status = 415
    default_detail = "Send the body as application/scim+json or application/json."


class InternalError(ScimError):
    """An unexpected failure; its details go to the log, never to the client."""

    status = 500
    default_detail = "The server failed to process the request. Retry later."


class NotSupportedError(ScimError):
    """The service provider does not support the requested operation (§3.12)."""

    status = 501
    default_detail = "This operation is not supported by this service provider."


class ServiceUnavailableError(ScimError):
    """Storage is unreachable or throttling; the client should retry later."""

    status = 503
    default_detail = "The directory storage is temporarily unavailable. Retry later."

    def __init__(self, detail: str | None = None, *, retry_after: int = 5) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        """RFC 9110 §10.2.3: tell the client when to come back."""
        return {"Retry-After": str(self.retry_after)}


class TooManyRequestsError(ServiceUnavailableError):
    """A directory has as many requests in progress as it may have (RFC 6585 §4; issue 17).

    One directory's burst must not take every worker of the endpoint from the others; Entra
    retries a 429 after ``Retry-After``.
    """

    status = 429
    default_detail = "This directory has too many requests in progress. Retry after the time given."


_BY_SCIM_TYPE: dict[str, type[ScimError]] = {
    cls.scim_type: cls
    for cls in (
        InvalidFilterError,
        TooManyError,
        InvalidSyntaxError,
        InvalidPathError,
        NoTargetError,
        InvalidValueError,
        InvalidCursorError,
        MutabilityError,
        UniquenessError,
    )
    if cls.scim_type
}

_BY_STATUS: dict[int, type[ScimError]] = {
    401: UnauthorizedError,
    404: NotFoundError,
    409: ConflictError,
    412: PreconditionFailedError,
    413: PayloadTooLargeError,
    501: NotSupportedError,
}


def _class_of(error: Error) -> type[ScimError]:
    return _BY_SCIM_TYPE.get(error.scim_type or "") or _BY_STATUS.get(
        int(error.status or 400), InvalidValueError
    )


def _validation_cause(exc: BaseException) -> ValidationError | None:
    """The pydantic error a library exception was raised from, if any (``raise … from``)."""
    cause = exc.__cause__ or exc.__context__
    for _ in range(5):  # a short chain; never loop on a cycle
        if cause is None or isinstance(cause, ValidationError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def from_library_error(exc: SCIMException | ValidationError, *, operation: str | None = None) -> ScimError:
    """Translate a scim2-models or pydantic error into this hierarchy, in SCIM words.

    scim2-models reports RFC errors as ``SCIMException``; inside validation it
    wraps them in a pydantic ``ValidationError`` whose context carries the
    ``scimType``. A plain validation error (wrong type, missing required
    attribute) becomes ``invalidValue``, as RFC 7644 §3.12 Table 9 says; the
    ``scimType`` is the one of the first error. The ``detail`` is built by
    :func:`scim.model.messages.describe` from the structured errors, one sentence per
    attribute: pydantic's own text and its documentation links never reach the
    client (issue 16, item 3).

    When scim2-models applies a PATCH it wraps a value's ``ValidationError`` in an
    ``InvalidValueException`` whose detail is ``str()`` of it; that cause is
    described instead, ``operation`` (from :func:`scim.model.messages.failing_operation`)
    saying which operation wrote the value.
    """
    if isinstance(exc, SCIMException):
        error = exc.to_error()
        cls, detail = _class_of(error), error.detail or ""
        if LIBRARY_TEXT.search(detail):
            cause = _validation_cause(exc)
            return cls(describe(cause.errors(), within=operation) if cause is not None else None)
        return cls(detail or None)
    errors = exc.errors()
    if not errors:
        return InvalidValueError()
    return _class_of(Error.from_validation_error(errors[0]))(describe(errors))
