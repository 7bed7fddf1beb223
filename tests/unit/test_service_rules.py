"""Pure rules of the service and the storage mapping (no I/O)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from scim2_models import ScimFilter

from scim.model.errors import PayloadTooLargeError
from scim.model.resources import USER, UserResource, case_insensitive_key
from scim.service.operations import _index_term, matches_if_match, version_of
from scim.storage.repository import StoredResource
from scim.storage.tables import CHUNK_CHARS, _join, _split, row_key_component


def test_version_is_the_weak_version_counter_whatever_the_storage_etag():
    first = StoredResource("id", {}, "W/\"datetime'2026-01-01'\"", version=1)
    assert version_of(first) == 'W/"1"'
    assert version_of(replace(first, etag="W/\"datetime'2026-01-02'\"")) == 'W/"1"'  # a touch is not a change
    assert version_of(replace(first, version=2)) == 'W/"2"'


@pytest.mark.parametrize(
    ("if_match", "expected"),
    [
        ('W/"abc"', True),
        ('"abc"', True),
        ('W/"x", W/"abc"', True),
        ("*", True),
        ('W/"x"', False),
        ("", False),
    ],
)
def test_if_match_uses_weak_comparison(if_match, expected):
    assert matches_if_match(if_match, 'W/"abc"') is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('userName eq "A"', ("userName", "A")),
        ('USERNAME eq "A"', ("userName", "A")),
        ('externalId eq "e" and userName eq "u"', ("userName", "u")),
        ('userName eq "u" and id eq "i"', ("id", "i")),
        ('urn:ietf:params:scim:schemas:core:2.0:User:userName eq "u"', ("userName", "u")),
        ('userName eq "u" or externalId eq "e"', None),
        ('userName ne "u"', None),
        ('not (userName eq "u")', None),
        ('displayName eq "d"', None),
        ('userName eq "u" and (title eq "a" or title eq "b")', ("userName", "u")),
    ],
)
def test_index_term_only_for_an_eq_every_match_satisfies(text, expected):
    found = _index_term(ScimFilter[UserResource](text).ast, USER)
    named = None if found is None else (found[0].name if found[0] is not None else "id", found[1])
    assert named == expected


def test_comparison_keys_match_the_filter_semantics():
    assert case_insensitive_key("ÄBC@Contoso.COM") == case_insensitive_key("äbc@contoso.com")
    assert case_insensitive_key("A\u0308") == case_insensitive_key("\u00e4")  # NFC


@pytest.mark.parametrize("text", ["plain", "a/b", "a\\b", "a#b", "a?b", "100%", "tab\tx", "\x7f", "名前"])
def test_row_key_component_never_holds_forbidden_characters(text):
    key = row_key_component(text)
    assert not any(ch in key for ch in "/\\#?") and all(
        ord(ch) >= 0x20 and not 0x7F <= ord(ch) <= 0x9F for ch in key
    )


def test_row_key_component_is_injective_and_bounded():
    assert row_key_component("a%2Fb") != row_key_component("a/b")
    long_key = row_key_component("é" * 500)
    assert long_key.startswith("%~sha256:") and len(long_key.encode()) <= 255
    assert row_key_component("é" * 500) != row_key_component("é" * 501)


def test_documents_are_split_and_joined_losslessly():
    document = {"userName": "u", "roles": [{"value": "x" * (3 * CHUNK_CHARS)}], "name": {"givenName": "名"}}
    properties = _split(document)
    assert len(properties) == 4 and all(len(p) <= CHUNK_CHARS for p in properties.values())
    assert _join(properties) == document


def test_documents_beyond_an_entity_are_refused():
    with pytest.raises(PayloadTooLargeError):
        _split({"roles": ["x" * (16 * CHUNK_CHARS)]})
