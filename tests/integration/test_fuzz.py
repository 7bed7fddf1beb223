"""Fuzz the served API from ``openapi.yaml`` with schemathesis, over real HTTP against Azurite.

Each operation of the OpenAPI description gets a bounded number of requests:

- its documented examples;
- requests generated valid by the schema (``positive``) and invalid by it (``negative``); the
  ``{id}`` operations both on a random id and on a user or group that exists;
- hostile requests: its request body example with, in turn, each string spiked with each value of
  :data:`HOSTILE`, values known to break services (lone UTF-16 surrogates, NUL and other control
  characters, Table Storage key characters, OData quotes, ...).

A sweep then sends every SCIM method to every path with no token, with a wrong token, and with a
valid token but a method the path does not document. Hypothesis is derandomized and keeps no
database, so every run sends the same requests (the server's ids and versions aside).

The properties, checked on every response (RFC 7644 §3.1, §3.12):

- no 5xx at all (503 included: Azurite is up);
- a 4xx is ``application/scim+json`` and an RFC 7644 §3.12 error: ``schemas`` is exactly the Error
  URN, ``status`` is the status code as a string, ``detail`` is present;
- a 2xx with a body is ``application/scim+json`` JSON; a 204 or 304 has no body;
- the response conforms to ``openapi.yaml``: documented status code, content type, headers and
  body schema (schemathesis's own checks).

Violations are collected, not raised on the first one: each test fails listing every distinct
finding (by problem and operation) with a reproducer. Resources a test creates are deleted after
it, so the dev server's table is left as it was found for the next test.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import TOKEN

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = schemathesis.openapi.from_path(ROOT / "openapi.yaml")
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]

MAX_EXAMPLES = 12
"""Generated requests per operation and kind (positive, negative; per id kind on ``{id}``)."""

SETTINGS = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    # Failures are collected, never raised, so there is nothing to shrink.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)

SCIM_JSON = "application/scim+json"
ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
SPEC_CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
TIMEOUT = 30
AUTHORIZED = {"Authorization": f"Bearer {TOKEN}"}
"""Sent with every request; in negative mode schemathesis still drops or spoils it on some (401s)."""
SERIAL = itertools.count(1)
"""Numbers the seeded users and groups, whose names must be unique."""

HOSTILE = (
    "\x00",
    "\x1f\x7f\x85",
    "\u202e\ufeff\uffff\U0001d54f",
    '") or (PartitionKey ne "',
    "' or ''='",
    "a/b#c?d\\e%2F..",
    "bulkId:",
    "x" * 5000,
    # Last, as what they break may be stored and break every later read of the resource: lone
    # UTF-16 surrogates, legal in JSON (\ud800) but not encodable as UTF-8.
    "\udfff",
    "\ud800",
)
"""Values that break services, put into every string of each operation's request body example."""


@dataclass
class Findings:
    """Every distinct property violation, with a request that reproduces it."""

    items: dict[tuple[str, str], str] = field(default_factory=dict)
    requests: int = 0

    def add(self, problem: str, response: requests.Response | schemathesis.Response, where: str) -> None:
        if (problem, where) in self.items:
            return
        request = response.request
        url = urlsplit(str(request.url))
        target = url.path + (f"?{url.query}" if url.query else "")
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() in ("content-type", "if-match", "if-none-match")
            or (name.lower() == "authorization" and value != f"Bearer {TOKEN}")
        }
        body = request.body if request.body is not None else b""
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        self.items[problem, where] = (
            f"[{where}] {problem}\n    request:  {request.method} {target}"
            f"\n    headers:  {headers}"
            f"\n    body:     {text[:600]}"
            f"\n    response: {response.status_code} {_content_type(response)!r} "
            f"{_content(response)[:400]!r}"
        )

    def report(self) -> str:
        return f"{len(self.items)} finding(s) in {self.requests} requests:\n\n" + "\n\n".join(
            self.items.values()
        )


def _content_type(response: requests.Response | schemathesis.Response) -> str:
    headers = {name.lower(): value for name, value in response.headers.items()}
    value = headers.get("content-type", "")
    return str(value[0] if isinstance(value, list) else value)


def _content(response: requests.Response | schemathesis.Response) -> bytes:
    return response.content or b""


def scim_problems(status: int, content_type: str, content: bytes) -> list[str]:
    """What the response breaks of the SCIM properties (empty when it keeps them all)."""
    media_type = content_type.split(";")[0].strip().lower()
    if status >= 500:
        return [f"server error {status}"]
    if status in (204, 304):
        return [f"{status} with a body"] if content else []
    if 400 <= status < 500:
        if media_type != SCIM_JSON:
            return [f"{status} error with Content-Type {content_type!r}, not {SCIM_JSON}"]
        return error_body_problems(status, content)
    if 200 <= status < 300 and content:
        if media_type != SCIM_JSON:
            return [f"{status} with Content-Type {content_type!r}, not {SCIM_JSON}"]
        try:
            json.loads(content)
        except ValueError:
            return [f"{status} body is not JSON"]
    return []


def error_body_problems(status: int, content: bytes) -> list[str]:
    """What an error body breaks of RFC 7644 §3.12."""
    try:
        body = json.loads(content)
    except ValueError:
        return [f"{status} error body is not JSON"]
    if not isinstance(body, dict):
        return [f"{status} error body is not a JSON object"]
    problems = []
    if body.get("schemas") != [ERROR_URN]:
        problems.append(f"{status} error schemas is {body.get('schemas')!r}")
    if body.get("status") != str(status):
        problems.append(f"{status} error status is {body.get('status')!r}, not {str(status)!r}")
    if not isinstance(body.get("detail"), str) or not body["detail"]:
        problems.append(f"{status} error has no detail")
    return problems


def check(findings: Findings, response: requests.Response | schemathesis.Response, where: str) -> None:
    findings.requests += 1
    for problem in scim_problems(response.status_code, _content_type(response), _content(response)):
        findings.add(problem, response, where)


def _string_leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _string_leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _string_leaves(item, (*path, index))


def spiked(body: Any, leaf: tuple[Any, ...], value: str) -> Any:
    """A copy of the JSON ``body`` with ``value`` put inside the string at ``leaf``.

    Inside means before a closing quote when there is one (``userName eq "a"`` gets a hostile
    comparison value), else in the middle.
    """
    body = copy.deepcopy(body)
    *parents, last = leaf
    container = body
    for step in parents:
        container = container[step]
    original: str = container[last]
    cut = len(original) - 1 if original.endswith('"') else len(original) // 2
    container[last] = original[:cut] + value + original[cut:]
    return body


def seed(session: requests.Session, base_url: str, collection: str) -> str:
    """A fresh user or group; its id."""
    number = next(SERIAL)
    document: dict[str, Any] = (
        {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": f"fuzz.seed.{number}"}
        if collection == "Users"
        else {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": f"Fuzz seed {number}",
        }
    )
    response = session.post(
        f"{base_url}/{collection}",
        data=json.dumps(document),
        headers={"Content-Type": SCIM_JSON},
        timeout=TIMEOUT,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def run_cases(strategy: st.SearchStrategy[schemathesis.Case], handle: Callable[[Any], None]) -> None:
    """Run ``handle`` on the cases Hypothesis draws from ``strategy``, within :data:`SETTINGS`."""

    @SETTINGS
    @given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        handle(case)

    run()


def fuzz_operation(
    operation: schemathesis.APIOperation, base_url: str, session: requests.Session, findings: Findings
) -> None:
    where = operation.label

    def validate(case: schemathesis.Case, response: requests.Response | schemathesis.Response) -> None:
        check(findings, response, where)
        try:
            case.validate_response(response, checks=SPEC_CHECKS)
        except (AssertionError, FailureGroup) as error:
            failures = error.exceptions if isinstance(error, FailureGroup) else (error,)
            for failure in failures:
                title = getattr(failure, "title", type(failure).__name__)
                lines = str(getattr(failure, "message", failure)).strip().splitlines()
                findings.add(
                    f"not as openapi.yaml says: {title}: {lines[0] if lines else ''}", response, where
                )

    def call(case: schemathesis.Case) -> None:
        validate(case, case.call(base_url=base_url, session=session, headers=AUTHORIZED, timeout=TIMEOUT))

    examples = operation.get_strategies_from_examples()
    for example in examples:
        run_cases(example, call)
    id_kinds: list[dict[str, str] | None] = [None]
    collection = operation.path.split("/")[1]
    if operation.path.endswith("/{id}") and collection in ("Users", "Groups"):
        id_kinds.append({"id": seed(session, base_url, collection)})
    for path_parameters in id_kinds:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run_cases(operation.as_strategy(generation_mode=mode, path_parameters=path_parameters), call)
    example = (
        operation.definition.raw.get("requestBody", {}).get("content", {}).get(SCIM_JSON, {}).get("example")
    )
    if example is not None:
        path = operation.path.format(**(id_kinds[-1] or {}))
        for value in HOSTILE:
            for leaf in _string_leaves(example):
                response = session.request(
                    operation.method.upper(),
                    f"{base_url}{path}",
                    json=spiked(example, leaf, value),
                    headers={"Content-Type": SCIM_JSON},
                    timeout=TIMEOUT,
                )
                validate(operation.Case(path_parameters=id_kinds[-1]), response)


def all_ids(session: requests.Session, base_url: str) -> set[tuple[str, str]]:
    """Every (collection, id) on the server, read with ``attributes=id`` (so any value renders)."""
    found: set[tuple[str, str]] = set()
    for collection in ("Users", "Groups"):
        start = 1
        while True:
            response = session.get(
                f"{base_url}/{collection}",
                params={"attributes": "id", "startIndex": str(start), "count": "200"},
                timeout=TIMEOUT,
            )
            assert response.status_code == 200, response.text
            page = response.json()["Resources"]
            found.update((collection, resource["id"]) for resource in page)
            if not page:
                break
            start += len(page)
    return found


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers.update(AUTHORIZED)
        yield session


@pytest.fixture(autouse=True)
def leave_no_trace(http_base_url: str, session: requests.Session) -> Iterator[None]:
    """Delete what each test created: a finding stays that test's own, and the dev server's table,
    shared by the other HTTP tests, is left as it was found."""
    before = all_ids(session, http_base_url)
    yield
    for collection, resource_id in sorted(all_ids(session, http_base_url) - before):
        session.delete(f"{http_base_url}/{collection}/{resource_id}", timeout=TIMEOUT)


@pytest.mark.parametrize("operation", OPERATIONS, ids=[operation.label for operation in OPERATIONS])
def test_fuzz_operation(
    operation: schemathesis.APIOperation, http_base_url: str, session: requests.Session
) -> None:
    findings = Findings()
    fuzz_operation(operation, http_base_url, session, findings)
    assert not findings.items, findings.report()


def test_every_method_and_token_on_every_path(http_base_url: str, session: requests.Session) -> None:
    """Unauthenticated and undocumented requests get SCIM errors too (401, 4xx)."""
    findings = Findings()
    documented: dict[str, set[str]] = {}
    for operation in OPERATIONS:
        documented.setdefault(operation.path, set()).add(operation.method.upper())
    for path, methods in documented.items():
        url = f"{http_base_url}{path.replace('{id}', 'no-such-id')}"
        for method in METHODS:
            where = f"{method} {path}"
            body = b"{}" if method in ("POST", "PUT", "PATCH") else None
            headers = {"Content-Type": SCIM_JSON}
            for authorization in (None, "Bearer wrong-token", "Basic Zm9vOmJhcg=="):
                sent = headers if authorization is None else {**headers, "Authorization": authorization}
                response = requests.request(method, url, data=body, headers=sent, timeout=TIMEOUT)
                check(findings, response, where)
                if response.status_code != 401:
                    findings.add(f"{response.status_code}, not 401, without a valid token", response, where)
            if method not in methods:
                response = session.request(method, url, data=body, headers=headers, timeout=TIMEOUT)
                check(findings, response, where)
                if not 400 <= response.status_code < 500:
                    findings.add(f"{response.status_code} for an undocumented method", response, where)
    assert not findings.items, findings.report()
