"""RFC 7644 §3.7 Bulk processing against an in-memory dispatch (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from scim.model.errors import InvalidSyntaxError, InvalidValueError, NotFoundError, PayloadTooLargeError
from scim.web.bulk import BulkLimits, SubResponse, process_bulk

BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
BULK_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
BASE = "https://scim.test/scim/v2"
LIMITS = BulkLimits()


class FakeScim:
    """Serves sub-requests from memory: ids ``user-1``, ``group-2``…; records every call.

    A path, userName or displayName listed in ``failing`` is answered 409 uniqueness;
    one listed in ``raising`` makes the dispatch raise NotFoundError, as a handler may.
    """

    def __init__(self, failing: set[str] | None = None, raising: set[str] | None = None) -> None:
        self.failing = failing or set()
        self.raising = raising or set()
        self.calls: list[tuple[str, str, Any, dict[str, str]]] = []

    async def __call__(self, method: str, path: str, data: Any, headers: Mapping[str, str]) -> SubResponse:
        self.calls.append((method, path, data, dict(headers)))
        keys = {path, *(str(data.get(name)) for name in ("userName", "displayName") if data)}
        if keys & self.raising:
            raise NotFoundError(f"No resource at {path}.")
        if keys & self.failing:
            error = {"schemas": [ERROR], "status": "409", "scimType": "uniqueness", "detail": "taken"}
            return SubResponse(409, error, {})
        if method == "POST":
            resource_id = f"{path.strip('/').lower()[:-1]}-{len(self.calls)}"
            location = f"{BASE}{path}/{resource_id}"
            body = {**data, "id": resource_id, "meta": {"location": location, "version": 'W/"1"'}}
            return SubResponse(201, body, {"ETag": 'W/"1"', "Location": location})
        if method == "DELETE":
            return SubResponse(204, None, {})
        if path.startswith("/Groups"):
            return SubResponse(204, None, {"etag": 'W/"2"'})  # header case must not matter
        body = {"id": path.rsplit("/", 1)[1], "meta": {"location": f"{BASE}{path}", "version": 'W/"2"'}}
        return SubResponse(200, body, {"ETag": 'W/"2"'})

    def paths(self) -> list[str]:
        return [f"{method} {path}" for method, path, _, _ in self.calls]


def bulk(*operations: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"schemas": [BULK_REQUEST], "Operations": list(operations), **extra}


def post_user(bulk_id: str, user_name: str, **attributes: Any) -> dict[str, Any]:
    return {
        "method": "POST",
        "path": "/Users",
        "bulkId": bulk_id,
        "data": {"userName": user_name, **attributes},
    }


def post_group(bulk_id: str, name: str, *member_refs: str) -> dict[str, Any]:
    data = {"displayName": name, "members": [{"value": ref} for ref in member_refs]}
    return {"method": "POST", "path": "/Groups", "bulkId": bulk_id, "data": data}


def patch(path: str, value: Any, **extra: Any) -> dict[str, Any]:
    data = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "value": value}],
    }
    return {"method": "PATCH", "path": path, "data": data, **extra}


async def run(request: Any, scim: FakeScim, limits: BulkLimits = LIMITS) -> list[dict[str, Any]]:
    status, response = await process_bulk(request, 100, scim, limits)
    assert status == 200
    assert response["schemas"] == [BULK_RESPONSE]
    return list(response["Operations"])


async def test_post_patch_delete_follow_rfc7644_3_7_3():
    scim = FakeScim()
    request = bulk(
        post_user("u1", "alice"),
        patch("/Users/existing", {"title": "Boss"}),
        {"method": "delete", "path": "/Users/gone"},
    )

    assert await run(request, scim) == [
        {
            "method": "POST",
            "bulkId": "u1",
            "version": 'W/"1"',
            "location": f"{BASE}/Users/user-1",
            "status": "201",
        },
        {"method": "PATCH", "version": 'W/"2"', "location": f"{BASE}/Users/existing", "status": "200"},
        {"method": "DELETE", "status": "204"},
    ]
    assert scim.paths() == ["POST /Users", "PATCH /Users/existing", "DELETE /Users/gone"]
    assert scim.calls[0][2] == {"userName": "alice"}
    assert scim.calls[2][2] is None


async def test_bulk_ids_are_replaced_in_nested_data_and_in_paths():
    scim = FakeScim()
    enterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    request = bulk(
        post_user("boss", "carol"),
        post_user("u2", "dave", **{enterprise: {"manager": {"value": "bulkId:boss"}}}),
        post_group("g1", "Team", "bulkId:boss", "bulkId:u2"),
        patch("/Groups/bulkId:g1", [{"value": "bulkId:u2", "display": "see bulkId:u2"}]),
    )

    entries = await run(request, scim)

    assert [e["status"] for e in entries] == ["201", "201", "201", "204"]
    assert scim.calls[1][2][enterprise] == {"manager": {"value": "user-1"}}
    assert scim.calls[2][2]["members"] == [{"value": "user-1"}, {"value": "user-2"}]
    method, path, data, _ = scim.calls[3]
    assert (method, path) == ("PATCH", "/Groups/group-3")
    assert data["Operations"][0]["value"] == [{"value": "user-2", "display": "see bulkId:u2"}]
    assert request["Operations"][2]["data"]["members"][0] == {"value": "bulkId:boss"}  # input untouched


async def test_a_group_may_reference_users_posted_later_rfc7644_3_7_2():
    scim = FakeScim()
    request = bulk(
        post_group("g1", "Tour Guides", "bulkId:qwerty", "bulkId:ytrewq"),
        post_user("qwerty", "alice"),
        post_user("ytrewq", "bob"),
    )

    entries = await run(request, scim)

    assert scim.paths() == ["POST /Users", "POST /Users", "POST /Groups"]
    assert scim.calls[2][2]["members"] == [{"value": "user-1"}, {"value": "user-2"}]
    assert [e["bulkId"] for e in entries] == ["g1", "qwerty", "ytrewq"]  # request order, not processing order
    assert entries[0]["location"] == f"{BASE}/Groups/group-3"


async def test_an_operation_referencing_a_failed_post_gets_409():
    scim = FakeScim(failing={"alice"})
    request = bulk(
        post_user("u1", "alice"),
        post_group("g1", "Team", "bulkId:u1"),
        patch("/Users/bulkId:u1", {"title": "x"}),
        post_user("u2", "bob"),
    )

    entries = await run(request, scim)

    assert entries[0] == {
        "method": "POST",
        "bulkId": "u1",
        "status": "409",
        "response": {"schemas": [ERROR], "status": "409", "scimType": "uniqueness", "detail": "taken"},
    }
    for entry in entries[1:3]:
        assert entry["status"] == "409"
        assert entry["response"]["status"] == "409"
        assert "bulkId:u1 could not be resolved" in entry["response"]["detail"]
    assert entries[3]["status"] == "201"
    assert scim.paths() == ["POST /Users", "POST /Users"]


async def test_circular_references_fail_every_operation_of_the_cycle():
    scim = FakeScim()
    request = bulk(
        post_group("a", "A", "bulkId:b"),
        post_group("b", "B", "bulkId:a"),
        post_group("self", "Self", "bulkId:self"),
        post_group("c", "C", "bulkId:a"),  # not on the cycle, but depends on it
        post_user("u1", "alice"),
    )

    entries = await run(request, scim)

    for entry in entries[:3]:
        assert entry["status"] == "409"
        assert "circular bulkId reference" in entry["response"]["detail"]
    assert entries[3]["status"] == "409"
    assert "bulkId:a could not be resolved" in entries[3]["response"]["detail"]
    assert entries[4]["status"] == "201"
    assert scim.paths() == ["POST /Users"]


async def test_an_undeclared_bulk_id_is_an_invalid_value():
    scim = FakeScim()
    request = bulk(
        post_group("g1", "Team", "bulkId:nobody"),
        {"method": "DELETE", "path": "/Users/bulkId:g2", "bulkId": "g2"},
        post_user("u1", "alice"),
    )

    entries = await run(request, scim)

    for entry, missing in zip(entries[:2], ("nobody", "g2"), strict=True):
        assert entry["status"] == "400"
        assert entry["response"]["scimType"] == "invalidValue"
        assert f"bulkId:{missing}" in entry["response"]["detail"]
    assert entries[2]["status"] == "201"
    assert scim.paths() == ["POST /Users"]


async def test_fail_on_errors_stops_and_omits_the_rest():
    scim = FakeScim(failing={"/Users/x", "/Users/y"})
    operations = [patch("/Users/x", {}), patch("/Users/ok", {}), patch("/Users/y", {}), patch("/Users/z", {})]

    entries = await run(bulk(*operations, failOnErrors=1), scim)
    assert [e["status"] for e in entries] == ["409"]
    assert scim.paths() == ["PATCH /Users/x"]

    entries = await run(bulk(*operations, failOnErrors=2), FakeScim(failing={"/Users/x", "/Users/y"}))
    assert [e["status"] for e in entries] == ["409", "200", "409"]

    entries = await run(bulk(*operations), FakeScim(failing={"/Users/x", "/Users/y"}))
    assert [e["status"] for e in entries] == ["409", "200", "409", "200"]


async def test_fail_on_errors_counts_unresolved_references_and_keeps_request_order():
    scim = FakeScim(failing={"alice"})
    request = bulk(
        post_group("g1", "Team", "bulkId:u1"),
        post_user("u1", "alice"),
        patch("/Groups/bulkId:g1", [], bulkId="p1"),
        post_user("u2", "bob"),
        failOnErrors=2,
    )

    entries = await run(request, scim)

    # Pass 1 answers u1 (error 1) and u2; pass 2 answers g1 (error 2) and stops before p1.
    assert [(e["bulkId"], e["status"]) for e in entries] == [("g1", "409"), ("u1", "409"), ("u2", "201")]
    assert scim.paths() == ["POST /Users", "POST /Users"]


async def test_a_raised_scim_error_becomes_the_operation_response():
    scim = FakeScim(raising={"/Users/missing"})

    entries = await run(bulk(patch("/Users/missing", {}), patch("/Users/there", {})), scim)

    assert entries[0]["status"] == "404"
    assert entries[0]["response"] == {
        "schemas": [ERROR],
        "status": "404",
        "detail": "No resource at /Users/missing.",
    }
    assert entries[1]["status"] == "200"


async def test_version_is_sent_as_if_match():
    scim = FakeScim()
    request = bulk(
        patch("/Users/a", {}, version='W/"7"'),
        {"method": "PUT", "path": "/Users/b", "version": 'W/"8"', "data": {"userName": "b"}},
        {"method": "DELETE", "path": "/Groups/c", "version": 'W/"9"'},
        patch("/Users/d", {}),
    )

    await run(request, scim)

    assert [headers for _, _, _, headers in scim.calls] == [
        {"If-Match": 'W/"7"'},
        {"If-Match": 'W/"8"'},
        {"If-Match": 'W/"9"'},
        {},
    ]


async def test_limits_raise_payload_too_large_rfc7644_3_7_4():
    limits = BulkLimits(max_operations=2, max_payload_size=1000)
    two = bulk(patch("/Users/a", {}), patch("/Users/b", {}))

    assert len(await run(two, FakeScim(), limits)) == 2
    with pytest.raises(PayloadTooLargeError, match="maxOperations is 2"):
        await process_bulk(bulk(*two["Operations"], patch("/Users/c", {})), 100, FakeScim(), limits)
    with pytest.raises(PayloadTooLargeError, match="maxPayloadSize is 1,000 bytes"):
        await process_bulk(two, 1001, FakeScim(), limits)
    status, _ = await process_bulk(two, 1000, FakeScim(), limits)
    assert status == 200


@pytest.mark.parametrize(
    ("request_body", "error", "detail"),
    [
        ([], InvalidSyntaxError, "JSON object"),
        ({"Operations": [patch("/Users/a", {})]}, InvalidSyntaxError, "schemas"),
        (
            {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [patch("/Users/a", {})],
            },
            InvalidSyntaxError,
            "schemas",
        ),
        ({"schemas": [BULK_REQUEST]}, InvalidSyntaxError, "Operations"),
        (bulk(), InvalidSyntaxError, "Operations"),
        ({"schemas": [BULK_REQUEST], "Operations": {"method": "POST"}}, InvalidSyntaxError, "Operations"),
        (bulk("DELETE /Users/a"), InvalidSyntaxError, r"Operations\[0\]"),
        (bulk({"method": "GET", "path": "/Users/a"}), InvalidValueError, "method"),
        (bulk({"path": "/Users/a"}), InvalidValueError, "method"),
        (bulk({"method": "DELETE", "path": "Users/a"}), InvalidValueError, "path"),
        (bulk({"method": "DELETE"}), InvalidValueError, "path"),
        (bulk({"method": "DELETE", "path": "/Things/a"}), InvalidValueError, "path"),
        (bulk({"method": "DELETE", "path": "/Users/a/b"}), InvalidValueError, "path"),
        (bulk({"method": "DELETE", "path": "/Users/"}), InvalidValueError, "path"),
        (
            bulk({"method": "POST", "path": "/Users/a", "bulkId": "x", "data": {}}),
            InvalidValueError,
            "POST must target",
        ),
        (bulk({"method": "PATCH", "path": "/Users", "data": {}}), InvalidValueError, "PATCH must target"),
        (bulk({"method": "POST", "path": "/Users", "data": {"userName": "a"}}), InvalidValueError, "bulkId"),
        (bulk({"method": "POST", "path": "/Users", "bulkId": 7, "data": {}}), InvalidValueError, "bulkId"),
        (bulk({"method": "POST", "path": "/Users", "bulkId": "x"}), InvalidValueError, "needs data"),
        (bulk({"method": "PUT", "path": "/Users/a", "data": "userName=a"}), InvalidValueError, "needs data"),
        (
            bulk({"method": "PATCH", "path": "/Users/a", "data": {}, "version": 3}),
            InvalidValueError,
            "version",
        ),
        (bulk(post_user("x", "a"), post_user("x", "b")), InvalidValueError, "more than one"),
        (bulk(patch("/Users/a", {}), failOnErrors=0), InvalidValueError, "failOnErrors"),
        (bulk(patch("/Users/a", {}), failOnErrors=True), InvalidValueError, "failOnErrors"),
        (bulk(patch("/Users/a", {}), failOnErrors="1"), InvalidValueError, "failOnErrors"),
    ],
)
async def test_malformed_requests_are_rejected_before_anything_runs(request_body, error, detail):
    scim = FakeScim()
    with pytest.raises(error, match=detail):
        await process_bulk(request_body, 100, scim, LIMITS)
    assert scim.calls == []


async def test_attribute_names_and_methods_are_case_insensitive():
    scim = FakeScim()
    request = {
        "SCHEMAS": [BULK_REQUEST.upper()],
        "operations": [{"Method": "post", "Path": "/users", "BulkId": "u1", "Data": {"userName": "a"}}],
    }

    entries = await run(request, scim)

    assert entries == [
        {
            "method": "POST",
            "bulkId": "u1",
            "version": 'W/"1"',
            "location": f"{BASE}/Users/user-1",
            "status": "201",
        }
    ]
    assert scim.paths() == ["POST /Users"]  # passed on in the canonical case


async def test_created_id_falls_back_to_location_and_bodiless_errors_get_an_error_body():
    answers = {
        "located": SubResponse(201, None, {"Location": f"{BASE}/Users/from-location/"}),
        "anonymous": SubResponse(201, None, {}),
        "broken": SubResponse(500, None, {}),
    }
    calls: list[tuple[str, Any]] = []

    async def dispatch(method: str, path: str, data: Any, headers: Mapping[str, str]) -> SubResponse:
        calls.append((path, data))
        return answers.get(data.get("userName", ""), SubResponse(204, None, {}))

    request = bulk(
        post_user("a", "located"),
        post_user("b", "anonymous"),
        post_user("c", "broken"),
        patch("/Groups/bulkId:a", [{"value": "bulkId:a"}]),
        patch("/Groups/g", [{"value": "bulkId:b"}]),
    )
    _, response = await process_bulk(request, 100, dispatch, LIMITS)
    entries = response["Operations"]

    assert calls[3][0] == "/Groups/from-location"
    assert entries[1]["status"] == "201"  # answered, but its id is unknown, so b cannot be resolved
    assert entries[2] == {
        "method": "POST",
        "bulkId": "c",
        "status": "500",
        "response": {"schemas": [ERROR], "status": "500"},
    }
    assert (
        entries[4]["status"] == "409" and "bulkId:b could not be resolved" in entries[4]["response"]["detail"]
    )
