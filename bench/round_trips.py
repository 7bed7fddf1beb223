"""
FILE: round_trips.py

DESCRIPTION:
    The table of storage round trips per SCIM operation, for users and groups, beside the budgets
    of docs/architecture.md ("Storage round trips per request"), including what the integration test
    (tests/integration/test_round_trips.py) does not reach: filters that no index answers at
    1,000 users, pushed-down filters, group PATCHes of K = 1, 50, 98, 99, 250 members (add and
    remove), GET group with and without members at 10, 1,000 and 5,000 members, and the same
    filters again at 5,000 users that are all members of a group.

    ``scim.web.api.ScimApi`` is driven directly (no HTTP) with production settings (page size 200,
    scan bound 10,000) over an Azurite table service in memory (``tools.azurite``), one fresh
    table per section. Every HTTP request the Table SDK sends, retries included, is counted by an
    azure-core ``SansIOHTTPPolicy`` passed to ``scim.storage.tables.connect(..., per_retry_policies=...)``;
    measured operations run one at a time, so each count is exactly that operation's. Setup
    (creating users, filling groups) runs concurrently and is not counted.

    Prints one table (section, operation, round trips, what they were: point reads, queries,
    batches, budget, rule, within budget yes/no) and one ``JSON:`` line with the same rows.
    A row without a README budget shows "-". Exits non-zero only if an operation got an
    unexpected HTTP status (then the row says so).

USAGE:
    .venv/bin/python -m bench.round_trips [--filter-users N] [--large M]

    --filter-users N   users in the table for the filter rows (default 1000)
    --large M          members of the largest group, and users of the last section (default 5000)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy

from bench.users import ENTERPRISE, entra_group, entra_user, machine, members_of, patch_body
from scim.config import Settings, token_digest
from scim.storage.tables import TableRepository, connect
from scim.web.api import Request, Response, ScimApi
from tools.azurite import Azurite

BASE = "http://bench.invalid/scim/v2"
TOKEN = "bench-round-trips-" + uuid.uuid4().hex
K_VALUES = (1, 50, 98, 99, 250)
SETUP_CONCURRENCY = 16


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# --- counting -------------------------------------------------------------------------------------


class RoundTrips(SansIOHTTPPolicy[Any, Any]):
    """Records the kind of every HTTP request the Table SDK sends, retries included."""

    def __init__(self) -> None:
        self.kinds: list[str] = []

    def on_request(self, request: PipelineRequest[Any]) -> None:
        http = request.http_request
        path = urlsplit(http.url).path
        if path.endswith("$batch"):
            kind = "batch"
        elif http.method == "GET" and path.endswith("()"):
            kind = "query"
        elif http.method == "GET" and "RowKey=" in path:
            kind = "read"
        else:
            kind = http.method.lower()
        self.kinds.append(kind)

    def reset(self) -> None:
        self.kinds.clear()


def breakdown(kinds: Sequence[str]) -> str:
    counts = Counter(kinds)
    return " + ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "none"


# --- driving ScimApi ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    section: str
    operation: str
    round_trips: int
    breakdown: str
    budget: int | None
    rule: str
    status: int
    expected: int

    @property
    def within_budget(self) -> str:
        if self.status != self.expected:
            return f"status {self.status}"
        if self.budget is None:
            return "-"
        return "yes" if self.round_trips <= self.budget else "no"


class Section:
    """A fresh table, a ScimApi over it, and a counter of its storage requests."""

    def __init__(self, connection_string: str, name: str, rows: list[Row]) -> None:
        self.name = name
        self.rows = rows
        self.counter = RoundTrips()
        self.table = "rt" + uuid.uuid4().hex[:16]
        self.client = connect(connection_string, self.table, per_retry_policies=[self.counter])
        settings = Settings(
            storage_connection_string=connection_string,
            table_name=self.table,
            token_digests=(token_digest(TOKEN),),
        )  # every limit at its production default
        self.api = ScimApi(settings, TableRepository(self.client))

    async def open(self) -> Section:
        await self.client.create_table()
        return self

    async def close(self) -> None:
        await self.client.delete_table()
        await self.client.close()

    async def request(self, method: str, path: str, body: Any = None) -> Response:
        url = BASE + path
        parts = urlsplit(url)
        segments = [s for s in parts.path.split("/") if s][2:]  # drop "scim", "v2"
        route = {"id": segments[1]} if len(segments) > 1 else {}
        handlers: dict[str, Callable[[Request], Awaitable[Response]]] = {
            "Users": self.api.user if route else self.api.users,
            "Groups": self.api.group if route else self.api.groups,
            "ServiceProviderConfig": self.api.service_provider_config,
            "Schemas": self.api.schemas,
            "ResourceTypes": self.api.resource_types,
        }
        request = Request(
            method=method,
            url=url,
            headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/scim+json"},
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            route=route,
            body=b"" if body is None else json.dumps(body).encode(),
        )
        return await handlers[segments[0]](request)

    async def measure(
        self,
        operation: str,
        method: str,
        path: str,
        body: Any = None,
        *,
        expected: int = 200,
        budget: int | Callable[[Response], int] | None = None,
        rule: str = "",
    ) -> Response:
        """Send one request alone and record its round trips as a row.

        ``budget`` may depend on the response (e.g. on how many users a page returned).
        """
        self.counter.reset()
        response = await self.request(method, path, body)
        if callable(budget):
            budget = budget(response)
        kinds = list(self.counter.kinds)
        row = Row(self.name, operation, len(kinds), breakdown(kinds), budget, rule, response.status, expected)
        self.rows.append(row)
        print(f"  {operation}: {row.round_trips}", file=sys.stderr, flush=True)
        return response

    # -- setup (not counted) ----------------------------------------------------------------------

    async def create_users(self, indexes: range) -> list[str]:
        """Create users ``bench-u-NNNNN@contoso.com`` (externalId ``ext-NNNNN``), concurrently."""
        semaphore = asyncio.Semaphore(SETUP_CONCURRENCY)
        step = max(1, len(indexes) // 5)

        async def one(i: int) -> str:
            async with semaphore:
                response = await self.request("POST", "/Users", user_body(i))
            if response.status != 201:
                raise RuntimeError(f"setup: creating user {i} -> {response.status} {response.body[:200]!r}")
            if (i - indexes.start + 1) % step == 0:
                print(f"    {i - indexes.start + 1}/{len(indexes)} users", file=sys.stderr, flush=True)
            return str(response.json()["id"])

        return list(await asyncio.gather(*(one(i) for i in indexes)))

    async def create_group(self, name: str) -> str:
        response = await self.request("POST", "/Groups", entra_group(name))
        if response.status != 201:
            raise RuntimeError(f"setup: creating group {name} -> {response.status}")
        return str(response.json()["id"])

    async def add_members(self, group_id: str, ids: Sequence[str], chunk: int = 1000) -> None:
        for start in range(0, len(ids), chunk):
            body = patch_body(
                {"op": "Add", "path": "members", "value": members_of(ids[start : start + chunk])}
            )
            response = await self.request("PATCH", f"/Groups/{group_id}", body)
            if response.status != 204:
                raise RuntimeError(f"setup: adding members -> {response.status} {response.body[:200]!r}")


def user_body(i: int) -> dict[str, Any]:
    body = entra_user()
    body["userName"] = f"bench-u-{i:05d}@contoso.com"
    body["externalId"] = f"ext-{i:05d}"
    body["name"]["familyName"] = f"Family{i:05d}"
    return body


def add_budget(k: int) -> int:
    return 1 + ceil_div(k, 98) + 2 * ceil_div(k, 50)


def remove_budget(k: int) -> int:
    """The documented bound (docs/architecture.md; asserted in tests/integration/test_round_trips.py)."""
    return 1 + ceil_div(k, 14) + ceil_div(k, 100) + ceil_div(k, 98) + ceil_div(k, 100)


# --- the sections ---------------------------------------------------------------------------------


async def users_section(s: Section) -> None:
    """Entra's user requests, discovery and rejected requests, in a near-empty table."""
    manager = (await s.create_users(range(90_000, 90_001)))[0]
    response = await s.measure(
        "POST user (Entra body)", "POST", "/Users", entra_user(), expected=201, budget=1
    )
    created = response.json()
    uid, name, ext = created["id"], created["userName"], created["externalId"]
    await s.measure("GET user by id", "GET", f"/Users/{uid}", budget=1)
    await s.measure("filter id eq", "GET", f'/Users?filter=id eq "{uid}"', budget=1)
    await s.measure(
        "filter userName eq (hit, other case)", "GET", f'/Users?filter=userName eq "{name.upper()}"', budget=2
    )
    await s.measure(
        "filter userName eq (miss: Entra's probe)",
        "GET",
        f'/Users?filter=userName eq "{uuid.uuid4()}"',
        budget=1,
        rule="a miss on the index: 1",
    )
    await s.measure("filter externalId eq (hit)", "GET", f'/Users?filter=externalId eq "{ext}"', budget=2)
    await s.measure(
        "filter userName eq and active eq true",
        "GET",
        f'/Users?filter=userName eq "{name}" and active eq true',
        budget=2,
        rule="indexed eq and other terms: 2",
    )
    multi = patch_body(
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "updatedEmail@microsoft.com"},
        {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
    )
    changed = "read + one conditional transaction: 2"
    await s.measure("PATCH user (Entra multi-op)", "PATCH", f"/Users/{uid}", multi, budget=2, rule=changed)
    disable = patch_body({"op": "Replace", "path": "active", "value": "False"})
    await s.measure("PATCH user active=False", "PATCH", f"/Users/{uid}", disable, budget=2, rule=changed)
    await s.measure(
        "PATCH user, nothing changes", "PATCH", f"/Users/{uid}", disable, budget=1, rule="nothing changes: 1"
    )
    rename = patch_body({"op": "Replace", "path": "userName", "value": f"renamed-{uuid.uuid4()}@x.com"})
    await s.measure("PATCH user userName (rename)", "PATCH", f"/Users/{uid}", rename, budget=2, rule=changed)
    manager_op = patch_body({"op": "Add", "path": f"{ENTERPRISE}:manager", "value": manager})
    await s.measure(
        "PATCH user manager (bare id)", "PATCH", f"/Users/{uid}", manager_op, budget=2, rule=changed
    )
    await s.measure("PUT user", "PUT", f"/Users/{uid}", {"userName": "put@x.com"}, budget=2, rule=changed)
    await s.measure("DELETE user in no group", "DELETE", f"/Users/{uid}", expected=204, budget=2)

    member = (await s.create_users(range(90_001, 90_002)))[0]
    for n in range(3):
        await s.add_members(await s.create_group(f"Three {n}"), [member])
    await s.measure(
        "GET user by id, in 3 groups", "GET", f"/Users/{member}", budget=1, rule="groups ride along: 1"
    )
    await s.measure(
        "DELETE user in G=3 groups",
        "DELETE",
        f"/Users/{member}",
        expected=204,
        budget=3 + ceil_div(3, 100),
        rule="3 + ceil(G/100)",
    )

    free = "discovery, rejected: 0"
    await s.measure("GET /ServiceProviderConfig", "GET", "/ServiceProviderConfig", budget=0, rule=free)
    await s.measure("GET /Schemas", "GET", "/Schemas", budget=0, rule=free)
    await s.measure("GET /ResourceTypes", "GET", "/ResourceTypes", budget=0, rule=free)
    await s.measure(
        "rejected: bad filter", "GET", "/Users?filter=userName eq", expected=400, budget=0, rule=free
    )
    await s.measure(
        "rejected: POST without userName", "POST", "/Users", {"schemas": [entra_user()["schemas"][0]]},
        expected=400, budget=0, rule=free,
    )  # fmt: skip
    bad = patch_body({"op": "explode", "path": "title"})
    await s.measure(
        "rejected: bad PATCH op", "PATCH", f"/Users/{manager}", bad, expected=400, budget=0, rule=free
    )


async def filter_rows(s: Section, users: int, groups_each: int) -> None:
    """Filters no index answers and pushed-down filters, with ``users`` users in the table.

    Not pushable: the scan reads each user's row and its reverse edges (one per group), so the
    README's "rows" are ``users * (1 + groups_each)``. Pushed down: "matching rows", plus, when
    the users are in groups, one query per 7 users returned for their ``groups`` (the pushed-down
    query reads resource rows only; 15 comparisons per filter allow 7 RowKey ranges).
    """
    scanned = max(1, ceil_div(users * (1 + groups_each), 1000))
    rows = "not pushable: 1 per 1,000 rows"
    matching = "pushed: 1 per 1,000 matching rows" + (" + 1 per 7 returned (groups)" if groups_each else "")

    def pushed(matches: int) -> Callable[[Response], int]:
        def budget(response: Response) -> int:
            returned = len(response.json().get("Resources", []))
            return max(1, ceil_div(matches, 1000)) + (ceil_div(returned, 7) if groups_each else 0)

        return budget

    await s.measure(
        'name.familyName co "0042"',
        "GET",
        '/Users?filter=name.familyName co "0042"',
        budget=scanned,
        rule=rows,
    )
    await s.measure(
        'userName co "u-0004"', "GET", '/Users?filter=userName co "u-0004"', budget=scanned, rule=rows
    )
    await s.measure(
        'userName sw "bench-u-0004" (10 match)',
        "GET",
        '/Users?filter=userName sw "bench-u-0004"',
        budget=pushed(10),
        rule=matching,
    )
    await s.measure(
        'userName sw "bench-u-" (all match)',
        "GET",
        '/Users?filter=userName sw "bench-u-"',
        budget=pushed(users),
        rule=matching,
    )
    await s.measure(
        'userName sw "bench-u-0004" and familyName co',
        "GET",
        '/Users?filter=userName sw "bench-u-0004" and name.familyName co "42"',
        budget=pushed(10),
        rule=matching,
    )
    await s.measure(
        "meta.lastModified gt 2000-01-01 (all match)",
        "GET",
        '/Users?filter=meta.lastModified gt "2000-01-01T00:00:00Z"',
        budget=pushed(users),
        rule=matching,
    )
    await s.measure("GET /Users?count=10, no filter", "GET", "/Users?count=10", rule="(not in README)")


async def filters_section(s: Section, users: int) -> None:
    await s.create_users(range(users))
    await filter_rows(s, users, groups_each=0)


async def groups_section(s: Section, large: int) -> None:
    """Group requests, member PATCHes of K members, reads of large groups, filters over members."""
    ids = await s.create_users(range(large))
    response = await s.measure(
        "POST group (Entra body)", "POST", "/Groups", entra_group("Budget Group"), expected=201, budget=1
    )
    gid = response.json()["id"]
    lean = "excludedAttributes=members"
    await s.measure("GET group, excludedAttributes=members", "GET", f"/Groups/{gid}?{lean}", budget=1)
    await s.measure(
        "filter displayName eq (hit, other case)",
        "GET",
        f'/Groups?{lean}&filter=displayName eq "budget GROUP"',
        budget=2,
    )
    await s.measure(
        "filter displayName eq (miss: Entra's probe)",
        "GET",
        f'/Groups?{lean}&filter=displayName eq "{uuid.uuid4()}"',
        budget=1,
    )
    rename = patch_body({"op": "Replace", "path": "displayName", "value": "Renamed Group"})
    await s.measure("PATCH group displayName", "PATCH", f"/Groups/{gid}", rename, expected=204, budget=2)

    for k in K_VALUES:
        chunk = ids[:k]
        add = patch_body({"op": "Add", "path": "members", "value": members_of(chunk)})
        await s.measure(
            f"PATCH group: add K={k}",
            "PATCH",
            f"/Groups/{gid}",
            add,
            expected=204,
            budget=add_budget(k),
            rule="1 + ceil(K/98) + 2*ceil(K/50)",
        )
        remove = patch_body({"op": "Remove", "path": "members", "value": members_of(chunk)})
        await s.measure(
            f"PATCH group: remove K={k}",
            "PATCH",
            f"/Groups/{gid}",
            remove,
            expected=204,
            budget=remove_budget(k),
            rule="1 + ceil(K/14) + ceil(K/98) + 2*ceil(K/100)",
        )
    one = ids[0]
    entra_remove = patch_body({"op": "Remove", "path": f'members[value eq "{one}"]'})
    await s.measure(
        "PATCH group: add K=1 again",
        "PATCH",
        f"/Groups/{gid}",
        patch_body({"op": "Add", "path": "members", "value": members_of([one])}),
        expected=204,
        budget=add_budget(1),
        rule="1 + ceil(K/98) + 2*ceil(K/50)",
    )
    await s.measure(
        'PATCH group: remove members[value eq "..."]',
        "PATCH",
        f"/Groups/{gid}",
        entra_remove,
        expected=204,
        budget=remove_budget(1),
        rule="1 + ceil(K/14) + ceil(K/98) + 2*ceil(K/100)",
    )

    big = await s.create_group("Big Group")
    have = 0
    for size in sorted({10, 1000, large}):
        print(f"    filling a group to {size:,} members", file=sys.stderr, flush=True)
        await s.add_members(big, ids[have:size])
        have = size
        await s.measure(
            f"GET group with {size:,} members",
            "GET",
            f"/Groups/{big}",
            budget=1 + ceil_div(size, 1000),
            rule="1 + ceil(members/1,000)",
        )
        await s.measure(
            f"GET group with {size:,} members, {lean}",
            "GET",
            f"/Groups/{big}?{lean}",
            budget=1,
            rule="1, whatever the group's size",
        )
    await s.measure(
        f"filter displayName eq, {large:,}-member group, members",
        "GET",
        '/Groups?filter=displayName eq "big group"',
        rule="(not in README)",
    )

    await s.measure(f"GET user by id, in the {large:,}-member group", "GET", f"/Users/{ids[1]}", budget=1)
    await s.measure(
        "DELETE user in G=1 group",
        "DELETE",
        f"/Users/{ids[1]}",
        expected=204,
        budget=3 + ceil_div(1, 100),
        rule="3 + ceil(G/100)",
    )
    s.name = f"filters at {large:,} users (all but one in 1 group)"
    await filter_rows(s, large, groups_each=1)
    s.name = "groups, last"
    await s.measure(
        f"DELETE group with {large - 1:,} members",
        "DELETE",
        f"/Groups/{big}",
        expected=204,
        rule="(not in README)",
    )


# --- main -----------------------------------------------------------------------------------------


def print_table(rows: Sequence[Row]) -> None:
    width = max(len(row.operation) for row in rows)
    print(f"{'operation':<{width}}  {'trips':>5}  {'budget':>6}  {'within':<9} {'README rule':<36} breakdown")
    section = ""
    for row in rows:
        if row.section != section:
            section = row.section
            print(f"-- {section}")
        budget = "-" if row.budget is None else str(row.budget)
        print(
            f"{row.operation:<{width}}  {row.round_trips:>5}  {budget:>6}  {row.within_budget:<9} "
            f"{row.rule:<36} {row.breakdown}"
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.round_trips", description=__doc__.split("\n\n")[1])
    parser.add_argument(
        "--filter-users", type=int, default=1000, help="users for the filter rows (default 1000)"
    )
    parser.add_argument("--large", type=int, default=5000, help="members of the largest group (default 5000)")
    args = parser.parse_args(argv)
    if args.filter_users < 10 or args.large < 1000:
        parser.error("--filter-users must be at least 10 and --large at least 1000")
    return args


async def run(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    with Azurite() as azurite:
        sections: list[tuple[str, Callable[[Section], Awaitable[None]]]] = [
            ("users", users_section),
            (
                f"filters at {args.filter_users:,} users, in no group",
                lambda s: filters_section(s, args.filter_users),
            ),
            (f"groups ({args.large:,} users in the table)", lambda s: groups_section(s, args.large)),
        ]
        for name, body in sections:
            print(f"section: {name}", file=sys.stderr, flush=True)
            section = await Section(azurite.connection_string, name, rows).open()
            try:
                await body(section)
            finally:
                await section.close()
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    print(f"machine: {info['platform']}, {info['cpu_count']} CPUs, Python {info['python']}")
    print("storage: Azurite (in memory) on loopback; ScimApi driven directly, production limits")
    started = time.perf_counter()
    rows = asyncio.run(run(args))
    print()
    print_table(rows)
    over = [row.operation for row in rows if row.within_budget == "no"]
    unexpected = [row.operation for row in rows if row.status != row.expected]
    print()
    print(f"rows: {len(rows)}, over budget: {len(over)}, unexpected status: {len(unexpected)}")
    print(f"wall time: {time.perf_counter() - started:.1f} s")
    report = {
        "machine": info,
        "filter_users": args.filter_users,
        "large": args.large,
        "rows": [{**asdict(row), "within_budget": row.within_budget} for row in rows],
        "over_budget": over,
        "unexpected_status": unexpected,
    }
    print("JSON: " + json.dumps(report, separators=(",", ":")))
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
