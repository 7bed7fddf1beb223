"""One structured log line per request; never a token, a query string or a body."""

from __future__ import annotations

import json
import logging

from scim.logs import JsonFormatter


def test_json_formatter_carries_the_scim_fields():
    record = logging.LogRecord("scim.api", logging.INFO, __file__, 1, "GET %s -> %d", ("/Users", 200), None)
    record.scim = {"request_id": "abc", "status": 200, "latency_ms": 1.5, "principal": "secret-token-1"}
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "GET /Users -> 200"
    assert line["request_id"] == "abc" and line["principal"] == "secret-token-1" and line["level"] == "INFO"
    assert line["time"].endswith("Z")
