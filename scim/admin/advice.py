"""The one shape of the admin commands' errors: what went wrong, then what to do about it."""

from __future__ import annotations


class ActionableError(Exception):
    """A failure the operator can act on; ``hint`` says how (printed after ``What to do:``)."""

    prefix = ""
    """Names the stage that failed (e.g. ``Sign-in failed: ``)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def explain(self) -> str:
        """The failure, then what to do."""
        return f"{self.prefix}{self.message}" + (f"\nWhat to do: {self.hint}" if self.hint else "")
