"""Structured logs: one JSON object per line, for containers and the dev server.

``scim.api`` logs one line per request with a ``scim`` record attribute —
request id, method, route template (never the query string), status,
``scimType``, latency and principal (``secret-token-1``/``-2`` or
``entra-app:<id>``; never a token). Under the Functions host these lines go
to Application Insights; elsewhere :class:`JsonFormatter` makes them
machine-readable (``SCIM_LOG_FORMAT=json``).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

__all__ = ["JsonFormatter"]


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
