"""Structured logs: one JSON object per line, for containers and the local host.

``scim.web.api`` logs one line per request with a ``scim`` record attribute —
request id, method, route template (never the query string), status,
``scimType``, latency and principal (``secret-token-1``/``-2`` or
``entra-app:<id>``; never a token). Under the Functions host these lines go
to Application Insights; elsewhere :class:`JsonFormatter` makes them
machine-readable (``SCIM_LOG_FORMAT=json``). Every room may log through it. It may import
nothing from ``scim``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

__all__ = ["JsonFormatter", "printable"]

_LOG_FIELD_CHARS = 120
"""Characters of one client-supplied value kept in a log line."""


class JsonFormatter(logging.Formatter):
    """Format a record as a JSON line: time, level, logger, message, and its ``scim`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the JSON line of ``record``."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "scim", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def printable(value: object, limit: int = _LOG_FIELD_CHARS) -> str:
    r"""``value`` made safe for one log line: control characters escaped, at most ``limit`` characters.

    Client-supplied text (member ids, paths, attribute names) reaches logs; a raw
    newline would forge a second log line, and a 200 KB value would make a
    200 KB line. Escaping uses Python's ``repr`` rules for the unprintable
    characters only (``\n``, ``\x1b``, ``\u2028``), so ordinary text stays readable;
    a cut value ends with ``…(+N chars)``.
    """
    text = str(value)
    cut = len(text) - limit
    if cut > 0:
        text = text[:limit]
    escaped = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return f"{escaped}…(+{cut:,} chars)" if cut > 0 else escaped
