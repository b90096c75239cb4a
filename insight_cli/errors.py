"""The one error type the CLI turns into a one-line message with a hint."""

from __future__ import annotations


class InsightError(Exception):
    """A problem with the user's input or environment, not a bug: shown as one line."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(InsightError):
    """A bad option value: the CLI exits with code 2, like any usage error."""
