"""What the host reads before it starts: host.json and its own app settings.

- ``extensions.http.routePrefix`` (default ``api``; an empty string means no prefix) and
  ``extensions.http.customHeaders`` (added to every response, 404s included), from host.json
  (Microsoft Learn: *host.json reference*, ``extensions.http``);
- ``functionTimeout`` (``hh:mm:ss``; Flex Consumption's default is 30 minutes);
- ``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT`` (bytes; default 100 MB): the host's own body limit. An
  unparseable value is ignored by the host, and so here (azure-notes §6.2);
- ``AzureWebJobs_<name>_Disabled`` (``true``/``1``): the function is not run — an HTTP trigger
  is not routed, a timer does not fire. The dotted form ``AzureWebJobs.<name>.Disabled`` works
  in local.settings.json but is unreliable in Linux environment variables; it is honoured here
  too, with a warning that recommends the underscore form (azure-notes §6.2).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

__all__ = ["DEFAULT_BODY_LIMIT", "DEFAULT_ROUTE_PREFIX", "HostConfig", "body_size_limit", "is_disabled"]

logger = logging.getLogger("functions_host")

DEFAULT_ROUTE_PREFIX = "api"
"""The host's route prefix when host.json sets none."""

DEFAULT_BODY_LIMIT = 104_857_600
"""The host's request body limit when ``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT`` is not set (100 MB)."""

BODY_SIZE_LIMIT_SETTING = "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"

DEFAULT_FUNCTION_TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class HostConfig:
    """The parts of host.json the local host applies."""

    route_prefix: str = DEFAULT_ROUTE_PREFIX
    custom_headers: Mapping[str, str] = field(default_factory=dict)
    function_timeout: timedelta = DEFAULT_FUNCTION_TIMEOUT

    @classmethod
    def read(cls, host_json: Path) -> HostConfig:
        """Read host.json; a missing file means the host's defaults.

        Raises:
            ValueError: the file is not JSON, or a value has the wrong type.
        """
        if not host_json.exists():
            return cls()
        try:
            document = json.loads(host_json.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{host_json}: not JSON: {error}") from None
        http = _object(_object(document, "extensions", host_json), "http", host_json)
        prefix = http.get("routePrefix", DEFAULT_ROUTE_PREFIX)
        if not isinstance(prefix, str):
            raise ValueError(f"{host_json}: extensions.http.routePrefix must be a string, not {prefix!r}")
        headers = _object(http, "customHeaders", host_json)
        if not all(isinstance(value, str) for value in headers.values()):
            raise ValueError(f"{host_json}: extensions.http.customHeaders values must be strings")
        timeout = document.get("functionTimeout") if isinstance(document, dict) else None
        return cls(
            prefix,
            {str(k): str(v) for k, v in headers.items()},
            _timespan(timeout, host_json) if timeout else DEFAULT_FUNCTION_TIMEOUT,
        )


def _object(value: object, key: str, source: Path) -> dict[str, object]:
    member = value.get(key, {}) if isinstance(value, dict) else {}
    if not isinstance(member, dict):
        raise ValueError(f"{source}: {key} must be an object")
    return member


def _timespan(value: object, source: Path) -> timedelta:
    try:
        hours, minutes, seconds = (int(part) for part in str(value).split(":"))
    except ValueError:
        raise ValueError(f"{source}: functionTimeout must be hh:mm:ss, not {value!r}") from None
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def body_size_limit(environ: Mapping[str, str]) -> int:
    """The host's body limit: ``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT``, or 100 MB if unset or unparseable."""
    raw = environ.get(BODY_SIZE_LIMIT_SETTING, "").strip()
    try:
        limit = int(raw) if raw else DEFAULT_BODY_LIMIT
    except ValueError:
        logger.warning(
            "%s=%r is not a number of bytes; the host ignores it (100 MB)", BODY_SIZE_LIMIT_SETTING, raw
        )
        return DEFAULT_BODY_LIMIT
    return limit if limit > 0 else DEFAULT_BODY_LIMIT


def is_disabled(function_name: str, environ: Mapping[str, str]) -> bool:
    """Whether ``AzureWebJobs_<name>_Disabled`` (or the dotted form) disables the function."""
    for name in (f"AzureWebJobs_{function_name}_Disabled", f"AzureWebJobs.{function_name}.Disabled"):
        value = environ.get(name, "").strip().lower()
        if value in ("true", "1"):
            if "." in name:
                logger.warning(
                    "%s: use AzureWebJobs_%s_Disabled; the dotted form is unreliable on Linux",
                    name,
                    function_name,
                )
            return True
    return False
