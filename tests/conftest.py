"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from typing import Any

import pytest

TOKEN = "test-secret-token-0123456789abcdef"
NEXT_TOKEN = "next-secret-token-fedcba9876543210"


@functools.cache
def function_app_functions() -> list[Any]:
    """``function_app.app.get_functions()``, computed once per process.

    A second call on the same app raises ``ValueError`` (azure-notes §1.6), so
    every test and the dev server share this list.
    """
    import function_app

    return list(function_app.app.get_functions())


@pytest.fixture(autouse=True)
def clean_scim_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees SCIM_* variables from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("SCIM_"):
            monkeypatch.delenv(name)
    yield
