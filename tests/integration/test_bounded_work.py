"""Work bounded before it starts (issue 14 items 2 and 5; DESIGN §11), over Azurite.

Multi-valued attributes hold at most ``MAX_MULTI_VALUES`` values (POST, PUT and
the result of a PATCH); a PatchOp's work is priced before it is applied
(``MAX_PATCH_WORK``); the CPU-heavy steps run off the event loop, so a probe is
answered within a second while the largest allowed requests run (over real
HTTP); listing and searching read no more rows than the page needs plus
``SCIM_MAX_SCAN``, reverse edges included.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from typing import Any

import httpx
import pytest

from scim.model.limits import MAX_BULK_WORK, MAX_MULTI_VALUES, MAX_PATCH_WORK, patch_work
from scim.model.schemafile import parse_schema_text
from scim.web.api import ScimApi
from tests.conftest import TOKEN
from tests.integration.conftest import ScimClient, make_settings
from tests.integration.test_groups_entra import create_group, members_of
from tests.integration.test_users_entra import assert_error, create, patch

pytestmark = pytest.mark.integration

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
EXT = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
SCHEMAS = (CORE, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")


def emails(tag: str, count: int) -> list[dict[str, str]]:
    return [{"value": f"{tag}{n:04d}@example.com", "type": "work"} for n in range(count)]


def filtered_replaces(tag: str, document: dict[str, Any], value: str) -> list[dict[str, Any]]:
    """As many value-filtered replaces over the document's e-mails as MAX_PATCH_WORK allows."""
    operations: list[dict[str, Any]] = []
    while True:
        following = {
            "op": "replace",
            "path": f'emails[value eq "{tag}{len(operations):04d}@example.com"].type',
            "value": value,
        }
        if patch_work(patch(*operations, following), document, SCHEMAS) > MAX_PATCH_WORK:
            return operations
        operations.append(following)


async def user_count(scim: ScimClient, user_name: str) -> int:
    body = (await scim.get("/Users", query={"filter": f'userName eq "{user_name}"'})).json()
    return int(body["totalResults"])


# -- (a) multi-valued attributes are bounded ------------------------------------------------------


async def test_post_and_put_over_the_multi_valued_limit_are_refused_naming_the_attribute(scim):
    name = f"many-{uuid.uuid4().hex[:8]}@example.com"
    body = {"schemas": [CORE], "userName": name, "emails": emails("m", MAX_MULTI_VALUES + 1)}
    refused = await scim.post("/Users", body)
    assert_error(refused, 400, "invalidValue")
    assert "emails" in refused.json()["detail"] and f"{MAX_MULTI_VALUES:,}" in refused.json()["detail"]
    assert await user_count(scim, name) == 0  # nothing written
    at_limit = await scim.post("/Users", {**body, "emails": emails("m", MAX_MULTI_VALUES)})
    assert at_limit.status == 201
    user = at_limit.json()
    too_many_phones = {**body, "emails": [], "phoneNumbers": emails("p", MAX_MULTI_VALUES + 1)}
    replaced = await scim.put(f"/Users/{user['id']}", too_many_phones)
    assert_error(replaced, 400, "invalidValue")
    assert "phoneNumbers" in replaced.json()["detail"]
    assert (await scim.get(f"/Users/{user['id']}")).json()["meta"]["version"] == user["meta"]["version"]


async def test_the_result_of_a_patch_over_the_multi_valued_limit_is_refused(scim):
    user = await create(scim, emails=emails("r", MAX_MULTI_VALUES))
    grow = patch({"op": "add", "path": "emails", "value": [{"value": "one-more@example.com"}]})
    refused = await scim.patch(f"/Users/{user['id']}", grow)
    assert_error(refused, 400, "invalidValue")
    assert "emails" in refused.json()["detail"]
    after = (await scim.get(f"/Users/{user['id']}")).json()
    assert len(after["emails"]) == MAX_MULTI_VALUES and after["meta"]["version"] == user["meta"]["version"]
    too_many_at_once = patch({"op": "add", "path": "ims", "value": emails("i", MAX_MULTI_VALUES + 1)})
    assert_error(await scim.patch(f"/Users/{user['id']}", too_many_at_once), 400, "invalidValue")


async def test_declared_extension_attributes_and_sub_attributes_are_bounded(store):
    text = f"""
extensions:
  - schema: {EXT}
    resourceType: User
    attributes:
      - {{name: badges, type: string, multiValued: true}}
      - name: profile
        type: complex
        subAttributes:
          - {{name: skills, type: string, multiValued: true}}
"""
    declared = parse_schema_text(text, "test.yaml")
    scim = ScimClient(ScimApi(make_settings(store), store.repository, declared=declared))
    base = {"schemas": [CORE, EXT], "userName": f"ext-{uuid.uuid4().hex[:8]}"}
    values = [f"v{n}" for n in range(MAX_MULTI_VALUES + 1)]
    refused = await scim.post("/Users", {**base, EXT: {"badges": values}})
    assert_error(refused, 400, "invalidValue")
    assert f"{EXT}:badges" in refused.json()["detail"]
    nested = await scim.post("/Users", {**base, EXT: {"profile": {"skills": values}}})
    assert_error(nested, 400, "invalidValue")
    assert f"{EXT}:profile.skills" in nested.json()["detail"]
    assert (await scim.post("/Users", {**base, EXT: {"badges": values[:-1]}})).status == 201


async def test_group_members_are_edges_bounded_by_their_own_limit(scim):
    member = await create(scim)
    others = [str(uuid.uuid4()) for _ in range(MAX_MULTI_VALUES)]  # ids of no user: skipped
    group = await create_group(scim, members=members_of(member["id"], *others))
    listed = (await scim.get(f"/Groups/{group['id']}")).json()
    assert [m["value"] for m in listed["members"]] == [member["id"]]


# -- (b) PATCH work is priced before it is applied -----------------------------------------------


async def test_a_patch_over_the_work_budget_is_refused_before_anything_is_applied(scim):
    tag = f"w{uuid.uuid4().hex[:6]}"
    user = await create(scim, emails=emails(tag, MAX_MULTI_VALUES))
    stored = (await scim.get(f"/Users/{user['id']}")).json()
    allowed = filtered_replaces(tag, stored, "home")
    one_more = {"op": "replace", "path": f'emails[value eq "{tag}0999@example.com"].type', "value": "home"}
    refused = await scim.patch(f"/Users/{user['id']}", patch(*allowed, one_more))
    assert_error(refused, 413)
    assert f"{MAX_PATCH_WORK:,}" in refused.json()["detail"]
    unchanged = (await scim.get(f"/Users/{user['id']}")).json()
    assert unchanged["meta"]["version"] == user["meta"]["version"]
    assert all(email["type"] == "work" for email in unchanged["emails"])
    applied = await scim.patch(f"/Users/{user['id']}", patch(*allowed))
    assert applied.status == 200, applied.json()
    assert sum(email["type"] == "home" for email in applied.json()["emails"]) == len(allowed)


async def test_operations_that_create_elements_are_priced_as_the_attribute_grows(scim):
    user = await create(scim)
    stored = (await scim.get(f"/Users/{user['id']}")).json()
    # Entra's form: a value-filtered replace that matches nothing creates the element.
    growing = [
        {"op": "replace", "path": f'phoneNumbers[value eq "+1 555 {n:04d}"].type', "value": "work"}
        for n in range(200)
    ]
    assert len(growing) * 2 < MAX_PATCH_WORK < patch_work(patch(*growing), stored, SCHEMAS)
    assert_error(await scim.patch(f"/Users/{user['id']}", patch(*growing)), 413)


async def test_the_patch_operations_of_one_bulk_request_share_one_work_budget(scim):
    """/Bulk may carry 100 PatchOps; together they get MAX_BULK_WORK, not 100 × MAX_PATCH_WORK."""
    tag = f"b{uuid.uuid4().hex[:6]}"
    user = await create(scim, emails=emails(tag, MAX_MULTI_VALUES))
    stored = (await scim.get(f"/Users/{user['id']}")).json()
    allowed = filtered_replaces(tag, stored, "home")  # one PatchOp just under MAX_PATCH_WORK
    fits = MAX_BULK_WORK // patch_work(patch(*allowed), stored, SCHEMAS)
    operations = [
        {"method": "PATCH", "path": f"/Users/{user['id']}", "data": patch(*allowed)} for _ in range(fits + 1)
    ]
    bulk = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": operations}
    response = await scim.post("/Bulk", bulk)
    statuses = [int(entry["status"]) for entry in response.json()["Operations"]]
    assert statuses[:fits] == [200] * fits and statuses[fits] == 413, statuses
    assert f"{MAX_BULK_WORK:,}" in response.json()["Operations"][fits]["response"]["detail"]
    # the budget belongs to one request: the next one starts afresh
    again = await scim.patch(f"/Users/{user['id']}", patch(*allowed))
    assert again.status == 200, again.json()


# -- (c)+(d) the endpoint keeps answering while the largest allowed requests run -----------------


def _probe(client: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    response = client.get(path)
    assert response.status_code == 200, response.text
    return time.perf_counter() - started


def test_a_probe_is_answered_within_a_second_while_the_worst_allowed_requests_run(dev_server):
    """Real HTTP against the dev server; fails when the CPU-heavy work runs on the event loop.

    A client sends the largest allowed POST, then PATCHes at the work budget
    (each ~1 s of CPU here), while another reads a user by id — Entra's probe —
    every 20 ms. On the event loop a probe waits for the hostile request's CPU
    (2-5 s measured); off it, the probe shares the CPU and stays well under a
    second. The bound is a second, or four times the idle probe's worst on a
    very busy machine.
    """
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"}
    with httpx.Client(base_url=dev_server.tenant_url, headers=headers, timeout=120.0) as client:
        tag = f"h{uuid.uuid4().hex[:6]}"
        body = {"schemas": [CORE], "userName": f"{tag}-target", "emails": emails(tag, MAX_MULTI_VALUES)}
        created = client.post("/Users", json=body)
        assert created.status_code == 201, created.text
        target = created.json()
        probe_user = client.post("/Users", json={"schemas": [CORE], "userName": f"{tag}-probe"}).json()
        probe = f"/Users/{probe_user['id']}"
        for _ in range(3):
            _probe(client, probe)  # warm
        idle = [_probe(client, probe) for _ in range(15)]
        largest = {"schemas": [CORE], "userName": f"{tag}-largest"}
        for attribute in ("emails", "phoneNumbers", "ims", "entitlements", "roles"):
            largest[attribute] = emails(f"{tag}{attribute}", MAX_MULTI_VALUES)
        patches = [
            json.dumps(patch(*filtered_replaces(tag, target, kind))) for kind in ("home", "work", "other")
        ]
        statuses: list[int] = []

        def hostile() -> None:
            with httpx.Client(base_url=dev_server.tenant_url, headers=headers, timeout=120.0) as own:
                statuses.append(own.post("/Users", content=json.dumps(largest)).status_code)
                for body in patches:
                    statuses.append(own.patch(f"/Users/{target['id']}", content=body).status_code)

        thread = threading.Thread(target=hostile)
        thread.start()
        busy = []
        while thread.is_alive():
            busy.append(_probe(client, probe))
            time.sleep(0.02)
        thread.join()
    assert statuses == [201, 200, 200, 200], statuses
    assert len(busy) >= 3, busy  # the hostile requests took a while: the probes overlapped them
    bound = max(1.0, 4 * max(idle))
    worst = max(busy)
    summary = f"idle median {statistics.median(idle):.3f}s; busy {len(busy)} probes, worst {worst:.3f}s"
    print(summary)  # shown with -s / -rP
    assert worst < bound, summary


# -- item 5: paging and search touch no more rows than the page needs ----------------------------


async def test_root_search_with_count_zero_renders_nothing_and_reads_no_members(scim, store):
    member = await create(scim)
    for n in range(3):
        await create_group(scim, displayName=f"big {n}", members=members_of(member["id"]))
    store.round_trips.reset()
    body = (await scim.post("/.search", {"schemas": [SEARCH], "count": 0})).json()
    assert body["totalResults"] == 4 and body["Resources"] == [] and body["itemsPerPage"] == 0
    assert store.round_trips.count == 2  # one key-only count per resource type, nothing rendered


async def test_root_search_pages_across_types_and_expands_only_the_page(scim, store):
    member = await create(scim, userName="page-user@example.com")
    groups = [
        await create_group(scim, displayName=f"g{n}", members=members_of(member["id"])) for n in range(3)
    ]
    whole = (await scim.post("/.search", {"schemas": [SEARCH]})).json()
    assert whole["totalResults"] == 4 and len(whole["Resources"]) == 4
    order = [r["id"] for r in whole["Resources"]]
    assert order[0] == member["id"] and set(order[1:]) == {g["id"] for g in groups}
    store.round_trips.reset()
    page = (await scim.post("/.search", {"schemas": [SEARCH], "startIndex": 2, "count": 2})).json()
    assert [r["id"] for r in page["Resources"]] == order[1:3]
    assert page["totalResults"] == 4 and page["startIndex"] == 2
    assert all(r["members"][0]["value"] == member["id"] for r in page["Resources"])
    # Two counts, the groups' scan, and the members of the page's two groups (not the third's).
    assert store.round_trips.count == 5, store.round_trips.urls
    lean = {"schemas": [SEARCH], "startIndex": 2, "count": 3, "excludedAttributes": ["members"]}
    store.round_trips.reset()
    excluded = (await scim.post("/.search", lean)).json()
    assert len(excluded["Resources"]) == 3 and all("members" not in r for r in excluded["Resources"])
    assert store.round_trips.count == 3  # two counts and the groups' scan: no member read


async def test_start_index_past_the_scan_bound_is_refused_pointing_to_cursors(scim, store):
    for n in range(5):
        await create(scim, userName=f"deep{n}@example.com")
    tight = ScimClient(ScimApi(make_settings(store, max_scan=3), store.repository))
    assert len((await tight.get("/Users?startIndex=4&count=2")).json()["Resources"]) == 2
    store.round_trips.reset()
    deep = await tight.get("/Users?startIndex=5&count=2")
    assert_error(deep, 400, "tooMany")
    assert "cursor" in deep.json()["detail"]
    assert store.round_trips.count == 1  # refused after the key-only count, before reading any row
    assert (await tight.get("/Users?startIndex=50&count=2")).json()["Resources"] == []  # past the end


async def test_reverse_edges_count_against_the_scan_bound(scim, store):
    users = [await create(scim, userName=f"edges{n}@example.com") for n in range(2)]
    for n in range(3):
        await create_group(scim, displayName=f"e{n}", members=members_of(*(u["id"] for u in users)))

    def bounded(max_scan: int) -> ScimClient:
        return ScimClient(ScimApi(make_settings(store, max_scan=max_scan), store.repository))

    # A filter that is not pushed down reads 2 users + 6 reverse edges = 8 rows.
    assert (await bounded(8).get('/Users?filter=title eq "none"')).json()["totalResults"] == 0
    assert_error(await bounded(7).get('/Users?filter=title eq "none"'), 400, "tooMany")
    # startIndex 2 skips the first user: 1 row + 3 edges.
    assert (await bounded(4).get("/Users?startIndex=2&count=1")).status == 200
    assert_error(await bounded(3).get("/Users?startIndex=2&count=1"), 400, "tooMany")
    # A cursor page stops once the rows it read reach the bound (never tooMany).
    pages, cursor = 0, ""
    while cursor is not None:
        body = (await bounded(4).get(f'/Users?filter=title eq "none"&cursor={cursor}&count=10')).json()
        cursor, pages = body.get("nextCursor"), pages + 1
    assert pages == 2  # one user and its three edges fill a page's bound


@pytest.mark.parametrize("sort", ["", "&sortBy=userName"])
async def test_no_next_cursor_at_the_exact_end_of_a_listing(scim, sort):
    for n in range(6):
        await create(scim, userName=f"end{n}@example.com")
    first = (await scim.get(f"/Users?count=3&cursor={sort}")).json()
    assert len(first["Resources"]) == 3 and first.get("nextCursor")
    second = (await scim.get(f"/Users?count=3&cursor={first['nextCursor']}{sort}")).json()
    assert len(second["Resources"]) == 3
    assert "nextCursor" not in second, "6 users in pages of 3: the second page is the last"
    names = [u["userName"] for u in first["Resources"] + second["Resources"]]
    assert sorted(names) == [f"end{n}@example.com" for n in range(6)]
