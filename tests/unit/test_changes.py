"""Change records: what changed, the CloudEvents event, the audit entry, the stored form."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from scim.feed.relay import MAX_MESSAGE_BYTES, message_of
from scim.model.changes import EVENT_TYPE, SYSTEM, Actor, Change, changed_attributes, current_actor, timestamp

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
BEFORE = {
    "id": "u1",
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
    "userName": "ada@contoso.com",
    "active": True,
    "emails": [{"value": "ada@contoso.com"}],
    ENTERPRISE: {"department": "R&D", "employeeNumber": "7"},
    "meta": {"lastModified": "2026-01-01T00:00:00Z"},
}


def test_changed_attributes_names_every_difference_and_values_only_the_non_sensitive():
    after = {
        **BEFORE,
        "active": False,
        "emails": [{"value": "lovelace@contoso.com"}],
        ENTERPRISE: {"department": "Maths", "employeeNumber": "7"},
        "meta": {"lastModified": "2026-02-01T00:00:00Z"},
    }
    names, values = changed_attributes(BEFORE, after)
    assert names == ("active", "emails", f"{ENTERPRISE}:department")  # meta never counts
    assert values == {"active": [True, False]}


def test_a_create_names_every_attribute_and_a_delete_none_after():
    names, values = changed_attributes(None, BEFORE)
    assert set(names) == {
        "userName",
        "active",
        "emails",
        f"{ENTERPRISE}:department",
        f"{ENTERPRISE}:employeeNumber",
    }
    assert values == {"userName": [None, "ada@contoso.com"], "active": [None, True]}


def test_the_event_is_a_cloudevent_with_the_resource_after_the_change():
    change = Change.of("User", "u1", "patch", 2, "2026-11-30T17:02:11.412907Z", before=BEFORE, after=BEFORE)
    event = change.event("urn:scim:tenant:default")
    assert event["specversion"] == "1.0" and event["type"] == EVENT_TYPE
    assert event["subject"] == "Users/u1" and event["sequence"] == "000000000002"
    assert event["data"]["version"] == 'W/"2"' and event["data"]["resource"]["userName"] == "ada@contoso.com"
    members = Change.of("Group", "g1", "members", 3, "t", added=("u1",), removed=("u2",)).event("s")
    assert members["data"]["members"] == {"added": ["u1"], "removed": ["u2"]}
    assert members["data"]["lastModified"] == "t" and "resource" not in members["data"]
    assert "resource" not in Change.of("User", "u1", "delete", 4, "t", before=BEFORE).event("s")["data"]


def test_the_actor_is_the_current_requests():
    assert Change.of("User", "u1", "create", 1, "t", after=BEFORE).actor == SYSTEM
    token = current_actor.set(Actor("secret-token-2", "req-1"))
    try:
        entry = Change.of("User", "u1", "create", 1, "t", after=BEFORE).audit(published=False)
    finally:
        current_actor.reset(token)
    assert (entry["actor"], entry["requestId"], entry["published"]) == ("secret-token-2", "req-1", False)


def test_the_stored_form_round_trips():
    change = Change.of("Group", "g1", "members", 3, "t", added=("u1", "u2"), removed=("u3",))
    assert Change.from_json(change.to_json()) == change
    big = Change.of("User", "u1", "create", 1, "t", after={**BEFORE, "nickName": "x" * 70_000})
    assert Change.from_json(big.without_resource().to_json()).truncated


def test_a_queue_message_never_exceeds_the_limit():
    small = Change.of("User", "u1", "create", 1, "t", after=BEFORE)
    assert json.loads(message_of(small, "s"))["data"]["resource"]["userName"] == "ada@contoso.com"
    big = Change.of("User", "u1", "create", 1, "t", after={**BEFORE, "nickName": "é" * 30_000})
    message = message_of(big, "s")
    assert len(message.encode()) <= MAX_MESSAGE_BYTES
    assert json.loads(message)["data"]["truncated"] is True


def test_timestamps_sort_as_text_and_are_utc():
    moment = datetime(2026, 11, 30, 18, 2, 11, 0, tzinfo=timezone(timedelta(hours=1)))
    assert timestamp(moment) == "2026-11-30T17:02:11.000000Z"
    assert timestamp(datetime(2026, 11, 30, 17, 2, 11, 5, tzinfo=UTC)) > timestamp(moment)
