"""One structured log line per request; never a token, a query string or a body."""

from __future__ import annotations

import json
import logging

import pytest

from scim.logs import JsonFormatter, printable
from scim.model.unknown import IGNORE, settle


def test_json_formatter_carries_the_scim_fields():
    record = logging.LogRecord("scim.api", logging.INFO, __file__, 1, "GET %s -> %d", ("/Users", 200), None)
    record.scim = {"request_id": "abc", "status": 200, "latency_ms": 1.5, "principal": "secret-token-1"}
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "GET /Users -> 200"
    assert line["request_id"] == "abc" and line["principal"] == "secret-token-1" and line["level"] == "INFO"
    assert line["time"].endswith("Z")


# -- issue 14, item 8: client text in log lines -----------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain-id 42", "plain-id 42"),
        ("a\nFORGED 200 OK", "a\\nFORGED 200 OK"),
        ("cr\rlf\r\n", "cr\\rlf\\r\\n"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("line\u2028sep\u2029para\x85nel", "line\\u2028sep\\u2029para\\x85nel"),
        ("nul\x00tab\t", "nul\\x00tab\\t"),
        ("\ud800lone", "\\ud800lone"),
        ("ÜNÏCÖDÉ 名前 😀", "ÜNÏCÖDÉ 名前 😀"),  # printable text stays readable
        (12345, "12345"),
    ],
)
def test_printable_escapes_what_could_break_a_log_line(value, expected):
    assert printable(value) == expected


def test_printable_cuts_long_values_and_says_how_much():
    assert printable("x" * 200_000) == "x" * 120 + "…(+199,880 chars)"
    assert printable("x" * 120) == "x" * 120
    assert printable("\n" * 200, limit=3) == "\\n\\n\\n…(+197 chars)"


def test_a_printable_value_is_always_one_line():
    hostile = "".join(chr(c) for c in range(0x3000))
    for limit in (1, 120, 20_000):
        assert len(printable(hostile, limit).splitlines()) == 1


def test_ignored_attribute_names_are_logged_printable(caplog):
    names = [f"evil\n{i}" + "x" * 1000 for i in range(30)]
    with caplog.at_level(logging.WARNING, logger="scim.model.unknown"):
        settle(IGNORE, "User", names)
    (record,) = caplog.records
    line = record.getMessage()
    assert "\n" not in line and len(line) < 2_000 and "30 undeclared" in line
