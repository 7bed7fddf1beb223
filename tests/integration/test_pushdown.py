"""Filter push-down is visible in the storage requests, and never changes an answer."""

from __future__ import annotations

import json

import pytest

from scim.storage.tables import row_key_component
from tests.integration.test_round_trips import measure
from tests.integration.test_users_entra import create, patch

pytestmark = pytest.mark.integration


async def population(scim):
    users = {}
    for name, active, title in [
        ("amy", True, "CEO"),
        ("ben", False, "CTO"),
        ("bea", True, None),
        ("cal", True, None),
    ]:
        user = await create(scim, userName=f"{name}@x.com", active=active, displayName=name.title())
        if title:
            await scim.patch(f"/Users/{user['id']}", patch({"op": "add", "path": "title", "value": title}))
        users[name] = user["id"]
    return users


def storage_filter(store) -> str:
    queries = [url for url in store.round_trips.urls if "$filter=" in url]
    assert queries, store.round_trips.urls
    return queries[-1].split("$filter=", 1)[1]


@pytest.mark.parametrize(
    ("expression", "pushed", "expected"),
    [
        ("active eq false", ["c_act eq false"], ["ben"]),
        ('userName sw "B"', ["c_un ge 'b'", "c_un lt 'c'"], ["bea", "ben"]),
        ('userName sw "b" and title eq "CTO"', ["c_un ge 'b'"], ["ben"]),
        ('displayName eq "amy" or displayName eq "CAL"', ["c_dn eq 'amy'", "c_dn eq 'cal'"], ["amy", "cal"]),
        (
            'meta.lastModified gt "2000-01-01T00:00:00Z"',
            ["c_lm gt datetime'2000-01-01T00:00:00"],
            ["amy", "bea", "ben", "cal"],
        ),
    ],
)
async def test_pushed_terms_reach_storage(scim, store, expression, pushed, expected):
    ids = await population(scim)
    response, _ = await measure(store, lambda: scim.get("/Users", query={"filter": expression}))
    found = sorted(
        name for name, uid in ids.items() if uid in {u["id"] for u in response.json()["Resources"]}
    )
    assert found == expected
    text = storage_filter(store)
    for fragment in pushed:
        assert fragment in text, text


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("not (active eq true)", ["ben"]),  # never pushed: storage and SCIM differ on absent values
        ('title ne "CEO"', ["bea", "ben", "cal"]),
        ('userName sw "b" or title pr', ["amy", "bea", "ben"]),
    ],
)
async def test_unpushable_terms_stay_correct(scim, store, expression, expected):
    ids = await population(scim)
    response, _ = await measure(store, lambda: scim.get("/Users", query={"filter": expression}))
    found = sorted(
        name for name, uid in ids.items() if uid in {u["id"] for u in response.json()["Resources"]}
    )
    assert found == expected
    assert "c_" not in storage_filter(store)


async def test_indexed_eq_with_other_terms_costs_two_round_trips(scim, store):
    ids = await population(scim)
    query = {"filter": 'userName eq "BEN@x.com" and active eq false and title sw "C"'}
    response, trips = await measure(store, lambda: scim.get("/Users", query=query))
    assert [u["id"] for u in response.json()["Resources"]] == [ids["ben"]] and trips == 2


def odata(text: str) -> str:
    """An OData string literal, quotes doubled (OData ABNF ``SQUOTE-in-string``)."""
    return "'" + text.replace("'", "''") + "'"


COLUMNS = {"userName": ("c_un", str.lower), "displayName": ("c_dn", str.lower), "externalId": ("c_ext", str)}


def expected_filter(attribute: str, op: str, value: str) -> str:
    """The exact OData filter a hostile value must produce: every value a quoted literal."""
    if op == "eq" and attribute != "displayName":  # a user's index: one RowKey range
        key = f"idx:{attribute}:{row_key_component(COLUMNS[attribute][1](value))}"
        return f"PartitionKey eq 'default|User' and ( ( RowKey ge {odata(key)} and RowKey le {odata(key + '|~')} ) )"
    column, normalise = COLUMNS[attribute]
    scan = "PartitionKey eq 'default|User' and RowKey gt 'res:' and RowKey lt 'res;' and "
    if op == "sw":
        lower, upper = normalise(value), normalise(value)[:-1] + chr(ord(normalise(value)[-1]) + 1)
        return scan + f"( ( {column} ge {odata(lower)} ) and ( {column} lt {odata(upper)} ) )"
    return scan + f"( {column} {op} {odata(normalise(value))} )"


@pytest.mark.parametrize(
    "value",
    ["a' or 'a' eq 'a", "x') or (PartitionKey ne '", "' or RowKey gt '", "\\' or 1 eq 1 or '"],
)
async def test_hostile_values_never_widen_the_query(scim, store, value):
    """The storage query sent is exactly the pushed term with the value as one literal (issue 14)."""
    await population(scim)
    escaped = value.replace("\\", "\\\\")
    for attribute in ("userName", "displayName", "externalId"):
        for op in ("eq", "sw", "gt"):
            response, _ = await measure(
                store, lambda a=attribute, o=op: scim.get("/Users", query={"filter": f'{a} {o} "{escaped}"'})
            )
            body = response.json()
            assert response.status == 200, body
            sent = [url.split("$filter=", 1)[1] for url in store.round_trips.urls if "$filter=" in url]
            assert sent == [expected_filter(attribute, op, value)], (attribute, op)
            names = [u["userName"] for u in body["Resources"]]
            if op == "gt":  # a genuine comparison: only users whose value sorts after it
                assert all(n.lower() > value.lower() for n in names if attribute == "userName")
            else:
                assert names == []


async def test_pushed_results_still_carry_groups(scim, store):
    from tests.integration.test_groups_entra import create_group, members_of

    ids = await population(scim)
    group = await create_group(scim)
    await scim.patch(
        f"/Groups/{group['id']}", patch({"op": "add", "path": "members", "value": members_of(ids["ben"])})
    )
    await scim.patch(
        f"/Users/{ids['ben']}", patch({"op": "replace", "path": "nickName", "value": "B"})
    )  # full-row write
    body = (await scim.get("/Users", query={"filter": 'userName sw "b"', "sortBy": "userName"})).json()
    assert [u.get("groups", [{}])[0].get("value") for u in body["Resources"]] == [None, group["id"]]


async def test_pushed_results_of_users_in_groups_cost_one_query_per_seven(scim, store):
    from tests.integration.test_groups_entra import create_group, members_of

    ids = [(await create(scim, userName=f"grouped{n:02d}@x.com"))["id"] for n in range(14)]
    group = await create_group(scim)
    await scim.patch(
        f"/Groups/{group['id']}", patch({"op": "add", "path": "members", "value": members_of(*ids)})
    )
    response, trips = await measure(
        store, lambda: scim.get("/Users", query={"filter": 'userName sw "grouped"'})
    )
    body = response.json()
    assert body["totalResults"] == 14 and all(
        u["groups"][0]["value"] == group["id"] for u in body["Resources"]
    )
    assert trips == 1 + 2  # the pushed-down scan, then the edges of 14 users, 7 per query (5: 3)


EDGE_NAMES = [
    "a", "ab", "a\ud7fe", "a\ud7ff", "a\ud7ffz", "a\ue000", "a\uffff", "a\uffffz", "a\U00010000",
    "a\U0010fffe", "a\U0010ffff", "a\U0010ffffz", "b", "\uffff", "\uffff\U0010ffff", "\U0010ffff", "\U00010000b",
]  # fmt: skip
"""userNames at the ends of the code-point range, of the BMP and around the surrogate gap."""


@pytest.mark.parametrize("op", ["sw", "gt", "ge", "lt", "le"])
async def test_pushed_comparisons_at_the_ends_of_the_code_point_range_match_evaluation(scim, store, op):
    """Issue 14, item 7: storage orders by UTF-16 code unit, Python by code point; push-down never
    drops a match, and a prefix at U+D7FF, U+FFFF or U+10FFFF is no 500."""
    ids = {name: (await create(scim, userName=name))["id"] for name in EDGE_NAMES}
    names = {uid: name for name, uid in ids.items()}
    for value in [*EDGE_NAMES, "a\ud7fe\uffff", "\ue000", "\U0010ffff\U0010ffff"]:
        literal = json.dumps(value, ensure_ascii=False)
        pushed, _ = await measure(
            store, lambda q=f"userName {op} {literal}": scim.get("/Users", query={"filter": q})
        )
        assert pushed.status == 200, pushed.json()
        sent = storage_filter(store)
        evaluated = await scim.get("/Users", query={"filter": f"not (not (userName {op} {literal}))"})
        assert evaluated.status == 200, evaluated.json()
        got = sorted(names[r["id"]] for r in pushed.json()["Resources"])
        expected = sorted(names[r["id"]] for r in evaluated.json()["Resources"])
        assert got == expected, (op, value, sent)
        if op == "sw":
            assert "c_un ge " in sent  # a lower bound at least is always pushed


@pytest.mark.parametrize(
    ("expression", "matches"),
    [
        ('meta.created gt "0001-01-01T00:00:00Z"', True),
        ('meta.created ge "0001-01-01T00:00:00+05:00"', True),  # not representable in UTC
        ('meta.lastModified gt "1600-12-31T23:59:59Z"', True),  # before Edm.DateTime's range
        ('meta.lastModified lt "0001-01-01T00:00:00Z"', False),
        ('meta.lastModified lt "9999-12-31T23:59:59Z"', True),
        ('meta.created le "9999-12-31T23:59:59-05:00"', True),  # after it
        ('meta.created gt "9999-12-31T23:59:59-05:00"', False),
        ('meta.created gt "2000-01-01T00:00:00Z" and meta.created lt "9999-12-31T23:59:59.999999Z"', True),
    ],
)
async def test_time_bounds_at_the_ends_of_the_range_answer_correctly(scim, store, expression, matches):
    """Issue 14, item 7: no 500 and no silent miss for bounds near year 1 or 9999."""
    ids = await population(scim)
    response = await scim.get("/Users", query={"filter": expression})
    assert response.status == 200, response.json()
    assert response.json()["totalResults"] == (len(ids) if matches else 0)
