"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from functions_host import FunctionsHost

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-secret-token-0123456789abcdef"
NEXT_TOKEN = "next-secret-token-fedcba9876543210"


@functools.cache
def function_app_host() -> FunctionsHost:
    """``function_app.py`` indexed by ``azure-functions-runtime`` and routed by the local host.

    The runtime keeps one function app per process, and ``app.get_functions()`` may be called
    only once per app (azure-notes §1.6): every test and the dev server share this host.
    """
    from functions_host import FunctionsHost

    host = FunctionsHost(ROOT)
    host.start()
    return host


@pytest.fixture(autouse=True)
def clean_scim_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees SCIM_* variables from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("SCIM_"):
            monkeypatch.delenv(name)
    yield
