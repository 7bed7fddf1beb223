"""The SCIM resource service: RFC 7644 §3 operations over a Repository.

Owns what storage must not decide: ids (UUID4), ``meta`` (RFC 7643 §3.1),
schema validation, PATCH semantics (via scim2-models, after ``scim.model.entra``),
``If-Match`` preconditions (§3.14), uniqueness keys, and the retry of a write
that lost an ETag race. Transport-neutral: it sees dicts and strings, never
HTTP objects.

Work is bounded before it starts (DESIGN §11): multi-valued attributes and
the work of a PatchOp are checked up front (``scim.model.limits``), scans count
every row they read (reverse edges and expanded members included) against
``max_scan``, and the CPU-heavy steps — validating a body, applying a PatchOp,
evaluating a filter or a sort over many rows — run in a small thread pool
(:func:`off_loop`), so one large request never stalls the event loop that
serves the others.

Storage round trips per operation (asserted in the integration tests):
create 1; get 1; filter on ``id`` 1, on ``userName``/``externalId`` 2;
patch/replace 2 (read + one conditional transaction; 1 when nothing changes);
delete 2 (read + one conditional transaction).
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import dataclasses
import functools
import json
import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from scim2_models import Context, Meta, PatchOp, Resource, SCIMException, SearchRequest
from scim2_models.path import (
    CompareOperator,
    Comparison,
    FilterNode,
    LogicalExpr,
    LogicalOperator,
    ScimFilter,
)

from scim.model import entra
from scim.model.changes import Change, timestamp
from scim.model.errors import (
    ConflictError,
    InvalidCursorError,
    InvalidSyntaxError,
    NotFoundError,
    PreconditionFailedError,
    TooManyError,
    from_library_error,
)
from scim.model.limits import (
    CPU_WORKERS,
    check_filter,
    check_indexed_values,
    check_multi_valued,
    check_patch_size,
    check_patch_values,
    check_patch_work,
)
from scim.model.messages import failing_operation
from scim.model.resources import ENTRA_POLICY, IndexedAttribute, ResourceKind
from scim.model.unknown import REJECT, check_password, patch_unknown_names, resource_unknown_names, settle
from scim.service.membership import is_resource_id
from scim.storage.repository import Repository, StoredResource

__all__ = [
    "WRITE_ATTEMPTS",
    "ListResult",
    "Query",
    "ResourceService",
    "back_off",
    "check_precondition",
    "decode_cursor",
    "encode_cursor",
    "matches_if_match",
    "off_loop",
    "version_of",
]


_EVALUATION_BATCH = 100
"""Rows a cursor page evaluates its filter on at a time (off the loop): a page stops within one batch."""

_EXPANSION_BATCH = 7
"""Candidates whose kept-outside attributes a filter expands at a time before the rows read are
counted (a user's reverse edges are read 7 users per query)."""

WRITE_ATTEMPTS = 8
"""Attempts of a read-modify-write that loses ETag races before answering 409."""


async def back_off(attempt: int) -> None:
    """Full-jitter exponential back-off between ETag-race retries (≤ 0.4 s)."""
    await asyncio.sleep(random.uniform(0, min(0.4, 0.01 * 2**attempt)))  # noqa: S311 - not crypto


_CPU_POOL = ThreadPoolExecutor(max_workers=CPU_WORKERS, thread_name_prefix="scim-cpu")
"""One pool per process; its threads start on first use, so importing stays cheap."""


async def off_loop[T](function: Callable[..., T], *arguments: Any) -> T:
    """Run CPU-heavy ``function(*arguments)`` in the service's thread pool (DESIGN §11).

    The event loop keeps serving other requests meanwhile (the pool is not the
    loop's default executor, which DNS look-ups of the storage client use). The
    caller's context variables (the actor, scim2-models' policy) go along.
    """
    context = contextvars.copy_context()
    call = functools.partial(context.run, function, *arguments)
    return await asyncio.get_running_loop().run_in_executor(_CPU_POOL, call)


def version_of(stored: StoredResource) -> str:
    """The weak ``meta.version`` / ``ETag`` of a resource (RFC 7644 §3.14).

    The resource's version counter: every committed change adds exactly one
    (under the row's storage ETag, so concurrent writers never share a number),
    and the change feed carries the same number (``scim.model.changes``). A user's
    ``groups`` is kept on the group side, so a membership change versions the
    group, not the user.
    """
    return f'W/"{stored.version}"'


def _opaque(tag: str) -> str:
    tag = tag.strip()
    return tag[2:] if tag.startswith(("W/", "w/")) else tag


def matches_if_match(if_match: str, version: str) -> bool:
    """RFC 9110 §13.1.1 ``If-Match`` with weak comparison, as SCIM versions are weak."""
    tags = [tag.strip() for tag in if_match.split(",") if tag.strip()]
    return "*" in tags or _opaque(version) in {_opaque(tag) for tag in tags}


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ListResult:
    """One page of a query (RFC 7644 §3.4.2; RFC 9865 for cursors).

    ``total`` is None when a cursor page does not know it (RFC 9865 §2 makes
    ``totalResults`` optional), and ``start_index`` is None for cursor pages.
    """

    resources: list[StoredResource]
    total: int | None
    start_index: int | None = None
    next_cursor: str | None = None


@dataclass(frozen=True)
class Query:
    """A parsed, validated query: filter, sorting, paging and attribute selection."""

    request: SearchRequest[Any]
    start_index: int
    count: int
    cursor: dict[str, Any] | None = None
    """The decoded ``cursor`` (``{}`` for the first page), or None for index paging."""


def encode_cursor(state: dict[str, Any]) -> str:
    """An opaque RFC 9865 cursor: base64url JSON, only unreserved characters (RFC 3986 §2.3)."""
    raw = json.dumps(state, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    """The state of a cursor issued by :func:`encode_cursor`.

    A cursor only says where to resume, so a forged one can do no more than
    start elsewhere.

    Raises:
        InvalidCursorError: Not a cursor this service issued.
    """
    if cursor == "":
        return {}
    try:
        state = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, UnicodeDecodeError):
        raise InvalidCursorError() from None
    valid_after = isinstance(state, dict) and ("a" not in state or is_resource_id(str(state["a"])))
    valid_offset = isinstance(state, dict) and isinstance(state.get("o", 0), int) and state.get("o", 0) >= 0
    if not (valid_after and valid_offset) or (state.keys() - {"a", "o"}):
        raise InvalidCursorError()
    return dict(state)


class ResourceService:
    """Create, read, query, replace, patch and delete resources of one kind."""

    def __init__(
        self,
        kind: ResourceKind,
        repository: Repository,
        *,
        max_page_size: int = 200,
        max_scan: int = 10_000,
        unknown_attributes: str = REJECT,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.kind = kind
        self._unknown = unknown_attributes
        self._repository = repository
        self._max_page_size = max_page_size
        self._max_scan = max_scan
        self._clock = clock
        self._known_schemas = self._schemas_of(kind.model)
        self._edges = ("members",) if kind.name == "Group" else ()
        """Attributes kept as edges, bounded by ``MAX_MEMBERS_PER_PATCH`` instead of ``MAX_MULTI_VALUES``."""
        self._complex_values = tuple(
            f"{extension.urn}:{attribute.name}"
            for extension in kind.declared
            for attribute in extension.schema.attributes or []
            if attribute.type is not None and attribute.type.value == "complex" and not attribute.multi_valued
            and any(sub.name == "value" for sub in attribute.sub_attributes or [])
        )  # fmt: skip
        # Held here: pydantic keeps parametrized generics only weakly, and rebuilding one after a
        # garbage collection costs ~13 ms (a third of the filter requests paid it before).
        self._search_request: type[SearchRequest[Any]] = SearchRequest[kind.model]  # type: ignore[name-defined]
        self._patch_op: type[PatchOp[Any]] = PatchOp[kind.model]  # type: ignore[name-defined]

    @staticmethod
    def _schemas_of(model: type[Resource[Any]]) -> tuple[str, ...]:
        extensions = [str(ext.__schema__) for ext in model.get_extension_models().values()]
        return (str(model.__schema__), *extensions)

    # -- validation --------------------------------------------------------

    def _validate(self, body: Any, context: Context) -> tuple[Resource[Any], tuple[str, ...]]:
        """The validated resource, and the undeclared attributes it ignored (``scim.model.unknown``).

        Raises:
            InvalidValueError: Not a valid resource, an undeclared attribute
                (``reject`` mode), or a ``password``.
        """
        if not isinstance(body, dict):
            raise InvalidSyntaxError(f"The body must be a JSON object describing a {self.kind.name}.")
        body = entra.normalize_resource(body, self._known_schemas)
        check_multi_valued(body, exempt=self._edges)
        try:
            resource = self.kind.model.model_validate(body, scim_ctx=context, scim_policy=ENTRA_POLICY)
        except (ValidationError, SCIMException) as error:
            raise from_library_error(error) from error
        check_password(resource)
        ignored = settle(self._unknown, self.kind.name, resource_unknown_names(resource))
        check_indexed_values(resource, self.kind)
        return resource, ignored

    def _load(self, stored: StoredResource) -> Resource[Any]:
        return self.kind.model.model_validate(stored.document, scim_policy=ENTRA_POLICY)

    def _document(self, resource: Resource[Any]) -> dict[str, Any]:
        """The stored form: what a GET returns, with ``schemas`` recomputed.

        ``schemas`` lists the core schema and each extension that holds a
        value (RFC 7643 §3): URIs the client sent that we do not serve are not
        echoed back.
        """
        document = resource.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
        if self.kind.hidden:  # declared attributes a response leaves out are still stored
            everything = resource.model_dump(mode="json", by_alias=True, exclude_none=True)
            for urn, names in self.kind.hidden.items():
                kept = {n: everything[urn][n] for n in names if n in everything.get(urn, {})}
                if kept:
                    document[urn] = {**document.get(urn, {}), **kept}
        document["schemas"] = [self._known_schemas[0]] + [
            uri for uri in self._known_schemas[1:] if document.get(uri)
        ]
        return document

    # -- operations --------------------------------------------------------

    async def create(self, body: Any) -> StoredResource:
        """RFC 7644 §3.3: validate, assign ``id`` and ``meta``, insert atomically.

        Raises:
            InvalidValueError / InvalidSyntaxError: The body is not a valid resource.
            UniquenessError: A unique attribute value is taken (409).
        """
        resource, ignored = await off_loop(self._validate, body, Context.RESOURCE_CREATION_REQUEST)
        now = self._clock()
        resource.id = str(uuid.uuid4())
        resource.meta = Meta(resource_type=self.kind.name, created=now, last_modified=now)
        document = await off_loop(self._document, resource)
        index = self.kind.index_entries(document)
        change = Change.of(
            self.kind.name, resource.id, "create", 1, timestamp(now), after=document, ignored=ignored
        )
        etag = await self._repository.create(self.kind.name, resource.id, document, index, change=change)
        return StoredResource(resource.id, document, etag, version=1)

    async def get(self, resource_id: str) -> StoredResource:
        """RFC 7644 §3.4.1: one read.

        Raises:
            NotFoundError: No such resource (an id this service cannot have
                issued costs no storage round trip).
        """
        if not is_resource_id(resource_id):
            raise NotFoundError(f"{self.kind.name} {resource_id} not found.")
        return await self._repository.get(self.kind.name, resource_id)

    async def expand(self, stored: StoredResource, wanted: Callable[[str], bool]) -> StoredResource:
        """Add attributes kept outside the resource row (``User.groups``, ``Group.members``).

        ``wanted(name)`` says whether the response will carry the attribute, so
        nothing is read for an attribute the client excluded. The base class
        stores everything in the row.
        """
        return stored

    def parse_query(self, parameters: dict[str, Any]) -> Query:
        """Validate a query (§3.4.2): filter, sortBy/sortOrder, startIndex/count or cursor, attributes.

        ``parameters`` are the GET query parameters or a POST /.search body.

        Raises:
            InvalidFilterError: Bad filter syntax or an unknown attribute.
            InvalidCursorError: A cursor this service did not issue.
        """
        parameters = dict(parameters)
        for key, value in parameters.items():
            if key.lower() == "filter" and isinstance(value, str):
                check_filter(value)
                parameters[key] = entra.normalize_filter(value, self._complex_values)
        try:
            request = self._search_request.model_validate(
                parameters, scim_ctx=Context.SEARCH_REQUEST, scim_policy=ENTRA_POLICY
            )
        except (ValidationError, SCIMException) as error:
            raise from_library_error(error) from error
        count = self._max_page_size if request.count is None else min(request.count, self._max_page_size)
        cursor = decode_cursor(request.cursor) if request.cursor is not None else None
        return Query(request, request.start_index or 1, max(count, 0), cursor)

    async def query(self, query: Query) -> ListResult:
        """RFC 7644 §3.4.2: filter, sort, then page by ``startIndex``/``count`` or by cursor.

        Reads no more rows than the page needs plus ``max_scan`` (reverse edges
        and members read to evaluate a filter count as rows).

        Raises:
            TooManyError: A filter no index answers, a sort, or a ``startIndex``
                deep into an unfiltered list would examine too many rows.
        """
        request = query.request
        if query.cursor is not None and request.sort_by is None and not self._indexed(request):
            return await self._keyset_page(query, query.cursor)
        if request.filter is None and request.sort_by is None:
            return await self._list_all(query)
        matches = await self._matches(request)
        if request.sort_by is not None:
            matches = await off_loop(self._sorted, request, matches)
        if query.cursor is not None:
            offset = int(query.cursor.get("o", 0))
            end = offset + query.count
            more = encode_cursor({"o": end}) if end < len(matches) else None
            return ListResult(matches[offset:end], len(matches), next_cursor=more)
        page = matches[query.start_index - 1 : query.start_index - 1 + query.count]
        return ListResult(page, len(matches), query.start_index)

    def _indexed(self, request: SearchRequest[Any]) -> bool:
        return request.filter is not None and _index_term(request.filter.ast, self.kind) is not None

    def _too_many(self) -> TooManyError:
        return TooManyError(
            f"The query needs more than {self._max_scan:,} {self.kind.name} rows examined "
            "(SCIM_MAX_SCAN); filter with 'eq' on id or a unique attribute, or page with a cursor (RFC 9865)."
        )

    async def _matches(self, request: SearchRequest[Any]) -> list[StoredResource]:
        """Every resource the filter matches (all of them without a filter), bounded."""
        candidates, examined, residual = await self._candidates(request.filter)
        if residual is None:
            return candidates
        verdicts = await self._verdicts(residual, candidates, self._max_scan - examined)
        if len(verdicts) < len(candidates):
            raise self._too_many()
        return [stored for stored, (matched, _) in zip(candidates, verdicts, strict=True) if matched]

    async def _verdicts(
        self, residual: ScimFilter[Any] | None, candidates: list[StoredResource], allowance: int
    ) -> list[tuple[bool, int]]:
        """Whether each candidate matches what storage left of the filter, and the rows read to decide it.

        Attributes kept outside the row (``groups``, ``members``) are read only
        when the filter names them, a few candidates at a time, and only while
        the rows read stay within ``allowance``: the verdicts then cover only
        the candidates expanded so far (a shorter list). The evaluation itself
        runs off the event loop.
        """
        if residual is None:
            return [(True, 0)] * len(candidates)
        costs: list[int] = []
        if self._filter_needs_expansion(str(residual)):
            expanded: list[StoredResource] = []
            for start in range(0, len(candidates), _EXPANSION_BATCH):
                if allowance < 0:
                    break
                chunk = candidates[start : start + _EXPANSION_BATCH]
                done = await self.expand_all(chunk, lambda _: True)
                chunk_costs = [self._expansion_rows(b, a) for b, a in zip(chunk, done, strict=True)]
                allowance -= sum(chunk_costs)
                costs += chunk_costs
                expanded += done
            candidates = expanded
        else:
            costs = [0] * len(candidates)
        matched = await off_loop(self._matching, residual, candidates)
        return list(zip(matched, costs, strict=True))

    def _matching(self, residual: ScimFilter[Any], candidates: list[StoredResource]) -> list[bool]:
        """Evaluate the filter on each candidate (CPU: off the loop)."""
        return [bool(residual.match(self._load(stored))) for stored in candidates]

    def _expansion_rows(self, before: StoredResource, after: StoredResource) -> int:
        """Rows :meth:`expand` read for ``before``: the values it added (members)."""
        return sum(
            len(value)
            for name, value in after.document.items()
            if name not in before.document and isinstance(value, list)
        )

    def _sorted(self, request: SearchRequest[Any], matches: list[StoredResource]) -> list[StoredResource]:
        """RFC 7644 §3.4.2.3 ``sortBy``/``sortOrder``, by scim2-models' ordering rules (CPU: off the loop)."""
        if request.sort_by is None:
            return matches
        by_id = {stored.id: stored for stored in matches}
        ordered = request.sort([self._load(stored) for stored in matches])
        return [by_id[str(resource.id)] for resource in ordered]

    async def _keyset_page(self, query: Query, state: dict[str, Any]) -> ListResult:
        """RFC 9865 cursor page resuming after the last id returned.

        Examines at most ``max_scan`` rows per request (a resource's reverse
        edges, and what the filter needed expanded, included): a sparse filter
        returns a short page (possibly empty) with a cursor to continue, never
        ``tooMany``. ``totalResults`` is omitted, as counting would cost a full
        scan. ``nextCursor`` is given only when another resource follows.
        """
        request, examined, more = query.request, 0, False
        page: list[StoredResource] = []
        last: str | None = None
        scan = self._repository.scan(self.kind.name, after=state.get("a"), where=request.filter)
        async for batch in _batches(scan.rows, _EVALUATION_BATCH):
            if len(page) == query.count or examined >= self._max_scan:
                more = True  # the page ended with the previous batch, and another row follows
                break
            verdicts = await self._verdicts(scan.residual, batch, self._max_scan - examined)
            for stored, (matched, cost) in zip(batch, verdicts, strict=False):
                if len(page) == query.count or examined >= self._max_scan:
                    more = True
                    break
                examined, last = examined + 1 + len(stored.edges) + cost, stored.id
                if matched:
                    page.append(stored)
            if more or len(verdicts) < len(batch):
                more = True  # stopped inside the batch: the next row exists
                break
        return ListResult(page, None, next_cursor=encode_cursor({"a": last}) if more and last else None)

    async def _list_all(self, query: Query) -> ListResult:
        """Index paging without a filter: count (keys only), then skip to ``startIndex``.

        Skipping reads rows (a resource and its reverse edges), so a
        ``startIndex`` that would skip more than ``max_scan`` rows is refused:
        deep pages are for cursors (RFC 9865).

        Raises:
            TooManyError: ``startIndex`` is deeper than the scan bound.
        """
        total = await self._repository.count(self.kind.name)
        page: list[StoredResource] = []
        if query.count and query.start_index <= total:
            skip, skipped = query.start_index - 1, 0
            if skip > self._max_scan:
                raise self._too_deep(query.start_index)
            async for stored in self._repository.scan(self.kind.name).rows:
                if skip:
                    skip, skipped = skip - 1, skipped + 1 + len(stored.edges)
                    if skipped > self._max_scan:
                        raise self._too_deep(query.start_index)
                    continue
                page.append(stored)
                if len(page) == query.count:
                    break
        return ListResult(page, total, query.start_index)

    def _too_deep(self, start_index: int) -> TooManyError:
        return TooManyError(
            f"startIndex {start_index:,} needs more than {self._max_scan:,} {self.kind.name} rows "
            "skipped (SCIM_MAX_SCAN); page with a cursor (RFC 9865: cursor= then nextCursor) or "
            "narrow the list with a filter."
        )

    async def expand_all(
        self, stored: list[StoredResource], wanted: Callable[[str], bool]
    ) -> list[StoredResource]:
        """:meth:`expand` for a page of results (subclasses batch the reads)."""
        return [await self.expand(item, wanted) for item in stored]

    def _filter_needs_expansion(self, text: str) -> bool:
        """Whether a filter names an attribute that :meth:`expand` provides."""
        return False

    async def _candidates(
        self, where: ScimFilter[Any] | None
    ) -> tuple[list[StoredResource], int, ScimFilter[Any] | None]:
        """The resources a filter can match, the rows read for them, and what is left to evaluate.

        By index when an ``eq`` allows it (the rest of the filter is left), else
        a storage scan bounded by ``max_scan`` rows (a resource's reverse edges,
        read with it, count), which leaves what storage could not decide.

        Raises:
            TooManyError: More than ``max_scan`` rows.
        """
        lookup = _index_term(where.ast, self.kind) if where is not None else None
        if lookup is not None:
            attribute, value = lookup
            if attribute is None:
                try:
                    return [await self.get(value)], 1, where
                except NotFoundError:
                    return [], 0, where
            found = await self._repository.lookup(self.kind.name, attribute.index, attribute.key(value))
            if len(found) > self._max_scan:
                raise TooManyError(
                    f"More than {self._max_scan:,} {self.kind.name} resources share the value."
                )
            return found, sum(1 + len(stored.edges) for stored in found), where
        scanned: list[StoredResource] = []
        examined = 0
        scan = self._repository.scan(self.kind.name, where=where)
        async for stored in scan.rows:
            scanned.append(stored)
            examined += 1 + len(stored.edges)
            if examined > self._max_scan:
                raise self._too_many()
        return scanned, examined, scan.residual

    async def replace(self, resource_id: str, body: Any, *, if_match: str | None = None) -> StoredResource:
        """RFC 7644 §3.5.1: replace every writable attribute, keep ``id`` and ``created``."""
        resource, ignored = await off_loop(self._validate, body, Context.RESOURCE_REPLACEMENT_REQUEST)

        def rewrite(_: Resource[Any], __: dict[str, Any]) -> Resource[Any]:
            return resource.model_copy(deep=True)

        return await self._write(resource_id, rewrite, "replace", if_match=if_match, ignored=ignored)

    async def patch(self, resource_id: str, body: Any, *, if_match: str | None = None) -> StoredResource:
        """RFC 7644 §3.5.2: apply the operations atomically (all or none).

        Raises:
            InvalidSyntaxError / InvalidPathError / InvalidValueError / MutabilityError /
            NoTargetError: The PatchOp is not valid for this resource.
        """
        if not isinstance(body, dict):
            raise InvalidSyntaxError("The body must be a PatchOp JSON object.")
        check_patch_size(body)
        body, patch, ignored = await off_loop(self._parse_patch, body)

        def apply(resource: Resource[Any], current: dict[str, Any]) -> Resource[Any] | None:
            check_patch_work(body, current, self._known_schemas)  # before anything is applied
            try:
                changed = patch.patch(resource, scim_policy=ENTRA_POLICY)
            except (ValidationError, SCIMException) as error:
                operation = failing_operation(patch, resource, ENTRA_POLICY)  # names it in the detail
                raise from_library_error(error, operation=operation) from error
            if changed:
                check_indexed_values(resource, self.kind)
            return resource if changed else None

        return await self._write(resource_id, apply, "patch", if_match=if_match, ignored=ignored)

    def _parse_patch(self, body: dict[str, Any]) -> tuple[dict[str, Any], PatchOp[Any], tuple[str, ...]]:
        """The normalised body, the validated PatchOp and the undeclared names ignored (CPU: off the loop).

        Raises:
            InvalidValueError: An operation carries more than ``MAX_MULTI_VALUES`` values
                (checked before the values are validated), or is not valid.
        """
        body = entra.normalize_patch(body)
        check_patch_values(body, exempt=self._edges)
        check_password(patch=body)
        in_paths, in_values = patch_unknown_names(self.kind.model, body)
        ignored = settle(self._unknown, self.kind.name, in_values, in_paths)
        try:
            patch = self._patch_op.model_validate(
                body, scim_ctx=Context.RESOURCE_PATCH_REQUEST, scim_policy=ENTRA_POLICY
            )
        except (ValidationError, SCIMException) as error:
            raise from_library_error(error) from error
        return body, patch, ignored

    async def _write(
        self,
        resource_id: str,
        change: Callable[[Resource[Any], dict[str, Any]], Resource[Any] | None],
        operation: str,
        *,
        if_match: str | None,
        ignored: tuple[str, ...] = (),
    ) -> StoredResource:
        """Read, change, conditionally write (with the change record); retry when another writer won.

        With ``If-Match`` the client owns the race and gets 412 instead.
        """
        for attempt in range(WRITE_ATTEMPTS):
            if attempt:
                await back_off(attempt)
            current = await self.get(resource_id)
            check_precondition(current, if_match)
            now = self._clock()
            document = await off_loop(self._changed, current, change, now)
            if document is None:
                return current  # nothing changed: no write, version unchanged
            version = current.version + 1
            record = Change.of(
                self.kind.name,
                current.id,
                operation,
                version,
                timestamp(now),
                before=current.document,
                after=document,
                ignored=ignored,
            )
            try:
                etag = await self._repository.replace(
                    self.kind.name,
                    current,
                    document,
                    old_index=self.kind.index_entries(current.document),
                    new_index=self.kind.index_entries(document),
                    change=record,
                )
            except PreconditionFailedError:
                if if_match is not None:
                    raise
                continue
            return dataclasses.replace(current, document=document, etag=etag, version=version)
        raise ConflictError(
            f"The {self.kind.name} was changed by concurrent requests {WRITE_ATTEMPTS} times; retry."
        )

    def _changed(
        self,
        current: StoredResource,
        change: Callable[[Resource[Any], dict[str, Any]], Resource[Any] | None],
        now: datetime,
    ) -> dict[str, Any] | None:
        """The changed resource's stored form, or None if nothing changes (CPU: off the loop).

        Raises:
            InvalidValueError: The result holds more than ``MAX_MULTI_VALUES``
                values in one attribute (and whatever ``change`` raises).
        """
        before = self._load(current)
        after = change(before.model_copy(deep=True), current.document)
        if after is None:
            return None
        after.id = current.id
        after.meta = Meta(
            resource_type=self.kind.name,
            created=before.meta.created if before.meta else now,
            last_modified=now,
        )
        document = self._document(after)
        if _same(document, current.document):
            return None  # same values: no write, version unchanged
        check_multi_valued(document, exempt=self._edges)
        return document

    async def delete(self, resource_id: str, *, if_match: str | None = None) -> None:
        """RFC 7644 §3.6: delete the resource, its index rows and its edges.

        Raises:
            NotFoundError: No such resource (a repeated DELETE is a 404).
        """
        for attempt in range(WRITE_ATTEMPTS):
            if attempt:
                await back_off(attempt)
            current = await self.get(resource_id)
            check_precondition(current, if_match)
            index = self.kind.index_entries(current.document)
            try:
                current = await self._before_delete(current)
                record = Change.of(
                    self.kind.name, current.id, "delete", current.version + 1, timestamp(self._clock()),
                    before=current.document,
                )  # fmt: skip
                await self._repository.delete(self.kind.name, current, index, record)
            except PreconditionFailedError:
                if if_match is not None:
                    raise
                continue
            return
        raise ConflictError(f"The {self.kind.name} kept changing while being deleted; retry.")

    async def _before_delete(self, current: StoredResource) -> StoredResource:
        """Undo what lives outside the resource's partition; return the state to delete."""
        return current


async def _batches(rows: AsyncIterator[StoredResource], size: int) -> AsyncIterator[list[StoredResource]]:
    """``rows`` in lists of ``size`` (the last one shorter)."""
    batch: list[StoredResource] = []
    async for stored in rows:
        batch.append(stored)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def check_precondition(current: StoredResource, if_match: str | None) -> None:
    """RFC 7644 §3.14: refuse the write unless ``If-Match`` names the current version.

    Raises:
        PreconditionFailedError: It does not.
    """
    if if_match is not None and not matches_if_match(if_match, version_of(current)):
        raise PreconditionFailedError(
            f"If-Match {if_match} does not match the current version {version_of(current)}."
        )


def _same(document: dict[str, Any], stored: dict[str, Any]) -> bool:
    """Whether two documents hold the same values, ``meta`` aside (a no-op write)."""
    return {k: v for k, v in document.items() if k != "meta"} == {
        k: v for k, v in stored.items() if k != "meta"
    }


def _eq_terms(node: FilterNode) -> Iterable[Comparison]:
    if isinstance(node, Comparison):
        yield node
    elif isinstance(node, LogicalExpr) and node.op == LogicalOperator.and_:
        for term in node.terms:
            yield from _eq_terms(term)


def _index_term(node: FilterNode, kind: ResourceKind) -> tuple[IndexedAttribute | None, str] | None:
    """The (indexed attribute, value) of an ``eq`` an index can answer (None: ``id``), if any.

    Only a top-level comparison or one operand of a top-level ``and`` chain
    qualifies: every match must satisfy it. The whole filter is still
    evaluated on the candidates, so the other terms keep their meaning. ``id``
    is preferred, then a unique attribute (one candidate), then any index.
    """
    best: tuple[int, tuple[IndexedAttribute | None, str]] | None = None
    for term in _eq_terms(node):
        path = term.attr_path
        if term.op != CompareOperator.eq or path.sub_attr or not isinstance(term.value, str):
            continue
        if path.attr.lower() == "id" and (not path.uri or path.uri.lower() == kind.schema.lower()):
            return None, term.value
        attribute = kind.indexed_attribute(path.uri, path.attr)
        if attribute is not None:
            rank = 0 if attribute.unique else 1
            if best is None or rank < best[0]:
                best = (rank, (attribute, term.value))
    return best[1] if best is not None else None
